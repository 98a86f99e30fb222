//! The supermarket ledger (积分超市管理台账): stock received by source and donor, and
//! exchanges, per month — what the keeper posts monthly. Current stock and prices are the
//! write-model's ([`VillageState::goods`]).

use jifen_ledger::pb::{event_body::Payload, StockSource};
use jifen_ledger::time::{Date, Period};
use jifen_ledger::village::{Accepted, VillageState};
use std::collections::BTreeMap;

/// One receipt of goods.
#[derive(Clone, Debug)]
pub struct Receipt {
    pub receipt_id: String,
    pub goods: String,
    pub quantity: u32,
    pub source: StockSource,
    pub donor: String,
    pub recorded_at: i64,
}

/// A month of the supermarket.
#[derive(Clone, Debug, Default)]
pub struct Month {
    pub receipts: Vec<Receipt>,
    /// Redemptions recorded, and reversed, in the month.
    pub exchanges: u32,
    pub reversals: u32,
    /// Points spent, net of reversals.
    pub points: i64,
    /// Goods handed out, net of returns.
    pub goods_out: BTreeMap<String, i64>,
}

impl Month {
    /// Units received from each source.
    pub fn received_by_source(&self) -> BTreeMap<i32, u64> {
        let mut m = BTreeMap::new();
        for r in &self.receipts {
            *m.entry(r.source as i32).or_default() += r.quantity as u64;
        }
        m
    }
}

/// The supermarket ledger.
#[derive(Clone, Debug, Default)]
pub struct Supermarket {
    months: BTreeMap<Period, Month>,
}

impl Supermarket {
    /// A month's ledger.
    pub fn month(&self, period: Period) -> Option<&Month> {
        self.months.get(&period)
    }

    /// Every month with activity.
    pub fn months(&self) -> impl Iterator<Item = (Period, &Month)> {
        self.months.iter().map(|(p, m)| (*p, m))
    }

    /// Folds an event; `state` is the write-model state after it.
    pub fn apply(&mut self, a: &Accepted, state: &VillageState) {
        let at = a.record().recorded_at();
        let period = Date::of_micros(at).period();
        match a.payload() {
            Payload::StockReceived(s) => self.months.entry(period).or_default().receipts.push(Receipt {
                receipt_id: s.receipt_id.clone(),
                goods: s.goods_code.clone(),
                quantity: s.quantity,
                source: StockSource::try_from(s.source).unwrap_or(StockSource::Unspecified),
                donor: s.donor.clone(),
                recorded_at: at,
            }),
            Payload::RedemptionRecorded(r) => {
                let m = self.months.entry(period).or_default();
                m.exchanges += 1;
                m.points += r.total_points;
                for l in &r.lines {
                    *m.goods_out.entry(l.goods_code.clone()).or_default() += l.quantity as i64;
                }
            }
            Payload::RedemptionReversed(r) => {
                let Some(red) = state.redemption(&r.redemption_id) else { return };
                let m = self.months.entry(period).or_default();
                m.reversals += 1;
                m.points -= red.total;
                for (g, q) in &red.lines {
                    *m.goods_out.entry(g.clone()).or_default() -= *q as i64;
                }
            }
            _ => {}
        }
    }
}

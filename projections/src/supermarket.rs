//! The supermarket ledger (积分超市管理台账): stock received by source and donor, and
//! exchanges, per month — what the keeper posts monthly — and, per goods, the stock at the
//! month's end, the price in force then, and the month's movements ([`Supermarket::month_view`]).
//! Current stock and prices are the write-model's ([`VillageState::goods`]); the month's
//! figures are read from it after each event of the month.

use jifen_ledger::journal::JOrd;
use jifen_ledger::pb::{event_body::Payload, StockSource};
use jifen_ledger::time::{Date, Period};
use jifen_ledger::village::{Accepted, VillageState};
use std::collections::BTreeMap;

/// One receipt of goods.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub receipt_id: String,
    pub goods: String,
    pub quantity: u32,
    pub source: StockSource,
    pub donor: String,
    pub recorded_at: i64,
}

/// One goods in one month, as the keeper posts it.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct GoodsMonth {
    pub name: String,
    /// Units in stock at the end of the month (so far, for the current month).
    pub stock: u64,
    /// The price in force at the end of the month (`None`: not priced).
    pub price: Option<i64>,
    /// Units received in the month.
    pub received: u64,
    /// Units handed out by the month's redemptions.
    pub out: u64,
    /// Units given back by the month's reversals (of redemptions of any month).
    pub returned: u64,
    /// Points taken by the month's redemptions of these goods (quantity × the price then).
    pub points: i64,
    /// Points given back by the month's reversals of these goods (at the price they were taken).
    pub points_returned: i64,
}

/// A month of the supermarket.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Month {
    pub receipts: Vec<Receipt>,
    /// Redemptions recorded, and reversed, in the month.
    pub exchanges: u32,
    pub reversals: u32,
    /// Points spent by the month's redemptions (never reduced by a later return).
    pub points: i64,
    /// Points given back by the month's reversals (of redemptions of any month).
    pub points_returned: i64,
    /// Goods handed out, net of returns.
    pub goods_out: BTreeMap<String, i64>,
    /// Every goods known at the end of the month, by goods code: its stock and price then and
    /// the month's movements.
    pub goods: BTreeMap<String, GoodsMonth>,
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

/// The supermarket ledger. Like the balances view, it folds a request's events under an undo
/// journal ([`Supermarket::begin`]) when the server stores the months they change with them.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, Default)]
pub struct Supermarket {
    months: JOrd<Period, Month>,
}

impl Supermarket {
    /// Opens the journal: the changes from now on can be rolled back.
    pub fn begin(&mut self) {
        self.months.begin();
    }
    /// Closes the journal, keeping the changes.
    pub fn commit(&mut self) {
        self.months.commit();
    }
    /// Undoes every change since [`Supermarket::begin`].
    pub fn rollback(&mut self) {
        self.months.rollback();
    }
    /// A month as it was when the journal was opened (`None` inside: it did not exist), if it
    /// changed since.
    pub fn before(&self, period: Period) -> Option<Option<&Month>> {
        self.months.before(&period)
    }

    /// The months changed since [`Supermarket::begin`], each once, in order.
    pub fn touched(&self) -> Vec<(Period, &Month)> {
        let mut periods: Vec<Period> = self.months.touched().copied().collect();
        periods.sort_unstable();
        periods.dedup();
        periods.into_iter().filter_map(|p| Some((p, self.months.get(&p)?))).collect()
    }

    /// A month's ledger.
    pub fn month(&self, period: Period) -> Option<&Month> {
        self.months.get(&period)
    }

    /// Every month with activity.
    pub fn months(&self) -> impl Iterator<Item = (Period, &Month)> {
        self.months.iter().map(|(p, m)| (*p, m))
    }

    /// The month as the keeper posts it, for any month: for a month with activity, its
    /// receipts, exchanges and per-goods figures; for a month without, the stock and prices it
    /// ended with (those of the last month before it with activity) and no movement; before
    /// the supermarket had anything, an empty month.
    pub fn month_view(&self, period: Period) -> Month {
        if let Some(m) = self.months.get(&period) {
            return m.clone();
        }
        self.months.range(..period).next_back().map_or_else(Month::default, |(_, before)| before.carried())
    }

    /// The month `period`, opened (if new) with the stock and prices the month before ended with.
    fn month_mut(&mut self, period: Period) -> &mut Month {
        if !self.months.contains_key(&period) {
            let opened = self.months.range(..period).next_back().map_or_else(Month::default, |(_, before)| before.carried());
            self.months.insert(period, opened);
        }
        self.months.entry_or_default(period)
    }

    /// Folds an event; `state` is the write-model state after it.
    pub fn apply(&mut self, a: &Accepted, state: &VillageState) {
        let at = a.record().recorded_at();
        let period = Date::of_micros(at).period();
        match a.payload() {
            Payload::StockReceived(s) => {
                let m = self.month_mut(period);
                m.receipts.push(Receipt {
                    receipt_id: s.receipt_id.clone(),
                    goods: s.goods_code.clone(),
                    quantity: s.quantity,
                    source: StockSource::try_from(s.source).unwrap_or(StockSource::Unspecified),
                    donor: s.donor.clone(),
                    recorded_at: at,
                });
                let g = m.goods_line(state, &s.goods_code);
                g.received = g.received.saturating_add(s.quantity as u64);
            }
            Payload::PricesSet(p) => {
                let m = self.month_mut(period);
                for price in &p.prices {
                    m.goods_line(state, &price.goods_code);
                }
            }
            Payload::RedemptionRecorded(r) => {
                let m = self.month_mut(period);
                m.exchanges += 1;
                m.points = m.points.saturating_add(r.total_points);
                let line_points = state.redemption(&r.redemption_id).map(|x| x.line_points.clone()).unwrap_or_default();
                for (i, l) in r.lines.iter().enumerate() {
                    *m.goods_out.entry(l.goods_code.clone()).or_default() += l.quantity as i64;
                    let g = m.goods_line(state, &l.goods_code);
                    g.out = g.out.saturating_add(l.quantity as u64);
                    g.points = g.points.saturating_add(line_points.get(i).copied().unwrap_or(0));
                }
            }
            Payload::RedemptionReversed(r) => {
                let Some(red) = state.redemption(&r.redemption_id) else { return };
                let m = self.month_mut(period);
                m.reversals += 1;
                m.points_returned = m.points_returned.saturating_add(red.total);
                for (i, (code, q)) in red.lines.iter().enumerate() {
                    *m.goods_out.entry(code.clone()).or_default() -= *q as i64;
                    let g = m.goods_line(state, code);
                    g.returned = g.returned.saturating_add(*q);
                    g.points_returned = g.points_returned.saturating_add(red.line_points.get(i).copied().unwrap_or(0));
                }
            }
            _ => {}
        }
    }
}

impl Month {
    /// A month after this one with no activity of its own: every goods with the stock and price
    /// this month ended with, and no movement.
    pub fn carried(&self) -> Month {
        let goods = self
            .goods
            .iter()
            .map(|(code, g)| (code.clone(), GoodsMonth { name: g.name.clone(), stock: g.stock, price: g.price, ..GoodsMonth::default() }))
            .collect();
        Month { goods, ..Month::default() }
    }

    /// The goods' line, with its name, stock and price refreshed from the write-model state
    /// after the event being folded.
    fn goods_line(&mut self, state: &VillageState, code: &str) -> &mut GoodsMonth {
        let line = self.goods.entry(code.to_owned()).or_default();
        if let Some(g) = state.goods_item(code) {
            line.name = g.name.clone();
            line.stock = g.stock;
            line.price = g.price;
        }
        line
    }
}

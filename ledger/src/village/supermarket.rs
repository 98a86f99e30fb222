//! The points supermarket (积分超市): stock received, prices, redemptions and reversals.

use super::{Ctx, Rejection, RoleSet, VillageState};
use crate::ids::check_id;
use crate::pb::{PricesSet, RedemptionRecorded, RedemptionReversed, StockReceived, StockSource};
use crate::time::Date;
use std::collections::BTreeSet;

/// Goods on the shelf.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, Default)]
pub struct Goods {
    pub name: String,
    pub stock: u64,
    pub price: Option<i64>,
}

/// A redemption.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct Redemption {
    pub household: String,
    pub lines: Vec<(String, u64)>,
    pub total: i64,
    pub reversed: bool,
    /// When it was recorded (µs).
    pub recorded_at: i64,
    /// The points each line took (quantity × the price in force then), as `lines`.
    pub line_points: Vec<i64>,
}

impl VillageState {
    pub(super) fn decide_stock(&self, ctx: &Ctx, p: &StockReceived) -> Result<(), Rejection> {
        ctx.author_has(RoleSet::KEEPER.or(RoleSet::ADMIN), "receive stock")?;
        check_id("receipt_id", &p.receipt_id)?;
        if self.receipts.contains(&p.receipt_id) {
            return Err(Rejection::Duplicate { kind: "receipt", id: p.receipt_id.clone() });
        }
        check_id("goods_code", &p.goods_code)?;
        super::check_text("goods_name", &p.goods_name, !self.goods.contains_key(&p.goods_code))?;
        if p.quantity == 0 {
            return Err(Rejection::field("quantity", "must be at least 1"));
        }
        let source = StockSource::try_from(p.source).ok().filter(|s| *s != StockSource::Unspecified);
        let source = source.ok_or_else(|| Rejection::field("source", "a stock source is required"))?;
        let needs_donor = matches!(source, StockSource::Donation | StockSource::Partner | StockSource::Enterprise);
        super::check_text("donor", &p.donor, needs_donor)
    }

    pub(super) fn decide_prices(&self, ctx: &Ctx, p: &PricesSet) -> Result<(), Rejection> {
        ctx.author_has(RoleSet::KEEPER.or(RoleSet::ADMIN), "set prices")?;
        if p.prices.is_empty() {
            return Err(Rejection::field("prices", "at least one price"));
        }
        let mut seen = BTreeSet::new();
        for price in &p.prices {
            if !self.goods.contains_key(&price.goods_code) {
                return Err(Rejection::Unknown { kind: "goods", id: price.goods_code.clone() });
            }
            if !seen.insert(&price.goods_code) {
                return Err(Rejection::field("prices", format!("goods {} repeated", price.goods_code)));
            }
            if price.points < 1 {
                return Err(Rejection::field("prices.points", "a price is at least 1 point"));
            }
        }
        Ok(())
    }

    pub(super) fn decide_redemption(&self, ctx: &Ctx, p: &RedemptionRecorded) -> Result<(), Rejection> {
        ctx.author_has(RoleSet::KEEPER, "record a redemption")?;
        check_id("redemption_id", &p.redemption_id)?;
        if self.redemptions.contains_key(&p.redemption_id) {
            return Err(Rejection::Duplicate { kind: "redemption", id: p.redemption_id.clone() });
        }
        self.active_household(&p.household_id)?;
        if p.lines.is_empty() {
            return Err(Rejection::field("lines", "a redemption has at least one line"));
        }
        let mut seen = BTreeSet::new();
        let mut total: i64 = 0;
        for line in &p.lines {
            if !seen.insert(&line.goods_code) {
                return Err(Rejection::field("lines", format!("goods {} repeated", line.goods_code)));
            }
            if line.quantity == 0 {
                return Err(Rejection::field("lines.quantity", "must be at least 1"));
            }
            let goods =
                self.goods.get(&line.goods_code).ok_or_else(|| Rejection::Unknown { kind: "goods", id: line.goods_code.clone() })?;
            let price = goods.price.ok_or_else(|| Rejection::NoPrice(line.goods_code.clone()))?;
            if goods.stock < line.quantity as u64 {
                return Err(Rejection::InsufficientStock {
                    goods: line.goods_code.clone(),
                    in_stock: goods.stock,
                    requested: line.quantity as u64,
                });
            }
            total = total.saturating_add(price.saturating_mul(line.quantity as i64));
        }
        if p.total_points != total {
            return Err(Rejection::TotalMismatch { expected: total, got: p.total_points });
        }
        let available = ctx.book.available(&p.household_id);
        if total > available {
            return Err(Rejection::Overdraft { household: p.household_id.clone(), available, requested: total });
        }
        Ok(())
    }

    pub(super) fn decide_reversal(&self, ctx: &Ctx, p: &RedemptionReversed) -> Result<(), Rejection> {
        ctx.author_has(RoleSet::KEEPER.or(RoleSet::ADMIN), "reverse a redemption")?;
        let r =
            self.redemptions.get(&p.redemption_id).ok_or_else(|| Rejection::Unknown { kind: "redemption", id: p.redemption_id.clone() })?;
        if r.reversed {
            return Err(Rejection::AlreadyReversed(p.redemption_id.clone()));
        }
        self.active_household(self.resolve_household(&r.household))?;
        super::check_text("reason", &p.reason, true)
    }

    pub(super) fn apply_stock(&mut self, p: &StockReceived) {
        self.receipts.insert(p.receipt_id.clone());
        let g = self.goods.entry_or_default(p.goods_code.clone());
        if g.name.is_empty() {
            g.name = p.goods_name.clone();
        }
        g.stock = g.stock.saturating_add(p.quantity as u64);
    }

    pub(super) fn apply_prices(&mut self, p: &PricesSet) {
        for price in &p.prices {
            if let Some(g) = self.goods.get_mut(&price.goods_code) {
                g.price = Some(price.points);
            }
        }
    }

    pub(super) fn apply_redemption(&mut self, p: &RedemptionRecorded, recorded_at: i64) {
        let mut lines = Vec::with_capacity(p.lines.len());
        let mut line_points = Vec::with_capacity(p.lines.len());
        if self.redemptions.contains_key(&p.redemption_id) {
            return;
        }
        for line in &p.lines {
            let points = match self.goods.get_mut(&line.goods_code) {
                Some(g) => {
                    g.stock = g.stock.saturating_sub(line.quantity as u64);
                    g.price.unwrap_or(0).saturating_mul(line.quantity as i64)
                }
                None => 0,
            };
            line_points.push(points);
            lines.push((line.goods_code.clone(), line.quantity as u64));
        }
        self.book.post_redemption(&p.household_id, p.total_points);
        self.redemptions.insert(
            p.redemption_id.clone(),
            Redemption { household: p.household_id.clone(), lines, total: p.total_points, reversed: false, recorded_at, line_points },
        );
    }

    pub(super) fn apply_reversal(&mut self, p: &RedemptionReversed, recorded_at: i64) {
        let Some(r) = self.redemptions.get_mut(&p.redemption_id) else { return };
        if r.reversed {
            return;
        }
        r.reversed = true;
        let (household, total, lines, spent) = (r.household.clone(), r.total, r.lines.clone(), r.recorded_at);
        for (goods, q) in lines {
            if let Some(g) = self.goods.get_mut(&goods) {
                g.stock = g.stock.saturating_add(q);
            }
        }
        let holder = self.resolve_household(&household).to_owned();
        let (_, annual) = self.year_at(recorded_at);
        self.book.reverse_redemption(&household, &holder, total, Date::of_micros(spent).year(), annual);
    }
}

//! The rulebook (积分细则): items and values adopted by the villagers' congress, in force from
//! an effective date, normally revised once a year.

use super::{Ctx, Rejection, RoleSet, VillageState};
use crate::balance::Category;
use crate::ids::check_id;
use crate::pb::{CongressResolution, ExpiryPolicy, ItemCategory, RulebookAdopted};
use crate::time::Date;
use std::collections::BTreeMap;

/// A points item in force.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct Item {
    pub code: String,
    pub name: String,
    pub category: Category,
    pub min_points: i64,
    pub max_points: i64,
    pub cap_per_period: i64,
    pub evidence_required: bool,
}

/// A rulebook version.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct Rulebook {
    pub version: u32,
    pub effective_from: Date,
    pub items: BTreeMap<String, Item>,
    pub expiry: ExpiryPolicy,
    pub publication_window_days: u32,
    pub score_quorum: u32,
    pub settlement_quorum: u32,
    pub witness_quorum: u32,
    /// The seq of the record that adopted it.
    pub adopted_at: u64,
}

impl Rulebook {
    /// Whether available points reset every year.
    pub fn annual_expiry(&self) -> bool {
        self.expiry == ExpiryPolicy::Annual
    }
    /// An item by code.
    pub fn item(&self, code: &str) -> Result<&Item, Rejection> {
        self.items.get(code).ok_or_else(|| Rejection::Unknown { kind: "item", id: code.to_owned() })
    }
}

impl Item {
    /// Rejects points outside the item's range.
    pub(crate) fn check_points(&self, points: i64) -> Result<(), Rejection> {
        if points < self.min_points || points > self.max_points {
            return Err(Rejection::PointsOutOfRange { item: self.code.clone(), min: self.min_points, max: self.max_points, got: points });
        }
        Ok(())
    }
}

fn check_resolution(r: Option<&CongressResolution>, today: Date) -> Result<(), Rejection> {
    let r = r.ok_or(Rejection::CongressResolution("the congress resolution is required"))?;
    let date = Date::parse("resolution.date", &r.date)?;
    if date > today {
        return Err(Rejection::CongressResolution("the meeting date is later than the day of recording"));
    }
    if r.members == 0 || r.attendance > r.members {
        return Err(Rejection::CongressResolution("attendance must be between 1 and the number of members"));
    }
    // 村民代表会议须有三分之二以上组成人员参加方可举行，所作决定应当经到会人员的过半数同意。
    if (r.attendance as u64) * 3 < (r.members as u64) * 2 {
        return Err(Rejection::CongressResolution("fewer than two thirds of the members attended"));
    }
    if (r.votes_for as u64) + (r.votes_against as u64) + (r.abstentions as u64) > r.attendance as u64 {
        return Err(Rejection::CongressResolution("more votes than members present"));
    }
    if (r.votes_for as u64) * 2 <= r.attendance as u64 {
        return Err(Rejection::CongressResolution("not adopted by a majority of those present"));
    }
    super::check_hash("resolution.minutes_hash", &r.minutes_hash, true)
}

fn item_of(p: &crate::pb::RulebookItem) -> Result<Item, Rejection> {
    check_id("items.code", &p.code)?;
    super::check_text("items.name", &p.name, true)?;
    let category = match ItemCategory::try_from(p.category) {
        Ok(ItemCategory::Basic) => Category::Basic,
        Ok(ItemCategory::Contribution) => Category::Contribution,
        Ok(ItemCategory::Deduction) => Category::Deduction,
        _ => return Err(Rejection::field("items.category", format!("item {} has no category", p.code))),
    };
    let ok = match category {
        Category::Deduction => p.min_points <= p.max_points && p.max_points <= 0 && p.min_points < 0,
        _ => 0 <= p.min_points && p.min_points <= p.max_points && p.max_points > 0,
    };
    if !ok {
        return Err(Rejection::field(
            "items.points",
            format!("item {}: range {}..={} does not fit its category", p.code, p.min_points, p.max_points),
        ));
    }
    if p.cap_per_period < 0 {
        return Err(Rejection::field("items.cap_per_period", format!("item {}: cap is negative", p.code)));
    }
    Ok(Item {
        code: p.code.clone(),
        name: p.name.clone(),
        category,
        min_points: p.min_points,
        max_points: p.max_points,
        cap_per_period: p.cap_per_period,
        evidence_required: p.evidence_required,
    })
}

/// Builds the rulebook of an adoption event, checking its internal consistency.
fn rulebook_of(p: &RulebookAdopted) -> Result<Rulebook, Rejection> {
    let effective_from = Date::parse("effective_from", &p.effective_from)?;
    let mut items = BTreeMap::new();
    if p.items.is_empty() {
        return Err(Rejection::field("items", "a rulebook needs at least one item"));
    }
    for i in &p.items {
        let item = item_of(i)?;
        if items.insert(item.code.clone(), item).is_some() {
            return Err(Rejection::field("items.code", format!("item code {} repeated", i.code)));
        }
    }
    let expiry = match ExpiryPolicy::try_from(p.expiry) {
        Ok(e @ (ExpiryPolicy::Never | ExpiryPolicy::Annual)) => e,
        _ => return Err(Rejection::field("expiry", "must be NEVER or ANNUAL")),
    };
    if !(1..=60).contains(&p.publication_window_days) {
        return Err(Rejection::field("publication_window_days", "must be 1 to 60 days"));
    }
    for (field, q) in [("score_quorum", p.score_quorum), ("settlement_quorum", p.settlement_quorum), ("witness_quorum", p.witness_quorum)] {
        if !(1..=9).contains(&q) {
            return Err(Rejection::field(field, "must be 1 to 9"));
        }
    }
    Ok(Rulebook {
        version: p.version,
        effective_from,
        items,
        expiry,
        publication_window_days: p.publication_window_days,
        score_quorum: p.score_quorum,
        settlement_quorum: p.settlement_quorum,
        witness_quorum: p.witness_quorum,
        adopted_at: 0,
    })
}

impl VillageState {
    pub(super) fn decide_rulebook(&self, ctx: &Ctx, p: &RulebookAdopted) -> Result<(), Rejection> {
        ctx.author_has(RoleSet::ADMIN, "adopt a rulebook")?;
        let expected = self.rulebooks.len() as u32 + 1;
        if p.version != expected {
            return Err(Rejection::RulebookVersion { expected, got: p.version });
        }
        let rb = rulebook_of(p)?;
        // No rulebook governs acts before its adoption: the rules in force on the day of an act
        // must have been known that day.
        let earliest = match self.rulebooks.last() {
            Some(prev) if prev.effective_from >= ctx.today => prev.effective_from.add_days(1),
            _ => ctx.today,
        };
        if rb.effective_from < earliest {
            return Err(Rejection::RulebookRetroactive { effective_from: rb.effective_from.to_string(), earliest: earliest.to_string() });
        }
        check_resolution(p.resolution.as_ref(), ctx.today)
    }

    pub(super) fn apply_rulebook(&mut self, p: &RulebookAdopted, seq: u64) {
        if let Ok(rb) = rulebook_of(p) {
            self.rulebooks.push(Rulebook { adopted_at: seq, ..rb });
        }
    }
}

//! Scoring (评分): self-declarations (自主申报), scores fixed by the panel, and corrections.
//!
//! A score is *pending* until the 公示 that covers it closes; then it is *final* and its points
//! are booked. Corrections before that change the entry; corrections after it book the
//! difference.

use super::{Ctx, Rejection, RoleSet, VillageState};
use crate::balance::Category;
use crate::ids::{check_id, Id};
use crate::pb::{score_corrected, ClaimDeclined, PointsClaimed, ScoreCorrected, ScoreRecorded, ScoreSource};
use crate::time::{Date, Period};

/// A self-declaration awaiting the panel, until it is scored or declined.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct Claim {
    pub household: String,
    pub item_code: String,
    /// The day of the act declared.
    pub occurred_on: Date,
    pub scored: bool,
    pub declined: bool,
}

/// A score entry.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct Entry {
    pub id: String,
    pub household: Id,
    pub member: Option<Id>,
    pub item_code: Id,
    pub category: Category,
    pub rulebook_version: u32,
    pub points: i64,
    pub occurred_on: Date,
    pub period: Period,
    pub source: ScoreSource,
    /// The seq of the ScoreRecorded record.
    pub seq: u64,
    pub void: bool,
    pub is_final: bool,
    pub publication: Option<String>,
    pub pending_objection: Option<String>,
}

/// What a period's entries amount to for its settlement: how many are live (not void), how
/// many of those are not yet final (unpublished or in 公示), and the sum of the final points.
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeriodTally {
    pub live: u64,
    pub unpublished: u64,
    pub final_points: i64,
}

impl PeriodTally {
    /// One entry's share, with its period.
    pub(super) fn of(e: &Entry) -> (Period, PeriodTally) {
        let live = !e.void;
        let share = PeriodTally {
            live: u64::from(live),
            unpublished: u64::from(live && !e.is_final),
            final_points: if live && e.is_final { e.points } else { 0 },
        };
        (e.period, share)
    }
}

fn check_evidence(hashes: &[Vec<u8>]) -> Result<(), Rejection> {
    if hashes.len() > 16 {
        return Err(Rejection::field("evidence_hashes", "at most 16 evidence hashes"));
    }
    hashes.iter().try_for_each(|h| super::check_hash("evidence_hashes", h, true))
}

impl VillageState {
    /// The points already given under `item` to `household` in `period`, in absolute value.
    fn cap_used(&self, household: &str, item: &str, period: Period) -> i64 {
        // The interner is a cache, not the truth: a state opened from a snapshot starts with it
        // empty while `caps` holds every key, so an id it lacks is looked up by its string.
        let id = |s: &str| self.ids.get(s).cloned().unwrap_or_else(|| Id::from(s));
        self.caps.get(&(id(household), id(item), period)).copied().unwrap_or(0)
    }

    fn check_cap(&self, item: &super::Item, household: &str, period: Period, add: i64) -> Result<(), Rejection> {
        let already = self.cap_used(household, &item.code, period);
        if item.cap_per_period > 0 && already + add > item.cap_per_period {
            return Err(Rejection::CapExceeded {
                item: item.code.clone(),
                period: period.to_string(),
                cap: item.cap_per_period,
                already,
                got: add,
            });
        }
        Ok(())
    }

    fn check_member(&self, household: &str, member: &str) -> Result<(), Rejection> {
        let h = self.active_household(household)?;
        if !member.is_empty() && !h.members.contains(member) {
            return Err(Rejection::NotAMember { household: household.to_owned(), member: member.to_owned() });
        }
        Ok(())
    }

    fn act_date(&self, ctx: &Ctx, occurred_on: &str) -> Result<Date, Rejection> {
        let date = Date::parse("occurred_on", occurred_on)?;
        if date > ctx.today {
            return Err(Rejection::ActInFuture { date: date.to_string() });
        }
        if let Some(p) = self.settled.keys().find(|p| **p == date.period()) {
            return Err(Rejection::PeriodSettled(p.to_string()));
        }
        Ok(date)
    }

    fn panel_quorum(&self, ctx: &Ctx, quorum: u32, household: &str, what: &'static str) -> Result<(), Rejection> {
        ctx.author_has(RoleSet::PANEL, what)?;
        self.check_not_own(ctx, household)?;
        let got = ctx.count_with(RoleSet::PANEL, None);
        if got < quorum {
            return Err(Rejection::QuorumNotMet { what: "score (panel members)", needed: quorum, got });
        }
        Ok(())
    }

    pub(super) fn decide_claim(&self, ctx: &Ctx, p: &PointsClaimed) -> Result<(), Rejection> {
        check_id("claim_id", &p.claim_id)?;
        let is_own = ctx.author.roles.intersects(RoleSet::VILLAGER)
            && ctx.author.household.as_deref().map(|h| self.resolve_household(h)) == Some(self.resolve_household(&p.household_id));
        if !is_own && !ctx.author.roles.intersects(RoleSet::ADMIN) {
            return Err(Rejection::RoleNotAllowed { actor: ctx.author.actor_id.clone(), action: "declare points for this household" });
        }
        if self.claim_exists(&p.claim_id) {
            return Err(Rejection::Duplicate { kind: "claim", id: p.claim_id.clone() });
        }
        self.check_member(&p.household_id, &p.member_id)?;
        let date = self.act_date(ctx, &p.occurred_on)?;
        let rb = self.rulebook_on(date).ok_or_else(|| Rejection::NoRulebook { date: date.to_string() })?;
        let item = rb.item(&p.item_code)?;
        if item.category == Category::Deduction {
            return Err(Rejection::NotClaimable { item: item.code.clone() });
        }
        item.check_points(p.points)?;
        check_evidence(&p.evidence_hashes)
    }

    pub(super) fn decide_score(&self, ctx: &Ctx, p: &ScoreRecorded) -> Result<(), Rejection> {
        check_id("entry_id", &p.entry_id)?;
        if self.entry_exists(&p.entry_id) {
            return Err(Rejection::Duplicate { kind: "entry", id: p.entry_id.clone() });
        }
        self.check_member(&p.household_id, &p.member_id)?;
        let date = self.act_date(ctx, &p.occurred_on)?;
        let rb = self.rulebook_on(date).ok_or_else(|| Rejection::NoRulebook { date: date.to_string() })?;
        self.panel_quorum(ctx, rb.score_quorum, &p.household_id, "record a score")?;
        if p.rulebook_version != rb.version {
            return Err(Rejection::WrongRulebookVersion { got: p.rulebook_version, in_force: rb.version, date: date.to_string() });
        }
        let item = rb.item(&p.item_code)?;
        item.check_points(p.points)?;
        self.check_cap(item, &p.household_id, date.period(), p.points.abs())?;
        check_evidence(&p.evidence_hashes)?;
        if item.evidence_required && p.evidence_hashes.is_empty() {
            return Err(Rejection::EvidenceRequired { item: item.code.clone() });
        }
        match ScoreSource::try_from(p.source) {
            Ok(ScoreSource::SelfDeclaration) => {
                if let Some(answered) = self.answered_claim(&p.claim_id) {
                    return Err(answered);
                }
                let claim = self.claims.get(&p.claim_id).ok_or_else(|| Rejection::Unknown { kind: "claim", id: p.claim_id.clone() })?;
                if claim.scored {
                    return Err(Rejection::ClaimAlreadyScored(p.claim_id.clone()));
                }
                if claim.declined {
                    return Err(Rejection::ClaimAlreadyDeclined(p.claim_id.clone()));
                }
                // The household that now holds the claimant's members and points: the claim's
                // own, or the one that absorbed it in a merge.
                if self.resolve_household(&claim.household) != p.household_id {
                    return Err(Rejection::ClaimMismatch { claim: p.claim_id.clone(), reason: "household differs" });
                }
                if claim.item_code != p.item_code {
                    return Err(Rejection::ClaimMismatch { claim: p.claim_id.clone(), reason: "item differs" });
                }
                Ok(())
            }
            Ok(ScoreSource::Inspection | ScoreSource::Report) if p.claim_id.is_empty() => Ok(()),
            Ok(ScoreSource::Inspection | ScoreSource::Report) => {
                Err(Rejection::field("claim_id", "only a SELF_DECLARATION score answers a claim"))
            }
            _ => Err(Rejection::field("source", "must be INSPECTION, REPORT or SELF_DECLARATION")),
        }
    }

    /// The new points of a correction, checked against the entry's item.
    pub(super) fn corrected_points(&self, entry: &Entry, new_points: Option<i64>) -> Result<i64, Rejection> {
        let Some(points) = new_points else { return Ok(0) };
        let rb = self.rulebook_version(entry.rulebook_version)?;
        let item = rb.item(&entry.item_code)?;
        item.check_points(points)?;
        self.check_cap(item, &entry.household, entry.period, points.abs() - entry.points.abs())?;
        Ok(points)
    }

    /// An adopted rulebook by version.
    fn rulebook_version(&self, version: u32) -> Result<&super::Rulebook, Rejection> {
        self.rulebooks.iter().find(|r| r.version == version).ok_or_else(|| Rejection::Unknown { kind: "rulebook", id: version.to_string() })
    }

    /// A live entry that may be corrected: one of a settled period is void or settled.
    pub(super) fn correctable(&self, id: &str) -> Result<&Entry, Rejection> {
        if let Some(settled) = self.settled_entry(id) {
            return Err(if settled.void {
                Rejection::EntryVoid(id.to_owned())
            } else {
                Rejection::PeriodSettled(settled.period.to_string())
            });
        }
        let e = self.entries.get(id).ok_or_else(|| Rejection::Unknown { kind: "entry", id: id.to_owned() })?;
        if e.void {
            return Err(Rejection::EntryVoid(id.to_owned()));
        }
        Ok(e)
    }

    pub(super) fn decide_claim_declined(&self, ctx: &Ctx, p: &ClaimDeclined) -> Result<(), Rejection> {
        if let Some(answered) = self.answered_claim(&p.claim_id) {
            return Err(answered);
        }
        let claim = self.claims.get(&p.claim_id).ok_or_else(|| Rejection::Unknown { kind: "claim", id: p.claim_id.clone() })?;
        if claim.scored {
            return Err(Rejection::ClaimAlreadyScored(p.claim_id.clone()));
        }
        if claim.declined {
            return Err(Rejection::ClaimAlreadyDeclined(p.claim_id.clone()));
        }
        let date = claim.occurred_on;
        let rb = self.rulebook_on(date).ok_or_else(|| Rejection::NoRulebook { date: date.to_string() })?;
        self.panel_quorum(ctx, rb.score_quorum, &claim.household, "decline a claim")?;
        super::check_text("reason", &p.reason, true)
    }

    pub(super) fn decide_correction(&self, ctx: &Ctx, p: &ScoreCorrected) -> Result<(), Rejection> {
        let e = self.correctable(&p.entry_id)?;
        if e.pending_objection.is_some() {
            return Err(Rejection::EntryUnderObjection(e.id.clone()));
        }
        if self.settled.contains_key(&e.period) {
            return Err(Rejection::PeriodSettled(e.period.to_string()));
        }
        // The points go to the household now holding the entry's (following merges): never
        // to a closed one.
        self.active_household(self.resolve_household(&e.household))?;
        let rb = self.rulebook_version(e.rulebook_version)?;
        self.panel_quorum(ctx, rb.score_quorum, &e.household, "correct a score")?;
        super::check_text("reason", &p.reason, true)?;
        match p.correction {
            Some(score_corrected::Correction::NewPoints(n)) => self.corrected_points(e, Some(n)).map(|_| ()),
            Some(score_corrected::Correction::Void(true)) => Ok(()),
            _ => Err(Rejection::field("correction", "new_points or void = true is required")),
        }
    }

    pub(super) fn apply_claim(&mut self, p: &PointsClaimed) {
        let Ok(occurred_on) = Date::parse("occurred_on", &p.occurred_on) else { return };
        let claim =
            Claim { household: p.household_id.clone(), item_code: p.item_code.clone(), occurred_on, scored: false, declined: false };
        self.claims.insert(p.claim_id.clone(), claim);
    }

    pub(super) fn apply_claim_declined(&mut self, p: &ClaimDeclined) {
        if let Some(c) = self.claims.get_mut(&p.claim_id) {
            c.declined = true;
        }
    }

    pub(super) fn apply_score(&mut self, p: &ScoreRecorded, seq: u64) {
        let Ok(date) = Date::parse("occurred_on", &p.occurred_on) else { return };
        let Some(category) =
            self.rulebooks.iter().find(|r| r.version == p.rulebook_version).and_then(|rb| rb.items.get(&p.item_code)).map(|i| i.category)
        else {
            return;
        };
        if self.entry_exists(&p.entry_id) {
            return;
        }
        if let Some(c) = self.claims.get_mut(&p.claim_id) {
            c.scored = true;
        }
        let (household, item_code) = (self.ids.intern(&p.household_id), self.ids.intern(&p.item_code));
        let member = (!p.member_id.is_empty()).then(|| self.ids.intern(&p.member_id));
        let cap = self.caps.entry_or_default((household.clone(), item_code.clone(), date.period()));
        *cap = cap.saturating_add(p.points.saturating_abs());
        self.entries.insert(
            p.entry_id.clone(),
            Entry {
                id: p.entry_id.clone(),
                household,
                member,
                item_code,
                category,
                rulebook_version: p.rulebook_version,
                points: p.points,
                occurred_on: date,
                period: date.period(),
                source: ScoreSource::try_from(p.source).unwrap_or(ScoreSource::Unspecified),
                seq,
                void: false,
                is_final: false,
                publication: None,
                pending_objection: None,
            },
        );
        let added = self.entries.get(&p.entry_id).map(PeriodTally::of);
        self.retally(None, added);
    }

    /// Changes an entry's points (or voids it), keeping caps and, for final entries, the book.
    pub(super) fn change_entry(&mut self, id: &str, new_points: Option<i64>) {
        let Some(e) = self.entries.get_mut(id) else { return };
        let before = PeriodTally::of(e);
        let new = new_points.unwrap_or(0);
        let key = (e.household.clone(), e.item_code.clone(), e.period);
        let cap = self.caps.entry_or_default(key);
        *cap = cap.saturating_add(new.saturating_abs() - e.points.saturating_abs());
        if e.is_final {
            let holder = e.household.clone();
            let (category, delta) = (e.category, new.saturating_sub(e.points));
            let e_points = &mut e.points;
            *e_points = new;
            e.void = new_points.is_none();
            let holder = self.resolve_household(&holder).to_owned();
            self.book.post_score(&holder, category, delta);
        } else {
            e.points = new;
            e.void = new_points.is_none();
        }
        let after = self.entries.get(id).map(PeriodTally::of);
        self.retally(Some(before), after);
    }

    /// Moves an entry's share of its period's tally from `before` to `after` (either absent).
    pub(super) fn retally(&mut self, before: Option<(Period, PeriodTally)>, after: Option<(Period, PeriodTally)>) {
        if let Some((period, t)) = before {
            let x = self.period_tally.entry_or_default(period);
            x.live = x.live.saturating_sub(t.live);
            x.unpublished = x.unpublished.saturating_sub(t.unpublished);
            x.final_points = x.final_points.saturating_sub(t.final_points);
        }
        if let Some((period, t)) = after {
            let x = self.period_tally.entry_or_default(period);
            x.live = x.live.saturating_add(t.live);
            x.unpublished = x.unpublished.saturating_add(t.unpublished);
            x.final_points = x.final_points.saturating_add(t.final_points);
        }
    }

    pub(super) fn apply_correction(&mut self, p: &ScoreCorrected) {
        let new = match p.correction {
            Some(score_corrected::Correction::NewPoints(n)) => Some(n),
            _ => None,
        };
        self.change_entry(&p.entry_id, new);
    }
}

//! Publication (公示), objections (异议) and their decisions, closing, and monthly settlement.
//!
//! The 公示 window is judged by the server's `recorded_at`, never by the author's clock.

use super::{Ctx, Rejection, RoleSet, VillageState};
use crate::hash::Hash;
use crate::ids::check_id;
use crate::pb::{correction, ObjectionDecided, ObjectionFiled, ObjectionOutcome, PeriodSettled, PublicationClosed, PublicationOpened};
use crate::time::{Period, MICROS_PER_DAY};
use std::collections::BTreeSet;

/// A publication of entries for objection.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct Publication {
    pub id: String,
    pub period: Period,
    pub entries: Vec<String>,
    pub window_start: i64,
    pub window_end: i64,
    pub closed: bool,
    pub objections: Vec<String>,
}

/// An objection and its decision.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct Objection {
    pub id: String,
    pub publication: String,
    pub entry: String,
    pub objector: String,
    pub filed_seq: u64,
    pub outcome: Option<ObjectionOutcome>,
}

fn correction_points(c: &Option<crate::pb::Correction>) -> Option<Result<Option<i64>, Rejection>> {
    match c.as_ref().map(|c| c.change) {
        None => None,
        Some(Some(correction::Change::NewPoints(n))) => Some(Ok(Some(n))),
        Some(Some(correction::Change::Void(true))) => Some(Ok(None)),
        Some(_) => Some(Err(Rejection::field("correction", "new_points or void = true is required"))),
    }
}

impl VillageState {
    fn open_publication(&self, id: &str) -> Result<&Publication, Rejection> {
        if self.closed_publication(id).is_some() {
            return Err(Rejection::PublicationClosed(id.to_owned()));
        }
        let p = self.publications.get(id).ok_or_else(|| Rejection::Unknown { kind: "publication", id: id.to_owned() })?;
        if p.closed {
            return Err(Rejection::PublicationClosed(id.to_owned()));
        }
        Ok(p)
    }

    pub(super) fn decide_publication(&self, ctx: &Ctx, p: &PublicationOpened) -> Result<(), Rejection> {
        ctx.author_has(RoleSet::ADMIN, "open a publication")?;
        check_id("publication_id", &p.publication_id)?;
        if self.publication_exists(&p.publication_id) {
            return Err(Rejection::Duplicate { kind: "publication", id: p.publication_id.clone() });
        }
        let period = Period::parse("period", &p.period)?;
        if self.settled.contains_key(&period) {
            return Err(Rejection::PeriodSettled(period.to_string()));
        }
        if p.entry_ids.is_empty() {
            return Err(Rejection::field("entry_ids", "a publication covers at least one entry"));
        }
        let mut seen = BTreeSet::new();
        for id in &p.entry_ids {
            if !seen.insert(id) {
                return Err(Rejection::field("entry_ids", format!("entry {id} repeated")));
            }
            if let Some(settled) = self.settled_entry(id) {
                return Err(if settled.void {
                    Rejection::EntryVoid(id.clone())
                } else {
                    Rejection::EntryOutsidePeriod {
                        entry: id.clone(),
                        entry_period: settled.period.to_string(),
                        period: period.to_string(),
                    }
                });
            }
            let e = self.correctable(id)?;
            if e.period != period {
                return Err(Rejection::EntryOutsidePeriod {
                    entry: id.clone(),
                    entry_period: e.period.to_string(),
                    period: period.to_string(),
                });
            }
            if let Some(publication) = &e.publication {
                return Err(Rejection::EntryAlreadyPublished { entry: id.clone(), publication: publication.clone() });
            }
        }
        if p.window_start < ctx.recorded_at {
            return Err(Rejection::WindowInPast);
        }
        let rb = self.rulebook_on(ctx.today).ok_or_else(|| Rejection::NoRulebook { date: ctx.today.to_string() })?;
        let min = rb.publication_window_days as i64 * MICROS_PER_DAY;
        if p.window_end - p.window_start < min {
            return Err(Rejection::WindowTooShort {
                min_days: rb.publication_window_days,
                got_hours: (p.window_end - p.window_start) / 3_600_000_000,
            });
        }
        Ok(())
    }

    pub(super) fn decide_objection(&self, ctx: &Ctx, p: &ObjectionFiled) -> Result<(), Rejection> {
        if !ctx.author.roles.intersects(RoleSet::VILLAGER.or(RoleSet::ADMIN)) {
            return Err(Rejection::RoleNotAllowed { actor: ctx.author.actor_id.clone(), action: "file an objection" });
        }
        check_id("objection_id", &p.objection_id)?;
        if self.objection_exists(&p.objection_id) {
            return Err(Rejection::Duplicate { kind: "objection", id: p.objection_id.clone() });
        }
        let publication = self.open_publication(&p.publication_id)?;
        if !publication.entries.contains(&p.entry_id) {
            return Err(Rejection::EntryNotPublished { entry: p.entry_id.clone(), publication: p.publication_id.clone() });
        }
        if ctx.recorded_at < publication.window_start || ctx.recorded_at >= publication.window_end {
            return Err(Rejection::OutsideWindow {
                start: publication.window_start,
                end: publication.window_end,
                recorded_at: ctx.recorded_at,
            });
        }
        let entry = self.correctable(&p.entry_id)?;
        if entry.pending_objection.is_some() {
            return Err(Rejection::EntryUnderObjection(entry.id.clone()));
        }
        check_id("objector", &p.objector)?;
        if !self.households.contains_key(&p.objector) && !self.members.contains(&p.objector) {
            return Err(Rejection::Unknown { kind: "household or member", id: p.objector.clone() });
        }
        // A villager's own key speaks for the villager: the objector is their household (where
        // its members now are, following merges) or one of its members. An admin records an
        // objection on anyone's behalf.
        if !ctx.author.roles.intersects(RoleSet::ADMIN) && !self.speaks_for(ctx.author, &p.objector) {
            return Err(Rejection::ObjectorMismatch { actor: ctx.author.actor_id.clone(), objector: p.objector.clone() });
        }
        super::check_text("reason", &p.reason, true)?;
        super::check_hash("evidence_hash", &p.evidence_hash, false)
    }

    /// Whether `objector` (a household or member id) is the signer's own household, following
    /// merges, or a member of it.
    fn speaks_for(&self, signer: &super::Signer, objector: &str) -> bool {
        let Some(own) = signer.household.as_deref().map(|h| self.resolve_household(h)) else { return false };
        own == self.resolve_household(objector) || self.households.get(own).is_some_and(|h| h.members.contains(objector))
    }

    pub(super) fn decide_decision(&self, ctx: &Ctx, p: &ObjectionDecided) -> Result<(), Rejection> {
        ctx.author_has(RoleSet::PANEL, "decide an objection")?;
        if self.objection_forgotten(&p.objection_id) {
            return Err(Rejection::AlreadyDecided(p.objection_id.clone()));
        }
        let o = self.objections.get(&p.objection_id).ok_or_else(|| Rejection::Unknown { kind: "objection", id: p.objection_id.clone() })?;
        if o.outcome.is_some() {
            return Err(Rejection::AlreadyDecided(o.id.clone()));
        }
        let entry = self.entries.get(&o.entry).ok_or_else(|| Rejection::Unknown { kind: "entry", id: o.entry.clone() })?;
        self.check_not_own(ctx, &entry.household)?;
        // The supervisor who co-signs is never the decision's author nor one of its panel
        // signers (an actor enrolled with both roles before that was refused).
        let independent = |s: &&super::Signer| s.actor_id != ctx.author.actor_id && !s.roles.intersects(RoleSet::PANEL);
        let supervisors: Vec<&super::Signer> = ctx.signers.iter().filter(|s| s.roles.intersects(RoleSet::SUPERVISOR)).collect();
        if !supervisors.iter().any(independent) {
            return Err(match supervisors.first() {
                Some(s) => Rejection::SupervisorNotIndependent { actor: s.actor_id.clone() },
                None => Rejection::QuorumNotMet { what: "objection decision (supervisor co-signature)", needed: 1, got: 0 },
            });
        }
        super::check_text("finding", &p.finding, true)?;
        match (ObjectionOutcome::try_from(p.outcome), correction_points(&p.correction)) {
            (Ok(ObjectionOutcome::Upheld), None) => Err(Rejection::CorrectionRequired),
            (Ok(ObjectionOutcome::Upheld), Some(c)) => self.corrected_points(entry, c?).map(|_| ()),
            (Ok(ObjectionOutcome::Dismissed), None) => Ok(()),
            (Ok(ObjectionOutcome::Dismissed), Some(_)) => Err(Rejection::CorrectionNotAllowed),
            _ => Err(Rejection::field("outcome", "must be UPHELD or DISMISSED")),
        }
    }

    pub(super) fn decide_close(&self, ctx: &Ctx, p: &PublicationClosed) -> Result<(), Rejection> {
        ctx.author_has(RoleSet::ADMIN, "close a publication")?;
        let publication = self.open_publication(&p.publication_id)?;
        if ctx.recorded_at < publication.window_end {
            return Err(Rejection::WindowNotOver { end: publication.window_end, recorded_at: ctx.recorded_at });
        }
        let pending = publication.objections.iter().filter(|o| self.objections.get(*o).is_some_and(|x| x.outcome.is_none())).count();
        if pending > 0 {
            return Err(Rejection::ObjectionsPending(pending));
        }
        Ok(())
    }

    /// The sum of final points of a period's entries.
    pub fn period_points(&self, period: Period) -> i64 {
        self.period_tally.get(&period).map_or(0, |t| t.final_points)
    }

    pub(super) fn decide_settlement(&self, ctx: &Ctx, p: &PeriodSettled) -> Result<(), Rejection> {
        ctx.author_has(RoleSet::ADMIN, "settle a period")?;
        let period = Period::parse("period", &p.period)?;
        if self.settled.contains_key(&period) {
            return Err(Rejection::PeriodSettled(period.to_string()));
        }
        if let Some(of) = self.closed_publication(&p.publication_id) {
            // Forgotten: closed, and of a settled period (so not of this one).
            return Err(Rejection::field("period", format!("publication {} is for {of}", p.publication_id)));
        }
        let publication = self
            .publications
            .get(&p.publication_id)
            .ok_or_else(|| Rejection::Unknown { kind: "publication", id: p.publication_id.clone() })?;
        if !publication.closed {
            return Err(Rejection::PublicationOpen(p.publication_id.clone()));
        }
        if publication.period != period {
            return Err(Rejection::field("period", format!("publication {} is for {}", publication.id, publication.period)));
        }
        let rb = self.rulebook_on(ctx.today).ok_or_else(|| Rejection::NoRulebook { date: ctx.today.to_string() })?;
        let got = ctx.count_with(RoleSet::SUPERVISOR, Some(&ctx.author.actor_id));
        if got < rb.settlement_quorum {
            return Err(Rejection::QuorumNotMet { what: "settlement (supervisor co-signatures)", needed: rb.settlement_quorum, got });
        }
        let unpublished = self.period_tally.get(&period).map_or(0, |t| t.unpublished) as usize;
        if unpublished > 0 {
            return Err(Rejection::UnpublishedEntries { period: period.to_string(), count: unpublished });
        }
        // A month is settled once it is over (China Standard Time), and after every earlier
        // month that has live entries: settlements run in calendar order from the ledger's
        // first month with entries, which waits for nothing. A month without live entries has
        // nothing to settle (and no publication to settle it with), so it holds nothing up.
        let ends_at = period.next().first_day().start_micros();
        if ctx.recorded_at < ends_at {
            return Err(Rejection::PeriodNotOver { period: period.to_string(), ends_at });
        }
        let earlier = self.period_tally.range(..period).find(|(p, t)| t.live > 0 && !self.settled.contains_key(p)).map(|(p, _)| *p);
        if let Some(earlier) = earlier {
            return Err(Rejection::EarlierPeriodUnsettled { period: period.to_string(), earlier: earlier.to_string() });
        }
        let households = ctx.book.len() as u32;
        if p.households != households {
            return Err(Rejection::SettlementMismatch {
                field: "households",
                expected: households.to_string(),
                got: p.households.to_string(),
            });
        }
        let points = self.period_points(period);
        if p.period_points != points {
            return Err(Rejection::SettlementMismatch {
                field: "period_points",
                expected: points.to_string(),
                got: p.period_points.to_string(),
            });
        }
        let digest = ctx.book.digest();
        if p.balance_digest != digest.as_bytes() {
            return Err(Rejection::SettlementMismatch {
                field: "balance_digest",
                expected: digest.to_hex(),
                got: Hash::from_slice(&p.balance_digest).map_or_else(|| format!("{} bytes", p.balance_digest.len()), |h| h.to_hex()),
            });
        }
        Ok(())
    }

    pub(super) fn apply_publication(&mut self, p: &PublicationOpened) {
        let Ok(period) = Period::parse("period", &p.period) else { return };
        if self.publication_exists(&p.publication_id) {
            return;
        }
        for id in &p.entry_ids {
            if let Some(e) = self.entries.get_mut(id) {
                e.publication = Some(p.publication_id.clone());
            }
        }
        self.publications.insert(
            p.publication_id.clone(),
            Publication {
                id: p.publication_id.clone(),
                period,
                entries: p.entry_ids.clone(),
                window_start: p.window_start,
                window_end: p.window_end,
                closed: false,
                objections: Vec::new(),
            },
        );
    }

    pub(super) fn apply_objection(&mut self, p: &ObjectionFiled, seq: u64) {
        let (Some(entry), Some(publication)) = (self.entries.get_mut(&p.entry_id), self.publications.get_mut(&p.publication_id)) else {
            return;
        };
        entry.pending_objection = Some(p.objection_id.clone());
        publication.objections.push(p.objection_id.clone());
        self.objections.insert(
            p.objection_id.clone(),
            Objection {
                id: p.objection_id.clone(),
                publication: p.publication_id.clone(),
                entry: p.entry_id.clone(),
                objector: p.objector.clone(),
                filed_seq: seq,
                outcome: None,
            },
        );
    }

    pub(super) fn apply_decision(&mut self, p: &ObjectionDecided) {
        let (Ok(outcome), Some(o)) = (ObjectionOutcome::try_from(p.outcome), self.objections.get_mut(&p.objection_id)) else { return };
        o.outcome = Some(outcome);
        let entry = o.entry.clone();
        let Some(e) = self.entries.get_mut(&entry) else { return };
        e.pending_objection = None;
        if let Some(Ok(points)) = correction_points(&p.correction) {
            self.change_entry(&entry, points);
        }
    }

    pub(super) fn apply_close(&mut self, p: &PublicationClosed) {
        let Some(publication) = self.publications.get_mut(&p.publication_id) else { return };
        publication.closed = true;
        let ids = publication.entries.clone();
        for id in ids {
            let Some(e) = self.entries.get_mut(&id) else { continue };
            if e.is_final {
                continue;
            }
            let before = super::scoring::PeriodTally::of(e);
            e.is_final = true;
            let after = super::scoring::PeriodTally::of(e);
            if !e.void {
                let (h, c, pts) = (e.household.clone(), e.category, e.points);
                let holder = self.resolve_household(&h).to_owned();
                self.book.post_score(&holder, c, pts);
            }
            self.retally(Some(before), Some(after));
        }
    }

    pub(super) fn apply_settlement(&mut self, p: &PeriodSettled) {
        if let Ok(period) = Period::parse("period", &p.period) {
            self.settled.insert(period, p.publication_id.clone());
            self.forget_settled(period);
        }
    }
}

//! Households (户) and their members: registration, members joining and leaving, split
//! (分户) and merge (合户) with points carried over, closing.

use super::{Ctx, Rejection, RoleSet, VillageState};
use crate::ids::check_id;
use crate::pb::{
    HouseholdClosed, HouseholdMerged, HouseholdRegistered, HouseholdSplit, Member, MemberAdded, MemberRemovalReason, MemberRemoved,
    Residency,
};
use std::collections::BTreeSet;

/// A household's points card.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct Household {
    pub id: String,
    pub group: String,
    pub residency: Residency,
    pub members: BTreeSet<String>,
    pub closed: bool,
    /// The household this one was merged into, if any.
    pub merged_into: Option<String>,
    /// The seq of that merge.
    pub merged_at: Option<u64>,
}

fn residency(field: &'static str, r: i32) -> Result<Residency, Rejection> {
    match Residency::try_from(r) {
        Ok(r @ (Residency::Registered | Residency::NonRegisteredResident)) => Ok(r),
        _ => Err(Rejection::field(field, "must be REGISTERED or NON_REGISTERED_RESIDENT")),
    }
}

impl VillageState {
    fn check_new_member(&self, m: &Member, seen: &mut BTreeSet<String>) -> Result<(), Rejection> {
        check_id("member_id", &m.member_id)?;
        super::check_hash("identity_commitment", &m.identity_commitment, false)?;
        if self.members.contains(&m.member_id) || !seen.insert(m.member_id.clone()) {
            return Err(Rejection::Duplicate { kind: "member", id: m.member_id.clone() });
        }
        Ok(())
    }

    fn check_new_household(&self, id: &str, group: &str) -> Result<(), Rejection> {
        check_id("household_id", id)?;
        check_id("group", group)?;
        if self.households.contains_key(id) {
            return Err(Rejection::Duplicate { kind: "household", id: id.to_owned() });
        }
        Ok(())
    }

    pub(super) fn decide_registered(&self, ctx: &Ctx, p: &HouseholdRegistered) -> Result<(), Rejection> {
        ctx.author_has(RoleSet::ADMIN, "register a household")?;
        self.check_new_household(&p.household_id, &p.group)?;
        residency("residency", p.residency)?;
        if p.members.is_empty() {
            return Err(Rejection::field("members", "a household has at least one member"));
        }
        let mut seen = BTreeSet::new();
        for m in &p.members {
            self.check_new_member(m, &mut seen)?;
        }
        Ok(())
    }

    pub(super) fn decide_member_added(&self, ctx: &Ctx, p: &MemberAdded) -> Result<(), Rejection> {
        ctx.author_has(RoleSet::ADMIN, "add a member")?;
        self.active_household(&p.household_id)?;
        let m = p.member.as_ref().ok_or_else(|| Rejection::field("member", "is required"))?;
        self.check_new_member(m, &mut BTreeSet::new())
    }

    pub(super) fn decide_member_removed(&self, ctx: &Ctx, p: &MemberRemoved) -> Result<(), Rejection> {
        ctx.author_has(RoleSet::ADMIN, "remove a member")?;
        let h = self.active_household(&p.household_id)?;
        if !h.members.contains(&p.member_id) {
            return Err(Rejection::NotAMember { household: p.household_id.clone(), member: p.member_id.clone() });
        }
        if h.members.len() == 1 {
            return Err(Rejection::LastMember(p.household_id.clone()));
        }
        match MemberRemovalReason::try_from(p.reason) {
            Ok(MemberRemovalReason::Unspecified) | Err(_) => Err(Rejection::field("reason", "a removal reason is required")),
            Ok(_) => Ok(()),
        }
    }

    pub(super) fn decide_split(&self, ctx: &Ctx, p: &HouseholdSplit) -> Result<(), Rejection> {
        ctx.author_has(RoleSet::ADMIN, "split a household")?;
        let from = self.active_household(&p.from_household_id)?;
        self.check_new_household(&p.new_household_id, &p.group)?;
        residency("residency", p.residency)?;
        let moving: BTreeSet<&String> = p.member_ids.iter().collect();
        if moving.is_empty() || moving.len() != p.member_ids.len() {
            return Err(Rejection::field("member_ids", "at least one member, without repetition"));
        }
        if let Some(m) = moving.iter().find(|m| !from.members.contains(**m)) {
            return Err(Rejection::NotAMember { household: from.id.clone(), member: (*m).clone() });
        }
        if moving.len() == from.members.len() {
            return Err(Rejection::LastMember(from.id.clone()));
        }
        let available = ctx.book.available(&from.id);
        if p.points_transferred < 0 || p.points_transferred > available.max(0) {
            return Err(Rejection::CarryOverBalance { household: from.id.clone(), available, requested: p.points_transferred });
        }
        Ok(())
    }

    pub(super) fn decide_merged(&self, ctx: &Ctx, p: &HouseholdMerged) -> Result<(), Rejection> {
        ctx.author_has(RoleSet::ADMIN, "merge households")?;
        self.active_household(&p.from_household_id)?;
        self.active_household(&p.into_household_id)?;
        if p.from_household_id == p.into_household_id {
            return Err(Rejection::field("into_household_id", "cannot merge a household into itself"));
        }
        self.check_no_open_entries(&p.from_household_id)
    }

    pub(super) fn decide_closed(&self, ctx: &Ctx, p: &HouseholdClosed) -> Result<(), Rejection> {
        ctx.author_has(RoleSet::ADMIN, "close a household")?;
        self.active_household(&p.household_id)?;
        super::check_text("reason", &p.reason, true)?;
        self.check_no_open_entries(&p.household_id)
    }

    /// A household whose scores are still in 公示 or unpublished cannot leave the ledger: its
    /// pending points would have nowhere to go.
    fn check_no_open_entries(&self, household: &str) -> Result<(), Rejection> {
        // The earliest such entry, so the refusal names the same one in every process.
        let open = self.entries.values().filter(|e| &*e.household == household && !e.void && !e.is_final);
        if let Some(e) = open.min_by_key(|e| e.seq) {
            return Err(Rejection::field("household_id", format!("household {household} has entry {} not yet final", e.id)));
        }
        Ok(())
    }

    pub(super) fn apply_registered(&mut self, p: &HouseholdRegistered) {
        let members: BTreeSet<String> = p.members.iter().map(|m| m.member_id.clone()).collect();
        self.members.extend(members.iter().cloned());
        self.book.open(&p.household_id);
        self.households.insert(
            p.household_id.clone(),
            Household {
                id: p.household_id.clone(),
                group: p.group.clone(),
                residency: Residency::try_from(p.residency).unwrap_or(Residency::Unspecified),
                members,
                closed: false,
                merged_into: None,
                merged_at: None,
            },
        );
    }

    pub(super) fn apply_member_added(&mut self, p: &MemberAdded) {
        let (Some(m), Some(h)) = (p.member.as_ref(), self.households.get_mut(&p.household_id)) else { return };
        h.members.insert(m.member_id.clone());
        self.members.insert(m.member_id.clone());
    }

    pub(super) fn apply_member_removed(&mut self, p: &MemberRemoved) {
        if let Some(h) = self.households.get_mut(&p.household_id) {
            h.members.remove(&p.member_id);
        }
    }

    pub(super) fn apply_split(&mut self, p: &HouseholdSplit, seq: u64) {
        if self.households.contains_key(&p.new_household_id) {
            return;
        }
        let Some(from) = self.households.get_mut(&p.from_household_id) else { return };
        let mut moved = BTreeSet::new();
        for m in &p.member_ids {
            from.members.remove(m);
            moved.insert(m.clone());
        }
        self.book.open(&p.new_household_id);
        self.book.split(&p.from_household_id, &p.new_household_id, p.points_transferred);
        self.splits.entry_or_default(p.from_household_id.clone()).push((p.new_household_id.clone(), seq));
        self.households.insert(
            p.new_household_id.clone(),
            Household {
                id: p.new_household_id.clone(),
                group: p.group.clone(),
                residency: Residency::try_from(p.residency).unwrap_or(Residency::Unspecified),
                members: moved,
                closed: false,
                merged_into: None,
                merged_at: None,
            },
        );
    }

    pub(super) fn apply_merged(&mut self, p: &HouseholdMerged, seq: u64) {
        if p.from_household_id == p.into_household_id || !self.households.contains_key(&p.into_household_id) {
            return;
        }
        let Some(from) = self.households.get_mut(&p.from_household_id) else { return };
        let members = std::mem::take(&mut from.members);
        from.closed = true;
        from.merged_into = Some(p.into_household_id.clone());
        from.merged_at = Some(seq);
        if let Some(into) = self.households.get_mut(&p.into_household_id) {
            into.members.extend(members);
        }
        self.book.merge(&p.from_household_id, &p.into_household_id);
    }

    pub(super) fn apply_closed(&mut self, p: &HouseholdClosed) {
        if let Some(h) = self.households.get_mut(&p.household_id) {
            h.closed = true;
        }
    }
}

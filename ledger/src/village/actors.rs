//! Genesis and actors: enrolment, roles and terms, key rotation and revocation.
//!
//! A signature counts only if its key is the current key of an enrolled, unrevoked actor whose
//! term covers `recorded_at`. Keys are never reused: a retired key stays attached to its actor
//! so that everything it signed before retirement keeps verifying.

use super::{Ctx, Rejection, Signer, VillageState};
use crate::ids::{check_id, VillageCode};
use crate::pb::{ActorEnrolled, ActorHouseholdChanged, ActorKeyRotated, ActorRevoked, EventBody, LedgerOpened, Role};
use crate::signature::{EventSignature, PublicKey};

/// A set of roles, as a bit set over [`Role`] values.
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RoleSet(u16);

impl RoleSet {
    pub const TOWNSHIP: RoleSet = RoleSet(1 << Role::Township as u16);
    pub const ADMIN: RoleSet = RoleSet(1 << Role::Admin as u16);
    pub const PANEL: RoleSet = RoleSet(1 << Role::Panel as u16);
    pub const SUPERVISOR: RoleSet = RoleSet(1 << Role::Supervisor as u16);
    pub const KEEPER: RoleSet = RoleSet(1 << Role::Keeper as u16);
    pub const VILLAGER: RoleSet = RoleSet(1 << Role::Villager as u16);
    pub const AUDITOR: RoleSet = RoleSet(1 << Role::Auditor as u16);

    /// The union of two sets.
    pub const fn or(self, other: RoleSet) -> RoleSet {
        RoleSet(self.0 | other.0)
    }
    /// Whether the sets share a role.
    pub fn intersects(self, other: RoleSet) -> bool {
        self.0 & other.0 != 0
    }
    /// The roles, in enum order.
    pub fn roles(self) -> Vec<Role> {
        (1..=7).filter_map(|i| Role::try_from(i).ok()).filter(|r| self.0 & (1 << *r as u16) != 0).collect()
    }
}

/// An enrolled actor.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct Actor {
    pub id: String,
    /// The current key.
    pub key: PublicKey,
    /// Keys replaced by rotation, with the seq of the rotation.
    pub rotations: Vec<(PublicKey, u64)>,
    pub roles: RoleSet,
    pub term_start: i64,
    pub term_end: i64,
    pub household: Option<String>,
    /// The seq at which `household` was recorded (enrolment or `ActorHouseholdChanged`).
    pub household_since: u64,
    /// The seq at which the actor was revoked.
    pub revoked_at: Option<u64>,
    /// The seq of the record that enrolled the actor (the genesis for the township).
    pub enrolled_at: u64,
}

impl Actor {
    /// Whether `micros` lies in the actor's term `[term_start, term_end)` (`term_end` 0: open).
    pub fn term_covers(&self, micros: i64) -> bool {
        micros >= self.term_start && (self.term_end == 0 || micros < self.term_end)
    }

    /// Whether the actor was enrolled and not yet revoked after the first `size` records.
    pub fn active_after(&self, size: u64) -> bool {
        self.enrolled_at < size && self.revoked_at.is_none_or(|r| r >= size)
    }

    /// The actor's key after the first `size` records: the key a rotation at seq `size` or
    /// later replaced, else the current key.
    pub fn key_after(&self, size: u64) -> PublicKey {
        self.rotations.iter().find(|(_, seq)| *seq >= size).map_or(self.key, |(old, _)| *old)
    }
}

/// The signer of the genesis event: the township key it names, which must have signed.
pub(super) fn genesis_signer(p: &LedgerOpened, body: &EventBody, sigs: &[EventSignature]) -> Result<Signer, Rejection> {
    let key = PublicKey::from_slice(&p.township_key).ok_or_else(|| Rejection::field("township_key", "must be 32 bytes"))?;
    if !key.is_acceptable() {
        return Err(Rejection::WeakKey);
    }
    check_id("township_actor_id", &p.township_actor_id)?;
    if body.actor_id != p.township_actor_id {
        return Err(Rejection::AuthorNotSigner { actor: body.actor_id.clone() });
    }
    if let Some(other) = sigs.iter().find(|s| s.public_key != key) {
        return Err(Rejection::UnknownKey(other.public_key));
    }
    Ok(Signer { actor_id: p.township_actor_id.clone(), roles: RoleSet::TOWNSHIP, household: None, household_since: 0 })
}

/// The checks of a genesis event that do not need state.
pub(super) fn decide_opened(p: &LedgerOpened, ledger_id: &VillageCode) -> Result<(), Rejection> {
    let suffix = format!("/village/{ledger_id}");
    let deployment = p.origin.strip_suffix(&suffix).unwrap_or("");
    if deployment.is_empty() || p.origin.chars().any(|c| c.is_whitespace() || c == '+' || c.is_control()) {
        return Err(Rejection::field("origin", format!("must be \"<deployment origin>{suffix}\" without spaces or '+'")));
    }
    super::check_text("village_name", &p.village_name, true)
}

fn roles_of(field: &'static str, roles: &[i32]) -> Result<RoleSet, Rejection> {
    let mut set = RoleSet::default();
    if roles.is_empty() {
        return Err(Rejection::field(field, "at least one role is required"));
    }
    for &r in roles {
        let role = Role::try_from(r)
            .ok()
            .filter(|r| *r != Role::Unspecified)
            .ok_or_else(|| Rejection::field(field, format!("unknown role {r}")))?;
        let bit = RoleSet(1 << role as u16);
        if set.intersects(bit) {
            return Err(Rejection::field(field, format!("role {} repeated", role.as_str_name())));
        }
        set = set.or(bit);
    }
    Ok(set)
}

/// The scoring panel and the supervision group are separate people (DESIGN.md, "Trust
/// model"): no actor holds both roles. Every way an actor gets roles passes here.
pub(super) fn check_separation(actor: &str, roles: RoleSet) -> Result<(), Rejection> {
    if roles.intersects(RoleSet::PANEL) && roles.intersects(RoleSet::SUPERVISOR) {
        return Err(Rejection::ConflictingRoles { actor: actor.to_owned() });
    }
    Ok(())
}

impl VillageState {
    /// Whether the author may manage (enrol, rotate, revoke) an actor with `roles`: the
    /// township manages everyone; an admin manages everyone but township and admins.
    fn check_manages(&self, ctx: &Ctx, roles: RoleSet, action: &'static str) -> Result<(), Rejection> {
        if ctx.author.roles.intersects(RoleSet::TOWNSHIP) {
            return Ok(());
        }
        if ctx.author.roles.intersects(RoleSet::ADMIN) && !roles.intersects(RoleSet::TOWNSHIP.or(RoleSet::ADMIN)) {
            return Ok(());
        }
        Err(Rejection::RoleNotAllowed { actor: ctx.author.actor_id.clone(), action })
    }

    fn check_new_key(&self, bytes: &[u8]) -> Result<PublicKey, Rejection> {
        let key = PublicKey::from_slice(bytes).ok_or_else(|| Rejection::field("public_key", "must be 32 bytes"))?;
        if !key.is_acceptable() {
            return Err(Rejection::WeakKey);
        }
        if let Some(actor) = self.keys.get(&key) {
            return Err(Rejection::KeyInUse { actor: actor.clone() });
        }
        Ok(key)
    }

    fn live_actor(&self, id: &str) -> Result<&Actor, Rejection> {
        let a = self.actors.get(id).ok_or_else(|| Rejection::Unknown { kind: "actor", id: id.to_owned() })?;
        if let Some(seq) = a.revoked_at {
            return Err(Rejection::KeyRevoked { actor: id.to_owned(), seq });
        }
        Ok(a)
    }

    pub(super) fn decide_enrolled(&self, ctx: &Ctx, p: &ActorEnrolled) -> Result<(), Rejection> {
        check_id("actor_id", &p.actor_id)?;
        let roles = roles_of("roles", &p.roles)?;
        self.check_manages(ctx, roles, "enrol an actor with these roles")?;
        check_separation(&p.actor_id, roles)?;
        if self.actors.contains_key(&p.actor_id) {
            return Err(Rejection::Duplicate { kind: "actor", id: p.actor_id.clone() });
        }
        self.check_new_key(&p.public_key)?;
        if p.term_end != 0 && p.term_end <= p.term_start {
            return Err(Rejection::field("term_end", "must be 0 (open-ended) or after term_start"));
        }
        if !p.household_id.is_empty() {
            check_id("household_id", &p.household_id)?;
        }
        Ok(())
    }

    pub(super) fn decide_rotated(&self, ctx: &Ctx, p: &ActorKeyRotated) -> Result<(), Rejection> {
        let actor = self.live_actor(&p.actor_id)?;
        if ctx.author.actor_id != actor.id {
            self.check_manages(ctx, actor.roles, "rotate this actor's key")?;
        }
        self.check_new_key(&p.new_public_key)?;
        Ok(())
    }

    pub(super) fn decide_revoked(&self, ctx: &Ctx, p: &ActorRevoked) -> Result<(), Rejection> {
        let actor = self.live_actor(&p.actor_id)?;
        if self.genesis().is_some_and(|g| g.township_actor == p.actor_id) {
            return Err(Rejection::CannotRevokeTownship);
        }
        self.check_manages(ctx, actor.roles, "revoke this actor")?;
        super::check_text("reason", &p.reason, true)
    }

    pub(super) fn decide_household_changed(&self, ctx: &Ctx, p: &ActorHouseholdChanged) -> Result<(), Rejection> {
        let actor = self.live_actor(&p.actor_id)?;
        // Never the actor alone: a panel member must not move themselves out of a household
        // to score it.
        self.check_manages(ctx, actor.roles, "change this actor's household")?;
        check_id("household_id", &p.household_id)?;
        self.active_household(&p.household_id)?;
        Ok(())
    }

    pub(super) fn apply_household_changed(&mut self, p: &ActorHouseholdChanged, seq: u64) {
        if let Some(a) = self.actors.get_mut(&p.actor_id) {
            a.household = Some(p.household_id.clone());
            a.household_since = seq;
        }
    }

    pub(super) fn apply_opened(&mut self, p: &LedgerOpened) {
        let Some(key) = PublicKey::from_slice(&p.township_key) else { return };
        self.keys.insert(key, p.township_actor_id.clone());
        self.actors.insert(
            p.township_actor_id.clone(),
            Actor {
                id: p.township_actor_id.clone(),
                key,
                rotations: Vec::new(),
                roles: RoleSet::TOWNSHIP,
                term_start: i64::MIN,
                term_end: 0,
                household: None,
                household_since: 0,
                revoked_at: None,
                enrolled_at: 0,
            },
        );
    }

    pub(super) fn apply_enrolled(&mut self, p: &ActorEnrolled, seq: u64) {
        let (Some(key), Ok(roles)) = (PublicKey::from_slice(&p.public_key), roles_of("roles", &p.roles)) else { return };
        self.keys.insert(key, p.actor_id.clone());
        self.actors.insert(
            p.actor_id.clone(),
            Actor {
                id: p.actor_id.clone(),
                key,
                rotations: Vec::new(),
                roles,
                term_start: p.term_start,
                term_end: p.term_end,
                household: (!p.household_id.is_empty()).then(|| p.household_id.clone()),
                household_since: seq,
                revoked_at: None,
                enrolled_at: seq,
            },
        );
    }

    pub(super) fn apply_rotated(&mut self, p: &ActorKeyRotated, seq: u64) {
        let (Some(key), Some(a)) = (PublicKey::from_slice(&p.new_public_key), self.actors.get_mut(&p.actor_id)) else { return };
        let old = std::mem::replace(&mut a.key, key);
        a.rotations.push((old, seq));
        self.keys.insert(key, p.actor_id.clone());
    }

    pub(super) fn apply_revoked(&mut self, p: &ActorRevoked, seq: u64) {
        if let Some(a) = self.actors.get_mut(&p.actor_id) {
            a.revoked_at = Some(seq);
        }
    }
}

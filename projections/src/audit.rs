//! The audit trail for the supervision group (监督管理小组): every act by actor and by
//! household, each entry's lineage (score → objection → decision → correction), who signed,
//! when it was recorded versus when the author says it happened, and red flags.
//!
//! Red flags are signals for a person to look at, not verdicts:
//!
//! - **back-dated entry** — a score recorded more than [`BACKDATE_DAYS`] after the act;
//! - **correction without objection** — a score changed outside the 公示 procedure;
//! - **lone scorer** — a panel member who alone signed more than [`LONE_SHARE_PERCENT`]% of a
//!   month's scores (at least [`LONE_MIN_SCORES`] of them);
//! - **concentration** — the top tenth of households received more than
//!   [`CONCENTRATION_PERCENT`]% of a month's positive points;
//! - **uncheckable scorer** — a panel member enrolled without a household, so the ledger cannot
//!   rule out that they score their own. (Attempts to score one's own household are refused by
//!   the write-model and never reach the ledger; the service reports them from its log.)

use crate::balances::Balances;
use jifen_ledger::body::event_kind;
use jifen_ledger::pb::event_body::Payload;
use jifen_ledger::time::{Date, Period};
use jifen_ledger::village::{Accepted, RoleSet, VillageState};
use std::collections::BTreeMap;

/// Days between act and recording beyond which a score is flagged as back-dated.
pub const BACKDATE_DAYS: i32 = 14;
/// Share of a month's scores one panel member may sign alone before being flagged.
pub const LONE_SHARE_PERCENT: u64 = 40;
/// Minimum scores signed alone in a month for the lone-scorer flag.
pub const LONE_MIN_SCORES: u64 = 20;
/// Share of a month's positive points the top tenth of households may receive before a flag.
pub const CONCENTRATION_PERCENT: i64 = 40;

/// One act in the ledger.
#[derive(Clone, Debug)]
pub struct Act {
    pub seq: u64,
    pub kind: &'static str,
    pub author: String,
    pub signers: Vec<String>,
    pub recorded_at: i64,
    pub occurred_at: i64,
    /// The household the act is about (the first of `households`).
    pub household: Option<String>,
    /// Every household the act concerns: for a split the household split and the new one, for
    /// a merge the household merged and the one absorbing it, for a reversal (or a correction)
    /// the household that redeemed (or was scored) and the household credited now, if another.
    pub households: Vec<String>,
    pub entry: Option<String>,
}

/// A red flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedFlag {
    BackDated { seq: u64, entry: String, days: i32 },
    CorrectionWithoutObjection { seq: u64, entry: String, actor: String },
    LoneScorer { period: Period, actor: String, alone: u64, total: u64 },
    Concentration { period: Period, households: usize, share_percent: i64 },
    UncheckableScorer { seq: u64, actor: String },
}

impl RedFlag {
    /// A one-line description in Chinese for the supervision group.
    pub fn describe(&self) -> String {
        match self {
            RedFlag::BackDated { seq, entry, days } => format!("补录：记分 {entry}（seq {seq}）在行为发生 {days} 天后才录入"),
            RedFlag::CorrectionWithoutObjection { seq, entry, actor } => {
                format!("无异议更正：{actor} 在公示程序外更正了 {entry}（seq {seq}）")
            }
            RedFlag::LoneScorer { period, actor, alone, total } => format!("单人评分：{period} {actor} 独自签署 {alone}/{total} 条评分"),
            RedFlag::Concentration { period, households, share_percent } => {
                format!("积分集中：{period} 前 {households} 户获得 {share_percent}% 的加分")
            }
            RedFlag::UncheckableScorer { seq, actor } => format!("无法核查回避：评议员 {actor} 登记时未填所在户（seq {seq}）"),
        }
    }
}

/// The audit trail.
#[derive(Clone, Debug, Default)]
pub struct AuditTrail {
    acts: Vec<Act>,
    by_actor: BTreeMap<String, Vec<usize>>,
    by_household: BTreeMap<String, Vec<usize>>,
    lineage: BTreeMap<String, Vec<usize>>,
    flags: Vec<RedFlag>,
    /// Scores per month, and scores signed by exactly one panel member, per (month, member).
    scores: BTreeMap<Period, u64>,
    alone: BTreeMap<(Period, String), u64>,
}

impl AuditTrail {
    /// Every act, in log order.
    pub fn acts(&self) -> &[Act] {
        &self.acts
    }
    /// The acts an actor authored or signed.
    pub fn by_actor(&self, actor: &str) -> impl Iterator<Item = &Act> {
        self.by_actor.get(actor).into_iter().flatten().map(|i| &self.acts[*i])
    }
    /// The acts concerning a household: its own, and those that split it, merged it or into
    /// it, or credited it (a reversal or correction after a merge).
    pub fn by_household(&self, household: &str) -> impl Iterator<Item = &Act> {
        self.by_household.get(household).into_iter().flatten().map(|i| &self.acts[*i])
    }
    /// An entry's lineage: its score, objections, decisions and corrections, in order.
    pub fn lineage(&self, entry: &str) -> impl Iterator<Item = &Act> {
        self.lineage.get(entry).into_iter().flatten().map(|i| &self.acts[*i])
    }
    /// Actors with at least one act, and how many.
    pub fn actors(&self) -> impl Iterator<Item = (&str, usize)> {
        self.by_actor.iter().map(|(a, v)| (a.as_str(), v.len()))
    }

    /// All red flags: those seen event by event, then the monthly ones (which need the whole
    /// month, and the balances for concentration).
    pub fn red_flags(&self, balances: &Balances) -> Vec<RedFlag> {
        let mut flags = self.flags.clone();
        for ((period, actor), alone) in &self.alone {
            let total = self.scores.get(period).copied().unwrap_or(0);
            if *alone >= LONE_MIN_SCORES && alone * 100 > total * LONE_SHARE_PERCENT {
                flags.push(RedFlag::LoneScorer { period: *period, actor: actor.clone(), alone: *alone, total });
            }
        }
        for period in balances.known_periods() {
            let mut gains: Vec<i64> = balances.periods(period).map(|(_, f)| f.basic + f.contribution).filter(|g| *g > 0).collect();
            if gains.len() < 10 {
                continue;
            }
            gains.sort_unstable_by(|a, b| b.cmp(a));
            let top = gains.len().div_ceil(10);
            let total: i64 = gains.iter().sum();
            let share = gains[..top].iter().sum::<i64>() * 100 / total.max(1);
            if share > CONCENTRATION_PERCENT {
                flags.push(RedFlag::Concentration { period, households: top, share_percent: share });
            }
        }
        flags
    }

    /// Folds an event; `state` is the write-model state after it.
    pub fn apply(&mut self, a: &Accepted, state: &VillageState) {
        let r = a.record();
        let signers: Vec<String> = r.signatures().iter().filter_map(|s| state.actor_of_key(&s.public_key)).map(|x| x.id.clone()).collect();
        // The household an act is about, and the household now holding its points if another
        // (after merges): a correction or reversal is credited there.
        let with_holder = |h: String| {
            let holder = state.resolve_household(&h).to_owned();
            if holder == h {
                vec![h]
            } else {
                vec![h, holder]
            }
        };
        let one = |h: &str| vec![h.to_owned()];
        let (households, entry): (Vec<String>, Option<String>) = match a.payload() {
            Payload::ScoreRecorded(p) => (one(&p.household_id), Some(p.entry_id.clone())),
            Payload::ScoreCorrected(p) => {
                (state.entry(&p.entry_id).map(|e| with_holder(e.household.clone())).unwrap_or_default(), Some(p.entry_id.clone()))
            }
            Payload::ObjectionFiled(p) => {
                (state.entry(&p.entry_id).map(|e| one(&e.household)).unwrap_or_default(), Some(p.entry_id.clone()))
            }
            Payload::ObjectionDecided(p) => {
                let entry = state.objection(&p.objection_id).map(|o| o.entry.clone());
                (entry.as_deref().and_then(|e| state.entry(e)).map(|e| with_holder(e.household.clone())).unwrap_or_default(), entry)
            }
            Payload::PointsClaimed(p) => (one(&p.household_id), None),
            Payload::ClaimDeclined(p) => (state.claim(&p.claim_id).map(|c| one(&c.household)).unwrap_or_default(), None),
            Payload::ActorHouseholdChanged(p) => (one(&p.household_id), None),
            Payload::HouseholdRegistered(p) => (one(&p.household_id), None),
            Payload::MemberAdded(p) => (one(&p.household_id), None),
            Payload::MemberRemoved(p) => (one(&p.household_id), None),
            Payload::HouseholdSplit(p) => (vec![p.from_household_id.clone(), p.new_household_id.clone()], None),
            Payload::HouseholdMerged(p) => (vec![p.from_household_id.clone(), p.into_household_id.clone()], None),
            Payload::HouseholdClosed(p) => (one(&p.household_id), None),
            Payload::RedemptionRecorded(p) => (one(&p.household_id), None),
            Payload::RedemptionReversed(p) => {
                (state.redemption(&p.redemption_id).map(|x| with_holder(x.household.clone())).unwrap_or_default(), None)
            }
            Payload::HonourAwarded(p) => (one(&p.household_id), None),
            _ => (Vec::new(), None),
        };
        let household = households.first().cloned();
        let body = a.body();
        let i = self.acts.len();
        for s in &signers {
            self.by_actor.entry(s.clone()).or_default().push(i);
        }
        for h in &households {
            self.by_household.entry(h.clone()).or_default().push(i);
        }
        if let Some(e) = &entry {
            self.lineage.entry(e.clone()).or_default().push(i);
        }
        match a.payload() {
            Payload::ScoreRecorded(p) if Date::parse("occurred_on", &p.occurred_on).is_ok() => {
                let day = Date::of_micros(r.recorded_at());
                let occurred = Date::parse("occurred_on", &p.occurred_on).unwrap_or(day);
                let days = day.days() - occurred.days();
                if days > BACKDATE_DAYS {
                    self.flags.push(RedFlag::BackDated { seq: r.seq(), entry: p.entry_id.clone(), days });
                }
                let period = occurred.period();
                *self.scores.entry(period).or_default() += 1;
                let panel: Vec<&String> =
                    signers.iter().filter(|s| state.actor(s).is_some_and(|x| x.roles.intersects(RoleSet::PANEL))).collect();
                if let [only] = panel.as_slice() {
                    *self.alone.entry((period, (*only).clone())).or_default() += 1;
                }
            }
            Payload::ScoreCorrected(p) => self.flags.push(RedFlag::CorrectionWithoutObjection {
                seq: r.seq(),
                entry: p.entry_id.clone(),
                actor: body.actor_id.clone(),
            }),
            Payload::ActorEnrolled(p) if p.household_id.is_empty() && p.roles.contains(&(jifen_ledger::pb::Role::Panel as i32)) => {
                self.flags.push(RedFlag::UncheckableScorer { seq: r.seq(), actor: p.actor_id.clone() })
            }
            _ => {}
        }
        self.acts.push(Act {
            seq: r.seq(),
            kind: event_kind(a.payload()),
            author: body.actor_id.clone(),
            signers,
            recorded_at: r.recorded_at(),
            occurred_at: body.occurred_at,
            household,
            households,
            entry,
        });
    }
}

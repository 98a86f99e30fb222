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
use jifen_ledger::journal::{FastMap, JOrd};
use jifen_ledger::pb::event_body::Payload;
use jifen_ledger::time::{Date, Period};
use jifen_ledger::village::{Accepted, RoleSet, VillageState};

/// Days between act and recording beyond which a score is flagged as back-dated.
pub const BACKDATE_DAYS: i32 = 14;
/// Share of a month's scores one panel member may sign alone before being flagged.
pub const LONE_SHARE_PERCENT: u64 = 40;
/// Minimum scores signed alone in a month for the lone-scorer flag.
pub const LONE_MIN_SCORES: u64 = 20;
/// Share of a month's positive points the top tenth of households may receive before a flag.
pub const CONCENTRATION_PERCENT: i64 = 40;

/// One act in the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Act {
    pub seq: u64,
    pub kind: String,
    pub author: String,
    pub signers: Vec<String>,
    pub recorded_at: i64,
    pub occurred_at: i64,
    /// Every household the act concerns: for a split the household split and the new one, for
    /// a merge the household merged and the one absorbing it, for a reversal (or a correction)
    /// the household that redeemed (or was scored) and the household credited now, if another.
    /// The first is the household the act is about.
    pub households: Vec<String>,
    pub entry: Option<String>,
    /// The red flag this act raises on its own, if any.
    pub flag: Option<ActFlag>,
}

impl Act {
    /// The household the act is about (the first of `households`).
    pub fn household(&self) -> Option<&str> {
        self.households.first().map(String::as_str)
    }

    /// The red flag this act raises on its own, as the supervision group reads it.
    pub fn red_flag(&self) -> Option<RedFlag> {
        let entry = || self.entry.clone().unwrap_or_default();
        Some(match self.flag.as_ref()? {
            ActFlag::BackDated { days } => RedFlag::BackDated { seq: self.seq, entry: entry(), days: *days },
            ActFlag::CorrectionWithoutObjection => {
                RedFlag::CorrectionWithoutObjection { seq: self.seq, entry: entry(), actor: self.author.clone() }
            }
            ActFlag::UncheckableScorer { actor } => RedFlag::UncheckableScorer { seq: self.seq, actor: actor.clone() },
        })
    }
}

/// A red flag an act raises on its own (the rest of [`RedFlag`] is in the act).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActFlag {
    /// A score recorded `days` after the act.
    BackDated { days: i32 },
    /// A score corrected outside the 公示 procedure (by the act's author).
    CorrectionWithoutObjection,
    /// A panel member enrolled without a household.
    UncheckableScorer { actor: String },
}

/// What the monthly red flags need of one month: its scores, and how its positive points
/// were spread over households ([`Spread::of`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditMonth {
    /// Scores whose act fell in the month.
    pub scores: u64,
    pub spread: Spread,
}

/// How a month's positive points are spread: households with a gain, the top tenth of them
/// (rounded up), the points of that top tenth and of all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spread {
    pub gainers: u32,
    pub top: u32,
    pub top_points: i64,
    pub points: i64,
}

impl Spread {
    /// The spread of households' gains (basic plus contribution points) in a month.
    pub fn of(gains: impl Iterator<Item = i64>) -> Spread {
        let mut gains: Vec<i64> = gains.filter(|g| *g > 0).collect();
        if gains.is_empty() {
            return Spread::default();
        }
        let top = gains.len().div_ceil(10);
        // The top tenth, in linear time: no full sort on the append path.
        gains.select_nth_unstable_by(top - 1, |a, b| b.cmp(a));
        Spread { gainers: gains.len() as u32, top: top as u32, top_points: gains[..top].iter().sum(), points: gains.iter().sum() }
    }
}

/// The monthly red flags (lone scorer, concentration) of `months` (in period order) and of
/// the scores signed by one panel member alone per (period, member), in that order.
pub fn monthly_flags<'a>(months: &[(Period, AuditMonth)], alone: impl IntoIterator<Item = (Period, &'a str, u64)>) -> Vec<RedFlag> {
    let mut flags = Vec::new();
    for (period, actor, alone) in alone {
        let total = months.iter().find(|(p, _)| *p == period).map_or(0, |(_, m)| m.scores);
        // Wide enough for any count a row can hold.
        if alone >= LONE_MIN_SCORES && u128::from(alone) * 100 > u128::from(total) * u128::from(LONE_SHARE_PERCENT) {
            flags.push(RedFlag::LoneScorer { period, actor: actor.to_owned(), alone, total });
        }
    }
    for (period, m) in months {
        let s = m.spread;
        if s.gainers < 10 {
            continue;
        }
        let share = i128::from(s.top_points) * 100 / i128::from(s.points.max(1));
        if share > i128::from(CONCENTRATION_PERCENT) {
            let share_percent = i64::try_from(share).unwrap_or(i64::MAX);
            flags.push(RedFlag::Concentration { period: *period, households: s.top as usize, share_percent });
        }
    }
    flags
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
///
/// Offline ([`AuditTrail::default`]) it keeps every act, indexed by actor, household and
/// entry. A server ([`AuditTrail::serving`]) keeps only the acts since [`AuditTrail::begin`]
/// (the request's, which it stores with the records) and the monthly counts: the acts live in
/// PostgreSQL, and its memory does not grow with the history.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct AuditTrail {
    /// A snapshot (a serving trail's, between requests) keeps none: they are stored.
    #[serde(skip)]
    acts: Vec<Act>,
    /// `acts.len()` at [`AuditTrail::begin`], while a journal is open.
    #[serde(skip)]
    mark: Option<usize>,
    /// None in a serving trail, the only kind a snapshot is taken of.
    #[serde(skip)]
    index: Option<Index>,
    /// Scores per month, and scores signed by exactly one panel member, per (month, member).
    scores: JOrd<Period, u64>,
    alone: JOrd<(Period, String), u64>,
}

/// Positions in `acts`, by id. Hash tables, not B-trees: a replay indexes two or three keys of
/// every act, and comparing string keys down a tree was most of the audit trail's fold.
type Lists = FastMap<Box<str>, Vec<usize>>;

/// Acts by actor, household and entry (positions in `acts`).
#[derive(Clone, Debug, Default)]
struct Index {
    by_actor: Lists,
    by_household: Lists,
    lineage: Lists,
}

impl Index {
    fn keys(act: &Act) -> impl Iterator<Item = (u8, &String)> {
        let signers = act.signers.iter().map(|s| (0, s));
        let households = act.households.iter().map(|h| (1, h));
        signers.chain(households).chain(act.entry.iter().map(|e| (2, e)))
    }
    fn list(&mut self, kind: u8) -> &mut Lists {
        match kind {
            0 => &mut self.by_actor,
            1 => &mut self.by_household,
            _ => &mut self.lineage,
        }
    }
    fn push(&mut self, act: &Act, i: usize) {
        for (kind, key) in Self::keys(act) {
            // Most keys are there already (an actor's, a household's): no copy of them.
            let list = self.list(kind);
            match list.get_mut(key.as_str()) {
                Some(v) => v.push(i),
                None => {
                    list.insert(key.as_str().into(), vec![i]);
                }
            }
        }
    }
    fn pop(&mut self, act: &Act) {
        for (kind, key) in Self::keys(act) {
            let list = self.list(kind);
            if let Some(v) = list.get_mut(key.as_str()) {
                v.pop();
                if v.is_empty() {
                    list.remove(key.as_str());
                }
            }
        }
    }
}

impl Default for AuditTrail {
    fn default() -> Self {
        AuditTrail { acts: Vec::new(), mark: None, index: Some(Index::default()), scores: JOrd::default(), alone: JOrd::default() }
    }
}

impl AuditTrail {
    /// An audit trail that keeps only the acts since [`AuditTrail::begin`] (a server's).
    pub fn serving() -> AuditTrail {
        AuditTrail { index: None, ..AuditTrail::default() }
    }

    /// Opens the journal of a request: a serving trail forgets the acts before it (stored by
    /// then), and [`AuditTrail::rollback`] undoes what follows.
    pub fn begin(&mut self) {
        if self.index.is_none() {
            self.acts.clear();
        }
        self.mark = Some(self.acts.len());
        self.scores.begin();
        self.alone.begin();
    }
    /// Closes the journal, keeping the changes.
    pub fn commit(&mut self) {
        self.mark = None;
        self.scores.commit();
        self.alone.commit();
    }
    /// Undoes every change since [`AuditTrail::begin`].
    pub fn rollback(&mut self) {
        let mark = self.mark.take().unwrap_or(self.acts.len());
        while self.acts.len() > mark {
            let act = self.acts.pop().expect("longer than the mark");
            if let Some(index) = &mut self.index {
                index.pop(&act);
            }
        }
        self.scores.rollback();
        self.alone.rollback();
    }

    /// The acts kept: every act offline; a server's since [`AuditTrail::begin`] (or
    /// [`AuditTrail::take_acts`]).
    pub fn acts(&self) -> &[Act] {
        &self.acts
    }
    /// The acts of a serving trail since the last call (a load checks them page by page).
    pub fn take_acts(&mut self) -> Vec<Act> {
        self.mark = self.mark.map(|_| 0);
        std::mem::take(&mut self.acts)
    }
    fn indexed<'a>(&'a self, list: impl Fn(&'a Index) -> &'a Lists, key: &str) -> impl Iterator<Item = &'a Act> {
        self.index.as_ref().and_then(|i| list(i).get(key)).into_iter().flatten().map(|i| &self.acts[*i])
    }
    /// The acts an actor authored or signed (offline).
    pub fn by_actor(&self, actor: &str) -> impl Iterator<Item = &Act> {
        self.indexed(|i| &i.by_actor, actor)
    }
    /// The acts concerning a household (offline): its own, and those that split it, merged it
    /// or into it, or credited it (a reversal or correction after a merge).
    pub fn by_household(&self, household: &str) -> impl Iterator<Item = &Act> {
        self.indexed(|i| &i.by_household, household)
    }
    /// An entry's lineage (offline): its score, objections, decisions and corrections, in order.
    pub fn lineage(&self, entry: &str) -> impl Iterator<Item = &Act> {
        self.indexed(|i| &i.lineage, entry)
    }
    /// Actors with at least one act, and how many, in the order of their ids (offline).
    pub fn actors(&self) -> impl Iterator<Item = (&str, usize)> {
        let mut actors: Vec<(&str, usize)> = self.index.iter().flat_map(|i| i.by_actor.iter().map(|(a, v)| (&**a, v.len()))).collect();
        actors.sort_unstable();
        actors.into_iter()
    }

    /// Every month's audit figures, in period order: the months with a score or with figures
    /// in `balances`.
    pub fn months(&self, balances: &Balances) -> Vec<(Period, AuditMonth)> {
        let mut periods: Vec<Period> = balances.known_periods();
        periods.extend(self.scores.keys().copied());
        periods.sort_unstable();
        periods.dedup();
        periods.into_iter().map(|p| (p, self.month(p, balances))).collect()
    }
    /// The audit figures of the months a request changed (under [`AuditTrail::begin`] and
    /// [`Balances::begin`]), in period order.
    pub fn months_touched(&self, balances: &Balances) -> Vec<(Period, AuditMonth)> {
        let mut periods: Vec<Period> = balances.touched().into_iter().map(|(p, _, _)| p).collect();
        periods.extend(self.scores.touched().copied());
        periods.sort_unstable();
        periods.dedup();
        periods.into_iter().map(|p| (p, self.month(p, balances))).collect()
    }
    fn month(&self, period: Period, balances: &Balances) -> AuditMonth {
        AuditMonth {
            scores: self.scores.get(&period).copied().unwrap_or(0),
            spread: Spread::of(balances.periods(period).map(|(_, f)| f.basic + f.contribution)),
        }
    }
    /// Scores signed by one panel member alone, per (period, member), in that order.
    pub fn alone(&self) -> impl Iterator<Item = (Period, &str, u64)> {
        self.alone.iter().map(|((p, a), n)| (*p, a.as_str(), *n))
    }
    /// Those a request changed, each once, in (period, member) order.
    pub fn alone_touched(&self) -> Vec<(Period, &str, u64)> {
        let mut keys: Vec<&(Period, String)> = self.alone.touched().collect();
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter().map(|k| (k.0, k.1.as_str(), self.alone.get(k).copied().unwrap_or(0))).collect()
    }

    /// All red flags (offline): those the acts raise, in log order, then the monthly ones.
    pub fn red_flags(&self, balances: &Balances) -> Vec<RedFlag> {
        let mut flags: Vec<RedFlag> = self.acts.iter().filter_map(Act::red_flag).collect();
        flags.extend(self.monthly_red_flags(balances));
        flags
    }

    /// The monthly red flags (lone scorers, concentration).
    pub fn monthly_red_flags(&self, balances: &Balances) -> Vec<RedFlag> {
        monthly_flags(&self.months(balances), self.alone())
    }

    /// Folds an event; `state` is the write-model state after it.
    pub fn apply(&mut self, a: &Accepted, state: &VillageState) {
        self.record(a, Witnessed::of(a, state));
    }

    /// Folds an event with what [`Witnessed::of`] took from the state after it: the part of
    /// [`AuditTrail::apply`] that needs no state, so a replay runs it on another thread (and
    /// the ids the act copies from the event are copied there).
    pub fn record(&mut self, a: &Accepted, w: Witnessed) {
        let r = a.record();
        let body = a.body();
        let mut flag = None;
        match a.payload() {
            Payload::ScoreRecorded(p) => {
                if let Ok(occurred) = Date::parse("occurred_on", &p.occurred_on) {
                    let days = Date::of_micros(r.recorded_at()).days() - occurred.days();
                    if days > BACKDATE_DAYS {
                        flag = Some(ActFlag::BackDated { days });
                    }
                    *self.scores.entry_or_default(occurred.period()) += 1;
                    if let Some(only) = w.alone.and_then(|i| w.signers.get(i)) {
                        let key = (occurred.period(), only.clone());
                        *self.alone.entry_or_default(key) += 1;
                    }
                }
            }
            Payload::ScoreCorrected(_) => flag = Some(ActFlag::CorrectionWithoutObjection),
            Payload::ActorEnrolled(p) if p.household_id.is_empty() && p.roles.contains(&(jifen_ledger::pb::Role::Panel as i32)) => {
                flag = Some(ActFlag::UncheckableScorer { actor: p.actor_id.clone() })
            }
            _ => {}
        }
        let (households, entry) = w.named.unwrap_or_else(|| named_by_event(a.payload()));
        let act = Act {
            seq: r.seq(),
            kind: event_kind(a.payload()).to_owned(),
            author: body.actor_id.clone(),
            signers: w.signers,
            recorded_at: r.recorded_at(),
            occurred_at: body.occurred_at,
            households,
            entry,
            flag,
        };
        if let Some(index) = &mut self.index {
            index.push(&act, self.acts.len());
        }
        self.acts.push(act);
    }
}

/// The households and entry an act names when the event names them itself.
fn named_by_event(payload: &Payload) -> (Vec<String>, Option<String>) {
    let one = |h: &str| vec![h.to_owned()];
    match payload {
        Payload::ScoreRecorded(p) => (one(&p.household_id), Some(p.entry_id.clone())),
        Payload::PointsClaimed(p) => (one(&p.household_id), None),
        Payload::ActorHouseholdChanged(p) => (one(&p.household_id), None),
        Payload::HouseholdRegistered(p) => (one(&p.household_id), None),
        Payload::MemberAdded(p) => (one(&p.household_id), None),
        Payload::MemberRemoved(p) => (one(&p.household_id), None),
        Payload::HouseholdSplit(p) => (vec![p.from_household_id.clone(), p.new_household_id.clone()], None),
        Payload::HouseholdMerged(p) => (vec![p.from_household_id.clone(), p.into_household_id.clone()], None),
        Payload::HouseholdClosed(p) => (one(&p.household_id), None),
        Payload::RedemptionRecorded(p) => (one(&p.household_id), None),
        Payload::HonourAwarded(p) => (one(&p.household_id), None),
        _ => (Vec::new(), None),
    }
}

/// What the audit trail needs of the write-model state right after an event: the signers'
/// actor ids, which of them signed a score alone among the panel, and the households and entry
/// an act names through the state (a correction's, an objection's, a reversal's). The rest of
/// the act is read from the event by [`AuditTrail::record`].
#[derive(Clone, Debug)]
pub struct Witnessed {
    signers: Vec<String>,
    /// For a score: the position in `signers` of its only panel member, if it had one.
    alone: Option<usize>,
    /// The households and entry, when the state names them.
    named: Option<(Vec<String>, Option<String>)>,
}

impl Witnessed {
    /// Reads an event and the state after it.
    pub fn of(a: &Accepted, state: &VillageState) -> Witnessed {
        let r = a.record();
        let signers: Vec<String> = r.signatures().iter().filter_map(|s| state.actor_of_key(&s.public_key)).map(|x| x.id.clone()).collect();
        // The household an act is about, and the household now holding its points if another
        // (after merges): a correction or reversal is credited there.
        let with_holder = |h: &str| {
            let holder = state.resolve_household(h);
            if holder == h {
                vec![h.to_owned()]
            } else {
                vec![h.to_owned(), holder.to_owned()]
            }
        };
        let one = |h: &str| vec![h.to_owned()];
        let named = match a.payload() {
            Payload::ScoreCorrected(p) => {
                Some((state.entry(&p.entry_id).map(|e| with_holder(&e.household)).unwrap_or_default(), Some(p.entry_id.clone())))
            }
            Payload::ObjectionFiled(p) => {
                Some((state.entry(&p.entry_id).map(|e| one(&e.household)).unwrap_or_default(), Some(p.entry_id.clone())))
            }
            Payload::ObjectionDecided(p) => {
                let entry = state.objection(&p.objection_id).map(|o| o.entry.clone());
                Some((entry.as_deref().and_then(|e| state.entry(e)).map(|e| with_holder(&e.household)).unwrap_or_default(), entry))
            }
            Payload::ClaimDeclined(p) => Some((state.claim(&p.claim_id).map(|c| one(&c.household)).unwrap_or_default(), None)),
            Payload::RedemptionReversed(p) => {
                Some((state.redemption(&p.redemption_id).map(|x| with_holder(&x.household)).unwrap_or_default(), None))
            }
            _ => None,
        };
        let alone = match a.payload() {
            Payload::ScoreRecorded(_) => {
                let mut panel =
                    signers.iter().enumerate().filter(|(_, s)| state.actor(s).is_some_and(|x| x.roles.intersects(RoleSet::PANEL)));
                match (panel.next(), panel.next()) {
                    (Some((only, _)), None) => Some(only),
                    _ => None,
                }
            }
            _ => None,
        };
        Witnessed { signers, alone, named }
    }
}

//! A deterministic generator of realistic village-years, for tests, the demo and benchmarks.
//!
//! Everything it produces goes through the write-model, so a generated ledger is admissible by
//! construction and any rule change that breaks the ordinary monthly cycle shows up here. The
//! same seed gives the same keys, events and records, byte for byte.
//!
//! A year: the township opens the ledger and enrols the 两委 admin, the supermarket keeper, a
//! 3–5 member scoring panel (each living in a household of the village) and 3 supervisors; the
//! congress adopts a rulebook with the reference items of seed 002's annex; 300–800 households
//! register. Each month the panel scores households (inspection, reports, self-declarations),
//! the admin publishes the month (公示, 7 days), villagers object to about 2% of entries, the
//! panel decides with a supervisor's co-signature (upholding about half, with a correction),
//! the publication closes, and the month settles with two supervisors co-signing. The
//! supermarket receives stock and households redeem points. Quarterly inspections and surveys,
//! and honours at year end.

use crate::body::encode_body;
use crate::checkpoint::Checkpoint;
use crate::hash::Hash;
use crate::ids::VillageCode;
use crate::merkle::Tree;
use crate::note::NoteSigner;
use crate::pb::{self, event_body::Payload, EventBody};
use crate::record::Record;
use crate::signature::{sign_event, EventSignature};
use crate::time::{Date, Period};
use crate::village::{Command, Decision, Rejection, VillageState};
use ed25519_dalek::SigningKey;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The deployment origin used by generated villages.
pub const DEPLOYMENT_ORIGIN: &str = "jifen.example.cn";
/// The village code of generated villages (a code in 东胜区, 鄂尔多斯市).
pub const VILLAGE_CODE: &str = "150602101201";

/// An actor's key and identity.
#[derive(Clone)]
pub struct ActorKey {
    pub id: String,
    pub key: SigningKey,
    pub household: Option<String>,
}

impl ActorKey {
    /// A key derived from a seed and a label: deterministic test keys.
    pub fn derive(seed: u64, id: &str, household: Option<&str>) -> ActorKey {
        let mut bytes = [0u8; 32];
        let digest = Hash::of(format!("jifen/sample-key/{seed}/{id}").as_bytes());
        bytes.copy_from_slice(digest.as_bytes());
        ActorKey { id: id.to_owned(), key: SigningKey::from_bytes(&bytes), household: household.map(str::to_owned) }
    }

    /// The public key bytes.
    pub fn public(&self) -> Vec<u8> {
        self.key.verifying_key().to_bytes().to_vec()
    }
}

/// Signs a body built from `payload` by `author` and `cosigners`.
pub fn sign(
    ledger: &str,
    author: &ActorKey,
    cosigners: &[&ActorKey],
    occurred_at: i64,
    key: &str,
    payload: Payload,
) -> (Vec<u8>, Vec<EventSignature>) {
    let body = EventBody {
        ledger_id: ledger.to_owned(),
        actor_id: author.id.clone(),
        occurred_at,
        idempotency_key: key.to_owned(),
        payload: Some(payload),
    };
    let bytes = encode_body(&body);
    let mut sigs = vec![sign_event(&author.key, &bytes)];
    sigs.extend(cosigners.iter().map(|c| sign_event(&c.key, &bytes)));
    (bytes, sigs)
}

/// The cast of a generated village.
#[derive(Clone)]
pub struct Cast {
    pub township: ActorKey,
    pub admin: ActorKey,
    pub keeper: ActorKey,
    pub panel: Vec<ActorKey>,
    pub supervisors: Vec<ActorKey>,
    pub villagers: Vec<ActorKey>,
    pub auditor: ActorKey,
}

/// A ledger being written: the state, the records, and a clock that only moves forward.
pub struct Writer {
    pub ledger: String,
    pub state: VillageState,
    pub records: Vec<Record>,
    pub now: i64,
    counter: u64,
}

impl Writer {
    /// A writer for an empty ledger with its clock at `start` (µs).
    pub fn new(ledger: &str, start: i64) -> Writer {
        Writer { ledger: ledger.to_owned(), state: VillageState::new(), records: Vec::new(), now: start, counter: 0 }
    }

    /// Signs and submits `payload` at the current clock (then advances it by `step_micros`).
    pub fn submit(&mut self, author: &ActorKey, cosigners: &[&ActorKey], payload: Payload) -> Result<u64, Rejection> {
        self.counter += 1;
        let key = format!("k{}", self.counter);
        let (body, sigs) = sign(&self.ledger, author, cosigners, self.now - 60_000_000, &key, payload);
        self.submit_signed(body, sigs)
    }

    /// Submits an already signed body at the current clock.
    pub fn submit_signed(&mut self, body: Vec<u8>, sigs: Vec<EventSignature>) -> Result<u64, Rejection> {
        let at = self.now;
        self.now += 30_000_000;
        match self.state.decide(Command::new(body, sigs, at))? {
            Decision::Append(a) => {
                self.state.apply(&a);
                let seq = a.record().seq();
                self.records.push(a.into_parts().0);
                Ok(seq)
            }
            Decision::Duplicate { seq } => Ok(seq),
        }
    }

    /// Moves the clock forward to `t` if it is behind.
    pub fn advance_to(&mut self, t: i64) {
        self.now = self.now.max(t);
    }
}

/// The parameters of a generated year.
#[derive(Clone, Debug)]
pub struct SampleConfig {
    pub seed: u64,
    /// Households; `None` picks 300–800 from the seed. Fewer than [`MIN_HOUSEHOLDS`] are
    /// taken as that many (the cast lives in the village's households).
    pub households: Option<usize>,
    /// Months to play, from January 2025 (1–12).
    pub months: u32,
    /// Average scores per household per month.
    pub scores_per_household: f64,
}

impl SampleConfig {
    /// A full year with the default intensity.
    pub fn year(seed: u64) -> SampleConfig {
        SampleConfig { seed, households: None, months: 12, scores_per_household: 5.0 }
    }
}

/// A generated village ledger.
pub struct Sample {
    pub cast: Cast,
    pub households: Vec<String>,
    pub writer: Writer,
    /// The log's note signer (key name = origin).
    pub log_key: NoteSigner,
    pub origin: String,
}

impl Sample {
    /// The records.
    pub fn records(&self) -> &[Record] {
        &self.writer.records
    }

    /// A checkpoint of all records signed by the log key.
    pub fn checkpoint(&self) -> Checkpoint {
        let tree = Tree::from_record_hashes(self.writer.records.iter().map(Record::hash).collect::<Vec<_>>().iter());
        Checkpoint { origin: self.origin.clone(), size: tree.len(), root: tree.root(tree.len()).expect("size") }
    }
}

/// The reference items of seed 002's annex (乡村社会治理积分制参考指标).
pub fn reference_items() -> Vec<pb::RulebookItem> {
    use pb::ItemCategory::{Basic, Contribution, Deduction};
    let item = |code: &str, name: &str, c: pb::ItemCategory, min: i64, max: i64, cap: i64, ev: bool| pb::RulebookItem {
        code: code.into(),
        name: name.into(),
        category: c as i32,
        min_points: min,
        max_points: max,
        cap_per_period: cap,
        evidence_required: ev,
    };
    vec![
        item("B01", "公德美德", Basic, 1, 5, 15, false),
        item("B02", "遵纪守法", Basic, 1, 5, 10, false),
        item("B03", "人居环境", Basic, 1, 5, 15, false),
        item("B04", "公益事业", Basic, 1, 10, 20, true),
        item("B05", "学习培训", Basic, 1, 5, 10, false),
        item("B06", "基层党建", Basic, 1, 5, 10, false),
        item("C01", "表彰奖励", Contribution, 5, 50, 0, true),
        item("C02", "先进事迹", Contribution, 5, 30, 0, true),
        item("C03", "立功表现", Contribution, 10, 50, 0, true),
        item("C04", "服兵役", Contribution, 20, 50, 0, false),
        item("D01", "道德失范", Deduction, -10, -1, 0, true),
        item("D02", "邻里纠纷", Deduction, -5, -1, 0, false),
        item("D03", "子女辍学", Deduction, -10, -2, 0, true),
        item("D04", "参与赌博", Deduction, -10, -2, 0, true),
        item("D05", "乱搭乱建", Deduction, -10, -2, 0, true),
        item("D06", "不爱护环境卫生", Deduction, -5, -1, 0, false),
    ]
}

/// The first rulebook of a generated village, effective `from`.
pub fn rulebook(version: u32, from: &str, meeting: &str) -> pb::RulebookAdopted {
    pb::RulebookAdopted {
        version,
        effective_from: from.into(),
        items: reference_items(),
        expiry: pb::ExpiryPolicy::Never as i32,
        publication_window_days: 7,
        score_quorum: 1,
        settlement_quorum: 2,
        witness_quorum: 2,
        resolution: Some(pb::CongressResolution {
            date: meeting.into(),
            members: 35,
            attendance: 31,
            votes_for: 29,
            votes_against: 1,
            abstentions: 1,
            minutes_hash: Hash::of(b"minutes of the villagers' congress").0.to_vec(),
        }),
    }
}

fn day(d: &str) -> Date {
    Date::parse("date", d).expect("valid literal date")
}

const HOUR: i64 = 3_600_000_000;
/// The most entries one generated 公示 lists.
const PUBLICATION_ENTRIES: usize = 4000;
const DAY_MICROS: i64 = 24 * HOUR;

/// Opens a village and enrols its cast: the start of every generated ledger and test fixture.
/// Returns the writer positioned on 2025-01-01 with rulebook v1 in force.
pub fn open_village(seed: u64, households: &[(String, Vec<String>)], panel_size: usize) -> Result<(Cast, Writer), Rejection> {
    open_village_on(&VillageCode::parse(VILLAGE_CODE).expect("valid code"), seed, households, panel_size, day("2024-12-20"))
}

/// [`open_village`] for village `code`, opened on `opened` at 09:00: terms run from 19 days
/// before for three years (1,095 days), rulebook v1 (adopted two days before) is in force
/// from 12 days after, and the writer is positioned on that day at 08:00.
pub fn open_village_on(
    code: &VillageCode,
    seed: u64,
    households: &[(String, Vec<String>)],
    panel_size: usize,
    opened: Date,
) -> Result<(Cast, Writer), Rejection> {
    let code = code.clone();
    let term_start = opened.add_days(-19);
    let effective = opened.add_days(12);
    let origin = format!("{DEPLOYMENT_ORIGIN}/village/{code}");
    let panel_households: Vec<&str> = households.iter().map(|(h, _)| h.as_str()).take(panel_size).collect();
    let cast = Cast {
        township: ActorKey::derive(seed, "township-150602101", None),
        admin: ActorKey::derive(seed, "admin-01", None),
        keeper: ActorKey::derive(seed, "keeper-01", None),
        panel: (0..panel_size).map(|i| ActorKey::derive(seed, &format!("panel-{:02}", i + 1), panel_households.get(i).copied())).collect(),
        supervisors: (0..3).map(|i| ActorKey::derive(seed, &format!("supervisor-{:02}", i + 1), None)).collect(),
        villagers: households.iter().take(20).map(|(h, _)| ActorKey::derive(seed, &format!("villager-{h}"), Some(h))).collect(),
        auditor: ActorKey::derive(seed, "auditor-01", None),
    };
    let mut w = Writer::new(code.as_str(), opened.start_micros() + 9 * HOUR);
    w.submit(
        &cast.township,
        &[],
        Payload::LedgerOpened(pb::LedgerOpened {
            origin,
            village_name: "示范村".into(),
            township_actor_id: cast.township.id.clone(),
            township_key: cast.township.public(),
        }),
    )?;
    let enrol = |a: &ActorKey, roles: &[pb::Role]| {
        Payload::ActorEnrolled(pb::ActorEnrolled {
            actor_id: a.id.clone(),
            public_key: a.public(),
            roles: roles.iter().map(|r| *r as i32).collect(),
            term_start: term_start.start_micros(),
            term_end: term_start.add_days(1095).start_micros(),
            household_id: a.household.clone().unwrap_or_default(),
        })
    };
    w.submit(&cast.township, &[], enrol(&cast.admin, &[pb::Role::Admin]))?;
    w.submit(&cast.township, &[], enrol(&cast.auditor, &[pb::Role::Auditor]))?;
    w.submit(&cast.admin, &[], enrol(&cast.keeper, &[pb::Role::Keeper]))?;
    for p in &cast.panel {
        w.submit(&cast.admin, &[], enrol(p, &[pb::Role::Panel]))?;
    }
    for s in &cast.supervisors {
        w.submit(&cast.admin, &[], enrol(s, &[pb::Role::Supervisor]))?;
    }
    let (from, meeting) = (effective.to_string(), opened.add_days(-2).to_string());
    w.submit(&cast.admin, &[], Payload::RulebookAdopted(rulebook(1, &from, &meeting)))?;
    for (i, (h, members)) in households.iter().enumerate() {
        w.submit(
            &cast.admin,
            &[],
            Payload::HouseholdRegistered(pb::HouseholdRegistered {
                household_id: h.clone(),
                group: format!("G{:02}", i % 8 + 1),
                residency: if i % 20 == 19 { pb::Residency::NonRegisteredResident } else { pb::Residency::Registered } as i32,
                members: members.iter().map(|m| pb::Member { member_id: m.clone(), identity_commitment: vec![] }).collect(),
            }),
        )?;
    }
    for v in &cast.villagers {
        w.submit(&cast.admin, &[], enrol(v, &[pb::Role::Villager]))?;
    }
    w.submit(&cast.keeper, &[], Payload::StockReceived(stock("R-2024-12-01", "G-OIL", "食用油 5L", 40, pb::StockSource::Subsidy, "")))?;
    w.submit(
        &cast.keeper,
        &[],
        Payload::StockReceived(stock("R-2024-12-02", "G-SOAP", "洗衣皂", 200, pb::StockSource::Donation, "东胜区妇联")),
    )?;
    w.submit(
        &cast.keeper,
        &[],
        Payload::StockReceived(stock("R-2024-12-03", "G-RICE", "大米 10kg", 60, pb::StockSource::Enterprise, "伊泰集团")),
    )?;
    w.submit(&cast.keeper, &[], Payload::StockReceived(stock("R-2024-12-04", "G-TOWEL", "毛巾", 300, pb::StockSource::Collective, "")))?;
    w.submit(
        &cast.keeper,
        &[],
        Payload::PricesSet(pb::PricesSet {
            prices: [("G-OIL", 40), ("G-SOAP", 3), ("G-RICE", 30), ("G-TOWEL", 5)]
                .iter()
                .map(|(g, p)| pb::Price { goods_code: (*g).into(), points: *p })
                .collect(),
        }),
    )?;
    w.advance_to(effective.start_micros() + 8 * HOUR);
    Ok((cast, w))
}

/// A stock receipt payload.
pub fn stock(id: &str, goods: &str, name: &str, q: u32, source: pb::StockSource, donor: &str) -> pb::StockReceived {
    pb::StockReceived {
        receipt_id: id.into(),
        goods_code: goods.into(),
        goods_name: name.into(),
        quantity: q,
        source: source as i32,
        donor: donor.into(),
    }
}

/// The most scores [`score_load`] can give each household in one calendar month: the sum of
/// five times the smallest cap (10) of the five basic items without evidence it rotates through.
pub const SCORE_LOAD_PER_HOUSEHOLD: usize = 50;

/// A load of `n` independent, pre-signed scores of one point for an opened village, signed at
/// `at` (µs) and dated that day: scores by a panel member outside the household, rotating over
/// households and then over the basic items without evidence, so that up to
/// [`SCORE_LOAD_PER_HOUSEHOLD`] × households scores in one month stay within every cap. Each has
/// its own idempotency key (`load-<key_prefix>-<i>`) and entry id, so any subset may be
/// appended in any order.
pub fn score_load(
    cast: &Cast,
    households: &[(String, Vec<String>)],
    ledger: &str,
    key_prefix: &str,
    n: usize,
    at: i64,
) -> Vec<(Vec<u8>, Vec<EventSignature>)> {
    let today = Date::of_micros(at).to_string();
    let items = ["B01", "B02", "B03", "B05", "B06"];
    (0..n)
        .map(|i| {
            let (h, _) = &households[i % households.len()];
            let panel = cast.panel.iter().find(|p| p.household.as_deref() != Some(h.as_str())).expect("a panel of two or more");
            let p = Payload::ScoreRecorded(pb::ScoreRecorded {
                entry_id: format!("L-{key_prefix}-{i:07}"),
                household_id: h.clone(),
                member_id: String::new(),
                item_code: items[(i / households.len()) % items.len()].into(),
                rulebook_version: 1,
                points: 1,
                occurred_on: today.clone(),
                source: pb::ScoreSource::Inspection as i32,
                evidence_hashes: vec![],
                claim_id: String::new(),
            });
            sign(ledger, panel, &[], at, &format!("load-{key_prefix}-{i}"), p)
        })
        .collect()
}

/// A load of `n` independent, pre-signed events that need no rulebook in force (so a village
/// opened today can take them): stock receipts by the keeper and, every third event, a new
/// household registered by the admin. Each has its own idempotency key (`load-<key_prefix>-<i>`)
/// and ids, so any subset may be appended in any order; signed at `at` (µs).
pub fn receipt_load(cast: &Cast, ledger: &str, key_prefix: &str, n: usize, at: i64) -> Vec<(Vec<u8>, Vec<EventSignature>)> {
    let goods = ["G-OIL", "G-SOAP", "G-RICE", "G-TOWEL"];
    (0..n)
        .map(|i| {
            let key = format!("load-{key_prefix}-{i}");
            if i % 3 == 2 {
                let id = format!("L{key_prefix}-{i:07}");
                let p = Payload::HouseholdRegistered(pb::HouseholdRegistered {
                    household_id: id.clone(),
                    group: format!("G{:02}", i % 8 + 1),
                    residency: pb::Residency::Registered as i32,
                    members: (1..=1 + i % 4)
                        .map(|m| pb::Member { member_id: format!("{id}-{m:02}"), identity_commitment: vec![] })
                        .collect(),
                });
                sign(ledger, &cast.admin, &[], at, &key, p)
            } else {
                let receipt = stock(
                    &format!("L{key_prefix}-R{i:07}"),
                    goods[i % goods.len()],
                    "",
                    1 + (i % 7) as u32,
                    pb::StockSource::Collective,
                    "",
                );
                sign(ledger, &cast.keeper, &[], at, &key, Payload::StockReceived(receipt))
            }
        })
        .collect()
}

/// Households and members of a generated village.
pub fn households(rng: &mut ChaCha8Rng, n: usize) -> Vec<(String, Vec<String>)> {
    (1..=n)
        .map(|i| {
            let id = format!("H{i:04}");
            let members = (1..=rng.random_range(1..=6)).map(|m| format!("{id}-{m:02}")).collect();
            (id, members)
        })
        .collect()
}

/// The fewest households a generated village has.
pub const MIN_HOUSEHOLDS: usize = 10;

/// The most households a generated village has (a large township village has about 3,000).
pub const MAX_HOUSEHOLDS: usize = 100_000;

/// Generates a village ledger.
pub fn generate(config: &SampleConfig) -> Result<Sample, Rejection> {
    generate_on(&VillageCode::parse(VILLAGE_CODE).expect("valid code"), config)
}

/// [`generate`] for village `code` (a district of villages, in benchmarks).
pub fn generate_on(code: &VillageCode, config: &SampleConfig) -> Result<Sample, Rejection> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let n = config.households.unwrap_or_else(|| rng.random_range(300..=800)).clamp(MIN_HOUSEHOLDS, MAX_HOUSEHOLDS);
    let panel_size = rng.random_range(3..=5);
    let hs = households(&mut rng, n);
    let (cast, mut w) = open_village_on(code, config.seed, &hs, panel_size, day("2024-12-20"))?;
    let ids: Vec<String> = hs.iter().map(|(h, _)| h.clone()).collect();
    let items = reference_items();
    let mut entry_no = 0u64;
    for month in 1..=config.months {
        let period = Period::from_ym(2025, month).expect("valid month");
        let first = period.first_day();
        let days = period.next().first_day().days() - first.days();
        // Scores, spread over the month's working days.
        let scores = (n as f64 * config.scores_per_household) as usize;
        let mut plan: Vec<(i32, usize)> = (0..scores).map(|_| (rng.random_range(0..days - 1), rng.random_range(0..n))).collect();
        plan.sort();
        let mut month_entries = Vec::new();
        let mut used: std::collections::HashMap<(usize, usize), i64> = Default::default();
        for (d, h) in plan {
            let today = first.add_days(d);
            w.advance_to(today.start_micros() + 8 * HOUR);
            let hid = &ids[h];
            let roll: f64 = rng.random();
            let idx = if roll < 0.90 {
                rng.random_range(0..6)
            } else if roll < 0.98 {
                rng.random_range(10..16)
            } else {
                rng.random_range(6..10)
            };
            let item = &items[idx];
            let points = rng.random_range(item.min_points..=item.max_points);
            if item.cap_per_period > 0 {
                let u = used.entry((h, idx)).or_default();
                if *u + points.abs() > item.cap_per_period {
                    continue;
                }
                *u += points.abs();
            }
            // Panel members who are not of this household; usually two sign together.
            let eligible: Vec<&ActorKey> = cast.panel.iter().filter(|p| p.household.as_deref() != Some(hid.as_str())).collect();
            let author = eligible[rng.random_range(0..eligible.len())];
            let others: Vec<&ActorKey> = eligible.iter().filter(|p| p.id != author.id).copied().collect();
            let second = others.get(rng.random_range(0..others.len().max(1))).copied();
            let cos: Vec<&ActorKey> = if rng.random_bool(0.7) { second.into_iter().collect() } else { vec![] };
            entry_no += 1;
            let entry_id = format!("E{entry_no:06}");
            let back = if rng.random_bool(0.01) { rng.random_range(0..=d.min(20)) } else { 0 };
            let occurred_on = today.add_days(-back).to_string();
            let evidence = if item.evidence_required { vec![Hash::of(entry_id.as_bytes()).0.to_vec()] } else { vec![] };
            let (source, claim_id) = if idx < 6 && rng.random_bool(0.04) {
                let claim_id = format!("CL{entry_no:06}");
                let claimer = cast.villagers.iter().find(|v| v.household.as_deref() == Some(hid.as_str())).unwrap_or(&cast.admin);
                w.submit(
                    claimer,
                    &[],
                    Payload::PointsClaimed(pb::PointsClaimed {
                        claim_id: claim_id.clone(),
                        household_id: hid.clone(),
                        member_id: String::new(),
                        item_code: item.code.clone(),
                        points,
                        occurred_on: occurred_on.clone(),
                        evidence_hashes: evidence.clone(),
                    }),
                )?;
                (pb::ScoreSource::SelfDeclaration, claim_id)
            } else if rng.random_bool(0.3) {
                (pb::ScoreSource::Report, String::new())
            } else {
                (pb::ScoreSource::Inspection, String::new())
            };
            w.submit(
                author,
                &cos,
                Payload::ScoreRecorded(pb::ScoreRecorded {
                    entry_id: entry_id.clone(),
                    household_id: hid.clone(),
                    member_id: String::new(),
                    item_code: item.code.clone(),
                    rulebook_version: 1,
                    points,
                    occurred_on,
                    source: source as i32,
                    evidence_hashes: evidence,
                    claim_id,
                }),
            )?;
            month_entries.push((entry_id, h, idx));
        }
        // A rare correction outside any objection.
        if let Some((entry, h, idx)) = month_entries.get(rng.random_range(0..month_entries.len().max(1))).cloned() {
            if rng.random_bool(0.5) && items[idx].min_points > 0 {
                let author = cast.panel.iter().find(|p| p.household.as_deref() != Some(ids[h].as_str())).expect("panel of 3+");
                w.submit(
                    author,
                    &[],
                    Payload::ScoreCorrected(pb::ScoreCorrected {
                        entry_id: entry,
                        correction: Some(pb::score_corrected::Correction::NewPoints(items[idx].min_points)),
                        reason: "复核后按细则下限计分".into(),
                    }),
                )?;
            }
        }
        // Redemptions through the month, within available points and stock.
        for (h, hid) in ids.iter().enumerate() {
            if !rng.random_bool(0.08) {
                continue;
            }
            let available = w.state.balances().available(hid);
            let goods: Vec<(String, i64, u64)> = w.state.goods().filter_map(|(g, x)| x.price.map(|p| (g.to_owned(), p, x.stock))).collect();
            let Some((g, price, stock)) = goods.get(rng.random_range(0..goods.len())).cloned() else { continue };
            let q = (available / price).min(3).min(stock as i64);
            if q < 1 {
                continue;
            }
            let rid = format!("RD-{period}-{h:04}");
            w.submit(
                &cast.keeper,
                &[],
                Payload::RedemptionRecorded(pb::RedemptionRecorded {
                    redemption_id: rid.clone(),
                    household_id: hid.clone(),
                    lines: vec![pb::RedemptionLine { goods_code: g, quantity: q as u32 }],
                    total_points: price * q,
                }),
            )?;
            if rng.random_bool(0.02) {
                w.submit(
                    &cast.keeper,
                    &[],
                    Payload::RedemptionReversed(pb::RedemptionReversed { redemption_id: rid, reason: "商品质量问题退回".into() }),
                )?;
            }
        }
        // Monthly restock.
        w.submit(
            &cast.keeper,
            &[],
            Payload::StockReceived(stock(&format!("R-{period}-1"), "G-SOAP", "", 150, pb::StockSource::Donation, "东胜区妇联")),
        )?;
        w.submit(
            &cast.keeper,
            &[],
            Payload::StockReceived(stock(&format!("R-{period}-2"), "G-TOWEL", "", 150, pb::StockSource::Collective, "")),
        )?;
        w.submit(
            &cast.keeper,
            &[],
            Payload::StockReceived(stock(&format!("R-{period}-3"), "G-OIL", "", 20, pb::StockSource::Subsidy, "")),
        )?;
        w.submit(
            &cast.keeper,
            &[],
            Payload::StockReceived(stock(&format!("R-{period}-4"), "G-RICE", "", 30, pb::StockSource::Partner, "东胜区农商银行")),
        )?;
        // 公示 on the first day of the next month.
        let next = period.next().first_day();
        w.advance_to(next.start_micros() + 9 * HOUR);
        if month_entries.is_empty() {
            continue;
        }
        // One 公示 per PUBLICATION_ENTRIES entries (a body stays under its size limit).
        let pub_ids: Vec<String> = (0..month_entries.len().div_ceil(PUBLICATION_ENTRIES))
            .map(|k| if k == 0 { format!("P-{period}") } else { format!("P-{period}-{k}") })
            .collect();
        let start = w.now;
        for (pub_id, chunk) in pub_ids.iter().zip(month_entries.chunks(PUBLICATION_ENTRIES)) {
            w.submit(
                &cast.admin,
                &[],
                Payload::PublicationOpened(pb::PublicationOpened {
                    publication_id: pub_id.clone(),
                    period: period.to_string(),
                    entry_ids: chunk.iter().map(|(e, _, _)| e.clone()).collect(),
                    window_start: w.now,
                    window_end: w.now + 7 * DAY_MICROS,
                }),
            )?;
        }
        // Objections to about 2% of entries, during the window.
        let mut objections = Vec::new();
        for (k, (entry, h, idx)) in month_entries.iter().enumerate() {
            if !rng.random_bool(0.02) {
                continue;
            }
            let oid = format!("O-{period}-{k:05}");
            let objector = &ids[(h + 1 + rng.random_range(0..n - 1)) % n];
            let filer = cast.villagers.iter().find(|v| v.household.as_deref() == Some(objector.as_str())).unwrap_or(&cast.admin);
            w.advance_to(start + HOUR);
            w.submit(
                filer,
                &[],
                Payload::ObjectionFiled(pb::ObjectionFiled {
                    objection_id: oid.clone(),
                    publication_id: pub_ids[k / PUBLICATION_ENTRIES].clone(),
                    entry_id: entry.clone(),
                    objector: objector.clone(),
                    reason: "认为该项计分与实际情况不符".into(),
                    evidence_hash: vec![],
                }),
            )?;
            objections.push((oid, *h, *idx));
        }
        // Decisions, 3 days into the window, with a supervisor's co-signature.
        w.advance_to(start + 3 * DAY_MICROS);
        for (oid, h, idx) in objections {
            let author = cast.panel.iter().find(|p| p.household.as_deref() != Some(ids[h].as_str())).expect("panel of 3+");
            let supervisor = &cast.supervisors[rng.random_range(0..cast.supervisors.len())];
            let upheld = rng.random_bool(0.5);
            let item = &items[idx];
            let correction = upheld.then(|| pb::Correction {
                change: Some(if rng.random_bool(0.3) {
                    pb::correction::Change::Void(true)
                } else {
                    pb::correction::Change::NewPoints(item.min_points)
                }),
            });
            w.submit(
                author,
                &[supervisor],
                Payload::ObjectionDecided(pb::ObjectionDecided {
                    objection_id: oid,
                    outcome: if upheld { pb::ObjectionOutcome::Upheld } else { pb::ObjectionOutcome::Dismissed } as i32,
                    finding: if upheld { "经核实，异议成立，予以更正" } else { "经核实，原计分无误" }.into(),
                    correction,
                }),
            )?;
        }
        // Close after the window, then settle with two supervisors.
        w.advance_to(start + 7 * DAY_MICROS + HOUR);
        for pub_id in &pub_ids {
            w.submit(&cast.admin, &[], Payload::PublicationClosed(pb::PublicationClosed { publication_id: pub_id.clone() }))?;
        }
        let pub_id = pub_ids.last().expect("at least one 公示").clone();
        let book = w.state.balances();
        let settled = pb::PeriodSettled {
            period: period.to_string(),
            publication_id: pub_id,
            households: book.len() as u32,
            period_points: w.state.period_points(period),
            balance_digest: book.digest().0.to_vec(),
        };
        w.submit(&cast.admin, &[&cast.supervisors[0], &cast.supervisors[1]], Payload::PeriodSettled(settled))?;
        if month % 3 == 0 {
            w.submit(
                &cast.supervisors[month as usize % 3],
                &[],
                Payload::InspectionRecorded(pb::InspectionRecorded {
                    inspection_id: format!("I-2025-Q{}", month / 3),
                    scope: "scoring".into(),
                    outcome: pb::InspectionOutcome::Satisfactory as i32,
                    findings: "评分、公示、兑换、台账规范".into(),
                    report_hash: vec![],
                }),
            )?;
            let respondents = 50;
            let satisfied = rng.random_range(30..=45);
            let basically = rng.random_range(0..=(respondents - satisfied));
            w.submit(
                &cast.admin,
                &[],
                Payload::SatisfactionSurveyRecorded(pb::SatisfactionSurveyRecorded {
                    survey_id: format!("S-2025-Q{}", month / 3),
                    period: format!("2025-Q{}", month / 3),
                    respondents,
                    satisfied,
                    basically_satisfied: basically,
                    dissatisfied: respondents - satisfied - basically,
                }),
            )?;
        }
    }
    // Honours for the households that earned most.
    if config.months == 12 {
        let mut ranking: Vec<(i64, &String)> = ids.iter().map(|h| (w.state.balances().get(h).map_or(0, |b| b.ever_earned()), h)).collect();
        ranking.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        for (i, (_, h)) in ranking.iter().take(10).enumerate() {
            w.submit(
                &cast.admin,
                &[],
                Payload::HonourAwarded(pb::HonourAwarded {
                    honour_id: format!("HON-2025-{:02}", i + 1),
                    household_id: (*h).clone(),
                    kind: pb::HonourKind::StarCivilisedHousehold as i32,
                    title: "2025年度星级文明户".into(),
                    period: "2025".into(),
                    stars: if i < 3 { 5 } else { 4 },
                }),
            )?;
        }
    }
    let origin = w.state.genesis().expect("opened").origin.clone();
    let log_key = NoteSigner::new(&origin, ActorKey::derive(config.seed, "log", None).key).expect("origin is a valid key name");
    Ok(Sample { cast, households: ids, writer: w, log_key, origin })
}

//! Given/when/then tests of the village write-model: for every rule, an accepted event and each
//! way to break it. A rejection must name the rule and append nothing.

use jifen_ledger::body::encode_body;
use jifen_ledger::pb::{self, event_body::Payload, EventBody};
use jifen_ledger::sample::{open_village, rulebook, sign, stock, ActorKey, Cast, Writer};
use jifen_ledger::signature::{sign_event, EventSignature, PublicKey};
use jifen_ledger::time::Date;
use jifen_ledger::verify::verify_ledger;
use jifen_ledger::village::{Accepted, Command, Decision, Rejection, Village, VillageState};

const HOUR: i64 = 3_600_000_000;
const DAY: i64 = 24 * HOUR;

/// A village with four households; panel-01..03 live in H0001..H0003, villager-H000n in H000n.
struct Given {
    cast: Cast,
    w: Writer,
    n: u32,
}

fn given() -> Given {
    let hs: Vec<(String, Vec<String>)> =
        (1..=4).map(|i| (format!("H000{i}"), vec![format!("H000{i}-01"), format!("H000{i}-02")])).collect();
    let (cast, w) = open_village(11, &hs, 3).expect("fixture opens");
    Given { cast, w, n: 0 }
}

/// Asserts that submitting is rejected as `$pat` and that nothing was appended.
macro_rules! assert_rejects {
    ($g:expr, $author:expr, $cos:expr, $payload:expr, $pat:pat $(if $guard:expr)?) => {{
        let payload = $payload;
        let cos = $cos;
        let before = ($g.w.records.len(), $g.w.state.head());
        let r = $g.w.submit($author, cos, payload);
        assert!(matches!(r, Err($pat) $(if $guard)?), "expected {}, got {:?}", stringify!($pat), r);
        assert_eq!(before, ($g.w.records.len(), $g.w.state.head()), "a rejection appended something");
    }};
}

/// Submits and expects acceptance, evaluating the payload before borrowing the writer.
macro_rules! ok {
    ($g:expr, $author:expr, $cos:expr, $payload:expr) => {{
        let payload = $payload;
        let cos = $cos;
        $g.ok($author, cos, payload)
    }};
}

impl Given {
    fn today(&self) -> String {
        Date::of_micros(self.w.now).to_string()
    }
    fn admin(&self) -> ActorKey {
        self.cast.admin.clone()
    }
    fn panel(&self, i: usize) -> ActorKey {
        self.cast.panel[i].clone()
    }
    fn sup(&self, i: usize) -> ActorKey {
        self.cast.supervisors[i].clone()
    }
    fn keeper(&self) -> ActorKey {
        self.cast.keeper.clone()
    }
    fn villager(&self, i: usize) -> ActorKey {
        self.cast.villagers[i].clone()
    }
    fn ok(&mut self, author: &ActorKey, cos: &[&ActorKey], p: Payload) -> u64 {
        self.w.submit(author, cos, p).expect("accepted")
    }
    fn score(&mut self, household: &str, item: &str, points: i64) -> pb::ScoreRecorded {
        self.n += 1;
        pb::ScoreRecorded {
            entry_id: format!("E{}", self.n),
            household_id: household.into(),
            member_id: String::new(),
            item_code: item.into(),
            rulebook_version: 1,
            points,
            occurred_on: self.today(),
            source: pb::ScoreSource::Inspection as i32,
            evidence_hashes: vec![],
            claim_id: String::new(),
        }
    }
    /// Records a score by panel-04-free member panel-03 (household H0003) for `household`.
    fn scored(&mut self, household: &str, item: &str, points: i64) -> String {
        let s = self.score(household, item, points);
        let id = s.entry_id.clone();
        let author = if household == "H0003" { self.panel(0) } else { self.panel(2) };
        let ev = if item.starts_with('C') || item == "B04" || item == "D01" { vec![vec![7u8; 32]] } else { vec![] };
        self.ok(&author, &[], Payload::ScoreRecorded(pb::ScoreRecorded { evidence_hashes: ev, ..s }));
        id
    }
    fn open_publication(&mut self, id: &str, period: &str, entries: &[String]) -> i64 {
        let start = self.w.now;
        let admin = self.admin();
        self.ok(
            &admin,
            &[],
            Payload::PublicationOpened(pb::PublicationOpened {
                publication_id: id.into(),
                period: period.into(),
                entry_ids: entries.to_vec(),
                window_start: start,
                window_end: start + 7 * DAY,
            }),
        );
        start
    }
    fn close(&mut self, id: &str, start: i64) {
        self.w.advance_to(start + 7 * DAY);
        let admin = self.admin();
        self.ok(&admin, &[], Payload::PublicationClosed(pb::PublicationClosed { publication_id: id.into() }));
    }
    /// Gives `household` final points under B01 in January, through a closed publication.
    fn final_points(&mut self, household: &str, points: i64) {
        let e = self.scored(household, "B01", points);
        let start = self.open_publication("P-final", "2025-01", &[e]);
        self.close("P-final", start);
    }
    fn objection(&mut self, id: &str, publication: &str, entry: &str) -> pb::ObjectionFiled {
        pb::ObjectionFiled {
            objection_id: id.into(),
            publication_id: publication.into(),
            entry_id: entry.into(),
            objector: "H0004".into(),
            reason: "与事实不符".into(),
            evidence_hash: vec![],
        }
    }
    /// A settlement carrying the figures the ledger shows at the writer's clock (after any
    /// expiry due by then).
    fn settlement(&self, period: &str, publication: &str) -> pb::PeriodSettled {
        let book = self.w.state.balances_at(self.w.now);
        pb::PeriodSettled {
            period: period.into(),
            publication_id: publication.into(),
            households: book.len() as u32,
            period_points: self.w.state.period_points(jifen_ledger::time::Period::parse("p", period).unwrap()),
            balance_digest: book.digest().0.to_vec(),
        }
    }
    fn enrol(&self, a: &ActorKey, roles: &[pb::Role], start: i64, end: i64) -> Payload {
        Payload::ActorEnrolled(pb::ActorEnrolled {
            actor_id: a.id.clone(),
            public_key: a.public(),
            roles: roles.iter().map(|r| *r as i32).collect(),
            term_start: start,
            term_end: end,
            household_id: a.household.clone().unwrap_or_default(),
        })
    }
}

fn decided(id: &str, outcome: pb::ObjectionOutcome, change: Option<pb::correction::Change>) -> Payload {
    Payload::ObjectionDecided(pb::ObjectionDecided {
        objection_id: id.into(),
        outcome: outcome as i32,
        finding: "经核实".into(),
        correction: change.map(|c| pb::Correction { change: Some(c) }),
    })
}

// ---- envelope --------------------------------------------------------------------------------

#[test]
fn the_first_event_must_open_the_ledger_and_only_once() {
    let g = given();
    let mut fresh = Writer::new(&g.w.ledger, g.w.now);
    assert_rejects!(
        fresh_given(&mut fresh),
        &g.cast.admin,
        &[],
        g.enrol(&ActorKey::derive(1, "x", None), &[pb::Role::Panel], 0, 0),
        Rejection::NotOpened
    );
    let mut g = g;
    let t = g.cast.township.clone();
    let again = Payload::LedgerOpened(pb::LedgerOpened {
        origin: "jifen.example.cn/village/150602101201".into(),
        village_name: "示范村".into(),
        township_actor_id: t.id.clone(),
        township_key: t.public(),
    });
    assert_rejects!(g, &t, &[], again, Rejection::AlreadyOpened);
    // The genesis itself, sent again (a client retrying), is its own record, not a refusal.
    let genesis = &g.w.records[0];
    let retried = g.w.state.decide(Command::new(genesis.body().to_vec(), genesis.signatures().to_vec(), g.w.now)).unwrap();
    assert!(matches!(retried, Decision::Duplicate { seq: 0 }), "{retried:?}");
}

/// Wraps a bare writer so the macro can use it like a fixture.
struct Bare<'a> {
    w: &'a mut Writer,
}
fn fresh_given(w: &mut Writer) -> Bare<'_> {
    Bare { w }
}

#[test]
fn genesis_must_be_signed_by_the_key_it_names_with_a_proper_origin() {
    let t = ActorKey::derive(5, "township", None);
    let other = ActorKey::derive(5, "other", None);
    let opened = |origin: &str| {
        Payload::LedgerOpened(pb::LedgerOpened {
            origin: origin.into(),
            village_name: "示范村".into(),
            township_actor_id: t.id.clone(),
            township_key: t.public(),
        })
    };
    let mut w = Writer::new("150602101201", 1_735_000_000_000_000);
    let b = fresh_given(&mut w);
    assert_rejects!(b, &t, &[&other], opened("jifen.example.cn/village/150602101201"), Rejection::UnknownKey(_));
    assert_rejects!(b, &t, &[], opened("jifen.example.cn/village/150602101299"), Rejection::InvalidField { field: "origin", .. });
    assert_rejects!(b, &t, &[], opened("/village/150602101201"), Rejection::InvalidField { field: "origin", .. });
    b.w.submit(&t, &[], opened("jifen.example.cn/village/150602101201")).expect("genesis accepted");
    let mut bad_code = Writer::new("15060210120", 0);
    let b = fresh_given(&mut bad_code);
    assert_rejects!(b, &t, &[], opened("jifen.example.cn/village/15060210120"), Rejection::Id(_));
}

#[test]
fn bodies_must_be_canonical_and_for_this_ledger() {
    let mut g = given();
    let admin = g.admin();
    let submit_raw = |g: &mut Given, body: Vec<u8>, sigs: Vec<EventSignature>| {
        let before = g.w.records.len();
        let r = g.w.submit_signed(body, sigs);
        assert_eq!(before, g.w.records.len());
        r.unwrap_err()
    };
    let (body, _) = sign(
        &g.w.ledger,
        &admin,
        &[],
        g.w.now,
        "canon",
        Payload::HouseholdClosed(pb::HouseholdClosed { household_id: "H0004".into(), reason: "迁出".into() }),
    );
    // An unknown field appended (field 99, varint 1).
    let mut extra = body.clone();
    extra.extend_from_slice(&[0x98, 0x06, 0x01]);
    let sig = sign_event(&admin.key, &extra);
    assert!(matches!(submit_raw(&mut g, extra, vec![sig]), Rejection::Body(jifen_ledger::body::BodyError::NotCanonical)));
    let garbage = vec![0xff, 0xff, 0xff];
    let sig = sign_event(&admin.key, &garbage);
    assert!(matches!(submit_raw(&mut g, garbage, vec![sig]), Rejection::Body(jifen_ledger::body::BodyError::Malformed(_))));
    let empty = encode_body(&EventBody {
        ledger_id: g.w.ledger.clone(),
        actor_id: admin.id.clone(),
        occurred_at: 0,
        idempotency_key: "k".into(),
        payload: None,
    });
    let sig = sign_event(&admin.key, &empty);
    assert!(matches!(submit_raw(&mut g, empty, vec![sig]), Rejection::Body(jifen_ledger::body::BodyError::NoPayload)));
    assert!(matches!(submit_raw(&mut g, body.clone(), vec![]), Rejection::Record(jifen_ledger::record::RecordError::NoSignatures)));
    let sig = sign_event(&admin.key, &body);
    assert!(matches!(
        submit_raw(&mut g, body.clone(), vec![sig, sig]),
        Rejection::Record(jifen_ledger::record::RecordError::UnsortedSignatures)
    ));
    let mut forged = sig;
    forged.signature[10] ^= 1;
    assert!(matches!(submit_raw(&mut g, body.clone(), vec![forged]), Rejection::Signature(_)));
    let (other, sigs) = sign(
        "150602101299",
        &admin,
        &[],
        g.w.now,
        "other",
        Payload::HouseholdClosed(pb::HouseholdClosed { household_id: "H0004".into(), reason: "迁出".into() }),
    );
    assert!(matches!(submit_raw(&mut g, other, sigs), Rejection::WrongLedger { .. }));
    let (nokey, sigs) = sign(
        &g.w.ledger.clone(),
        &admin,
        &[],
        g.w.now,
        "",
        Payload::HouseholdClosed(pb::HouseholdClosed { household_id: "H0004".into(), reason: "迁出".into() }),
    );
    assert!(matches!(submit_raw(&mut g, nokey, sigs), Rejection::InvalidField { field: "idempotency_key", .. }));
    let sig = sign_event(&admin.key, &body);
    g.w.submit_signed(body, vec![sig]).expect("the canonical body is accepted");
}

#[test]
fn idempotency_keys_make_retries_safe() {
    let mut g = given();
    let admin = g.admin();
    let payload = Payload::HouseholdClosed(pb::HouseholdClosed { household_id: "H0004".into(), reason: "迁出".into() });
    let (body, sigs) = sign(&g.w.ledger, &admin, &[], g.w.now, "retry-1", payload);
    let seq = g.w.submit_signed(body.clone(), sigs.clone()).unwrap();
    let len = g.w.records.len();
    // The same body again: the same event, nothing appended.
    let d = g.w.state.decide(Command::new(body.clone(), sigs.clone(), g.w.now)).unwrap();
    assert!(matches!(d, Decision::Duplicate { seq: s } if s == seq));
    assert_eq!(g.w.submit_signed(body, sigs).unwrap(), seq);
    assert_eq!(g.w.records.len(), len);
    // Another body under the same key: a conflict.
    let (other, sigs) = sign(
        &g.w.ledger,
        &admin,
        &[],
        g.w.now,
        "retry-1",
        Payload::HouseholdClosed(pb::HouseholdClosed { household_id: "H0003".into(), reason: "迁出".into() }),
    );
    assert!(matches!(g.w.submit_signed(other, sigs), Err(Rejection::IdempotencyConflict { seq: s, .. }) if s == seq));
}

#[test]
fn time_only_moves_forward_and_acts_are_not_claimed_in_the_future() {
    let mut g = given();
    let admin = g.admin();
    ok!(g, &admin, &[], Payload::HouseholdClosed(pb::HouseholdClosed { household_id: "H0004".into(), reason: "迁出".into() }));
    g.w.now -= 3_600_000_000;
    assert_rejects!(
        g,
        &admin,
        &[],
        Payload::HouseholdClosed(pb::HouseholdClosed { household_id: "H0003".into(), reason: "迁出".into() }),
        Rejection::RecordedAtRegressed { .. }
    );
    g.w.now += 2 * 3_600_000_000;
    let (body, sigs) = sign(
        &g.w.ledger,
        &admin,
        &[],
        g.w.now + HOUR,
        "future",
        Payload::HouseholdClosed(pb::HouseholdClosed { household_id: "H0003".into(), reason: "迁出".into() }),
    );
    assert!(matches!(g.w.submit_signed(body, sigs), Err(Rejection::OccurredInFuture { .. })));
}

// ---- trust model -----------------------------------------------------------------------------

#[test]
fn only_enrolled_keys_sign_and_the_author_must_sign() {
    let mut g = given();
    let stranger = ActorKey::derive(99, "stranger", None);
    assert_rejects!(
        g,
        &stranger,
        &[],
        Payload::HouseholdClosed(pb::HouseholdClosed { household_id: "H0004".into(), reason: "x".into() }),
        Rejection::UnknownKey(_)
    );
    // The body names the admin as author but only the keeper signs.
    let keeper = g.keeper();
    let impostor = ActorKey { id: g.cast.admin.id.clone(), key: keeper.key.clone(), household: None };
    let (body, sigs) = sign(
        &g.w.ledger,
        &impostor,
        &[],
        g.w.now,
        "imp",
        Payload::HouseholdClosed(pb::HouseholdClosed { household_id: "H0004".into(), reason: "x".into() }),
    );
    assert!(matches!(g.w.submit_signed(body, sigs), Err(Rejection::AuthorNotSigner { .. })));
}

#[test]
fn roles_decide_who_may_act() {
    let mut g = given();
    let (keeper, admin, township) = (g.keeper(), g.admin(), g.cast.township.clone());
    assert_rejects!(
        g,
        &keeper,
        &[],
        Payload::HouseholdClosed(pb::HouseholdClosed { household_id: "H0004".into(), reason: "x".into() }),
        Rejection::RoleNotAllowed { .. }
    );
    let admin2 = ActorKey::derive(1, "admin-02", None);
    let p = g.enrol(&admin2, &[pb::Role::Admin], 0, 0);
    assert_rejects!(g, &admin, &[], p.clone(), Rejection::RoleNotAllowed { .. });
    ok!(g, &township, &[], p);
    let p = g.enrol(&ActorKey::derive(1, "panel-09", None), &[pb::Role::Panel], 0, 0);
    assert_rejects!(g, &keeper, &[], p.clone(), Rejection::RoleNotAllowed { .. });
    ok!(g, &admin2, &[], p);
}

#[test]
fn enrolment_refuses_weak_reused_and_duplicate_keys() {
    let mut g = given();
    let admin = g.admin();
    let mut weak = pb::ActorEnrolled {
        actor_id: "panel-09".into(),
        public_key: {
            let mut k = vec![0u8; 32];
            k[0] = 1; // the identity point: small order
            k
        },
        roles: vec![pb::Role::Panel as i32],
        term_start: 0,
        term_end: 0,
        household_id: String::new(),
    };
    assert_rejects!(g, &admin, &[], Payload::ActorEnrolled(weak.clone()), Rejection::WeakKey);
    weak.public_key = admin.public();
    assert_rejects!(g, &admin, &[], Payload::ActorEnrolled(weak.clone()), Rejection::KeyInUse { .. });
    weak.public_key = ActorKey::derive(1, "p9", None).public();
    weak.actor_id = g.cast.panel[0].id.clone();
    assert_rejects!(g, &admin, &[], Payload::ActorEnrolled(weak.clone()), Rejection::Duplicate { kind: "actor", .. });
    weak.actor_id = "panel-09".into();
    weak.roles = vec![pb::Role::Panel as i32, pb::Role::Panel as i32];
    assert_rejects!(g, &admin, &[], Payload::ActorEnrolled(weak.clone()), Rejection::InvalidField { field: "roles", .. });
    weak.roles = vec![];
    assert_rejects!(g, &admin, &[], Payload::ActorEnrolled(weak.clone()), Rejection::InvalidField { field: "roles", .. });
    weak.roles = vec![pb::Role::Panel as i32];
    weak.term_start = 10;
    weak.term_end = 5;
    assert_rejects!(g, &admin, &[], Payload::ActorEnrolled(weak.clone()), Rejection::InvalidField { field: "term_end", .. });
}

#[test]
fn a_revoked_key_signs_nothing_after_and_everything_before_stays_valid() {
    let mut g = given();
    let (keeper, admin, township) = (g.keeper(), g.admin(), g.cast.township.clone());
    ok!(g, &keeper, &[], Payload::StockReceived(stock("R-1", "G-SOAP", "", 10, pb::StockSource::Subsidy, "")));
    ok!(g, &admin, &[], Payload::ActorRevoked(pb::ActorRevoked { actor_id: keeper.id.clone(), reason: "离任".into() }));
    assert_rejects!(
        g,
        &keeper,
        &[],
        Payload::StockReceived(stock("R-2", "G-SOAP", "", 10, pb::StockSource::Subsidy, "")),
        Rejection::KeyRevoked { .. }
    );
    assert_rejects!(
        g,
        &admin,
        &[],
        Payload::ActorRevoked(pb::ActorRevoked { actor_id: keeper.id.clone(), reason: "again".into() }),
        Rejection::KeyRevoked { .. }
    );
    assert_rejects!(
        g,
        &township,
        &[],
        Payload::ActorRevoked(pb::ActorRevoked { actor_id: township.id.clone(), reason: "x".into() }),
        Rejection::CannotRevokeTownship
    );
    // An admin cannot revoke an admin.
    assert_rejects!(
        g,
        &admin,
        &[],
        Payload::ActorRevoked(pb::ActorRevoked { actor_id: admin.id.clone(), reason: "x".into() }),
        Rejection::RoleNotAllowed { .. }
    );
    verify_ledger(&g.w.records, &checkpoint_of(&g.w.records), jifen_ledger::verify::SignatureMode::Strict)
        .expect("the keeper's earlier receipt still verifies");
}

#[test]
fn a_rotated_key_is_superseded_and_the_new_one_signs() {
    let mut g = given();
    let keeper = g.keeper();
    let new = ActorKey { key: ActorKey::derive(2, "keeper-new", None).key, ..keeper.clone() };
    ok!(g, &keeper, &[], Payload::ActorKeyRotated(pb::ActorKeyRotated { actor_id: keeper.id.clone(), new_public_key: new.public() }));
    assert_rejects!(
        g,
        &keeper,
        &[],
        Payload::StockReceived(stock("R-1", "G-SOAP", "", 10, pb::StockSource::Subsidy, "")),
        Rejection::KeySuperseded { .. }
    );
    ok!(g, &new, &[], Payload::StockReceived(stock("R-1", "G-SOAP", "", 10, pb::StockSource::Subsidy, "")));
    // A panel member cannot rotate the keeper's key; the admin can.
    let p = g.panel(0);
    let newer = ActorKey::derive(3, "keeper-newer", None);
    assert_rejects!(
        g,
        &p,
        &[],
        Payload::ActorKeyRotated(pb::ActorKeyRotated { actor_id: keeper.id.clone(), new_public_key: newer.public() }),
        Rejection::RoleNotAllowed { .. }
    );
    let admin = g.admin();
    ok!(g, &admin, &[], Payload::ActorKeyRotated(pb::ActorKeyRotated { actor_id: keeper.id.clone(), new_public_key: newer.public() }));
}

#[test]
fn signatures_count_only_within_the_actors_term() {
    let mut g = given();
    let admin = g.admin();
    let later = ActorKey::derive(4, "panel-later", None);
    let over = ActorKey::derive(4, "panel-over", None);
    let now = g.w.now;
    let p = g.enrol(&later, &[pb::Role::Panel], now + 30 * DAY, 0);
    ok!(g, &admin, &[], p);
    let p = g.enrol(&over, &[pb::Role::Panel], 0, now + HOUR);
    ok!(g, &admin, &[], p);
    let s = g.score("H0004", "B01", 2);
    assert_rejects!(g, &later, &[], Payload::ScoreRecorded(s.clone()), Rejection::OutsideTerm { .. });
    ok!(g, &over, &[], Payload::ScoreRecorded(s));
    g.w.advance_to(now + 2 * HOUR);
    let s = g.score("H0004", "B01", 2);
    assert_rejects!(g, &over, &[], Payload::ScoreRecorded(s), Rejection::OutsideTerm { .. });
}

// ---- rules -----------------------------------------------------------------------------------

#[test]
fn rulebooks_are_adopted_in_order_by_a_valid_congress_and_never_retroactively() {
    let mut g = given();
    let admin = g.admin();
    let panel = g.panel(0);
    assert_rejects!(
        g,
        &admin,
        &[],
        Payload::RulebookAdopted(rulebook(3, "2025-03-01", "2025-01-01")),
        Rejection::RulebookVersion { expected: 2, got: 3 }
    );
    assert_rejects!(
        g,
        &admin,
        &[],
        Payload::RulebookAdopted(rulebook(2, "2024-12-31", "2025-01-01")),
        Rejection::RulebookRetroactive { .. }
    );
    assert_rejects!(g, &panel, &[], Payload::RulebookAdopted(rulebook(2, "2025-03-01", "2025-01-01")), Rejection::RoleNotAllowed { .. });
    let mut thin = rulebook(2, "2025-03-01", "2025-01-01");
    thin.resolution.as_mut().unwrap().attendance = 20;
    thin.resolution.as_mut().unwrap().votes_for = 19;
    thin.resolution.as_mut().unwrap().votes_against = 1;
    thin.resolution.as_mut().unwrap().abstentions = 0;
    assert_rejects!(g, &admin, &[], Payload::RulebookAdopted(thin), Rejection::CongressResolution(_));
    let mut split = rulebook(2, "2025-03-01", "2025-01-01");
    split.resolution.as_mut().unwrap().votes_for = 15;
    split.resolution.as_mut().unwrap().votes_against = 15;
    assert_rejects!(g, &admin, &[], Payload::RulebookAdopted(split), Rejection::CongressResolution(_));
    let mut none = rulebook(2, "2025-03-01", "2025-01-01");
    none.resolution = None;
    assert_rejects!(g, &admin, &[], Payload::RulebookAdopted(none), Rejection::CongressResolution(_));
    let mut future_meeting = rulebook(2, "2025-03-01", "2025-02-01");
    future_meeting.effective_from = "2025-03-01".into();
    assert_rejects!(g, &admin, &[], Payload::RulebookAdopted(future_meeting), Rejection::CongressResolution(_));
    let mut bad_item = rulebook(2, "2025-03-01", "2025-01-01");
    bad_item.items[10].max_points = 3; // a deduction with a positive value
    assert_rejects!(g, &admin, &[], Payload::RulebookAdopted(bad_item), Rejection::InvalidField { field: "items.points", .. });
    let mut dup = rulebook(2, "2025-03-01", "2025-01-01");
    dup.items[1].code = "B01".into();
    assert_rejects!(g, &admin, &[], Payload::RulebookAdopted(dup), Rejection::InvalidField { field: "items.code", .. });
    let mut q0 = rulebook(2, "2025-03-01", "2025-01-01");
    q0.score_quorum = 0;
    assert_rejects!(g, &admin, &[], Payload::RulebookAdopted(q0), Rejection::InvalidField { field: "score_quorum", .. });
    ok!(g, &admin, &[], Payload::RulebookAdopted(rulebook(2, "2025-03-01", "2025-01-01")));
    assert_eq!(g.w.state.rulebooks().len(), 2);
}

#[test]
fn the_rulebook_in_force_on_the_day_of_the_act_governs_it() {
    let mut g = given();
    let admin = g.admin();
    let mut v2 = rulebook(2, "2025-01-10", "2025-01-01");
    v2.items[0].max_points = 8;
    ok!(g, &admin, &[], Payload::RulebookAdopted(v2));
    g.w.advance_to(Date::parse("d", "2025-01-12").unwrap().start_micros() + 8 * HOUR);
    let p = g.panel(2);
    // An act of 1 January is judged by version 1 (max 5) ...
    let mut old = g.score("H0004", "B01", 5);
    old.occurred_on = "2025-01-01".into();
    ok!(g, &p, &[], Payload::ScoreRecorded(old.clone()));
    let mut wrong = g.score("H0004", "B01", 2);
    wrong.occurred_on = "2025-01-01".into();
    wrong.rulebook_version = 2;
    assert_rejects!(g, &p, &[], Payload::ScoreRecorded(wrong), Rejection::WrongRulebookVersion { in_force: 1, .. });
    // ... and an act of today by version 2 (max 8).
    let mut new = g.score("H0001", "B01", 8);
    new.rulebook_version = 2;
    ok!(g, &p, &[], Payload::ScoreRecorded(new));
    let mut before = g.score("H0004", "B02", 1);
    before.occurred_on = "2024-12-30".into();
    assert_rejects!(g, &p, &[], Payload::ScoreRecorded(before), Rejection::NoRulebook { .. });
}

// ---- households ------------------------------------------------------------------------------

#[test]
fn households_and_members_are_registered_once() {
    let mut g = given();
    let admin = g.admin();
    let reg = |id: &str, members: &[&str]| {
        Payload::HouseholdRegistered(pb::HouseholdRegistered {
            household_id: id.into(),
            group: "G01".into(),
            residency: pb::Residency::Registered as i32,
            members: members.iter().map(|m| pb::Member { member_id: (*m).into(), identity_commitment: vec![] }).collect(),
        })
    };
    assert_rejects!(g, &admin, &[], reg("H0001", &["H0009-01"]), Rejection::Duplicate { kind: "household", .. });
    assert_rejects!(g, &admin, &[], reg("H0009", &["H0001-01"]), Rejection::Duplicate { kind: "member", .. });
    assert_rejects!(g, &admin, &[], reg("H0009", &[]), Rejection::InvalidField { field: "members", .. });
    assert_rejects!(g, &admin, &[], reg("张三家", &["H0009-01"]), Rejection::Id(_));
    let mut nores = pb::HouseholdRegistered {
        household_id: "H0009".into(),
        group: "G01".into(),
        residency: 0,
        members: vec![pb::Member { member_id: "H0009-01".into(), identity_commitment: vec![1, 2] }],
    };
    assert_rejects!(g, &admin, &[], Payload::HouseholdRegistered(nores.clone()), Rejection::InvalidField { field: "residency", .. });
    nores.residency = pb::Residency::NonRegisteredResident as i32;
    assert_rejects!(
        g,
        &admin,
        &[],
        Payload::HouseholdRegistered(nores.clone()),
        Rejection::InvalidField { field: "identity_commitment", .. }
    );
    nores.members[0].identity_commitment = vec![9; 32];
    ok!(g, &admin, &[], Payload::HouseholdRegistered(nores));
    ok!(
        g,
        &admin,
        &[],
        Payload::MemberAdded(pb::MemberAdded {
            household_id: "H0009".into(),
            member: Some(pb::Member { member_id: "H0009-02".into(), identity_commitment: vec![] })
        })
    );
    assert_rejects!(
        g,
        &admin,
        &[],
        Payload::MemberAdded(pb::MemberAdded {
            household_id: "H0008".into(),
            member: Some(pb::Member { member_id: "H0008-02".into(), identity_commitment: vec![] })
        }),
        Rejection::Unknown { kind: "household", .. }
    );
    let removed = |h: &str, m: &str| {
        Payload::MemberRemoved(pb::MemberRemoved {
            household_id: h.into(),
            member_id: m.into(),
            reason: pb::MemberRemovalReason::MovedAway as i32,
        })
    };
    assert_rejects!(g, &admin, &[], removed("H0009", "H0001-01"), Rejection::NotAMember { .. });
    ok!(g, &admin, &[], removed("H0009", "H0009-02"));
    assert_rejects!(g, &admin, &[], removed("H0009", "H0009-01"), Rejection::LastMember(_));
}

#[test]
fn split_carries_points_and_merge_carries_the_balance_and_closes() {
    let mut g = given();
    g.final_points("H0004", 5);
    let admin = g.admin();
    let split = |points: i64, members: &[&str]| {
        Payload::HouseholdSplit(pb::HouseholdSplit {
            from_household_id: "H0004".into(),
            new_household_id: "H0005".into(),
            group: "G01".into(),
            residency: pb::Residency::Registered as i32,
            member_ids: members.iter().map(|m| (*m).to_string()).collect(),
            points_transferred: points,
        })
    };
    assert_rejects!(g, &admin, &[], split(6, &["H0004-02"]), Rejection::CarryOverBalance { available: 5, .. });
    assert_rejects!(g, &admin, &[], split(1, &["H0004-01", "H0004-02"]), Rejection::LastMember(_));
    assert_rejects!(g, &admin, &[], split(1, &["H0003-01"]), Rejection::NotAMember { .. });
    ok!(g, &admin, &[], split(2, &["H0004-02"]));
    assert_eq!((g.w.state.balances().available("H0004"), g.w.state.balances().available("H0005")), (3, 2));
    let merged = |from: &str, into: &str| {
        Payload::HouseholdMerged(pb::HouseholdMerged { from_household_id: from.into(), into_household_id: into.into() })
    };
    assert_rejects!(g, &admin, &[], merged("H0005", "H0005"), Rejection::InvalidField { .. });
    ok!(g, &admin, &[], merged("H0005", "H0004"));
    assert_eq!(g.w.state.balances().available("H0004"), 5);
    assert!(g.w.state.household("H0004").unwrap().members.contains("H0004-02"));
    let p = g.panel(2);
    let s = g.score("H0005", "B01", 1);
    assert_rejects!(g, &p, &[], Payload::ScoreRecorded(s), Rejection::HouseholdClosed(_));
    assert_rejects!(g, &admin, &[], merged("H0005", "H0004"), Rejection::HouseholdClosed(_));
}

#[test]
fn a_household_with_pending_scores_cannot_be_closed() {
    let mut g = given();
    g.scored("H0004", "B01", 2);
    let admin = g.admin();
    assert_rejects!(
        g,
        &admin,
        &[],
        Payload::HouseholdClosed(pb::HouseholdClosed { household_id: "H0004".into(), reason: "迁出".into() }),
        Rejection::InvalidField { field: "household_id", .. }
    );
    ok!(g, &admin, &[], Payload::HouseholdClosed(pb::HouseholdClosed { household_id: "H0003".into(), reason: "迁出".into() }));
}

// ---- scoring ---------------------------------------------------------------------------------

#[test]
fn panel_members_score_within_the_items_rules() {
    let mut g = given();
    let p = g.panel(2);
    let keeper = g.keeper();
    let s = g.score("H0004", "B01", 3);
    assert_rejects!(g, &keeper, &[], Payload::ScoreRecorded(s.clone()), Rejection::RoleNotAllowed { .. });
    ok!(g, &p, &[], Payload::ScoreRecorded(s.clone()));
    assert_rejects!(g, &p, &[], Payload::ScoreRecorded(s), Rejection::Duplicate { kind: "entry", .. });
    let s = g.score("H0004", "B01", 6);
    assert_rejects!(g, &p, &[], Payload::ScoreRecorded(s), Rejection::PointsOutOfRange { min: 1, max: 5, got: 6, .. });
    let s = g.score("H0004", "D02", 2);
    assert_rejects!(g, &p, &[], Payload::ScoreRecorded(s), Rejection::PointsOutOfRange { .. });
    let s = g.score("H0004", "X99", 2);
    assert_rejects!(g, &p, &[], Payload::ScoreRecorded(s), Rejection::Unknown { kind: "item", .. });
    let s = g.score("H0004", "C01", 10);
    assert_rejects!(g, &p, &[], Payload::ScoreRecorded(s.clone()), Rejection::EvidenceRequired { .. });
    ok!(g, &p, &[], Payload::ScoreRecorded(pb::ScoreRecorded { evidence_hashes: vec![vec![1; 32]], ..s }));
    let s = g.score("H0004", "C01", 10);
    assert_rejects!(
        g,
        &p,
        &[],
        Payload::ScoreRecorded(pb::ScoreRecorded { evidence_hashes: vec![vec![1; 31]], ..s }),
        Rejection::InvalidField { field: "evidence_hashes", .. }
    );
    let mut future = g.score("H0004", "B02", 1);
    future.occurred_on = Date::of_micros(g.w.now).add_days(1).to_string();
    assert_rejects!(g, &p, &[], Payload::ScoreRecorded(future), Rejection::ActInFuture { .. });
    let mut nomember = g.score("H0004", "B02", 1);
    nomember.member_id = "H0001-01".into();
    assert_rejects!(g, &p, &[], Payload::ScoreRecorded(nomember), Rejection::NotAMember { .. });
    let mut nosource = g.score("H0004", "B02", 1);
    nosource.source = 0;
    assert_rejects!(g, &p, &[], Payload::ScoreRecorded(nosource), Rejection::InvalidField { field: "source", .. });
    ok!(g, &p, &[], Payload::ScoreRecorded(g.score("H0004", "D02", -2)));
}

#[test]
fn monthly_caps_hold_per_household_and_item() {
    let mut g = given();
    let p = g.panel(2);
    // B01 caps at 15 per month.
    for pts in [5, 5, 5] {
        ok!(g, &p, &[], Payload::ScoreRecorded(g.score("H0004", "B01", pts)));
    }
    let s = g.score("H0004", "B01", 1);
    assert_rejects!(g, &p, &[], Payload::ScoreRecorded(s), Rejection::CapExceeded { cap: 15, already: 15, got: 1, .. });
    ok!(g, &p, &[], Payload::ScoreRecorded(g.score("H0002", "B01", 5)));
}

/// A state opened from a snapshot (serialised and read back, as a server's cold start does)
/// holds the caps used so far: a score or a correction past the cap is still refused. Its
/// interned ids are not in the snapshot; the caps must not depend on them.
#[test]
fn caps_hold_across_a_snapshot() {
    let mut g = given();
    let p = g.panel(2);
    // B01 caps at 15 per month.
    let first = g.scored("H0004", "B01", 1);
    for pts in [5, 5, 4] {
        ok!(g, &p, &[], Payload::ScoreRecorded(g.score("H0004", "B01", pts)));
    }
    let bytes = postcard::to_allocvec(&g.w.state).expect("serialises between requests");
    g.w.state = postcard::from_bytes(&bytes).expect("reads back");
    let s = g.score("H0004", "B01", 1);
    assert_rejects!(g, &p, &[], Payload::ScoreRecorded(s), Rejection::CapExceeded { cap: 15, already: 15, got: 1, .. });
    let raise = Payload::ScoreCorrected(pb::ScoreCorrected {
        entry_id: first.clone(),
        correction: Some(pb::score_corrected::Correction::NewPoints(2)),
        reason: "复核".into(),
    });
    assert_rejects!(g, &p, &[], raise, Rejection::CapExceeded { cap: 15, already: 15, got: 1, .. });
    // Another household's cap is its own.
    ok!(g, &p, &[], Payload::ScoreRecorded(g.score("H0002", "B01", 5)));
}

#[test]
fn nobody_scores_or_judges_their_own_household() {
    let mut g = given();
    let (p0, p1) = (g.panel(0), g.panel(1));
    let s = g.score("H0001", "B01", 2);
    assert_rejects!(g, &p0, &[], Payload::ScoreRecorded(s.clone()), Rejection::SelfScoring { .. });
    // Nor as a co-signer.
    assert_rejects!(g, &p1, &[&p0], Payload::ScoreRecorded(s.clone()), Rejection::SelfScoring { .. });
    ok!(g, &p1, &[], Payload::ScoreRecorded(s));
}

#[test]
fn a_score_quorum_requires_that_many_panel_signatures() {
    let mut g = given();
    let admin = g.admin();
    let mut v2 = rulebook(2, "2025-01-02", "2025-01-01");
    v2.score_quorum = 2;
    ok!(g, &admin, &[], Payload::RulebookAdopted(v2));
    g.w.advance_to(Date::parse("d", "2025-01-02").unwrap().start_micros() + 8 * HOUR);
    let (p1, p2, sup) = (g.panel(1), g.panel(2), g.sup(0));
    let mut s = g.score("H0004", "B01", 2);
    s.rulebook_version = 2;
    assert_rejects!(g, &p1, &[], Payload::ScoreRecorded(s.clone()), Rejection::QuorumNotMet { needed: 2, got: 1, .. });
    assert_rejects!(g, &p1, &[&sup], Payload::ScoreRecorded(s.clone()), Rejection::QuorumNotMet { needed: 2, got: 1, .. });
    ok!(g, &p1, &[&p2], Payload::ScoreRecorded(s));
}

#[test]
fn self_declarations_are_made_for_ones_own_household_and_scored_once() {
    let mut g = given();
    let (v4, v3, p) = (g.villager(3), g.villager(2), g.panel(2));
    let claim = |id: &str, h: &str, item: &str, pts: i64, day: &str| {
        Payload::PointsClaimed(pb::PointsClaimed {
            claim_id: id.into(),
            household_id: h.into(),
            member_id: String::new(),
            item_code: item.into(),
            points: pts,
            occurred_on: day.into(),
            evidence_hashes: vec![],
        })
    };
    let today = g.today();
    assert_rejects!(g, &v3, &[], claim("C1", "H0004", "B01", 2, &today), Rejection::RoleNotAllowed { .. });
    assert_rejects!(g, &v4, &[], claim("C1", "H0004", "D02", -2, &today), Rejection::NotClaimable { .. });
    assert_rejects!(g, &v4, &[], claim("C1", "H0004", "B01", 9, &today), Rejection::PointsOutOfRange { .. });
    ok!(g, &v4, &[], claim("C1", "H0004", "B01", 2, &today));
    assert_rejects!(g, &v4, &[], claim("C1", "H0004", "B01", 2, &today), Rejection::Duplicate { kind: "claim", .. });
    let admin = g.admin();
    ok!(g, &admin, &[], claim("C2", "H0002", "B03", 2, &today));
    let from_claim = |g: &mut Given, claim_id: &str, h: &str, item: &str| pb::ScoreRecorded {
        source: pb::ScoreSource::SelfDeclaration as i32,
        claim_id: claim_id.into(),
        ..g.score(h, item, 2)
    };
    let s = from_claim(&mut g, "C1", "H0003", "B01");
    let p1 = g.panel(1);
    assert_rejects!(g, &p1, &[], Payload::ScoreRecorded(s), Rejection::ClaimMismatch { reason: "household differs", .. });
    let s = from_claim(&mut g, "C1", "H0004", "B02");
    assert_rejects!(g, &p, &[], Payload::ScoreRecorded(s), Rejection::ClaimMismatch { reason: "item differs", .. });
    let s = from_claim(&mut g, "C9", "H0004", "B01");
    assert_rejects!(g, &p, &[], Payload::ScoreRecorded(s), Rejection::Unknown { kind: "claim", .. });
    let s = from_claim(&mut g, "C1", "H0004", "B01");
    ok!(g, &p, &[], Payload::ScoreRecorded(s));
    let s = from_claim(&mut g, "C1", "H0004", "B01");
    assert_rejects!(g, &p, &[], Payload::ScoreRecorded(s), Rejection::ClaimAlreadyScored(_));
    let s = pb::ScoreRecorded { claim_id: "C2".into(), ..g.score("H0002", "B03", 2) };
    assert_rejects!(g, &p, &[], Payload::ScoreRecorded(s), Rejection::InvalidField { field: "claim_id", .. });
}

#[test]
fn corrections_change_live_entries_only() {
    let mut g = given();
    let p = g.panel(2);
    let e = g.scored("H0004", "B01", 4);
    let fix = |e: &str, c: pb::score_corrected::Correction| {
        Payload::ScoreCorrected(pb::ScoreCorrected { entry_id: e.into(), correction: Some(c), reason: "复核".into() })
    };
    use pb::score_corrected::Correction::{NewPoints, Void};
    assert_rejects!(g, &p, &[], fix(&e, NewPoints(9)), Rejection::PointsOutOfRange { .. });
    assert_rejects!(g, &p, &[], fix("E404", NewPoints(1)), Rejection::Unknown { kind: "entry", .. });
    assert_rejects!(g, &p, &[], fix(&e, Void(false)), Rejection::InvalidField { field: "correction", .. });
    let p0 = g.panel(0);
    let e1 = g.scored("H0001", "B01", 2);
    assert_rejects!(g, &p0, &[], fix(&e1, NewPoints(1)), Rejection::SelfScoring { .. });
    ok!(g, &p, &[], fix(&e, NewPoints(2)));
    assert_eq!(g.w.state.entry(&e).unwrap().points, 2);
    ok!(g, &p, &[], fix(&e, Void(true)));
    assert_rejects!(g, &p, &[], fix(&e, NewPoints(1)), Rejection::EntryVoid(_));
}

// ---- publication, objections, settlement ----------------------------------------------------

#[test]
fn a_publication_covers_unpublished_entries_of_its_period_for_the_required_window() {
    let mut g = given();
    let admin = g.admin();
    let e = g.scored("H0004", "B01", 3);
    let open = |id: &str, period: &str, entries: &[&str], start: i64, days: i64| {
        Payload::PublicationOpened(pb::PublicationOpened {
            publication_id: id.into(),
            period: period.into(),
            entry_ids: entries.iter().map(|e| (*e).into()).collect(),
            window_start: start,
            window_end: start + days * DAY,
        })
    };
    let now = g.w.now;
    assert_rejects!(g, &admin, &[], open("P1", "2025-02", &[&e], now, 7), Rejection::EntryOutsidePeriod { .. });
    assert_rejects!(g, &admin, &[], open("P1", "2025-01", &[&e], now + 60_000_000, 6), Rejection::WindowTooShort { min_days: 7, .. });
    assert_rejects!(g, &admin, &[], open("P1", "2025-01", &[&e], now - HOUR, 7), Rejection::WindowInPast);
    assert_rejects!(g, &admin, &[], open("P1", "2025-01", &[], now + 60_000_000, 7), Rejection::InvalidField { field: "entry_ids", .. });
    assert_rejects!(
        g,
        &admin,
        &[],
        open("P1", "2025-01", &[&e, &e], now + 60_000_000, 7),
        Rejection::InvalidField { field: "entry_ids", .. }
    );
    assert_rejects!(g, &admin, &[], open("P1", "2025-1", &[&e], now + 60_000_000, 7), Rejection::Time(_));
    let p = g.panel(2);
    assert_rejects!(g, &p, &[], open("P1", "2025-01", &[&e], g.w.now, 7), Rejection::RoleNotAllowed { .. });
    g.open_publication("P1", "2025-01", std::slice::from_ref(&e));
    let now = g.w.now;
    assert_rejects!(g, &admin, &[], open("P1", "2025-01", &[&e], now, 7), Rejection::Duplicate { kind: "publication", .. });
    assert_rejects!(g, &admin, &[], open("P2", "2025-01", &[&e], now, 7), Rejection::EntryAlreadyPublished { .. });
}

#[test]
fn objections_are_filed_within_the_window_one_at_a_time_per_entry() {
    let mut g = given();
    let e = g.scored("H0004", "B01", 3);
    let other = g.scored("H0002", "B01", 3);
    let start = g.open_publication("P1", "2025-01", std::slice::from_ref(&e));
    let (v, keeper, admin) = (g.villager(3), g.keeper(), g.admin());
    assert_rejects!(g, &keeper, &[], Payload::ObjectionFiled(g.objection("O1", "P1", &e)), Rejection::RoleNotAllowed { .. });
    assert_rejects!(g, &v, &[], Payload::ObjectionFiled(g.objection("O1", "P1", &other)), Rejection::EntryNotPublished { .. });
    assert_rejects!(g, &v, &[], Payload::ObjectionFiled(g.objection("O1", "P9", &e)), Rejection::Unknown { kind: "publication", .. });
    assert_rejects!(
        g,
        &v,
        &[],
        Payload::ObjectionFiled(pb::ObjectionFiled { objector: "H0404".into(), ..g.objection("O1", "P1", &e) }),
        Rejection::Unknown { .. }
    );
    assert_rejects!(
        g,
        &v,
        &[],
        Payload::ObjectionFiled(pb::ObjectionFiled { reason: " ".into(), ..g.objection("O1", "P1", &e) }),
        Rejection::InvalidField { field: "reason", .. }
    );
    ok!(g, &v, &[], Payload::ObjectionFiled(g.objection("O1", "P1", &e)));
    assert_rejects!(g, &admin, &[], Payload::ObjectionFiled(g.objection("O1", "P1", &e)), Rejection::Duplicate { kind: "objection", .. });
    assert_rejects!(g, &admin, &[], Payload::ObjectionFiled(g.objection("O2", "P1", &e)), Rejection::EntryUnderObjection(_));
    // Decide it, then a late objection is outside the window.
    let (p, s) = (g.panel(2), g.sup(0));
    ok!(g, &p, &[&s], decided("O1", pb::ObjectionOutcome::Dismissed, None));
    g.w.advance_to(start + 7 * DAY);
    assert_rejects!(g, &admin, &[], Payload::ObjectionFiled(g.objection("O2", "P1", &e)), Rejection::OutsideWindow { .. });
}

#[test]
fn decisions_need_a_supervisor_and_upheld_ones_carry_their_correction() {
    let mut g = given();
    let e = g.scored("H0004", "B01", 3);
    let e1 = g.scored("H0001", "B01", 3);
    g.open_publication("P1", "2025-01", &[e.clone(), e1.clone()]);
    let v = g.villager(3);
    ok!(g, &v, &[], Payload::ObjectionFiled(g.objection("O1", "P1", &e)));
    ok!(g, &v, &[], Payload::ObjectionFiled(g.objection("O2", "P1", &e1)));
    let (p0, p2, s0, admin) = (g.panel(0), g.panel(2), g.sup(0), g.admin());
    use pb::correction::Change::{NewPoints, Void};
    use pb::ObjectionOutcome::{Dismissed, Upheld};
    assert_rejects!(g, &p2, &[], decided("O1", Upheld, Some(NewPoints(1))), Rejection::QuorumNotMet { needed: 1, got: 0, .. });
    assert_rejects!(g, &admin, &[&s0], decided("O1", Upheld, Some(NewPoints(1))), Rejection::RoleNotAllowed { .. });
    assert_rejects!(g, &p2, &[&s0], decided("O1", Upheld, None), Rejection::CorrectionRequired);
    assert_rejects!(g, &p2, &[&s0], decided("O1", Dismissed, Some(NewPoints(1))), Rejection::CorrectionNotAllowed);
    assert_rejects!(g, &p2, &[&s0], decided("O1", Upheld, Some(NewPoints(7))), Rejection::PointsOutOfRange { .. });
    assert_rejects!(g, &p2, &[&s0], decided("O9", Dismissed, None), Rejection::Unknown { kind: "objection", .. });
    assert_rejects!(
        g,
        &p2,
        &[&s0],
        decided("O1", pb::ObjectionOutcome::Unspecified, None),
        Rejection::InvalidField { field: "outcome", .. }
    );
    assert_rejects!(g, &p0, &[&s0], decided("O2", Dismissed, None), Rejection::SelfScoring { .. });
    ok!(g, &p2, &[&s0], decided("O1", Upheld, Some(NewPoints(1))));
    assert_eq!(g.w.state.entry(&e).unwrap().points, 1);
    assert_rejects!(g, &p2, &[&s0], decided("O1", Dismissed, None), Rejection::AlreadyDecided(_));
    ok!(g, &p2, &[&s0], decided("O2", Upheld, Some(Void(true))));
    assert!(g.w.state.entry(&e1).unwrap().void);
}

#[test]
fn closing_waits_for_the_window_and_every_decision_then_makes_points_final() {
    let mut g = given();
    let e = g.scored("H0004", "B01", 3);
    let start = g.open_publication("P1", "2025-01", std::slice::from_ref(&e));
    let (admin, v) = (g.admin(), g.villager(3));
    let close = Payload::PublicationClosed(pb::PublicationClosed { publication_id: "P1".into() });
    assert_rejects!(g, &admin, &[], close.clone(), Rejection::WindowNotOver { .. });
    ok!(g, &v, &[], Payload::ObjectionFiled(g.objection("O1", "P1", &e)));
    g.w.advance_to(start + 7 * DAY);
    assert_rejects!(g, &admin, &[], close.clone(), Rejection::ObjectionsPending(1));
    let (p, s) = (g.panel(2), g.sup(1));
    ok!(g, &p, &[&s], decided("O1", pb::ObjectionOutcome::Dismissed, None));
    assert_eq!(g.w.state.balances().available("H0004"), 0, "pending points are not yet available");
    ok!(g, &admin, &[], close.clone());
    assert_eq!(g.w.state.balances().available("H0004"), 3);
    assert_rejects!(g, &admin, &[], close, Rejection::PublicationClosed(_));
    // A correction after the close books the difference.
    ok!(
        g,
        &p,
        &[],
        Payload::ScoreCorrected(pb::ScoreCorrected {
            entry_id: e,
            correction: Some(pb::score_corrected::Correction::NewPoints(1)),
            reason: "复核".into()
        })
    );
    assert_eq!(g.w.state.balances().available("H0004"), 1);
}

#[test]
fn settlement_needs_a_closed_publication_supervisors_and_the_right_digest() {
    let mut g = given();
    let e = g.scored("H0004", "B01", 3);
    let e2 = g.scored("H0002", "B02", 2);
    let start = g.open_publication("P1", "2025-01", std::slice::from_ref(&e));
    let (admin, s0, s1) = (g.admin(), g.sup(0), g.sup(1));
    assert_rejects!(g, &admin, &[&s0, &s1], Payload::PeriodSettled(g.settlement("2025-01", "P1")), Rejection::PublicationOpen(_));
    g.close("P1", start);
    assert_rejects!(
        g,
        &admin,
        &[&s0, &s1],
        Payload::PeriodSettled(g.settlement("2025-01", "P1")),
        Rejection::UnpublishedEntries { count: 1, .. }
    );
    let start = g.open_publication("P2", "2025-01", &[e2]);
    g.close("P2", start);
    assert_rejects!(
        g,
        &admin,
        &[&s0],
        Payload::PeriodSettled(g.settlement("2025-01", "P2")),
        Rejection::QuorumNotMet { needed: 2, got: 1, .. }
    );
    assert_rejects!(g, &admin, &[&s0, &s1], Payload::PeriodSettled(g.settlement("2025-01", "P2")), Rejection::PeriodNotOver { .. });
    g.w.advance_to(at("2025-02-01", 0));
    let mut wrong = g.settlement("2025-01", "P2");
    wrong.balance_digest[0] ^= 1;
    assert_rejects!(g, &admin, &[&s0, &s1], Payload::PeriodSettled(wrong), Rejection::SettlementMismatch { field: "balance_digest", .. });
    let mut wrong = g.settlement("2025-01", "P2");
    wrong.period_points += 1;
    assert_rejects!(g, &admin, &[&s0, &s1], Payload::PeriodSettled(wrong), Rejection::SettlementMismatch { field: "period_points", .. });
    let mut wrong = g.settlement("2025-01", "P2");
    wrong.households = 3;
    assert_rejects!(g, &admin, &[&s0, &s1], Payload::PeriodSettled(wrong), Rejection::SettlementMismatch { field: "households", .. });
    let p = g.panel(2);
    assert_rejects!(g, &p, &[&s0, &s1], Payload::PeriodSettled(g.settlement("2025-01", "P2")), Rejection::RoleNotAllowed { .. });
    ok!(g, &admin, &[&s0, &s1], Payload::PeriodSettled(g.settlement("2025-01", "P2")));
    assert_rejects!(g, &admin, &[&s0, &s1], Payload::PeriodSettled(g.settlement("2025-01", "P2")), Rejection::PeriodSettled(_));
    // The settled month takes no more scores or corrections.
    let s = pb::ScoreRecorded { occurred_on: "2025-01-20".into(), ..g.score("H0004", "B02", 1) };
    assert_rejects!(g, &p, &[], Payload::ScoreRecorded(s), Rejection::PeriodSettled(_));
    assert_rejects!(
        g,
        &p,
        &[],
        Payload::ScoreCorrected(pb::ScoreCorrected {
            entry_id: e,
            correction: Some(pb::score_corrected::Correction::Void(true)),
            reason: "x".into()
        }),
        Rejection::PeriodSettled(_)
    );
}

// ---- supermarket -----------------------------------------------------------------------------

fn redemption(id: &str, h: &str, lines: &[(&str, u32)], total: i64) -> Payload {
    Payload::RedemptionRecorded(pb::RedemptionRecorded {
        redemption_id: id.into(),
        household_id: h.into(),
        lines: lines.iter().map(|(g, q)| pb::RedemptionLine { goods_code: (*g).into(), quantity: *q }).collect(),
        total_points: total,
    })
}

#[test]
fn redemptions_never_exceed_available_points_or_stock() {
    let mut g = given();
    g.final_points("H0004", 5);
    let (k, admin) = (g.keeper(), g.admin());
    // G-SOAP costs 3, G-OIL 40 (fixture prices); stock G-OIL 40.
    assert_rejects!(g, &k, &[], redemption("R1", "H0004", &[("G-SOAP", 2)], 6), Rejection::Overdraft { available: 5, requested: 6, .. });
    assert_rejects!(g, &k, &[], redemption("R1", "H0004", &[("G-SOAP", 1)], 4), Rejection::TotalMismatch { expected: 3, got: 4 });
    assert_rejects!(g, &k, &[], redemption("R1", "H0004", &[("G-NONE", 1)], 3), Rejection::Unknown { kind: "goods", .. });
    assert_rejects!(
        g,
        &k,
        &[],
        redemption("R1", "H0004", &[("G-OIL", 41)], 1640),
        Rejection::InsufficientStock { in_stock: 40, requested: 41, .. }
    );
    assert_rejects!(g, &k, &[], redemption("R1", "H0004", &[("G-SOAP", 0)], 0), Rejection::InvalidField { field: "lines.quantity", .. });
    assert_rejects!(
        g,
        &k,
        &[],
        redemption("R1", "H0004", &[("G-SOAP", 1), ("G-SOAP", 1)], 6),
        Rejection::InvalidField { field: "lines", .. }
    );
    assert_rejects!(g, &admin, &[], redemption("R1", "H0004", &[("G-SOAP", 1)], 3), Rejection::RoleNotAllowed { .. });
    ok!(g, &k, &[], Payload::StockReceived(stock("R-9", "G-NEW", "暖水瓶", 5, pb::StockSource::Collective, "")));
    assert_rejects!(g, &k, &[], redemption("R1", "H0004", &[("G-NEW", 1)], 3), Rejection::NoPrice(_));
    ok!(g, &k, &[], redemption("R1", "H0004", &[("G-SOAP", 1)], 3));
    assert_eq!(g.w.state.balances().available("H0004"), 2);
    assert_rejects!(g, &k, &[], redemption("R1", "H0004", &[("G-SOAP", 1)], 3), Rejection::Duplicate { kind: "redemption", .. });
    let rev = |id: &str| Payload::RedemptionReversed(pb::RedemptionReversed { redemption_id: id.into(), reason: "退货".into() });
    assert_rejects!(g, &k, &[], rev("R404"), Rejection::Unknown { kind: "redemption", .. });
    ok!(g, &k, &[], rev("R1"));
    assert_eq!(g.w.state.balances().available("H0004"), 5);
    assert_rejects!(g, &k, &[], rev("R1"), Rejection::AlreadyReversed(_));
    assert_eq!(g.w.state.balances().get("H0004").unwrap().ever_earned(), 5, "spending never reduces points ever earned");
}

#[test]
fn stock_and_prices_are_kept_by_the_keeper() {
    let mut g = given();
    let (k, p) = (g.keeper(), g.panel(0));
    assert_rejects!(
        g,
        &p,
        &[],
        Payload::StockReceived(stock("R-1", "G-SOAP", "", 1, pb::StockSource::Subsidy, "")),
        Rejection::RoleNotAllowed { .. }
    );
    assert_rejects!(
        g,
        &k,
        &[],
        Payload::StockReceived(stock("R-1", "G-SOAP", "", 1, pb::StockSource::Donation, "")),
        Rejection::InvalidField { field: "donor", .. }
    );
    assert_rejects!(
        g,
        &k,
        &[],
        Payload::StockReceived(stock("R-1", "G-SOAP", "", 0, pb::StockSource::Subsidy, "")),
        Rejection::InvalidField { field: "quantity", .. }
    );
    assert_rejects!(
        g,
        &k,
        &[],
        Payload::StockReceived(stock("R-1", "G-NEW", "", 1, pb::StockSource::Subsidy, "")),
        Rejection::InvalidField { field: "goods_name", .. }
    );
    assert_rejects!(
        g,
        &k,
        &[],
        Payload::StockReceived(stock("R-1", "G-SOAP", "", 1, pb::StockSource::Unspecified, "")),
        Rejection::InvalidField { field: "source", .. }
    );
    assert_rejects!(
        g,
        &k,
        &[],
        Payload::StockReceived(stock("R-2024-12-01", "G-SOAP", "", 1, pb::StockSource::Subsidy, "")),
        Rejection::Duplicate { kind: "receipt", .. }
    );
    ok!(g, &k, &[], Payload::StockReceived(stock("R-1", "G-SOAP", "", 1, pb::StockSource::Subsidy, "")));
    let prices = |g: &str, p: i64| Payload::PricesSet(pb::PricesSet { prices: vec![pb::Price { goods_code: g.into(), points: p }] });
    assert_rejects!(g, &k, &[], prices("G-NONE", 3), Rejection::Unknown { kind: "goods", .. });
    assert_rejects!(g, &k, &[], prices("G-SOAP", 0), Rejection::InvalidField { field: "prices.points", .. });
    ok!(g, &k, &[], prices("G-SOAP", 4));
}

// ---- results and supervision -----------------------------------------------------------------

#[test]
fn honours_inspections_and_surveys_are_recorded_by_their_roles() {
    let mut g = given();
    let (admin, sup, keeper) = (g.admin(), g.sup(0), g.keeper());
    let honour = |id: &str, kind: pb::HonourKind, stars: u32| {
        Payload::HonourAwarded(pb::HonourAwarded {
            honour_id: id.into(),
            household_id: "H0004".into(),
            kind: kind as i32,
            title: "星级文明户".into(),
            period: "2025".into(),
            stars,
        })
    };
    assert_rejects!(
        g,
        &admin,
        &[],
        honour("HN1", pb::HonourKind::StarCivilisedHousehold, 6),
        Rejection::InvalidField { field: "stars", .. }
    );
    assert_rejects!(g, &admin, &[], honour("HN1", pb::HonourKind::MostBeautifulFamily, 3), Rejection::InvalidField { field: "stars", .. });
    assert_rejects!(g, &keeper, &[], honour("HN1", pb::HonourKind::MostBeautifulFamily, 0), Rejection::RoleNotAllowed { .. });
    ok!(g, &admin, &[], honour("HN1", pb::HonourKind::StarCivilisedHousehold, 5));
    assert_rejects!(g, &admin, &[], honour("HN1", pb::HonourKind::MostBeautifulFamily, 0), Rejection::Duplicate { kind: "honour", .. });
    let inspection = |id: &str| {
        Payload::InspectionRecorded(pb::InspectionRecorded {
            inspection_id: id.into(),
            scope: "redemption".into(),
            outcome: pb::InspectionOutcome::IssuesFound as i32,
            findings: "台账不全".into(),
            report_hash: vec![],
        })
    };
    assert_rejects!(g, &admin, &[], inspection("I1"), Rejection::RoleNotAllowed { .. });
    ok!(g, &sup, &[], inspection("I1"));
    let auditor = g.cast.auditor.clone();
    ok!(g, &auditor, &[], inspection("I2"));
    let survey = |id: &str, period: &str, n: u32, s: u32| {
        Payload::SatisfactionSurveyRecorded(pb::SatisfactionSurveyRecorded {
            survey_id: id.into(),
            period: period.into(),
            respondents: n,
            satisfied: s,
            basically_satisfied: 1,
            dissatisfied: 1,
        })
    };
    assert_rejects!(g, &admin, &[], survey("S1", "2025-Q1", 10, 7), Rejection::InvalidField { field: "respondents", .. });
    assert_rejects!(g, &admin, &[], survey("S1", "2025-Q5", 10, 8), Rejection::Time(_));
    ok!(g, &admin, &[], survey("S1", "2025-Q1", 10, 8));
}

#[test]
fn free_text_refuses_phone_and_identity_numbers() {
    let mut g = given();
    let admin = g.admin();
    let close = |reason: &str| Payload::HouseholdClosed(pb::HouseholdClosed { household_id: "H0004".into(), reason: reason.into() });
    assert_rejects!(
        g,
        &admin,
        &[],
        close("迁出，联系电话13912345678"),
        Rejection::PersonalData { field: "reason", what: "mobile phone number" }
    );
    assert_rejects!(
        g,
        &admin,
        &[],
        close("户主身份证15060219800101123X"),
        Rejection::PersonalData { field: "reason", what: "resident identity card number" }
    );
    assert_rejects!(g, &admin, &[], close("户主身份证150602198001011234"), Rejection::PersonalData { .. });
    ok!(g, &admin, &[], close("2025年3月迁往东胜区，户内2人"));
}

// ---- expiry and the esrs aggregate ------------------------------------------------------------

#[test]
fn under_annual_expiry_available_points_reset_but_points_ever_earned_stay() {
    let mut g = given();
    let admin = g.admin();
    let mut v2 = rulebook(2, "2025-01-02", "2025-01-01");
    v2.expiry = pb::ExpiryPolicy::Annual as i32;
    ok!(g, &admin, &[], Payload::RulebookAdopted(v2));
    g.w.advance_to(Date::parse("d", "2025-01-02").unwrap().start_micros() + 8 * HOUR);
    let mut s = g.score("H0004", "B01", 4);
    s.rulebook_version = 2;
    let p = g.panel(2);
    ok!(g, &p, &[], Payload::ScoreRecorded(s.clone()));
    let start = g.open_publication("P1", "2025-01", &[s.entry_id.clone()]);
    g.close("P1", start);
    assert_eq!(g.w.state.balances().available("H0004"), 4);
    g.w.advance_to(Date::parse("d", "2026-01-05").unwrap().start_micros());
    let k = g.keeper();
    assert_rejects!(g, &k, &[], redemption("R1", "H0004", &[("G-SOAP", 1)], 3), Rejection::Overdraft { available: 0, .. });
    // The first event recorded in 2026 books the expiry.
    ok!(g, &k, &[], Payload::StockReceived(stock("R-2026-1", "G-SOAP", "", 5, pb::StockSource::Subsidy, "")));
    let b = g.w.state.balances().get("H0004").unwrap();
    assert_eq!((b.available(), b.ever_earned(), b.expired), (0, 4, 4));
}

#[test]
fn the_esrs_aggregate_is_the_same_decision_and_fold() {
    use esrs::Aggregate;
    let g = given();
    let mut state = VillageState::new();
    for r in &g.w.records {
        let events = Village::handle_command(&state, Command::new(r.body().to_vec(), r.signatures().to_vec(), r.recorded_at())).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].record(), r);
        state = Village::apply_event(state, events.into_iter().next().unwrap());
    }
    assert_eq!(state.head(), g.w.state.head());
    // A duplicate yields no event.
    let r = &g.w.records[3];
    let events = Village::handle_command(&state, Command::new(r.body().to_vec(), r.signatures().to_vec(), g.w.now)).unwrap();
    assert!(events.is_empty());
    // A rejection is the write-model's error.
    let stranger = ActorKey::derive(1, "s", None);
    let (body, sigs) = sign(
        &g.w.ledger,
        &stranger,
        &[],
        g.w.now,
        "x",
        Payload::HouseholdClosed(pb::HouseholdClosed { household_id: "H0001".into(), reason: "x".into() }),
    );
    let err = Village::handle_command(&state, Command::new(body, sigs, g.w.now)).unwrap_err();
    assert_eq!(err, Rejection::UnknownKey(PublicKey(stranger.key.verifying_key().to_bytes())));
}

/// Adopts rulebook v2 (annual expiry, otherwise v1) in force from 2 January 2025 and moves the
/// clock there.
fn annual_expiry(g: &mut Given) {
    let admin = g.admin();
    let mut v2 = rulebook(2, "2025-01-02", "2025-01-01");
    v2.expiry = pb::ExpiryPolicy::Annual as i32;
    ok!(g, &admin, &[], Payload::RulebookAdopted(v2));
    g.w.advance_to(at("2025-01-02", 8));
}

/// `hour` o'clock on `day`, China Standard Time.
fn at(day: &str, hour: i64) -> i64 {
    Date::parse("d", day).unwrap().start_micros() + hour * HOUR
}

/// Gives `household` final points under B01 (rulebook v2) scored today, published for the
/// current month and closed.
fn final_v2(g: &mut Given, household: &str, points: i64, publication: &str) -> String {
    let s = pb::ScoreRecorded { rulebook_version: 2, ..g.score(household, "B01", points) };
    let e = s.entry_id.clone();
    let p = g.panel(2);
    ok!(g, &p, &[], Payload::ScoreRecorded(s));
    let period = Date::of_micros(g.w.now).period().to_string();
    let start = g.open_publication(publication, &period, std::slice::from_ref(&e));
    g.close(publication, start);
    e
}

#[test]
fn after_a_settlement_the_state_forgets_its_month_yet_refuses_what_touches_it_as_before() {
    // Given January with a claim scored (C1) and one declined (C2), an entry voided, an
    // objection decided, its 公示 P1 closed, a second 公示 P2 left open whose only entry was then
    // voided, and January settled,
    let mut g = given();
    let (v4, admin, p, s0, s1) = (g.villager(3), g.admin(), g.panel(2), g.sup(0), g.sup(1));
    let today = g.today();
    ok!(g, &v4, &[], claim("C1", "H0004", "B01", 2, &today));
    ok!(g, &v4, &[], claim("C2", "H0004", "B02", 1, &today));
    let from_claim =
        pb::ScoreRecorded { source: pb::ScoreSource::SelfDeclaration as i32, claim_id: "C1".into(), ..g.score("H0004", "B01", 2) };
    let e_claim = from_claim.entry_id.clone();
    ok!(g, &p, &[], Payload::ScoreRecorded(from_claim));
    ok!(g, &p, &[], decline("C2", "经核实不属实"));
    let e = g.scored("H0004", "B02", 1);
    let (e_void, e_late_void) = (g.scored("H0002", "B02", 2), g.scored("H0001", "B02", 1));
    let void = |id: &str| {
        Payload::ScoreCorrected(pb::ScoreCorrected {
            entry_id: id.into(),
            correction: Some(pb::score_corrected::Correction::Void(true)),
            reason: "误录".into(),
        })
    };
    ok!(g, &p, &[], void(&e_void));
    let start = g.open_publication("P1", "2025-01", &[e_claim.clone(), e.clone()]);
    ok!(g, &v4, &[], Payload::ObjectionFiled(g.objection("O1", "P1", &e)));
    ok!(g, &p, &[&s0], decided("O1", pb::ObjectionOutcome::Dismissed, None));
    g.close("P1", start);
    g.w.advance_to(at("2025-01-29", 0));
    g.open_publication("P2", "2025-01", std::slice::from_ref(&e_late_void));
    ok!(g, &p, &[], void(&e_late_void));
    g.w.advance_to(at("2025-02-01", 0));
    ok!(g, &admin, &[&s0, &s1], Payload::PeriodSettled(g.settlement("2025-01", "P1")));

    // then the state keeps none of it but the 公示 still open,
    let st = &g.w.state;
    assert!(st.entry(&e).is_none() && st.entry(&e_void).is_none() && st.entry(&e_claim).is_none());
    assert!(st.claim("C1").is_none() && st.claim("C2").is_none() && st.objection("O1").is_none() && st.publication("P1").is_none());
    assert!(st.publication("P2").is_some());
    assert_eq!(st.entries().count(), 0);

    // and each event that touches what it forgot is refused with the rejection it had before.
    let again = pb::ScoreRecorded { entry_id: e.clone(), ..g.score("H0001", "B02", 1) };
    assert_rejects!(g, &p, &[], Payload::ScoreRecorded(again), Rejection::Duplicate { kind: "entry", .. });
    assert_rejects!(g, &p, &[], void(&e), Rejection::PeriodSettled(ref m) if m == "2025-01");
    assert_rejects!(g, &p, &[], void(&e_void), Rejection::EntryVoid(ref id) if *id == e_void);
    let g_ = &mut g;
    let _ = g_.scored("H0001", "B02", 1);
    let start3 = g.w.now;
    let publish = |entries: &[&String]| {
        Payload::PublicationOpened(pb::PublicationOpened {
            publication_id: "P3".into(),
            period: "2025-02".into(),
            entry_ids: entries.iter().map(|e| (*e).clone()).collect(),
            window_start: start3,
            window_end: start3 + 7 * DAY,
        })
    };
    assert_rejects!(
        g,
        &admin,
        &[],
        publish(&[&e]),
        Rejection::EntryOutsidePeriod { ref entry_period, ref period, .. } if entry_period == "2025-01" && period == "2025-02"
    );
    assert_rejects!(g, &admin, &[], publish(&[&e_void]), Rejection::EntryVoid(_));
    let from_c1 =
        pb::ScoreRecorded { source: pb::ScoreSource::SelfDeclaration as i32, claim_id: "C1".into(), ..g.score("H0004", "B01", 2) };
    assert_rejects!(g, &p, &[], Payload::ScoreRecorded(from_c1), Rejection::ClaimAlreadyScored(ref c) if c == "C1");
    let from_c2 =
        pb::ScoreRecorded { source: pb::ScoreSource::SelfDeclaration as i32, claim_id: "C2".into(), ..g.score("H0004", "B02", 1) };
    assert_rejects!(g, &p, &[], Payload::ScoreRecorded(from_c2), Rejection::ClaimAlreadyDeclined(ref c) if c == "C2");
    assert_rejects!(g, &p, &[], decline("C1", "重复"), Rejection::ClaimAlreadyScored(_));
    assert_rejects!(g, &p, &[], decline("C2", "重复"), Rejection::ClaimAlreadyDeclined(_));
    let today = g.today();
    assert_rejects!(g, &v4, &[], claim("C1", "H0004", "B01", 1, &today), Rejection::Duplicate { kind: "claim", .. });
    assert_rejects!(
        g,
        &v4,
        &[],
        Payload::ObjectionFiled(g.objection("O1", "P2", &e_late_void)),
        Rejection::Duplicate { kind: "objection", .. }
    );
    assert_rejects!(g, &p, &[&s0], decided("O1", pb::ObjectionOutcome::Dismissed, None), Rejection::AlreadyDecided(ref o) if o == "O1");
    let p1_again = Payload::PublicationOpened(pb::PublicationOpened {
        publication_id: "P1".into(),
        period: "2025-02".into(),
        entry_ids: vec!["E-none".into()],
        window_start: start3,
        window_end: start3 + 7 * DAY,
    });
    assert_rejects!(g, &admin, &[], p1_again, Rejection::Duplicate { kind: "publication", .. });
    assert_rejects!(g, &v4, &[], Payload::ObjectionFiled(g.objection("O2", "P1", &e)), Rejection::PublicationClosed(ref id) if id == "P1");
    let close_p1 = Payload::PublicationClosed(pb::PublicationClosed { publication_id: "P1".into() });
    assert_rejects!(g, &admin, &[], close_p1, Rejection::PublicationClosed(_));
    assert_rejects!(g, &v4, &[], Payload::ObjectionFiled(g.objection("O3", "P2", &e_late_void)), Rejection::EntryVoid(_));
    assert_rejects!(
        g,
        &admin,
        &[&s0, &s1],
        Payload::PeriodSettled(g.settlement("2025-02", "P1")),
        Rejection::InvalidField { field: "period", ref reason } if reason == "publication P1 is for 2025-01"
    );
    // The open 公示 of the settled month still closes.
    g.w.advance_to(g.w.now + 8 * DAY);
    ok!(g, &admin, &[], Payload::PublicationClosed(pb::PublicationClosed { publication_id: "P2".into() }));
    let mut replayed = VillageState::new();
    for r in &g.w.records {
        replayed.apply(&jifen_ledger::verify::replay_one(&replayed, r).expect("the ledger replays"));
    }
    assert_eq!(replayed.head(), g.w.state.head());
}

#[test]
fn a_settlement_opening_a_new_year_carries_the_digest_after_expiry_and_replays() {
    // Given annual expiry and December's points final, nothing yet recorded in 2026.
    let mut g = given();
    annual_expiry(&mut g);
    g.w.advance_to(at("2025-12-10", 8));
    final_v2(&mut g, "H0004", 4, "P-2025-12");
    g.w.advance_to(at("2026-01-02", 9));
    assert_eq!(g.w.state.balances().available("H0004"), 4, "the book itself rolls over with the next record");
    // When December is settled as the first record of 2026, with the figures the ledger shows then,
    let (admin, s0, s1) = (g.admin(), g.sup(0), g.sup(1));
    ok!(g, &admin, &[&s0, &s1], Payload::PeriodSettled(g.settlement("2025-12", "P-2025-12")));
    // then it is accepted, and an offline replay checking each settlement against the state
    // before it (the same function the write-model uses) agrees with it.
    let mut state = VillageState::new();
    let mut checked = 0;
    for r in &g.w.records {
        let a = Accepted::from_verified_record(r.clone()).unwrap();
        if let Payload::PeriodSettled(s) = a.payload() {
            assert_eq!(state.balance_digest_at(r.recorded_at()).as_bytes(), s.balance_digest.as_slice());
            checked += 1;
        }
        state.apply(&a);
    }
    assert_eq!(checked, 1);
    assert_eq!(state.balances().get("H0004").unwrap().expired, 4);
    verify_ledger(&g.w.records, &checkpoint_of(&g.w.records), jifen_ledger::verify::SignatureMode::Strict).expect("the ledger replays");
}

#[test]
fn balances_at_a_time_show_the_expiry_due_then_without_changing_the_state() {
    // Given annual expiry and 4 final points earned in 2025,
    let mut g = given();
    annual_expiry(&mut g);
    final_v2(&mut g, "H0004", 4, "P-2025-01");
    let head = g.w.state.head();
    // when the balances are asked for at times in 2025 and in 2026,
    let in_2025 = g.w.state.balances_at(at("2025-12-31", 23));
    let in_2026 = g.w.state.balances_at(at("2026-01-01", 0));
    // then 2025 shows the book as it is (borrowed, no copy), 2026 the expiry,
    assert!(matches!(in_2025, std::borrow::Cow::Borrowed(_)));
    assert_eq!(in_2025.available("H0004"), 4);
    let b = in_2026.get("H0004").unwrap();
    assert_eq!((b.available(), b.expired, b.ever_earned()), (0, 4, 4));
    // and the state itself is unchanged.
    assert_eq!(g.w.state.balances().available("H0004"), 4);
    assert_eq!(g.w.state.head(), head);
    // One household's balance at a time is the book's at that time, household by household.
    for t in [at("2025-12-31", 23), at("2026-01-01", 0)] {
        let book = g.w.state.balances_at(t);
        for (h, b) in book.iter() {
            assert_eq!(g.w.state.balance_at(h, t).as_ref(), Some(b), "{h} at {t}");
        }
    }
    assert_eq!(g.w.state.balance_at("H9999", at("2026-01-01", 0)), None);
    // Under a policy that never expires, nothing is due.
    let mut never = given();
    never.final_points("H0004", 3);
    assert_eq!(never.w.state.balances_at(at("2027-06-01", 8)).available("H0004"), 3);
}

/// A checkpoint of all `records`, under the origin their genesis opened the ledger with.
fn checkpoint_of(records: &[jifen_ledger::record::Record]) -> jifen_ledger::checkpoint::Checkpoint {
    let tree = jifen_ledger::merkle::Tree::from_record_hashes(records.iter().map(|r| r.hash()).collect::<Vec<_>>().iter());
    let genesis = Accepted::from_verified_record(records[0].clone()).unwrap();
    let Payload::LedgerOpened(opened) = genesis.payload() else { panic!("records start with the genesis") };
    jifen_ledger::checkpoint::Checkpoint { origin: opened.origin.clone(), size: tree.len(), root: tree.root(tree.len()).unwrap() }
}

#[test]
fn an_annual_reset_brings_every_available_balance_to_zero_a_deficit_too() {
    // Given annual expiry, H0004 ends 2025 with a deficit of 3 and H0002 with 4 points.
    let mut g = given();
    annual_expiry(&mut g);
    let p = g.panel(2);
    let d = pb::ScoreRecorded { rulebook_version: 2, ..g.score("H0004", "D02", -3) };
    let e = pb::ScoreRecorded { rulebook_version: 2, ..g.score("H0002", "B01", 4) };
    let ids = [d.entry_id.clone(), e.entry_id.clone()];
    ok!(g, &p, &[], Payload::ScoreRecorded(d));
    ok!(g, &p, &[], Payload::ScoreRecorded(e));
    let start = g.open_publication("P1", "2025-01", &ids);
    g.close("P1", start);
    assert_eq!((g.w.state.balances().available("H0004"), g.w.state.balances().available("H0002")), (-3, 4));
    // When 2026 begins,
    g.w.advance_to(at("2026-01-05", 8));
    let shown = g.w.state.balances_at(g.w.now);
    assert_eq!((shown.available("H0004"), shown.available("H0002")), (0, 0));
    let k = g.keeper();
    ok!(g, &k, &[], Payload::StockReceived(stock("R-2026-1", "G-SOAP", "", 5, pb::StockSource::Subsidy, "")));
    // then the deficit is cleared as the credit lapsed (expired is the net write-off), and
    // points ever earned and deductions stay as history.
    let (h4, h2) = (*g.w.state.balances().get("H0004").unwrap(), *g.w.state.balances().get("H0002").unwrap());
    assert_eq!((h4.available(), h4.expired, h4.deducted, h4.ever_earned()), (0, -3, 3, 0));
    assert_eq!((h2.available(), h2.expired, h2.ever_earned()), (0, 4, 4));
    // New points in 2026 are spendable in full: the old deficit is not carried into them.
    final_v2(&mut g, "H0004", 3, "P-2026-01");
    ok!(g, &k, &[], redemption("R1", "H0004", &[("G-SOAP", 1)], 3));
    assert_eq!(g.w.state.balances().available("H0004"), 0);
}

#[test]
fn a_reversal_of_a_redemption_from_an_earlier_year_returns_points_that_have_lapsed() {
    // Given annual expiry and 5 points of H0004 spent in December 2025,
    let mut g = given();
    annual_expiry(&mut g);
    g.w.advance_to(at("2025-12-01", 8));
    final_v2(&mut g, "H0004", 5, "P-2025-12");
    let k = g.keeper();
    ok!(g, &k, &[], redemption("R1", "H0004", &[("G-SOAP", 1)], 3));
    // when it is reversed in January 2026,
    g.w.advance_to(at("2026-01-05", 8));
    ok!(g, &k, &[], Payload::RedemptionReversed(pb::RedemptionReversed { redemption_id: "R1".into(), reason: "退货".into() }));
    // then the goods return, but 2025's points do not become spendable in 2026.
    let b = *g.w.state.balances().get("H0004").unwrap();
    assert_eq!((b.redeemed, b.available(), b.expired), (0, 0, 5));
}

#[test]
fn a_reversal_credited_to_the_household_that_absorbed_the_redeemer_keeps_every_figure_non_negative() {
    // Given H0004 spent 3 of its 5 points, then merged into H0002,
    let mut g = given();
    g.final_points("H0004", 5);
    let (k, admin) = (g.keeper(), g.admin());
    ok!(g, &k, &[], redemption("R1", "H0004", &[("G-SOAP", 1)], 3));
    ok!(
        g,
        &admin,
        &[],
        Payload::HouseholdMerged(pb::HouseholdMerged { from_household_id: "H0004".into(), into_household_id: "H0002".into() })
    );
    // when the redemption is reversed,
    ok!(g, &k, &[], Payload::RedemptionReversed(pb::RedemptionReversed { redemption_id: "R1".into(), reason: "退货".into() }));
    // then the spending is undone where it was booked and the points follow the merge.
    let book = g.w.state.balances();
    let (h4, h2) = (*book.get("H0004").unwrap(), *book.get("H0002").unwrap());
    for (h, b) in [("H0004", h4), ("H0002", h2)] {
        for (name, v) in
            [("redeemed", b.redeemed), ("carried_in", b.carried_in), ("carried_out", b.carried_out), ("available", b.available())]
        {
            assert!(v >= 0, "{h} {name} = {v}");
        }
    }
    assert_eq!((h4.redeemed, h4.available()), (0, 0));
    assert_eq!((h2.redeemed, h2.available()), (0, 5));
}

// ---- separation of duties ---------------------------------------------------------------------

/// Appends `payload` signed by `author` as a record written before today's rules: applied
/// without being decided (as an old ledger replayed into a state would be).
fn force(g: &mut Given, author: &ActorKey, payload: Payload) {
    let (body, sigs) = sign(&g.w.ledger, author, &[], g.w.now, &format!("forced-{}", g.w.records.len()), payload);
    let code = jifen_ledger::ids::VillageCode::parse(&g.w.ledger).unwrap();
    let sigs = jifen_ledger::record::canonical_signatures(sigs).unwrap();
    let r = jifen_ledger::record::Record::new(code, g.w.state.next_seq(), g.w.state.head(), g.w.now, body, sigs).unwrap();
    g.w.state.apply(&Accepted::from_verified_record(r.clone()).unwrap());
    g.w.records.push(r);
}

#[test]
fn no_actor_holds_both_the_panel_and_the_supervisor_role() {
    // Given a village, when an actor is enrolled on the panel and in the supervision group,
    let mut g = given();
    let (admin, township) = (g.admin(), g.cast.township.clone());
    let both = ActorKey::derive(6, "panel-sup", Some("H0004"));
    // then enrolment is refused, whoever enrols and in whatever order the roles come.
    let p = g.enrol(&both, &[pb::Role::Panel, pb::Role::Supervisor], 0, 0);
    assert_rejects!(g, &admin, &[], p, Rejection::ConflictingRoles { ref actor } if actor == "panel-sup");
    let p = g.enrol(&both, &[pb::Role::Supervisor, pb::Role::Admin, pb::Role::Panel], 0, 0);
    assert_rejects!(g, &township, &[], p, Rejection::ConflictingRoles { .. });
    // Either role alone is fine.
    ok!(g, &admin, &[], g.enrol(&both, &[pb::Role::Supervisor], 0, 0));
}

#[test]
fn a_decisions_supervisor_cosigner_is_never_its_panel_signer_nor_its_author() {
    // Given an actor holding both roles (enrolled before the rule existed) and an objection,
    let mut g = given();
    let township = g.cast.township.clone();
    let both = ActorKey::derive(6, "panel-sup", None);
    let p = g.enrol(&both, &[pb::Role::Panel, pb::Role::Supervisor], 0, 0);
    force(&mut g, &township, p);
    let e = g.scored("H0004", "B01", 3);
    g.open_publication("P1", "2025-01", std::slice::from_ref(&e));
    let v = g.villager(3);
    ok!(g, &v, &[], Payload::ObjectionFiled(g.objection("O1", "P1", &e)));
    let (p2, s0) = (g.panel(2), g.sup(0));
    let dismissed = || decided("O1", pb::ObjectionOutcome::Dismissed, None);
    // when that actor co-signs as the supervisor of a decision they also sign as panel member,
    // or authors it and counts as its own supervisor, then it is refused;
    assert_rejects!(g, &p2, &[&both], dismissed(), Rejection::SupervisorNotIndependent { ref actor } if actor == "panel-sup");
    assert_rejects!(g, &both, &[], dismissed(), Rejection::SupervisorNotIndependent { .. });
    // with no supervisor at all it is a missing quorum; with an independent one it is accepted.
    assert_rejects!(g, &p2, &[], dismissed(), Rejection::QuorumNotMet { .. });
    ok!(g, &p2, &[&both, &s0], dismissed());
}

#[test]
fn a_villager_objects_in_their_own_name_and_an_admin_on_anyones_behalf() {
    // Given a published entry of H0004, and villager-H0001 (of household H0001),
    let mut g = given();
    let e = g.scored("H0004", "B01", 3);
    g.open_publication("P1", "2025-01", std::slice::from_ref(&e));
    let (v1, admin) = (g.villager(0), g.admin());
    let as_objector = |g: &mut Given, id: &str, objector: &str| {
        Payload::ObjectionFiled(pb::ObjectionFiled { objector: objector.into(), ..g.objection(id, "P1", &e) })
    };
    // when the villager signs an objection in another household's or another's member's name,
    // then it is refused;
    assert_rejects!(g, &v1, &[], as_objector(&mut g, "O1", "H0002"), Rejection::ObjectorMismatch { ref objector, .. } if objector == "H0002");
    assert_rejects!(g, &v1, &[], as_objector(&mut g, "O1", "H0002-01"), Rejection::ObjectorMismatch { .. });
    // in their own household's name, or a member's of it, it is accepted;
    ok!(g, &v1, &[], as_objector(&mut g, "O1", "H0001-02"));
    let (p, s) = (g.panel(2), g.sup(0));
    ok!(g, &p, &[&s], decided("O1", pb::ObjectionOutcome::Dismissed, None));
    ok!(g, &v1, &[], as_objector(&mut g, "O2", "H0001"));
    ok!(g, &p, &[&s], decided("O2", pb::ObjectionOutcome::Dismissed, None));
    // and an admin records an objection on behalf of anyone.
    ok!(g, &admin, &[], as_objector(&mut g, "O3", "H0002-01"));
}

#[test]
fn a_villager_who_merged_into_another_household_objects_in_its_name() {
    // Given villager-H0001's household merged into H0002,
    let mut g = given();
    let e = g.scored("H0004", "B01", 3);
    g.open_publication("P1", "2025-01", std::slice::from_ref(&e));
    let (v1, admin) = (g.villager(0), g.admin());
    ok!(
        g,
        &admin,
        &[],
        Payload::HouseholdMerged(pb::HouseholdMerged { from_household_id: "H0001".into(), into_household_id: "H0002".into() })
    );
    // then the villager objects as the absorbing household, but not as a third.
    let as_objector = |g: &mut Given, id: &str, objector: &str| {
        Payload::ObjectionFiled(pb::ObjectionFiled { objector: objector.into(), ..g.objection(id, "P1", &e) })
    };
    assert_rejects!(g, &v1, &[], as_objector(&mut g, "O1", "H0003"), Rejection::ObjectorMismatch { .. });
    ok!(g, &v1, &[], as_objector(&mut g, "O1", "H0002"));
}

#[test]
fn a_month_is_settled_after_it_ends_and_after_every_earlier_month_with_entries() {
    // Given January's and February's scores published and closed,
    let mut g = given();
    let jan = g.scored("H0004", "B01", 3);
    let start = g.open_publication("P-01", "2025-01", &[jan]);
    g.close("P-01", start);
    g.w.advance_to(at("2025-02-03", 8));
    let feb = g.scored("H0004", "B01", 2);
    let start = g.open_publication("P-02", "2025-02", &[feb]);
    g.close("P-02", start);
    let (admin, s0, s1) = (g.admin(), g.sup(0), g.sup(1));
    // when February is settled in February, it is refused: the month is not over;
    assert_rejects!(
        g,
        &admin,
        &[&s0, &s1],
        Payload::PeriodSettled(g.settlement("2025-02", "P-02")),
        Rejection::PeriodNotOver { ref period, ends_at } if period == "2025-02" && ends_at == at("2025-03-01", 0)
    );
    // when it is settled in March before January, it is refused: January waits;
    g.w.advance_to(at("2025-03-01", 0));
    assert_rejects!(
        g,
        &admin,
        &[&s0, &s1],
        Payload::PeriodSettled(g.settlement("2025-02", "P-02")),
        Rejection::EarlierPeriodUnsettled { ref period, ref earlier } if period == "2025-02" && earlier == "2025-01"
    );
    // January, the ledger's first month with entries, waits for nothing; then February.
    ok!(g, &admin, &[&s0, &s1], Payload::PeriodSettled(g.settlement("2025-01", "P-01")));
    ok!(g, &admin, &[&s0, &s1], Payload::PeriodSettled(g.settlement("2025-02", "P-02")));
    // A month without entries (March) holds nothing up: April settles after it ends.
    g.w.advance_to(at("2025-04-02", 8));
    let apr = g.scored("H0004", "B01", 1);
    let start = g.open_publication("P-04", "2025-04", &[apr]);
    g.close("P-04", start);
    g.w.advance_to(at("2025-05-01", 8));
    ok!(g, &admin, &[&s0, &s1], Payload::PeriodSettled(g.settlement("2025-04", "P-04")));
}

// ---- corrections and claims of households that left -----------------------------------------

fn fix_points(entry: &str, points: i64) -> Payload {
    Payload::ScoreCorrected(pb::ScoreCorrected {
        entry_id: entry.into(),
        correction: Some(pb::score_corrected::Correction::NewPoints(points)),
        reason: "复核".into(),
    })
}

#[test]
fn a_correction_never_posts_to_a_closed_household() {
    // Given final scores of H0004 and H0002; then H0004 closed and H0002 merged into H0001,
    let mut g = given();
    let e4 = g.scored("H0004", "B01", 5);
    let e2 = g.scored("H0002", "B01", 4);
    let start = g.open_publication("P1", "2025-01", &[e4.clone(), e2.clone()]);
    g.close("P1", start);
    let (admin, p) = (g.admin(), g.panel(2));
    ok!(g, &admin, &[], Payload::HouseholdClosed(pb::HouseholdClosed { household_id: "H0004".into(), reason: "迁出".into() }));
    ok!(
        g,
        &admin,
        &[],
        Payload::HouseholdMerged(pb::HouseholdMerged { from_household_id: "H0002".into(), into_household_id: "H0001".into() })
    );
    // when a score of the closed household is corrected, it is refused;
    assert_rejects!(g, &p, &[], fix_points(&e4, 2), Rejection::HouseholdClosed(ref h) if h == "H0004");
    assert_eq!(g.w.state.balances().available("H0004"), 5);
    // a score of the merged household is corrected on the household that holds its points.
    ok!(g, &p, &[], fix_points(&e2, 2));
    assert_eq!((g.w.state.balances().available("H0001"), g.w.state.balances().available("H0002")), (2, 0));
}

fn claim(id: &str, h: &str, item: &str, pts: i64, day: &str) -> Payload {
    Payload::PointsClaimed(pb::PointsClaimed {
        claim_id: id.into(),
        household_id: h.into(),
        member_id: String::new(),
        item_code: item.into(),
        points: pts,
        occurred_on: day.into(),
        evidence_hashes: vec![],
    })
}

#[test]
fn a_claim_of_a_household_that_merged_is_scored_onto_the_absorbing_household() {
    // Given H0004's self-declaration, and then H0004 merged into H0002,
    let mut g = given();
    let (v4, admin, p) = (g.villager(3), g.admin(), g.panel(2));
    let today = g.today();
    ok!(g, &v4, &[], claim("C1", "H0004", "B01", 2, &today));
    ok!(
        g,
        &admin,
        &[],
        Payload::HouseholdMerged(pb::HouseholdMerged { from_household_id: "H0004".into(), into_household_id: "H0002".into() })
    );
    let from_claim = |g: &mut Given, h: &str| pb::ScoreRecorded {
        source: pb::ScoreSource::SelfDeclaration as i32,
        claim_id: "C1".into(),
        ..g.score(h, "B01", 2)
    };
    // when the panel scores it, then it goes to the absorbing household (the closed one takes
    // nothing, and a third household does not match the claim).
    let s = from_claim(&mut g, "H0004");
    assert_rejects!(g, &p, &[], Payload::ScoreRecorded(s), Rejection::HouseholdClosed(_));
    let s = from_claim(&mut g, "H0001");
    let p1 = g.panel(1);
    assert_rejects!(g, &p1, &[], Payload::ScoreRecorded(s), Rejection::ClaimMismatch { reason: "household differs", .. });
    let s = from_claim(&mut g, "H0002");
    ok!(g, &p, &[], Payload::ScoreRecorded(s));
}

fn decline(id: &str, reason: &str) -> Payload {
    Payload::ClaimDeclined(pb::ClaimDeclined { claim_id: id.into(), reason: reason.into() })
}

#[test]
fn the_panel_declines_a_claim_with_a_reason_and_it_is_then_closed() {
    // Given self-declarations of H0004, H0001 and H0003, and H0003 then closed,
    let mut g = given();
    let (v4, v1, admin, keeper) = (g.villager(3), g.villager(0), g.admin(), g.keeper());
    let (p0, p1, p2) = (g.panel(0), g.panel(1), g.panel(2));
    let today = g.today();
    ok!(g, &v4, &[], claim("C1", "H0004", "B01", 2, &today));
    ok!(g, &v1, &[], claim("C2", "H0001", "B01", 2, &today));
    ok!(g, &admin, &[], claim("C3", "H0003", "B01", 2, &today));
    ok!(g, &v4, &[], claim("C4", "H0004", "B02", 1, &today));
    ok!(g, &admin, &[], Payload::HouseholdClosed(pb::HouseholdClosed { household_id: "H0003".into(), reason: "迁出".into() }));
    // when it is declined by someone not on the panel, without a reason, or by a member of the
    // household, it is refused;
    assert_rejects!(g, &keeper, &[], decline("C1", "不符合申报条件"), Rejection::RoleNotAllowed { .. });
    assert_rejects!(g, &p2, &[], decline("C1", " "), Rejection::InvalidField { field: "reason", .. });
    assert_rejects!(g, &p0, &[], decline("C2", "不符合申报条件"), Rejection::SelfScoring { .. });
    assert_rejects!(g, &p2, &[], decline("C9", "不符合申报条件"), Rejection::Unknown { kind: "claim", .. });
    // when the panel declines it, it is closed: neither scored nor declined again;
    ok!(g, &p2, &[], decline("C1", "经核实，申报事项不属实"));
    assert_rejects!(g, &p2, &[], decline("C1", "重复"), Rejection::ClaimAlreadyDeclined(ref c) if c == "C1");
    let s = pb::ScoreRecorded { source: pb::ScoreSource::SelfDeclaration as i32, claim_id: "C1".into(), ..g.score("H0004", "B01", 2) };
    assert_rejects!(g, &p2, &[], Payload::ScoreRecorded(s), Rejection::ClaimAlreadyDeclined(_));
    // a scored claim cannot be declined, and the claim of a closed household can.
    let s = pb::ScoreRecorded { source: pb::ScoreSource::SelfDeclaration as i32, claim_id: "C4".into(), ..g.score("H0004", "B02", 1) };
    ok!(g, &p2, &[], Payload::ScoreRecorded(s));
    assert_rejects!(g, &p2, &[], decline("C4", "重复"), Rejection::ClaimAlreadyScored(_));
    ok!(g, &p1, &[], decline("C3", "该户已迁出，申报不予认定"));
}

// ---- households of actors ---------------------------------------------------------------------

fn split(from: &str, new: &str, members: &[&str]) -> Payload {
    Payload::HouseholdSplit(pb::HouseholdSplit {
        from_household_id: from.into(),
        new_household_id: new.into(),
        group: "G01".into(),
        residency: pb::Residency::Registered as i32,
        member_ids: members.iter().map(|m| (*m).to_string()).collect(),
        points_transferred: 0,
    })
}

fn moved(actor: &ActorKey, household: &str) -> Payload {
    Payload::ActorHouseholdChanged(pb::ActorHouseholdChanged { actor_id: actor.id.clone(), household_id: household.into() })
}

#[test]
fn a_panel_member_whose_household_split_scores_neither_part_until_their_household_is_recorded() {
    // Given panel-01 of H0001, and H0001 split: member H0001-02 leaves for H0005,
    let mut g = given();
    let (admin, p0) = (g.admin(), g.panel(0));
    ok!(g, &admin, &[], split("H0001", "H0005", &["H0001-02"]));
    // when panel-01 scores the new household, or the old one, it is refused (the ledger does
    // not know which of the two they now live in);
    let s = g.score("H0005", "B01", 2);
    assert_rejects!(g, &p0, &[], Payload::ScoreRecorded(s), Rejection::SelfScoring { ref household, .. } if household == "H0005");
    let s = g.score("H0001", "B01", 2);
    assert_rejects!(g, &p0, &[], Payload::ScoreRecorded(s), Rejection::SelfScoring { .. });
    // once the admin records that panel-01 lives in H0005, H0001 may be scored, H0005 not.
    ok!(g, &admin, &[], moved(&p0, "H0005"));
    let s = g.score("H0005", "B01", 2);
    assert_rejects!(g, &p0, &[], Payload::ScoreRecorded(s), Rejection::SelfScoring { .. });
    ok!(g, &p0, &[], Payload::ScoreRecorded(g.score("H0001", "B01", 2)));
    // A split of the household before an actor's household was recorded concerns them not:
    // panel-02 (H0002) is recorded in H0002 again after H0002 splits, and scores H0006.
    let p1 = g.panel(1);
    ok!(g, &admin, &[], split("H0002", "H0006", &["H0002-02"]));
    ok!(g, &admin, &[], moved(&p1, "H0002"));
    ok!(g, &p1, &[], Payload::ScoreRecorded(g.score("H0006", "B01", 2)));
    let s = g.score("H0002", "B01", 2);
    assert_rejects!(g, &p1, &[], Payload::ScoreRecorded(s), Rejection::SelfScoring { .. });
}

#[test]
fn a_split_after_a_merge_is_followed_too() {
    // Given panel-03 of H0003, H0003 merged into H0004, then H0004 split into H0005,
    let mut g = given();
    let (admin, p2) = (g.admin(), g.panel(2));
    ok!(
        g,
        &admin,
        &[],
        Payload::HouseholdMerged(pb::HouseholdMerged { from_household_id: "H0003".into(), into_household_id: "H0004".into() })
    );
    ok!(g, &admin, &[], split("H0004", "H0005", &["H0003-01"]));
    // then panel-03 scores neither H0004 nor H0005.
    for h in ["H0004", "H0005"] {
        let s = g.score(h, "B01", 2);
        assert_rejects!(g, &p2, &[], Payload::ScoreRecorded(s), Rejection::SelfScoring { .. });
    }
    ok!(g, &p2, &[], Payload::ScoreRecorded(g.score("H0002", "B01", 2)));
}

#[test]
fn an_actors_household_is_changed_by_whoever_may_enrol_them() {
    // Given the cast,
    let mut g = given();
    let (admin, keeper, p0, v4, township) = (g.admin(), g.keeper(), g.panel(0), g.villager(3), g.cast.township.clone());
    ok!(g, &admin, &[], Payload::HouseholdClosed(pb::HouseholdClosed { household_id: "H0003".into(), reason: "迁出".into() }));
    // when someone who may not enrol the actor changes their household, or the actor
    // themselves, it is refused; so is an unknown actor or household, or a closed household;
    assert_rejects!(g, &keeper, &[], moved(&v4, "H0002"), Rejection::RoleNotAllowed { .. });
    assert_rejects!(g, &p0, &[], moved(&p0, "H0004"), Rejection::RoleNotAllowed { .. });
    let ghost = ActorKey::derive(1, "ghost", None);
    assert_rejects!(g, &admin, &[], moved(&ghost, "H0002"), Rejection::Unknown { kind: "actor", .. });
    assert_rejects!(g, &admin, &[], moved(&v4, "H0404"), Rejection::Unknown { kind: "household", .. });
    assert_rejects!(g, &admin, &[], moved(&v4, "H0003"), Rejection::HouseholdClosed(_));
    assert_rejects!(g, &admin, &[], moved(&v4, ""), Rejection::Id(_));
    // an admin (or the township) moves a villager: from then on the villager declares and
    // objects for the new household only.
    ok!(g, &admin, &[], moved(&v4, "H0002"));
    assert_eq!(g.w.state.actor(&v4.id).unwrap().household.as_deref(), Some("H0002"));
    let today = g.today();
    assert_rejects!(g, &v4, &[], claim("C1", "H0004", "B01", 2, &today), Rejection::RoleNotAllowed { .. });
    ok!(g, &v4, &[], claim("C1", "H0002", "B01", 2, &today));
    ok!(g, &township, &[], moved(&admin, "H0001"));
    // A revoked actor's household is not changed.
    ok!(g, &admin, &[], Payload::ActorRevoked(pb::ActorRevoked { actor_id: keeper.id.clone(), reason: "离任".into() }));
    assert_rejects!(g, &admin, &[], moved(&keeper, "H0002"), Rejection::KeyRevoked { .. });
}

// ---- terms and witnesses at a time ------------------------------------------------------------

#[test]
fn an_actor_is_in_term_only_enrolled_unrevoked_and_between_term_start_and_end() {
    // Given panel-over, whose term runs [now − 1 day, now + 1 hour), and the keeper revoked,
    let mut g = given();
    let (admin, keeper) = (g.admin(), g.keeper());
    let now = g.w.now;
    let over = ActorKey::derive(4, "panel-over", None);
    ok!(g, &admin, &[], g.enrol(&over, &[pb::Role::Panel], now - DAY, now + HOUR));
    ok!(g, &admin, &[], Payload::ActorRevoked(pb::ActorRevoked { actor_id: keeper.id.clone(), reason: "离任".into() }));
    let s = &g.w.state;
    // then the term is judged at the time asked, end excluded;
    assert!(s.actor_in_term("panel-over", now));
    assert!(s.actor_in_term("panel-over", now - DAY));
    assert!(!s.actor_in_term("panel-over", now - DAY - 1));
    assert!(!s.actor_in_term("panel-over", now + HOUR));
    // an open-ended term never ends; a revoked or unknown actor is in no term.
    assert!(s.actor_in_term(&g.cast.township.id, now + 100 * 365 * DAY));
    assert!(!s.actor_in_term(&keeper.id, now));
    assert!(!s.actor_in_term("nobody", now));
}

#[test]
fn the_witness_quorum_is_that_of_the_rulebook_in_force_at_a_time() {
    // Given rulebook v1 (quorum 2) in force from 2025-01-01, and v2 (quorum 3) adopted to take
    // effect on 2025-02-01,
    let mut g = given();
    let admin = g.admin();
    let mut v2 = rulebook(2, "2025-02-01", "2025-01-01");
    v2.witness_quorum = 3;
    ok!(g, &admin, &[], Payload::RulebookAdopted(v2));
    let s = &g.w.state;
    // then before v1 takes effect the default of 1 holds, v1's quorum until February, then v2's.
    assert_eq!(s.witness_quorum_at(at("2024-12-25", 12)), 1);
    assert_eq!(s.witness_quorum_at(g.w.now), 2);
    assert_eq!(s.witness_quorum_at(at("2025-01-31", 23)), 2);
    assert_eq!(s.witness_quorum_at(at("2025-02-01", 0)), 3);
}

#[test]
fn points_ever_earned_follow_a_split_and_a_merge() {
    // Given H0004 with 5 final points ever earned (3 of them spent),
    let mut g = given();
    g.final_points("H0004", 5);
    let (admin, k) = (g.admin(), g.keeper());
    ok!(g, &k, &[], redemption("R1", "H0004", &[("G-SOAP", 1)], 3));
    let ever = |g: &Given, h: &str| g.w.state.balances().get(h).unwrap().ever_earned();
    // when it splits off H0005 with 2 points, the points carried count as earned by H0005;
    ok!(g, &admin, &[], split_off_h0005(2));
    assert_eq!((ever(&g, "H0004"), ever(&g, "H0005")), (3, 2));
    assert_eq!((g.w.state.balances().available("H0004"), g.w.state.balances().available("H0005")), (0, 2));
    // when H0005 merges into H0002, H0002 has earned what H0005 had.
    ok!(
        g,
        &admin,
        &[],
        Payload::HouseholdMerged(pb::HouseholdMerged { from_household_id: "H0005".into(), into_household_id: "H0002".into() })
    );
    assert_eq!((ever(&g, "H0005"), ever(&g, "H0002")), (0, 2));
    // The village's total ever earned is unchanged by moving points between households.
    let total: i64 = g.w.state.balances().iter().map(|(_, b)| b.ever_earned()).sum();
    assert_eq!(total, 5);
}

/// H0004 splits off H0005 with member H0004-02 and `points`.
fn split_off_h0005(points: i64) -> Payload {
    Payload::HouseholdSplit(pb::HouseholdSplit {
        from_household_id: "H0004".into(),
        new_household_id: "H0005".into(),
        group: "G01".into(),
        residency: pb::Residency::Registered as i32,
        member_ids: vec!["H0004-02".into()],
        points_transferred: points,
    })
}

// ---- apply never panics -----------------------------------------------------------------------

/// Records of `payloads`, signed by `author`, numbered from `seq`, never decided: what a
/// damaged or hostile store could hand to `apply`.
fn undecided(g: &Given, author: &ActorKey, seq: u64, payloads: Vec<Payload>) -> Vec<jifen_ledger::record::Record> {
    let code = jifen_ledger::ids::VillageCode::parse(&g.w.ledger).unwrap();
    payloads
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let (body, sigs) = sign(&g.w.ledger, author, &[], g.w.now, &format!("hostile-{i}"), p);
            let sigs = jifen_ledger::record::canonical_signatures(sigs).unwrap();
            jifen_ledger::record::Record::new(code.clone(), seq + i as u64, jifen_ledger::Hash([0; 32]), g.w.now + i as i64, body, sigs)
                .unwrap()
        })
        .collect()
}

/// Payloads no write-model would accept here: unknown ids, impossible values, extremes.
fn hostile_payloads() -> Vec<Payload> {
    use pb::correction::Change;
    let score = |version: u32, item: &str, points: i64, day: &str, id: &str| {
        Payload::ScoreRecorded(pb::ScoreRecorded {
            entry_id: id.into(),
            household_id: "H0004".into(),
            item_code: item.into(),
            rulebook_version: version,
            points,
            occurred_on: day.into(),
            source: 42,
            ..Default::default()
        })
    };
    let line = |g: &str, q: u32| pb::RedemptionLine { goods_code: g.into(), quantity: q };
    vec![
        Payload::LedgerOpened(pb::LedgerOpened { township_key: vec![1, 2, 3], ..Default::default() }),
        Payload::ActorEnrolled(pb::ActorEnrolled { actor_id: "x".into(), public_key: vec![9; 5], roles: vec![99], ..Default::default() }),
        Payload::ActorKeyRotated(pb::ActorKeyRotated { actor_id: "nobody".into(), new_public_key: vec![7; 32] }),
        Payload::ActorKeyRotated(pb::ActorKeyRotated { actor_id: "admin-01".into(), new_public_key: vec![7; 3] }),
        Payload::ActorRevoked(pb::ActorRevoked { actor_id: "nobody".into(), reason: String::new() }),
        Payload::ActorHouseholdChanged(pb::ActorHouseholdChanged { actor_id: "nobody".into(), household_id: "H9".into() }),
        Payload::RulebookAdopted(pb::RulebookAdopted { version: 7, ..Default::default() }),
        Payload::HouseholdRegistered(pb::HouseholdRegistered { household_id: "H0001".into(), residency: 77, ..Default::default() }),
        Payload::MemberAdded(pb::MemberAdded { household_id: "H9".into(), member: None }),
        Payload::MemberAdded(pb::MemberAdded { household_id: "H0002".into(), member: None }),
        Payload::MemberRemoved(pb::MemberRemoved { household_id: "H9".into(), member_id: "m".into(), reason: 0 }),
        Payload::HouseholdSplit(pb::HouseholdSplit { from_household_id: "H9".into(), new_household_id: "H8".into(), ..Default::default() }),
        Payload::HouseholdSplit(pb::HouseholdSplit {
            from_household_id: "H0002".into(),
            new_household_id: "H0007".into(),
            points_transferred: i64::MAX,
            residency: 5,
            ..Default::default()
        }),
        Payload::HouseholdMerged(pb::HouseholdMerged { from_household_id: "H0003".into(), into_household_id: "H0003".into() }),
        Payload::HouseholdMerged(pb::HouseholdMerged { from_household_id: "H0003".into(), into_household_id: "H0002".into() }),
        Payload::HouseholdMerged(pb::HouseholdMerged { from_household_id: "H0002".into(), into_household_id: "H0003".into() }),
        Payload::HouseholdMerged(pb::HouseholdMerged { from_household_id: "H9".into(), into_household_id: "H8".into() }),
        Payload::HouseholdClosed(pb::HouseholdClosed { household_id: "H9".into(), reason: String::new() }),
        Payload::PointsClaimed(pb::PointsClaimed { claim_id: "c".into(), occurred_on: "yesterday".into(), ..Default::default() }),
        Payload::ClaimDeclined(pb::ClaimDeclined { claim_id: "nope".into(), reason: String::new() }),
        score(9, "B01", 1, "2025-01-01", "X1"),
        score(1, "B01", 1, "2025-13-01", "X2"),
        score(1, "NOPE", 1, "2025-01-01", "X3"),
        score(1, "B01", i64::MIN, "2025-01-01", "X4"),
        score(1, "B01", i64::MAX, "2025-01-01", "X5"),
        score(1, "B01", i64::MAX, "2025-01-01", "X5"),
        Payload::ScoreCorrected(pb::ScoreCorrected { entry_id: "nope".into(), correction: None, reason: String::new() }),
        Payload::ScoreCorrected(pb::ScoreCorrected {
            entry_id: "X4".into(),
            correction: Some(pb::score_corrected::Correction::NewPoints(i64::MAX)),
            reason: String::new(),
        }),
        Payload::PublicationOpened(pb::PublicationOpened { publication_id: "Q".into(), period: "soon".into(), ..Default::default() }),
        Payload::PublicationOpened(pb::PublicationOpened {
            publication_id: "Q".into(),
            period: "2025-01".into(),
            entry_ids: vec!["X4".into(), "X5".into(), "nope".into()],
            ..Default::default()
        }),
        Payload::PublicationOpened(pb::PublicationOpened { publication_id: "Q".into(), period: "2025-01".into(), ..Default::default() }),
        Payload::ObjectionFiled(pb::ObjectionFiled { objection_id: "o".into(), entry_id: "nope".into(), ..Default::default() }),
        Payload::ObjectionFiled(pb::ObjectionFiled {
            objection_id: "o2".into(),
            entry_id: "X4".into(),
            publication_id: "Q".into(),
            ..Default::default()
        }),
        Payload::ObjectionDecided(pb::ObjectionDecided { objection_id: "nope".into(), outcome: 9, ..Default::default() }),
        Payload::ObjectionDecided(pb::ObjectionDecided {
            objection_id: "o2".into(),
            outcome: pb::ObjectionOutcome::Upheld as i32,
            correction: Some(pb::Correction { change: Some(Change::NewPoints(i64::MIN)) }),
            ..Default::default()
        }),
        Payload::PublicationClosed(pb::PublicationClosed { publication_id: "Q".into() }),
        Payload::PublicationClosed(pb::PublicationClosed { publication_id: "nope".into() }),
        Payload::PeriodSettled(pb::PeriodSettled { period: "never".into(), ..Default::default() }),
        Payload::StockReceived(stock("RX", "G-SOAP", "", u32::MAX, pb::StockSource::Subsidy, "")),
        Payload::StockReceived(stock("RX", "G-SOAP", "", u32::MAX, pb::StockSource::Subsidy, "")),
        Payload::PricesSet(pb::PricesSet { prices: vec![pb::Price { goods_code: "nope".into(), points: -1 }] }),
        Payload::PricesSet(pb::PricesSet { prices: vec![pb::Price { goods_code: "G-OIL".into(), points: i64::MAX }] }),
        redemption("RD1", "H0004", &[], i64::MAX),
        Payload::RedemptionRecorded(pb::RedemptionRecorded {
            redemption_id: "RD2".into(),
            household_id: "H9".into(),
            lines: vec![line("G-OIL", u32::MAX), line("nope", 3)],
            total_points: i64::MAX,
        }),
        Payload::RedemptionReversed(pb::RedemptionReversed { redemption_id: "RD2".into(), reason: String::new() }),
        Payload::RedemptionReversed(pb::RedemptionReversed { redemption_id: "RD2".into(), reason: String::new() }),
        Payload::RedemptionReversed(pb::RedemptionReversed { redemption_id: "nope".into(), reason: String::new() }),
        Payload::HonourAwarded(pb::HonourAwarded { honour_id: "h".into(), ..Default::default() }),
        Payload::InspectionRecorded(pb::InspectionRecorded { inspection_id: "i".into(), ..Default::default() }),
        Payload::SatisfactionSurveyRecorded(pb::SatisfactionSurveyRecorded { survey_id: "s".into(), ..Default::default() }),
    ]
}

#[test]
fn apply_never_panics_on_any_record_sequence() {
    // Given a village's own records and records no write-model would accept,
    let mut g = given();
    g.final_points("H0004", 5);
    let k = g.keeper();
    ok!(g, &k, &[], redemption("R1", "H0004", &[("G-SOAP", 1)], 3));
    let admin = g.admin();
    let mut records = g.w.records.clone();
    records.extend(undecided(&g, &admin, records.len() as u64, hostile_payloads()));
    let accepted: Vec<Accepted> = records.iter().map(|r| Accepted::from_verified_record(r.clone()).unwrap()).collect();
    // when they are applied in order, reversed, each twice, and in shuffled orders, without
    // deciding, then nothing panics, and the state still answers questions.
    let mut orders: Vec<Vec<usize>> = vec![(0..accepted.len()).collect(), (0..accepted.len()).rev().collect()];
    orders.push((0..accepted.len()).flat_map(|i| [i, i]).collect());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..20 {
        let mut o: Vec<usize> = (0..accepted.len()).collect();
        for i in (1..o.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            o.swap(i, (x % (i as u64 + 1)) as usize);
        }
        orders.push(o);
    }
    for order in orders {
        let mut state = VillageState::new();
        for i in order {
            state.apply(&accepted[i]);
            let _ = state.balances_at(g.w.now + 400 * DAY).digest();
        }
        for h in ["H0001", "H0002", "H0003", "H0004", "H0007"] {
            let _ = state.households_of_actor(h, 0);
            let _ = state.resolve_household(h);
        }
        let _ = state.witness_quorum_at(g.w.now);
    }
}

// ---- batches decided on the live state ----------------------------------------------------------

#[test]
fn a_rolled_back_batch_leaves_a_state_that_decides_everything_after_it_exactly_as_before() {
    use jifen_ledger::sample::{generate, SampleConfig};
    use jifen_ledger::verify::replay_one;
    // Given a village-year's records,
    let s = generate(&SampleConfig { seed: 21, households: Some(12), months: 3, scores_per_household: 1.5 }).unwrap();
    let records = s.records();
    let n = records.len();
    for (start, len) in (0..n).step_by(11).map(|i| (i, 1 + i % 9)).chain([(0, 1), (0, 40), (n - 20, 20)]) {
        // when a batch of `len` records from `start` is applied and rolled back,
        let mut state = VillageState::new();
        for r in &records[..start] {
            state.apply(&replay_one(&state, r).unwrap());
        }
        let (head, next, digest) = (state.head(), state.next_seq(), state.balances().digest());
        state.begin_batch();
        for r in &records[start..(start + len).min(n)] {
            let a = replay_one(&state, r).unwrap();
            state.apply(&a);
        }
        state.rollback_batch();
        // then the state is as it was, and decides every later record to the same record.
        assert_eq!((state.head(), state.next_seq(), state.balances().digest()), (head, next, digest), "batch at {start}");
        for r in &records[start..] {
            let a = replay_one(&state, r).unwrap_or_else(|e| panic!("after a batch at {start} rolled back: {e}"));
            state.apply(&a);
        }
        assert_eq!(state.head(), s.writer.state.head());
        assert_eq!(state.balances().digest(), s.writer.state.balances().digest());
    }
}

#[test]
fn a_committed_batch_is_the_same_as_events_applied_one_by_one() {
    use jifen_ledger::sample::{generate, SampleConfig};
    use jifen_ledger::verify::replay_one;
    let s = generate(&SampleConfig { seed: 22, households: Some(12), months: 2, scores_per_household: 1.5 }).unwrap();
    let mut state = VillageState::new();
    for chunk in s.records().chunks(17) {
        state.begin_batch();
        for r in chunk {
            state.apply(&replay_one(&state, r).unwrap());
        }
        state.commit_batch();
        // A rollback after the commit undoes nothing.
        let head = state.head();
        state.rollback_batch();
        assert_eq!(state.head(), head);
    }
    assert_eq!(state.head(), s.writer.state.head());
    assert_eq!(state.balances().digest(), s.writer.state.balances().digest());
}

#[test]
fn a_periods_tally_equals_a_scan_of_its_entries_through_objections_corrections_and_closes() {
    use jifen_ledger::sample::{generate, SampleConfig};
    use jifen_ledger::verify::replay_one;
    // Given a village-year with objections upheld and dismissed, corrections and voids,
    let s = generate(&SampleConfig { seed: 23, households: Some(30), months: 4, scores_per_household: 2.0 }).unwrap();
    let mut state = VillageState::new();
    // (A settled month's entries are forgotten and its points no longer change: they are
    // compared with the last scan before its settlement.)
    let mut last_scan = std::collections::HashMap::new();
    for (i, r) in s.records().iter().enumerate() {
        state.apply(&replay_one(&state, r).unwrap());
        // then after every record each month's final points are the sum over its entries.
        for m in 1..=5 {
            let period = jifen_ledger::time::Period::from_ym(2025, m).unwrap();
            if !state.settled_periods().any(|(p, _)| p == period) {
                let scanned: i64 = state.entries().filter(|e| e.period == period && e.is_final && !e.void).map(|e| e.points).sum();
                last_scan.insert(period, scanned);
            }
            assert_eq!(state.period_points(period), last_scan[&period], "{period} after record {i}");
        }
    }
    assert!(state.settled_periods().count() >= 2, "the year settles months");
    let kinds: Vec<&str> = s
        .records()
        .iter()
        .map(|r| jifen_ledger::body::event_kind(jifen_ledger::body::decode_body(r.body()).unwrap().payload.as_ref().unwrap()))
        .collect();
    assert!(kinds.contains(&"ObjectionDecided") && kinds.contains(&"PublicationClosed"), "the year decides objections and closes 公示");
}

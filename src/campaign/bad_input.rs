//! The bad-input campaign: requests that must be refused, each with its own status and reason,
//! while the stored ledger stays byte for byte the same (a digest of every row of every table
//! is compared after each one).
//!
//! First a catalogue of named cases: malformed protobuf, oversized messages and fields,
//! unsigned events, forged signatures, unknown, revoked and stranger keys, wrong roles,
//! self-scoring, out-of-range points, overdrafts, objections outside the 公示 window, events
//! from the future, idempotency conflicts, wrong and unknown ledgers, personal data, batches
//! with one bad event, and refused read tokens. Then `rounds` random mutations of a valid
//! event (bit flips in the body, signature or key, truncations, appended bytes) and of a valid
//! request's protobuf bytes. Last, a valid append must land at the next seq: the refusals left
//! nothing behind in the server's memory either.

use super::harness::{openers, Db, Local};
use super::Report;
use crate::api::{self, SignedEvent};
use crate::auth::method;
use anyhow::{anyhow, bail, ensure};
use jifen_ledger::pb::{self, event_body::Payload};
use jifen_ledger::record::MAX_BODY_LEN;
use jifen_ledger::sample::{generate, sign, ActorKey, SampleConfig};
use jifen_ledger::signature::sign_event;
use jifen_ledger::time::Date;
use jifen_ledger::village::Accepted;
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::time::Instant;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// The campaign's parameters.
#[derive(Clone, Debug)]
pub struct BadInputConfig {
    /// Random mutations after the catalogue.
    pub rounds: u32,
    pub seed: u64,
}

/// Sends bytes as they are: a client that can say anything.
#[derive(Clone, Default)]
struct RawCodec;

struct Raw;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n).to_vec()))
    }
    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

async fn raw_append(addr: std::net::SocketAddr, bytes: Vec<u8>) -> Result<Vec<u8>, Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| Status::unknown(e.to_string()))?
        .connect()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/jifen.v1.LedgerService/Append");
    grpc.unary(tonic::Request::new(bytes), path, RawCodec).await.map(|r| r.into_inner())
}

/// What a case expects: the code, and the ErrorInfo reason (None: tonic's own refusal, which
/// carries no details).
type Expected = (Code, Option<&'static str>);

fn matches(e: &Status, (code, reason): Expected) -> bool {
    e.code() == code
        && match reason {
            None => true,
            Some(r) => e.get_details_error_info().is_some_and(|i| i.reason == r && i.domain == crate::server::status::DOMAIN),
        }
}

/// Fails unless every stored row is as it was.
async fn unchanged(what: impl std::fmt::Display, db: &Db, before: &str) -> anyhow::Result<()> {
    ensure!(db.fingerprint().await? == before, "{what}: the stored ledger changed");
    Ok(())
}

/// Runs the campaign.
pub async fn run(config: &BadInputConfig, progress: &dyn Fn(&str)) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let db = Db::start().await?;
    let sample = generate(&SampleConfig { seed: config.seed, households: Some(25), months: 1, scores_per_household: 2.0 })?;
    let mut server = Local::start(&db, openers(&sample.records()[..1])).await?;
    let ledger = sample.writer.ledger.clone();
    let cast = sample.cast.clone();
    // Replay up to the first 公示 and no further: its window is open, then passes.
    let payload = |r: &jifen_ledger::Record| Accepted::from_verified_record(r.clone()).expect("sample decodes").payload().clone();
    let records = sample.records();
    let opened = records
        .iter()
        .position(|r| matches!(payload(r), Payload::PublicationOpened(_)))
        .ok_or_else(|| anyhow!("the sample has no 公示"))?;
    for r in &records[..=opened] {
        server.replay(r).await?;
    }
    let Payload::PublicationOpened(publication) = payload(&records[opened]) else { unreachable!() };
    // One villager's key is revoked.
    let revoked = cast.villagers[0].clone();
    let mut now = records[opened].recorded_at() + 1_000_000;
    let mut appended = opened as u64 + 1;
    let event = |author: &ActorKey, cos: &[&ActorKey], at: i64, key: &str, p: Payload| {
        let (body, sigs) = sign(&ledger, author, cos, at - 1, key, p);
        SignedEvent::new(body, &sigs)
    };
    server.clock.advance_to(now);
    let revocation = event(
        &cast.admin,
        &[],
        now,
        "revoke",
        Payload::ActorRevoked(pb::ActorRevoked { actor_id: revoked.id.clone(), reason: "迁出本村".into() }),
    );
    server.client.append(api::AppendRequest { event: Some(revocation) }).await?;
    appended += 1;
    // The window has passed (the publication stays open until it is closed).
    now = now.max(publication.window_end) + 60_000_000;
    server.clock.advance_to(now);
    let today = Date::of_micros(now).to_string();
    let score = |h: &str, points: i64, entry: &str| {
        Payload::ScoreRecorded(pb::ScoreRecorded {
            entry_id: entry.into(),
            household_id: h.into(),
            member_id: String::new(),
            item_code: "B01".into(),
            rulebook_version: 1,
            points,
            occurred_on: today.clone(),
            source: pb::ScoreSource::Inspection as i32,
            evidence_hashes: vec![],
            claim_id: String::new(),
        })
    };
    let panel_home = cast.panel[0].household.clone().expect("panel members live in the village");
    let scored = cast.panel.iter().find(|p| p.household.as_deref() != Some("H0020")).expect("panel").clone();
    let stranger = ActorKey::derive(99, "stranger", None);
    let good = event(&scored, &[], now, "good", score("H0020", 2, "GOOD-1"));
    let objection = |author: &ActorKey, key: &str| {
        Payload::ObjectionFiled(pb::ObjectionFiled {
            objection_id: format!("OBJ-{key}"),
            publication_id: publication.publication_id.clone(),
            entry_id: publication.entry_ids[0].clone(),
            objector: author.household.clone().unwrap_or_else(|| "H0001".into()),
            reason: "分数不对".into(),
            evidence_hash: vec![],
        })
    };

    let mut cases: Vec<(&'static str, api::AppendRequest, Expected)> = Vec::new();
    let single = |e: SignedEvent| api::AppendRequest { event: Some(e) };
    let mut unsigned = good.clone();
    unsigned.signatures.clear();
    cases.push(("unsigned event", single(unsigned), (Code::InvalidArgument, Some("INVALID_REQUEST"))));
    let mut short_sig = good.clone();
    short_sig.signatures[0].signature.pop();
    cases.push(("signature of 63 bytes", single(short_sig), (Code::InvalidArgument, Some("INVALID_REQUEST"))));
    let mut short_key = good.clone();
    short_key.signatures[0].public_key.truncate(31);
    cases.push(("public key of 31 bytes", single(short_key), (Code::InvalidArgument, Some("INVALID_REQUEST"))));
    let mut forged = good.clone();
    forged.signatures[0].signature = sign_event(&stranger.key, &good.body).signature.to_vec();
    cases.push(("signature by another key than the one named", single(forged), (Code::Unauthenticated, Some("SIGNATURE"))));
    let mut flipped = good.clone();
    // H0020 → H0021: still a well-formed body, but not the one signed.
    let at = flipped.body.windows(5).position(|w| w == b"H0020").expect("the household id is in the body");
    flipped.body[at + 4] = b'1';
    cases.push(("body changed after signing", single(flipped), (Code::Unauthenticated, Some("SIGNATURE"))));
    let garbage = vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
    let sig = sign_event(&scored.key, &garbage);
    cases.push((
        "signed body that is not an EventBody",
        single(SignedEvent::new(garbage, &[sig])),
        (Code::InvalidArgument, Some("INVALID_REQUEST")),
    ));
    let big = vec![0x20; MAX_BODY_LEN + 1];
    let sig = sign_event(&scored.key, &big);
    cases.push(("body over the size limit", single(SignedEvent::new(big, &[sig])), (Code::InvalidArgument, Some("INVALID_REQUEST"))));
    cases.push((
        "unknown key",
        single(event(&stranger, &[], now, "u", score("H0020", 2, "U-1"))),
        (Code::Unauthenticated, Some("UNKNOWN_KEY")),
    ));
    cases.push((
        "revoked key",
        single(event(&revoked, &[], now, "r", objection(&revoked, "r"))),
        (Code::Unauthenticated, Some("KEY_REVOKED")),
    ));
    cases.push((
        "wrong role (the keeper scores)",
        single(event(&cast.keeper, &[], now, "k", score("H0020", 2, "K-1"))),
        (Code::PermissionDenied, Some("ROLE_NOT_ALLOWED")),
    ));
    cases.push((
        "self-scoring",
        single(event(&cast.panel[0], &[], now, "s", score(&panel_home, 2, "S-1"))),
        (Code::PermissionDenied, Some("SELF_SCORING")),
    ));
    cases.push((
        "points out of range",
        single(event(&scored, &[], now, "p", score("H0020", 6, "P-1"))),
        (Code::OutOfRange, Some("POINTS_OUT_OF_RANGE")),
    ));
    cases.push((
        "negative points on a basic item",
        single(event(&scored, &[], now, "n", score("H0020", -3, "N-1"))),
        (Code::OutOfRange, Some("POINTS_OUT_OF_RANGE")),
    ));
    cases.push((
        "overdraft",
        single(event(
            &cast.keeper,
            &[],
            now,
            "o",
            Payload::RedemptionRecorded(pb::RedemptionRecorded {
                redemption_id: "R-OD".into(),
                household_id: "H0020".into(),
                lines: vec![pb::RedemptionLine { goods_code: "G-SOAP".into(), quantity: 1 }],
                total_points: 3,
            }),
        )),
        (Code::FailedPrecondition, Some("OVERDRAFT")),
    ));
    let objector = cast.villagers[1].clone();
    cases.push((
        "objection after the 公示 window",
        single(event(&objector, &[], now, "w", objection(&objector, "w"))),
        (Code::OutOfRange, Some("OUTSIDE_WINDOW")),
    ));
    cases.push((
        "event dated an hour ahead of the server",
        single(event(&scored, &[], now + 3_600_000_000, "f", score("H0020", 2, "F-1"))),
        (Code::FailedPrecondition, Some("OCCURRED_IN_FUTURE")),
    ));
    cases.push((
        "personal data in a free-text field",
        single(event(
            &cast.admin,
            &[],
            now,
            "pd",
            Payload::HouseholdClosed(pb::HouseholdClosed { household_id: "H0021".into(), reason: "联系电话13912345678".into() }),
        )),
        (Code::InvalidArgument, Some("PERSONAL_DATA")),
    ));
    let replayed_key = records[opened].clone();
    let (conflicting, sigs) = {
        let body = jifen_ledger::body::decode_body(replayed_key.body())?;
        sign(&ledger, &scored, &[], now - 1, &body.idempotency_key, score("H0020", 1, "IC-1"))
    };
    cases.push((
        "idempotency key reused with another body",
        single(SignedEvent::new(conflicting, &sigs)),
        (Code::AlreadyExists, Some("IDEMPOTENCY_CONFLICT")),
    ));
    cases.push(("no event at all", api::AppendRequest { event: None }, (Code::InvalidArgument, Some("INVALID_REQUEST"))));
    let other = {
        let (body, sigs) = sign("150602109999", &scored, &[], now - 1, "x", score("H0020", 2, "X-1"));
        SignedEvent::new(body, &sigs)
    };
    cases.push(("event of a ledger that does not exist", single(other.clone()), (Code::NotFound, Some("NOT_OPENED"))));

    let mut checked: BTreeMap<String, u32> = BTreeMap::new();
    // The checkpointer has signed everything, so nothing changes the stored rows in the
    // background.
    server.wait_checkpoint(&ledger, appended).await?;
    let before = db.fingerprint().await?;
    for (what, request, want) in cases {
        match server.client.append(request).await {
            Ok(r) => bail!("{what}: accepted ({:?})", r.into_inner()),
            Err(e) if matches(&e, want) => {}
            Err(e) => bail!("{what}: expected {want:?}, got {e:?}"),
        }
        unchanged(what.to_owned(), &db, &before).await?;
        *checked.entry("named cases, single appends".to_owned()).or_default() += 1;
    }

    // Batches: all or nothing, and the refusal names the event.
    let batch = |events: Vec<SignedEvent>, id: &str| api::AppendBatchRequest { ledger_id: id.into(), events };
    let bad_second = event(&stranger, &[], now, "b2", score("H0021", 2, "B-2"));
    let batches: Vec<(&'static str, api::AppendBatchRequest, Expected)> = vec![
        (
            "batch whose second event is forged",
            batch(vec![good.clone(), bad_second], &ledger),
            (Code::Unauthenticated, Some("UNKNOWN_KEY")),
        ),
        ("batch of another ledger's event", batch(vec![good.clone(), other], &ledger), (Code::InvalidArgument, Some("WRONG_LEDGER"))),
        ("empty batch", batch(vec![], &ledger), (Code::InvalidArgument, Some("INVALID_REQUEST"))),
        (
            "batch over the event limit",
            batch(vec![good.clone(); crate::server::ledger_api::MAX_BATCH + 1], &ledger),
            (Code::InvalidArgument, Some("INVALID_REQUEST")),
        ),
        ("batch for a malformed ledger id", batch(vec![good.clone()], "15060210120X"), (Code::InvalidArgument, Some("INVALID_REQUEST"))),
        ("batch for an unknown ledger", batch(vec![good.clone()], "150602109999"), (Code::NotFound, Some("NOT_OPENED"))),
    ];
    for (what, request, want) in batches {
        match server.client.append_batch(request).await {
            Ok(_) => bail!("{what}: accepted"),
            Err(e) if matches(&e, want) => {}
            Err(e) => bail!("{what}: expected {want:?}, got {e:?}"),
        }
        unchanged(what.to_owned(), &db, &before).await?;
        *checked.entry("named cases, batches".to_owned()).or_default() += 1;
    }

    // Bytes that are not the message they claim to be, and messages over the size limit.
    let raw_cases: Vec<(&'static str, Vec<u8>, Expected)> = vec![
        (
            "truncated protobuf",
            api::AppendRequest { event: Some(good.clone()) }.encode_to_vec()[..20].to_vec(),
            (Code::InvalidArgument, Some("MALFORMED_MESSAGE")),
        ),
        ("invalid wire type", vec![0x0f, 0x01, 0x02], (Code::InvalidArgument, Some("MALFORMED_MESSAGE"))),
        ("length past the end", vec![0x0a, 0x80, 0x80, 0x04, 0x01], (Code::InvalidArgument, Some("MALFORMED_MESSAGE"))),
        ("message over the server's 80 MiB limit", vec![0u8; crate::server::MAX_MESSAGE + 1], (Code::OutOfRange, None)),
    ];
    for (what, bytes, want) in raw_cases {
        match raw_append(server.addr, bytes).await {
            Ok(_) => bail!("{what}: accepted"),
            Err(e) if matches(&e, want) => {}
            Err(e) => bail!("{what}: expected {want:?}, got {e:?}"),
        }
        unchanged(what.to_owned(), &db, &before).await?;
        *checked.entry("named cases, raw bytes".to_owned()).or_default() += 1;
    }

    // Guarded reads: tokens that must not open the records.
    let read = |reader: &ActorKey, m: &str, l: &str, at: i64| {
        crate::auth::authorized(api::ReadRecordsRequest { ledger_id: ledger.clone(), from_seq: 0, limit: 0 }, &reader.key, m, l, at)
    };
    let secs = now.div_euclid(1_000_000);
    let token_cases = vec![
        (
            "read without a token",
            tonic::Request::new(api::ReadRecordsRequest { ledger_id: ledger.clone(), from_seq: 0, limit: 0 }),
            "TOKEN_MISSING",
        ),
        ("read with a villager's token", read(&cast.villagers[2], method::READ_RECORDS, &ledger, secs), "TOKEN_ROLE_NOT_ALLOWED"),
        ("read with a stranger's token", read(&stranger, method::READ_RECORDS, &ledger, secs), "TOKEN_UNKNOWN_KEY"),
        ("read with a token for another method", read(&cast.auditor, method::VERIFY_LEDGER, &ledger, secs), "TOKEN_WRONG_METHOD"),
        ("read with a token for another ledger", read(&cast.auditor, method::READ_RECORDS, "150602109999", secs), "TOKEN_WRONG_LEDGER"),
        ("read with an expired token", read(&cast.auditor, method::READ_RECORDS, &ledger, secs - 3600), "TOKEN_EXPIRED"),
    ];
    for (what, request, reason) in token_cases {
        match server.client.read_records(request).await {
            Ok(_) => bail!("{what}: served"),
            Err(e) if e.get_details_error_info().is_some_and(|i| i.reason == reason) => {}
            Err(e) => bail!("{what}: expected {reason}, got {e:?}"),
        }
        *checked.entry("named cases, read tokens".to_owned()).or_default() += 1;
    }
    let token = read(&cast.auditor, method::READ_RECORDS, &ledger, secs);
    let copy = {
        let mut r = tonic::Request::new(token.get_ref().clone());
        *r.metadata_mut() = token.metadata().clone();
        r
    };
    server.client.read_records(token).await?;
    match server.client.read_records(copy).await {
        Err(e) if e.get_details_error_info().is_some_and(|i| i.reason == "TOKEN_REPLAYED") => {}
        other => bail!("a replayed token: expected TOKEN_REPLAYED, got {:?}", other.map(|_| ())),
    }
    *checked.entry("named cases, read tokens".to_owned()).or_default() += 1;

    // Random mutations of a valid event and of a valid request's bytes.
    let valid = api::AppendRequest { event: Some(good.clone()) }.encode_to_vec();
    for round in 1..=config.rounds {
        let mut e = good.clone();
        let what = match rng.random_range(0..6) {
            0 => {
                let i = rng.random_range(0..e.body.len());
                e.body[i] ^= 1 << rng.random_range(0..8);
                "bit flip in the body"
            }
            1 => {
                let i = rng.random_range(0..64);
                e.signatures[0].signature[i] ^= 1 << rng.random_range(0..8);
                "bit flip in the signature"
            }
            2 => {
                let i = rng.random_range(0..32);
                e.signatures[0].public_key[i] ^= 1 << rng.random_range(0..8);
                "bit flip in the public key"
            }
            3 => {
                let n = rng.random_range(0..e.body.len());
                e.body.truncate(n);
                "truncated body"
            }
            4 => {
                for _ in 0..rng.random_range(1..8) {
                    e.body.push(rng.random());
                }
                "bytes appended to the body"
            }
            _ => {
                let mut bytes = valid.clone();
                for _ in 0..rng.random_range(1..4) {
                    let i = rng.random_range(0..bytes.len());
                    bytes[i] = rng.random();
                }
                let cut = rng.random_range(1..=bytes.len());
                bytes.truncate(cut);
                if bytes == valid {
                    // The mutations undid themselves: make it a change.
                    bytes[0] ^= 0x80;
                }
                match raw_append(server.addr, bytes.clone()).await {
                    Ok(_) => {
                        bail!("round {round} (seed {}): mutated request bytes {} were accepted", config.seed, jifen_ledger::hex(&bytes))
                    }
                    Err(e) if e.get_details_error_info().is_some() => {}
                    Err(e) => bail!("round {round}: mutated request bytes got a status without details: {e:?}"),
                }
                unchanged(format!("round {round}: mutated request bytes"), &db, &before).await?;
                *checked.entry("random: mutated request bytes".to_owned()).or_default() += 1;
                continue;
            }
        };
        match server.client.append(api::AppendRequest { event: Some(e) }).await {
            Ok(_) => bail!("round {round} (seed {}): {what}: accepted", config.seed),
            Err(s) if s.get_details_error_info().is_some() => {}
            Err(s) => bail!("round {round}: {what}: a status without details: {s:?}"),
        }
        unchanged(format!("round {round}: {what}"), &db, &before).await?;
        *checked.entry(format!("random: {what}")).or_default() += 1;
        if round % 100 == 0 {
            progress(&format!("round {round}/{}: refused, ledger unchanged", config.rounds));
        }
    }

    // Nothing was left behind: the next valid append lands at the next seq, and once.
    let res = server.client.append(api::AppendRequest { event: Some(good.clone()) }).await?.into_inner().result.expect("result");
    ensure!(!res.duplicate && res.seq == appended, "the valid append after the campaign landed at seq {} (expected {appended})", res.seq);
    let again = server.client.append(api::AppendRequest { event: Some(good) }).await?.into_inner().result.expect("result");
    ensure!(again.duplicate && again.seq == res.seq, "an exact replay was not recognised as the same event");
    server.shutdown().await?;
    let total: u32 = checked.values().sum();
    Ok(Report {
        campaign: "bad-input",
        seed: config.seed,
        rounds: config.rounds,
        elapsed: started.elapsed(),
        facts: vec![
            format!("{total} refused requests, each with its own status and reason; after each, every stored row compared: unchanged"),
            checked.iter().map(|(k, v)| format!("{v} × {k}")).collect::<Vec<_>>().join("; "),
            format!("then a valid append landed at seq {appended} and its exact replay came back as the same record"),
        ],
    })
}

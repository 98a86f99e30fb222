//! `jifen.v1.QueryService` and `jifen.v1.AuditService`: thin handlers over each village's
//! in-memory views (`jifen-projections`), answering with the tree they were computed from.
//! Display names are joined from the profile table, never from the ledger.

use super::ledger_api::ledger_id;
use super::status;
use super::villages::Villages;
use crate::api::{self, query_service_server::QueryService};
use crate::auth::method;
use crate::store::read_model::AuditSubject;
use crate::store::read_model::Head;
use jifen_ledger::balance::Balance;
use jifen_ledger::pb::ObjectionOutcome;
use jifen_ledger::time::Period;
use jifen_projections::audit::{monthly_flags, Act, RedFlag};
use jifen_projections::publicity::{column_of, quarter_months, rank_month, Ranking};
use std::collections::HashMap;
use std::sync::Arc;
use tonic::{Code, Request, Response, Status};

/// The services.
pub struct QueryApi {
    pub(super) villages: Arc<Villages>,
}

/// An id in a request, in the ledger's id syntax (docs/FORMAT.md): a malformed one is
/// `INVALID_ARGUMENT`, never a search that finds nothing.
fn id_arg(field: &'static str, value: &str) -> Result<(), Status> {
    jifen_ledger::ids::check_id(field, value).map_err(|e| status::invalid(field, e.to_string()))
}

impl QueryApi {
    pub fn new(villages: Arc<Villages>) -> QueryApi {
        QueryApi { villages }
    }

    /// Checks that a ledger exists and its stored rows passed the checks of a load (the read
    /// model's tree, not this process's copy, decides `min_tree_size`: another process may
    /// have appended).
    async fn servable(&self, code: &jifen_ledger::VillageCode) -> Result<(), Status> {
        Ok(self.villages.existing(code).await.map(drop)?)
    }

    /// What an actor attempted and was refused (the refusal log's rows signed first with any
    /// key the actor has held), or with no actor every actor's self-scoring attempts; and the
    /// red flags they raise (a SELF_SCORING_ATTEMPT per attempt to score one's own household).
    async fn attempts(
        &self,
        code: &jifen_ledger::VillageCode,
        actor: Option<&str>,
    ) -> Result<(Vec<api::Attempt>, Vec<api::RedFlag>), Status> {
        let arc = self.villages.existing(code).await?;
        let keys: Option<Vec<[u8; 32]>> = match actor {
            Some(id) => match arc.lock().await.state().actor(id) {
                Some(a) => Some(std::iter::once(a.key.0).chain(a.rotations.iter().map(|(k, _)| k.0)).collect()),
                None => return Ok((Vec::new(), Vec::new())),
            },
            None => None,
        };
        let reason = actor.is_none().then_some(SELF_SCORING);
        let rows = self.villages.store().refusals(code, keys.as_deref(), reason, ATTEMPTS).await.map_err(|e| status::store(&e))?;
        let mut flags = Vec::new();
        for r in rows.iter().filter(|r| r.reason == SELF_SCORING) {
            let who = match (actor, <[u8; 32]>::try_from(r.signer.as_slice())) {
                (Some(id), _) => id.to_owned(),
                (None, Ok(key)) => arc
                    .lock()
                    .await
                    .state()
                    .actor_of_key(&jifen_ledger::PublicKey(key))
                    .map_or_else(|| jifen_ledger::hex(&key), |a| a.id.clone()),
                (None, Err(_)) => String::new(),
            };
            let when = chrono::DateTime::from_timestamp_micros(r.refused_at + 8 * 3_600_000_000)
                .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_default();
            flags.push(api::RedFlag {
                kind: "SELF_SCORING_ATTEMPT".into(),
                description: format!("{who} 试图为本户记分，已被拒绝（{when}，北京时间）：{}", r.message),
                seq: 0,
            });
        }
        let attempts = rows
            .into_iter()
            .map(|r| api::Attempt {
                refused_at: r.refused_at,
                kind: jifen_ledger::body::decode_body(&r.body)
                    .ok()
                    .and_then(|b| b.payload)
                    .map(|p| jifen_ledger::body::event_kind(&p).to_owned())
                    .unwrap_or_default(),
                reason: r.reason,
                message: r.message,
                signer: r.signer,
            })
            .collect();
        Ok((attempts, flags))
    }

    async fn names(&self, code: &jifen_ledger::VillageCode) -> Result<HashMap<String, String>, Status> {
        self.villages.store().profiles(code).await.map_err(|e| status::store(&e))
    }

    /// The display names of the subjects an answer shows (not every profile of the village).
    async fn names_of<'a>(
        &self,
        code: &jifen_ledger::VillageCode,
        subjects: impl Iterator<Item = &'a str>,
    ) -> Result<HashMap<String, String>, Status> {
        let mut subjects: Vec<&str> = subjects.collect();
        subjects.sort_unstable();
        subjects.dedup();
        self.villages.store().profiles_of(code, &subjects).await.map_err(|e| status::store(&e))
    }
}

/// The tree a read model reflects.
fn stored_as_of(head: &Head) -> api::AsOf {
    api::AsOf { tree_size: head.tree_size, root_hash: head.root.0.to_vec() }
}

/// A client asked to read its own write, and the read model has not reached it.
fn reached(head: &Head, min_tree_size: u64) -> Result<(), Status> {
    if head.tree_size < min_tree_size {
        return Err(status::plain(
            Code::OutOfRange,
            "TREE_SIZE_NOT_REACHED",
            format!("min_tree_size is {min_tree_size}, but the read model reflects a tree of {} records; retry", head.tree_size),
        ));
    }
    Ok(())
}

/// A ledger the village map knows but whose read model is missing (removed from the database
/// after the load that checked it).
fn no_read_model(code: &jifen_ledger::VillageCode) -> Status {
    status::plain(
        Code::DataLoss,
        "READ_MODEL_MISSING",
        format!("ledger {code} has records but no read model; an operator rebuilds it with `jifen rebuild --village {code}`"),
    )
}

fn balance(id: &str, b: &Balance, names: &HashMap<String, String>) -> api::HouseholdBalance {
    api::HouseholdBalance {
        household_id: id.to_owned(),
        display_name: names.get(id).cloned().unwrap_or_default(),
        basic: b.basic,
        contribution: b.contribution,
        deducted: b.deducted,
        redeemed: b.redeemed,
        carried_in: b.carried_in,
        carried_out: b.carried_out,
        expired: b.expired,
        available: b.available(),
        ever_earned: b.ever_earned(),
    }
}

fn ranked(list: Ranking, names: &HashMap<String, String>) -> Vec<api::Ranked> {
    list.into_iter()
        .map(|(h, points)| api::Ranked { display_name: names.get(&h).cloned().unwrap_or_default(), household_id: h, points })
        .collect()
}

fn period(field: &str, s: &str) -> Result<Period, Status> {
    Period::parse("period", s).map_err(|e| status::invalid(field, e.to_string()))
}

/// Acts per GetAuditTrail answer by default, and at most.
const AUDIT_PAGE: u32 = 1_000;
/// The most attempts an audit answer about an actor carries.
const ATTEMPTS: i64 = 100;
/// The refusal reason of an attempt to score one's own household.
const SELF_SCORING: &str = "SELF_SCORING";
const AUDIT_PAGE_MAX: u32 = 10_000;

/// A red flag's kind and the record it concerns.
fn flag(f: &RedFlag) -> api::RedFlag {
    let (kind, seq) = match f {
        RedFlag::BackDated { seq, .. } => ("BACK_DATED", *seq),
        RedFlag::CorrectionWithoutObjection { seq, .. } => ("CORRECTION_WITHOUT_OBJECTION", *seq),
        RedFlag::LoneScorer { .. } => ("LONE_SCORER", 0),
        RedFlag::Concentration { .. } => ("CONCENTRATION", 0),
        RedFlag::UncheckableScorer { seq, .. } => ("UNCHECKABLE_SCORER", *seq),
    };
    api::RedFlag { kind: kind.to_owned(), description: f.describe(), seq }
}

#[tonic::async_trait]
impl QueryService for QueryApi {
    async fn get_balance(&self, request: Request<api::GetBalanceRequest>) -> Result<Response<api::GetBalanceResponse>, Status> {
        let req = request.into_inner();
        let code = ledger_id("ledger_id", &req.ledger_id)?;
        id_arg("household_id", &req.household_id)?;
        self.servable(&code).await?;
        let stored = self.villages.store().read_balance(&code, &req.household_id).await.map_err(|e| status::store(&e))?;
        let stored = stored.ok_or_else(|| no_read_model(&code))?;
        reached(&stored.head, req.min_tree_size)?;
        let b = stored
            .balance
            .ok_or_else(|| status::plain(Code::NotFound, "UNKNOWN_HOUSEHOLD", format!("no household {}", req.household_id)))?;
        // Judged now: an annual expiry due since the last record shows before any record of
        // the new year books it.
        let b = if stored.head.expiry_due(&stored.rulebooks, self.villages.now()) { b.after_reset() } else { b };
        let names: HashMap<String, String> = stored.display_name.into_iter().map(|n| (req.household_id.clone(), n)).collect();
        let periods = stored
            .periods
            .into_iter()
            .filter(|(_, f)| *f != Default::default())
            .map(|(p, f)| api::PeriodFigures {
                period: p.to_string(),
                basic: f.basic,
                contribution: f.contribution,
                deducted: f.deducted,
                redeemed: f.redeemed,
                returned: f.returned,
            })
            .collect();
        Ok(Response::new(api::GetBalanceResponse {
            as_of: Some(stored_as_of(&stored.head)),
            balance: Some(balance(&req.household_id, &b, &names)),
            periods,
        }))
    }

    async fn list_balances(&self, request: Request<api::ListBalancesRequest>) -> Result<Response<api::ListBalancesResponse>, Status> {
        let req = request.into_inner();
        let code = ledger_id("ledger_id", &req.ledger_id)?;
        self.servable(&code).await?;
        let stored = self.villages.store().read_balances(&code).await.map_err(|e| status::store(&e))?;
        let mut stored = stored.ok_or_else(|| no_read_model(&code))?;
        reached(&stored.head, req.min_tree_size)?;
        if stored.head.expiry_due(&stored.rulebooks, self.villages.now()) {
            for (_, b) in &mut stored.balances {
                *b = b.after_reset();
            }
        }
        let names = self.names(&code).await?;
        let digest = jifen_ledger::balance::digest(stored.balances.iter().map(|(h, b)| (h.as_str(), b)));
        Ok(Response::new(api::ListBalancesResponse {
            as_of: Some(stored_as_of(&stored.head)),
            balances: stored.balances.iter().map(|(h, b)| balance(h, b, &names)).collect(),
            balance_digest: digest.0.to_vec(),
        }))
    }

    async fn get_publication(&self, request: Request<api::GetPublicationRequest>) -> Result<Response<api::GetPublicationResponse>, Status> {
        let req = request.into_inner();
        let code = ledger_id("ledger_id", &req.ledger_id)?;
        id_arg("publication_id", &req.publication_id)?;
        self.servable(&code).await?;
        let stored = self.villages.store().read_board(&code, &req.publication_id).await.map_err(|e| status::store(&e))?;
        let (head, b) = stored.ok_or_else(|| no_read_model(&code))?;
        reached(&head, req.min_tree_size)?;
        let b = b.ok_or_else(|| status::plain(Code::NotFound, "UNKNOWN_PUBLICATION", format!("no publication {}", req.publication_id)))?;
        let names = self.names_of(&code, b.entries.iter().map(|e| &*e.household)).await?;
        Ok(Response::new(api::GetPublicationResponse {
            as_of: Some(stored_as_of(&head)),
            publication_id: b.id.clone(),
            period: b.period.to_string(),
            window_start: b.window_start,
            window_end: b.window_end,
            closed: b.closed,
            entries: b
                .entries
                .iter()
                .map(|e| api::BoardEntry {
                    entry_id: e.entry_id.clone(),
                    display_name: names.get(&*e.household).cloned().unwrap_or_default(),
                    household_id: e.household.to_string(),
                    item_code: e.item_code.to_string(),
                    item_name: e.item_name.clone(),
                    occurred_on: e.occurred_on.to_string(),
                    scored_points: e.scored_points,
                    points: e.points,
                    status: e.status.label().to_owned(),
                })
                .collect(),
            objections: b
                .objections
                .iter()
                .map(|o| api::ObjectionView {
                    objection_id: o.id.clone(),
                    entry_id: o.entry_id.clone(),
                    objector: o.objector.clone(),
                    reason: o.reason.clone(),
                    filed_at: o.filed_at,
                    outcome: match o.outcome {
                        Some(ObjectionOutcome::Upheld) => "UPHELD",
                        Some(ObjectionOutcome::Dismissed) => "DISMISSED",
                        _ => "",
                    }
                    .to_owned(),
                    finding: o.finding.clone(),
                    decided_at: o.decided_at.unwrap_or(0),
                    correction: o.correction.clone().unwrap_or_default(),
                })
                .collect(),
        }))
    }

    async fn get_rankings(&self, request: Request<api::GetRankingsRequest>) -> Result<Response<api::GetRankingsResponse>, Status> {
        let req = request.into_inner();
        let code = ledger_id("ledger_id", &req.ledger_id)?;
        let p = period("period", &req.period)?;
        let size = match req.size {
            0 => 10,
            n if n <= 100 => n as usize,
            _ => return Err(status::invalid("size", "at most 100")),
        };
        self.servable(&code).await?;
        // The quarter's months, the asked month among them, from the read model.
        let months = quarter_months(p.year(), p.quarter());
        let stored = self.villages.store().read_months(&code, &months).await.map_err(|e| status::store(&e))?;
        let (head, rows) = stored.ok_or_else(|| no_read_model(&code))?;
        reached(&head, req.min_tree_size)?;
        let month = || rows.iter().filter(|(q, _, _)| *q == p).map(|(_, h, f)| (h.as_str(), f));
        if month().all(|(_, f)| *f == Default::default()) {
            return Err(status::plain(
                Code::NotFound,
                "UNKNOWN_PERIOD",
                format!("ledger {code} has no scores, deductions or redemptions in {p}, so nothing to rank"),
            ));
        }
        let (red, black) = rank_month(month(), size);
        let column = column_of(rows.iter().map(|(_, h, f)| (h.as_str(), f)));
        let shown = red.iter().chain(&black).chain(&column).map(|(h, _)| h.as_str());
        let names = self.names_of(&code, shown).await?;
        Ok(Response::new(api::GetRankingsResponse {
            as_of: Some(stored_as_of(&head)),
            red_list: ranked(red, &names),
            black_list: ranked(black, &names),
            quarterly_column: ranked(column, &names),
        }))
    }

    async fn get_supermarket_ledger(
        &self,
        request: Request<api::GetSupermarketLedgerRequest>,
    ) -> Result<Response<api::GetSupermarketLedgerResponse>, Status> {
        let req = request.into_inner();
        let code = ledger_id("ledger_id", &req.ledger_id)?;
        let p = period("period", &req.period)?;
        self.servable(&code).await?;
        // The month as it was: stock and prices at its end, not today's.
        let stored = self.villages.store().read_supermarket_month(&code, p).await.map_err(|e| status::store(&e))?;
        let (head, month) = stored.ok_or_else(|| no_read_model(&code))?;
        reached(&head, req.min_tree_size)?;
        Ok(Response::new(api::GetSupermarketLedgerResponse {
            as_of: Some(stored_as_of(&head)),
            receipts: month
                .receipts
                .iter()
                .map(|r| api::Receipt {
                    receipt_id: r.receipt_id.clone(),
                    goods_code: r.goods.clone(),
                    quantity: r.quantity,
                    source: r.source as i32,
                    donor: r.donor.clone(),
                    recorded_at: r.recorded_at,
                })
                .collect(),
            exchanges: month.exchanges,
            reversals: month.reversals,
            points_spent: month.points,
            goods_out: month
                .goods_out
                .iter()
                .map(|(g, q)| {
                    let at_end = month.goods.get(g);
                    api::GoodsLine {
                        goods_code: g.clone(),
                        name: at_end.map_or_else(String::new, |x| x.name.clone()),
                        quantity: *q,
                        price: at_end.and_then(|x| x.price).unwrap_or(0),
                    }
                })
                .collect(),
            stock: month
                .goods
                .iter()
                .map(|(g, x)| api::GoodsLine {
                    goods_code: g.clone(),
                    name: x.name.clone(),
                    quantity: x.stock as i64,
                    price: x.price.unwrap_or(0),
                })
                .collect(),
            points_returned: month.points_returned,
        }))
    }

    async fn get_audit_trail(&self, request: Request<api::GetAuditTrailRequest>) -> Result<Response<api::GetAuditTrailResponse>, Status> {
        use api::get_audit_trail_request::Subject;
        let code = ledger_id("ledger_id", &request.get_ref().ledger_id)?;
        match &request.get_ref().subject {
            Some(Subject::ActorId(a)) => id_arg("actor_id", a)?,
            Some(Subject::HouseholdId(h)) => id_arg("household_id", h)?,
            Some(Subject::EntryId(e)) => id_arg("entry_id", e)?,
            None => {}
        }
        // Authorized against the village's enrolments, and refused if its rows failed a check.
        self.villages.authorized(&request, method::GET_AUDIT_TRAIL, &code).await?;
        let req = request.into_inner();
        let subject = match &req.subject {
            Some(Subject::ActorId(a)) => AuditSubject::Actor(a),
            Some(Subject::HouseholdId(h)) => AuditSubject::Household(h),
            Some(Subject::EntryId(e)) => AuditSubject::Entry(e),
            None => AuditSubject::Flagged,
        };
        let limit = match req.page_size {
            0 => AUDIT_PAGE,
            n if n <= AUDIT_PAGE_MAX => n,
            n => return Err(status::invalid("page_size", format!("at most {AUDIT_PAGE_MAX} acts per answer, asked for {n}"))),
        };
        let trail = self.villages.store().read_audit_trail(&code, subject, req.from_seq, limit).await.map_err(|e| status::store(&e))?;
        let trail = trail.ok_or_else(|| no_read_model(&code))?;
        reached(&trail.head, req.min_tree_size)?;
        // The refusal log, on the first page: an actor's attempts, or (asked about no subject)
        // every actor's self-scoring attempts, as red flags only.
        let (attempts, attempt_flags) = match &req.subject {
            Some(Subject::ActorId(a)) if req.from_seq == 0 => self.attempts(&code, Some(a)).await?,
            None if req.from_seq == 0 => (Vec::new(), self.attempts(&code, None).await?.1),
            _ => (Vec::new(), Vec::new()),
        };
        let mut red_flags: Vec<api::RedFlag> = trail.acts.iter().filter_map(Act::red_flag).map(|f| flag(&f)).collect();
        red_flags.extend(attempt_flags);
        red_flags.extend(monthly_flags(&trail.months, trail.alone.iter().map(|(p, a, n)| (*p, a.as_str(), *n))).iter().map(flag));
        Ok(Response::new(api::GetAuditTrailResponse {
            as_of: Some(stored_as_of(&trail.head)),
            acts: trail
                .acts
                .into_iter()
                .map(|a| api::Act {
                    seq: a.seq,
                    household_id: a.household().unwrap_or_default().to_owned(),
                    kind: a.kind,
                    author: a.author,
                    signers: a.signers,
                    recorded_at: a.recorded_at,
                    occurred_at: a.occurred_at,
                    entry_id: a.entry.unwrap_or_default(),
                })
                .collect(),
            red_flags,
            next_from_seq: trail.next_from_seq.unwrap_or(0),
            attempts,
        }))
    }
}

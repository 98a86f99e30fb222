//! `jifen.v1.LedgerService`: thin handlers (parse → call → map) over [`Villages`].
//!
//! Malformed requests (bad ids, key or signature lengths, too many events) are refused here,
//! before they reach the write-model. Rejections by the write-model map to statuses in one
//! place ([`super::status`]).

use super::status;
use super::villages::{AppendError, Appended, CheckpointView, Villages};
use crate::api::{self, ledger_service_server::LedgerService};
use crate::auth::method;
use jifen_ledger::hash::Hash;
use jifen_ledger::ids::VillageCode;
use jifen_ledger::record::{Record, MAX_BODY_LEN, MAX_SIGNATURES};
use jifen_ledger::signature::{EventSignature, PublicKey};
use jifen_ledger::village::Signed;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};

/// The most events one AppendBatch may carry.
pub const MAX_BATCH: usize = 1000;
/// Records per ReadRecords chunk.
const READ_CHUNK: u64 = 500;
/// The longest GetCheckpoint waits for `min_tree_size`.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// The service.
pub struct LedgerApi {
    villages: Arc<Villages>,
    /// Turns true when the server starts shutting down: open Subscribe streams end.
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl LedgerApi {
    pub fn new(villages: Arc<Villages>, stopping: tokio::sync::watch::Receiver<bool>) -> LedgerApi {
        LedgerApi { villages, stopping }
    }
}

/// Parses a ledger id field.
pub fn ledger_id(field: &str, s: &str) -> Result<VillageCode, Status> {
    super::request_log::note_village(s);
    VillageCode::parse(s).map_err(|e| status::invalid(field, e.to_string()))
}

fn signed_event(field: &str, e: Option<api::SignedEvent>) -> Result<(Vec<u8>, Vec<EventSignature>), Status> {
    let e = e.ok_or_else(|| status::invalid(field, "is required"))?;
    if e.body.is_empty() || e.body.len() > MAX_BODY_LEN {
        return Err(status::invalid(&format!("{field}.body"), format!("must be 1 to {MAX_BODY_LEN} bytes")));
    }
    if e.signatures.is_empty() || e.signatures.len() > MAX_SIGNATURES {
        return Err(status::invalid(&format!("{field}.signatures"), format!("1 to {MAX_SIGNATURES} signatures")));
    }
    let sigs = e
        .signatures
        .into_iter()
        .map(|s| {
            let public_key = PublicKey::from_slice(&s.public_key)
                .ok_or_else(|| status::invalid(&format!("{field}.signatures.public_key"), "must be 32 bytes"))?;
            let signature = s
                .signature
                .as_slice()
                .try_into()
                .map_err(|_| status::invalid(&format!("{field}.signatures.signature"), "must be 64 bytes"))?;
            Ok(EventSignature { public_key, signature })
        })
        .collect::<Result<_, Status>>()?;
    Ok((e.body, sigs))
}

/// The ledger id named inside a body, for routing (the write-model checks it properly).
fn body_ledger(body: &[u8]) -> Result<VillageCode, Status> {
    use prost::Message;
    let b = jifen_ledger::pb::EventBody::decode(body).map_err(|e| status::invalid("event.body", format!("not an EventBody: {e}")))?;
    ledger_id("event.body.ledger_id", &b.ledger_id)
}

fn result(a: Appended) -> api::AppendResult {
    api::AppendResult {
        ledger_id: a.ledger_id,
        seq: a.seq,
        record_hash: a.record_hash.0.to_vec(),
        recorded_at: a.recorded_at,
        duplicate: a.duplicate,
    }
}

/// A record in its API form.
pub fn record(r: &Record) -> api::Record {
    api::Record::from_record(r)
}

/// A checkpoint in its API form.
pub fn checkpoint(c: &CheckpointView) -> api::Checkpoint {
    api::Checkpoint {
        origin: c.checkpoint.origin.clone(),
        tree_size: c.checkpoint.size,
        root_hash: c.checkpoint.root.0.to_vec(),
        note: c.note.encode(),
        cosignatures: c.cosigners,
        witnessed: c.witnessed,
    }
}

/// Appends on a task of its own: a client that goes away mid-append (its call's future is
/// dropped) must not interrupt the village's writer between deciding and storing.
/// A refused event is logged (at `info`: refusals are the supervision group's business, not an
/// operator's alarm) with its village, its place in the request, the rule's reason and its
/// signers' keys, and kept in the refusal log ([`crate::store::Store::log_refusal`]), after
/// the village's lock is released.
async fn append(villages: &Arc<Villages>, code: VillageCode, events: Vec<Signed>) -> Result<Vec<Appended>, Status> {
    let villages = villages.clone();
    let task = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let result = villages.append(&code, &events).await;
        let took = started.elapsed();
        let refused = match &result {
            Err(AppendError::Rejected { index, .. }) => Some(*index),
            // The genesis of a village this deployment does not let its signer open.
            Err(AppendError::Open(_)) => Some(events.iter().position(|e| is_genesis(e.body())).unwrap_or(0)),
            _ => None,
        };
        // What is logged and kept is what the client is told: the status's reason and message.
        let result = result.map_err(Status::from);
        let reason = match &result {
            Err(status) => tonic_types::StatusExt::get_details_error_info(status).map(|i| i.reason).unwrap_or_default(),
            Ok(_) => String::new(),
        };
        super::metrics::appended(
            match (&result, refused) {
                (Ok(out), _) => {
                    let duplicates = out.iter().filter(|a| a.duplicate).count() as u64;
                    super::metrics::Outcome::Stored { new: out.len() as u64 - duplicates, duplicates }
                }
                (Err(_), Some(_)) => super::metrics::Outcome::Refused(&reason),
                (Err(status), None) => super::metrics::Outcome::Failed(status.code()),
            },
            took,
        );
        if let (Some(index), Err(status), Some(event)) = (refused, &result, refused.and_then(|i| events.get(i))) {
            let signers: Vec<String> = event.signers().map(|k| jifen_ledger::hex(&k.0)).collect();
            tracing::info!(village = %code, event = index, reason = %reason, signers = ?signers, refused = %status.message(), "event refused");
            let refusal = crate::store::Refusal {
                ledger: &code,
                refused_at: villages.now(),
                reason: &reason,
                message: status.message(),
                index,
                body: event.body(),
                signatures: event.signatures(),
            };
            if let Err(e) = villages.store().log_refusal(&refusal).await {
                tracing::warn!(village = %code, error = %e, "a refused event could not be kept in the refusal log");
            }
        }
        result
    });
    task.await.map_err(|e| Status::internal(format!("append: {e}")))?
}

fn is_genesis(body: &[u8]) -> bool {
    jifen_ledger::body::decode_body(body).is_ok_and(|b| matches!(b.payload, Some(jifen_ledger::pb::event_body::Payload::LedgerOpened(_))))
}

/// Checks the events' signatures on the blocking pool, in parallel, before the village's lock
/// is taken (see `Signed::verify_all`).
async fn verified(events: Vec<(Vec<u8>, Vec<EventSignature>)>) -> Result<Vec<Signed>, Status> {
    let mut events: Vec<Signed> = events.into_iter().map(|(body, sigs)| Signed::new(body, sigs)).collect();
    if events.len() == 1 {
        // One event: ~50 µs per signature, cheaper here than a hop to the blocking pool.
        Signed::verify_all(&mut events);
        return Ok(events);
    }
    tokio::task::spawn_blocking(move || {
        Signed::verify_all(&mut events);
        events
    })
    .await
    .map_err(|e| Status::internal(format!("signature check: {e}")))
}

fn hashes(v: Vec<Hash>) -> Vec<Vec<u8>> {
    v.into_iter().map(|h| h.0.to_vec()).collect()
}

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl LedgerService for LedgerApi {
    #[tracing::instrument(skip_all)]
    async fn append(&self, request: Request<api::AppendRequest>) -> Result<Response<api::AppendResponse>, Status> {
        let event = signed_event("event", request.into_inner().event)?;
        let code = body_ledger(&event.0)?;
        let mut out = append(&self.villages, code, verified(vec![event]).await?).await?;
        Ok(Response::new(api::AppendResponse { result: Some(result(out.remove(0))) }))
    }

    #[tracing::instrument(skip_all)]
    async fn append_batch(&self, request: Request<api::AppendBatchRequest>) -> Result<Response<api::AppendBatchResponse>, Status> {
        let req = request.into_inner();
        let code = ledger_id("ledger_id", &req.ledger_id)?;
        if req.events.is_empty() || req.events.len() > MAX_BATCH {
            return Err(status::invalid("events", format!("1 to {MAX_BATCH} events")));
        }
        let events = req
            .events
            .into_iter()
            .enumerate()
            .map(|(i, e)| signed_event(&format!("events[{i}]"), Some(e)))
            .collect::<Result<Vec<_>, _>>()?;
        let out = append(&self.villages, code, verified(events).await?).await?;
        Ok(Response::new(api::AppendBatchResponse { results: out.into_iter().map(result).collect() }))
    }

    type ReadRecordsStream = Stream_<api::ReadRecordsResponse>;

    async fn read_records(&self, request: Request<api::ReadRecordsRequest>) -> Result<Response<Self::ReadRecordsStream>, Status> {
        let code = ledger_id("ledger_id", &request.get_ref().ledger_id)?;
        // Works on a village whose stored rows fail verification: the rows are served as
        // stored, up to the highest stored seq, and a row that is no record ends the stream
        // with DATA_LOSS naming it.
        let arc = self.villages.authorized_audit(&request, method::READ_RECORDS, &code).await?;
        let (len, corrupt) = {
            let v = arc.lock().await;
            (v.len(), v.corruption().is_some())
        };
        let len = if corrupt { self.villages.store().stored_end(&code).await.map_err(|e| status::store(&e))? } else { len };
        let req = request.into_inner();
        let end = if req.limit == 0 { len } else { len.min(req.from_seq.saturating_add(req.limit)) };
        let store = self.villages.store().clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut from = req.from_seq;
            while from < end {
                let to = end.min(from + READ_CHUNK);
                let chunk = match store.read_rows(&code, from, to).await {
                    Ok(rows) => {
                        let records = api::ReadRecordsResponse { records: rows.records.iter().map(record).collect() };
                        let bad = rows
                            .undecodable
                            .map(|(seq, why)| status::corrupt(&code, Some(seq), &format!("stored row {seq} is not a record: {why}")));
                        let sent = records.records.is_empty() || tx.send(Ok(records)).await.is_ok();
                        match bad {
                            Some(status) => Err(status),
                            None if sent => Ok(()),
                            None => return,
                        }
                    }
                    Err(e) => Err(status::store(&e)),
                };
                if let Err(status) = chunk {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
                from = to;
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    type SubscribeStream = Stream_<api::SubscribeResponse>;

    async fn subscribe(&self, request: Request<api::SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let code = ledger_id("ledger_id", &request.get_ref().ledger_id)?;
        let arc = self.villages.authorized(&request, method::SUBSCRIBE, &code).await?;
        let req = request.into_inner();
        // Subscribe first, then read what is stored up to now: nothing falls in between.
        let (mut live, stored_until) = {
            let v = arc.lock().await;
            (v.subscribe(), v.len())
        };
        let store = self.villages.store().clone();
        let mut stopping = self.stopping.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut next = req.from_seq;
            let send_range = |from: u64, to: u64| {
                let store = store.clone();
                let code = code.clone();
                let tx = tx.clone();
                async move {
                    let mut from = from;
                    while from < to {
                        let upto = to.min(from + READ_CHUNK);
                        match store.read(&code, from, upto).await {
                            Ok(rs) => {
                                for r in rs {
                                    if tx.send(Ok(api::SubscribeResponse { record: Some(record(&r)) })).await.is_err() {
                                        return false;
                                    }
                                }
                            }
                            Err(e) => {
                                let _ = tx.send(Err(status::store(&e))).await;
                                return false;
                            }
                        }
                        from = upto;
                    }
                    true
                }
            };
            if next < stored_until {
                if !send_range(next, stored_until).await {
                    return;
                }
                next = stored_until;
            }
            loop {
                let received = tokio::select! {
                    r = live.recv() => r,
                    _ = stopping.changed() => {
                        let _ = tx.send(Err(status::plain(Code::Unavailable, "SHUTTING_DOWN", "the server is shutting down; resubscribe from the next seq"))).await;
                        return;
                    }
                };
                match received {
                    Ok(r) if r.seq() < next => {}
                    Ok(r) if r.seq() == next => {
                        if tx.send(Ok(api::SubscribeResponse { record: Some(record(&r)) })).await.is_err() {
                            return;
                        }
                        next += 1;
                    }
                    Ok(r) => {
                        // We fell behind the live feed: fill the gap from the store.
                        if !send_range(next, r.seq() + 1).await {
                            return;
                        }
                        next = r.seq() + 1;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn get_checkpoint(&self, request: Request<api::GetCheckpointRequest>) -> Result<Response<api::GetCheckpointResponse>, Status> {
        let req = request.into_inner();
        let code = ledger_id("ledger_id", &req.ledger_id)?;
        if req.tree_size == 0 && req.min_tree_size > 0 {
            let arc = self.villages.existing(&code).await?;
            let mut sizes = arc.lock().await.checkpoints();
            let reached = tokio::time::timeout(MAX_WAIT, sizes.wait_for(|n| *n >= req.min_tree_size)).await;
            if !matches!(reached, Ok(Ok(_))) {
                return Err(status::plain(
                    Code::DeadlineExceeded,
                    "CHECKPOINT_NOT_YET",
                    format!("no checkpoint covers {} records yet", req.min_tree_size),
                ));
            }
        }
        let size = (req.tree_size > 0).then_some(req.tree_size);
        let view = self.villages.checkpoint_view(&code, size).await?;
        Ok(Response::new(api::GetCheckpointResponse { checkpoint: Some(checkpoint(&view)) }))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<api::GetInclusionProofRequest>,
    ) -> Result<Response<api::GetInclusionProofResponse>, Status> {
        let req = request.into_inner();
        let code = ledger_id("ledger_id", &req.ledger_id)?;
        let p = self.villages.inclusion_proof(&code, req.seq, req.tree_size).await?;
        Ok(Response::new(api::GetInclusionProofResponse {
            seq: req.seq,
            tree_size: p.size,
            record_hash: p.record_hash.0.to_vec(),
            proof: hashes(p.proof),
        }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<api::GetConsistencyProofRequest>,
    ) -> Result<Response<api::GetConsistencyProofResponse>, Status> {
        let req = request.into_inner();
        let code = ledger_id("ledger_id", &req.ledger_id)?;
        let p = self.villages.consistency_proof(&code, req.old_size, req.new_size).await?;
        Ok(Response::new(api::GetConsistencyProofResponse { old_size: req.old_size, new_size: p.new, proof: hashes(p.proof) }))
    }

    async fn add_cosignature(&self, request: Request<api::AddCosignatureRequest>) -> Result<Response<api::AddCosignatureResponse>, Status> {
        let req = request.into_inner();
        let code = ledger_id("ledger_id", &req.ledger_id)?;
        let view = self.villages.cosign(&code, req.tree_size, &req.signature_line).await?;
        Ok(Response::new(api::AddCosignatureResponse { checkpoint: Some(checkpoint(&view)) }))
    }

    async fn get_log_key(&self, request: Request<api::GetLogKeyRequest>) -> Result<Response<api::GetLogKeyResponse>, Status> {
        let code = ledger_id("ledger_id", &request.get_ref().ledger_id)?;
        let (origin, verifier) = self.villages.log_key_of(&code).await?;
        Ok(Response::new(api::GetLogKeyResponse {
            origin,
            note_verifier_key: verifier.to_string(),
            public_key: verifier.public_key().to_vec(),
        }))
    }
}

//! `jifen.v1.AuditService`: VerifyLedger (the stored rows, their signatures and checkpoints,
//! then the read model and the acts of the audit trail against them) and ExportBundle, for
//! supervisors, townships and auditors (guarded calls). It works on a village whose stored rows
//! fail verification: that is when it matters.

use super::ledger_api::ledger_id;
use super::query_api::QueryApi;
use super::status;
use super::villages::{acts_difference, Corruption};
use crate::api::{self, audit_service_server::AuditService};
use crate::auth::method;
use jifen_ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use jifen_ledger::verify::verify_stored;
use tonic::{Request, Response, Status};

/// Bytes per ExportBundle message.
const EXPORT_CHUNK: usize = 1 << 20;

#[tonic::async_trait]
impl AuditService for QueryApi {
    async fn verify_ledger(&self, request: Request<api::VerifyLedgerRequest>) -> Result<Response<api::VerifyLedgerResponse>, Status> {
        let code = ledger_id("ledger_id", &request.get_ref().ledger_id)?;
        // Works on a village whose stored rows fail verification (that is when it matters).
        self.villages.authorized_audit(&request, method::VERIFY_LEDGER, &code).await?;
        let req = request.into_inner();
        let origin = self.villages.store().origin(&code).await.map_err(|e| status::store(&e))?.unwrap_or_default();
        let log = self.villages.log_verifier(&origin);
        // The caller's own checkpoint, if any, must be one this log signed.
        let held = if req.checkpoint_note.is_empty() {
            None
        } else {
            let (signed, _) = SignedCheckpoint::open(req.checkpoint_note.as_bytes(), &origin, &log, &[])
                .map_err(|e| status::invalid("checkpoint_note", e.to_string()))?;
            Some(signed.checkpoint().clone())
        };
        let store = self.villages.store().clone();
        // The checkpoint first, then the rows: a checkpoint is stored after the rows it covers,
        // so rows read afterwards include all of them even while appends go on.
        let latest = store.checkpoint(&code, None).await.map_err(|e| status::store(&e))?;
        let rows = store.load_for_audit(&code).await.map_err(|e| status::store(&e))?;
        let (records, stored_hashes) = (rows.records, rows.hashes);
        let signatures = records.iter().map(|r| r.signatures().len() as u64).sum();
        // The stored checkpoint counts as what the log signed, never as its columns say.
        let mut refused_checkpoint = None;
        let mut checkpoints: Vec<Checkpoint> = Vec::new();
        if let Some(c) = &latest {
            match SignedCheckpoint::open(c.note.as_bytes(), &origin, &log, &[]) {
                Ok((signed, _)) if signed.checkpoint().size == c.tree_size && signed.checkpoint().root == c.root => {
                    checkpoints.push(signed.checkpoint().clone())
                }
                Ok(_) => {
                    refused_checkpoint =
                        Some(format!("the stored checkpoint of size {}: its columns are not what the log signed", c.tree_size))
                }
                Err(e) => {
                    refused_checkpoint = Some(format!("the stored checkpoint of size {} does not open with the log key: {e}", c.tree_size))
                }
            }
        }
        checkpoints.extend(held);
        let checked = checkpoints.iter().map(|c| c.size).max().unwrap_or(0);
        // A row that is no record at all is the first bad one unless a row before it is bad:
        // the rows before it are verified against the checkpoints they can reach.
        if rows.undecodable.is_some() {
            checkpoints.retain(|c| c.size <= records.len() as u64);
        }
        // Verification is CPU work: keep it off the async workers. The failure at the lowest
        // seq is reported; the stored record_hash column tells an altered row from its
        // neighbour's broken link.
        let (outcome, records, hashes) = tokio::task::spawn_blocking(move || {
            let outcome = verify_stored(&records, &stored_hashes, &checkpoints, crate::batch_mode()).map(|_| records.len() as u64);
            (outcome, records, stored_hashes)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        let failure = |seq: Option<u64>, reason: String| api::VerifyLedgerResponse {
            ok: false,
            signatures,
            checkpoint_size: checked,
            has_bad_seq: seq.is_some(),
            first_bad_seq: seq.unwrap_or(0),
            reason,
            ..Default::default()
        };
        let response = match (outcome, rows.undecodable, refused_checkpoint) {
            (Err(e), _, _) => failure(e.seq(), e.to_string()),
            (Ok(_), Some((seq, why)), _) => failure(Some(seq), format!("stored row {seq} is not a record: {why}")),
            (Ok(_), None, Some(why)) => failure(None, why),
            (Ok(n), None, None) => {
                // The records hold: the read model must be what they give, the acts of the
                // audit trail (which no server keeps) as these verified records give them.
                let difference = match self.villages.read_model_difference(&code).await.map_err(|e| status::store(&e))? {
                    Some(c) => Some(c),
                    None => acts_difference(&store, &code, records)
                        .await
                        .map_err(|e| status::store(&e))?
                        .map(|reason| Corruption { seq: None, reason }),
                };
                // And the snapshot the next start would load from, sealed at the records' root.
                let difference = match difference {
                    Some(c) => Some(c),
                    None => self
                        .villages
                        .snapshot_difference(&code, &origin, &hashes)
                        .await
                        .map_err(|e| status::store(&e))?
                        .map(|reason| Corruption { seq: None, reason }),
                };
                match difference {
                    Some(c) => failure(c.seq, c.reason),
                    None => api::VerifyLedgerResponse { ok: true, records: n, signatures, checkpoint_size: checked, ..Default::default() },
                }
            }
        };
        if !response.ok {
            let seq = response.has_bad_seq.then_some(response.first_bad_seq);
            self.villages.mark_corrupt(&code, Corruption { seq, reason: response.reason.clone() }).await;
        }
        Ok(Response::new(response))
    }

    type ExportBundleStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<api::ExportBundleResponse, Status>> + Send>>;

    async fn export_bundle(&self, request: Request<api::ExportBundleRequest>) -> Result<Response<Self::ExportBundleStream>, Status> {
        let code = ledger_id("ledger_id", &request.get_ref().ledger_id)?;
        self.villages.authorized_audit(&request, method::EXPORT_BUNDLE, &code).await?;
        let year = u16::try_from(request.get_ref().year)
            .ok()
            .filter(|y| (2000..=2200).contains(y))
            .ok_or_else(|| status::invalid("year", "must be a calendar year between 2000 and 2200"))?;
        let bytes = self.villages.export_bundle(&code, year).await?;
        let chunks: Vec<Result<api::ExportBundleResponse, Status>> =
            bytes.chunks(EXPORT_CHUNK).map(|c| Ok(api::ExportBundleResponse { chunk: c.to_vec() })).collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }
}

//! The year bundle (docs/FORMAT.md §11).

use super::witnessing::stored_note;
use super::*;

impl Villages {
    /// The year bundle of a village (docs/FORMAT.md §11): the records up to the last witnessed
    /// checkpoint whose last record was recorded in `year` or before, every cosigned
    /// checkpoint up to it, and the consistency proofs between them.
    pub async fn export_bundle(&self, code: &VillageCode, year: u16) -> Result<Vec<u8>, VillageError> {
        // Works on a village whose stored rows fail verification: the bundle carries the rows
        // as stored, and the proofs between the checkpoints are computed from them, so an
        // auditor's offline verification names the first bad record.
        let arc = self.loaded(code).await?;
        let err = VillageError::Store;
        let origin = self.origin_of(code).await?;
        let sizes = self.store.cosigned_sizes(code, u64::MAX).await.map_err(err)?;
        let mut chosen = None;
        for &size in sizes.iter().rev() {
            let Some(stored) = self.store.checkpoint(code, Some(size)).await.map_err(err)? else { continue };
            // Dated by its last record as stored; one whose cosignatures do not verify (or
            // whose last row is gone) is not witnessed.
            let in_year = stored.last_recorded_at.is_some_and(|t| Date::of_micros(t).year() <= i32::from(year));
            // A village whose rows fail verification has no state to name its witnesses from:
            // the latest cosigned checkpoint of the year goes out, and the auditor's verifier
            // judges it (and names the first bad record).
            let mut v = arc.lock().await;
            self.catch_up(&mut v, size).await?;
            let witnessed =
                if v.corrupt.is_some() { !stored.cosignatures.is_empty() } else { self.view(&v, &stored).is_ok_and(|c| c.witnessed) };
            drop(v);
            if in_year && witnessed {
                chosen = Some(size);
                break;
            }
        }
        let size = chosen.ok_or_else(|| {
            VillageError::refused(
                Refusal::NoWitnessedCheckpoint,
                format!("ledger {code} has no checkpoint of {year} or before with the supervisor cosignatures its witness quorum needs (supervisors run `jifen cosign`)"),
            )
        })?;
        let rows = self.store.read_rows(code, 0, size).await.map_err(err)?;
        if let Some((seq, why)) = rows.undecodable {
            return Err(VillageError::corrupt(code, Some(seq), format!("stored row {seq} is not a record ({why}), and a bundle can only carry records; VerifyLedger and ReadRecords still show the rows")));
        }
        let records = rows.records;
        let included: Vec<u64> = sizes.into_iter().filter(|s| *s <= size).collect();
        let mut checkpoints = Vec::with_capacity(included.len());
        for &s in &included {
            let stored = self.store.checkpoint(code, Some(s)).await.map_err(err)?;
            let stored = stored.ok_or_else(|| VillageError::corrupt(code, None, format!("the checkpoint of size {s} is gone")))?;
            checkpoints.push(stored_note(&stored).map_err(|why| VillageError::corrupt(code, None, why))?.encode());
        }
        let log_key = self.log_verifier(&origin).to_string();
        let ledger = code.clone();
        let build = move || -> Result<Vec<u8>, VillageError> {
            let hashes: Vec<Hash> = records.iter().map(Record::hash).collect();
            let tree = Tree::from_record_hashes(&hashes);
            let proofs = included
                .windows(2)
                .map(|w| {
                    let proof = tree.consistency_proof(w[0], w[1]).map_err(|e| VillageError::corrupt(&ledger, None, e.to_string()))?;
                    Ok(ConsistencyStep { old: w[0], new: w[1], proof })
                })
                .collect::<Result<Vec<_>, VillageError>>()?;
            Ok(Bundle { ledger, log_key, origin, year, records, checkpoints, proofs }.encode())
        };
        tokio::task::spawn_blocking(build).await.map_err(|e| VillageError::refused(Refusal::Internal, e.to_string()))?
    }

    /// The origin a ledger was opened with, as stored beside it.
    pub(super) async fn origin_of(&self, code: &VillageCode) -> Result<String, VillageError> {
        let origin = self.store.origin(code).await?;
        origin.ok_or_else(|| VillageError::UnknownLedger(code.clone()))
    }
}

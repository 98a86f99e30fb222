//! Signing checkpoints: the background checkpointer, and the signing a query does itself so
//! that every answer names a tree with a signed checkpoint.

use super::*;

impl Villages {
    /// Signs and stores a checkpoint of a village if it has records beyond its latest one.
    pub async fn checkpoint(&self, code: &VillageCode) -> Result<(), StoreError> {
        let arc = match self.map.lock().expect("village map").get(code) {
            Some(v) => v.clone(),
            None => return Ok(()),
        };
        let mut v = arc.lock().await;
        self.sign_tip(&mut v).await
    }

    /// Signs and stores a checkpoint of all of a village's records if the latest does not
    /// cover them, under the village's lock (so nothing is appended meanwhile).
    pub(super) async fn sign_tip(&self, v: &mut Village) -> Result<(), StoreError> {
        let size = v.len();
        if size == 0 || v.corrupt.is_some() || v.latest.as_ref().is_some_and(|c| c.checkpoint.size >= size) {
            return Ok(());
        }
        let Some(origin) = v.origin() else { return Ok(()) };
        let root = v.tree.root(size).map_err(|e| StoreError::Corrupt { ledger: v.code.to_string(), seq: -1, error: e.to_string() })?;
        let nodes = v.tree.nodes_since(v.nodes_stored);
        let checkpoint = Checkpoint { origin: origin.clone(), size, root };
        let signed = checkpoint.sign(&self.log.signer(&origin));
        self.store.insert_checkpoint(&v.code, size, &root, &signed.encode(), &nodes).await?;
        v.nodes_stored = v.nodes_stored.max(size);
        // No cosignature yet, and every quorum is at least 1.
        v.latest = Some(CheckpointView { checkpoint, note: signed.note().clone(), cosigners: 0, witnessed: false });
        v.checkpoint_tx.send_replace(size);
        Ok(())
    }

    /// A village to answer a query from, locked, with a signed checkpoint of exactly its
    /// records: an answer names a tree (`as_of`) that a client can fetch the signed checkpoint
    /// of. Records the checkpointer has not signed yet are signed now.
    pub async fn signed_tip(&self, arc: Arc<Mutex<Village>>) -> Result<OwnedMutexGuard<Village>, Status> {
        let mut v = arc.lock_owned().await;
        // Between the caller's checks and this lock the village may have been found corrupt,
        // or emptied by a reload that failed: answer from neither.
        if v.stale {
            return Err(status::plain(Code::Unavailable, "VILLAGE_RELOADING", format!("ledger {} is being reloaded; retry", v.code)));
        }
        v.serving()?;
        self.sign_tip(&mut v).await.map_err(|e| status::store(&e))?;
        Ok(v)
    }

    /// Takes the villages with unsigned records.
    pub(super) fn take_dirty(&self) -> Vec<VillageCode> {
        self.dirty.lock().expect("dirty set").drain().collect()
    }
}

/// How long the checkpointer gathers appends before signing (well under the 1 s promise).
pub const CHECKPOINT_BATCH: Duration = Duration::from_millis(100);

/// Signs checkpoints of villages with new records until `shutdown` turns true, then signs the
/// last ones.
pub async fn run_checkpointer(villages: Arc<Villages>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let stop = tokio::select! {
            _ = villages.wake.notified() => false,
            _ = shutdown.changed() => true,
        };
        if !stop {
            // Gather the appends of the next moment into the same checkpoint.
            tokio::select! {
                _ = tokio::time::sleep(CHECKPOINT_BATCH) => {}
                _ = shutdown.changed() => {}
            }
        }
        for code in villages.take_dirty() {
            if let Err(e) = villages.checkpoint(&code).await {
                tracing::error!(village = %code, error = %e, "signing a checkpoint failed");
                villages.mark_dirty(&code);
            }
        }
        if stop || *shutdown.borrow() {
            return;
        }
    }
}

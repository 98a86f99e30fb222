//! Witnessing: checkpoints as served (cosigners counted as the offline verifier counts them)
//! and supervisors' cosignatures.

use super::*;

impl Villages {
    /// A stored checkpoint as served. Its cosigners are the distinct witnesses whose lines
    /// verify, and it is witnessed when they reach the quorum: both as of the checkpoint's
    /// size and time (`bundle::witnesses`), exactly as an offline verifier counts them.
    pub(super) fn view(&self, village: &Village, stored: &StoredCheckpoint) -> Result<CheckpointView, String> {
        let note = stored_note(stored)?;
        let origin = village.origin().unwrap_or_default();
        let size = stored.tree_size;
        let at = stored
            .last_recorded_at
            .ok_or_else(|| format!("record {} that the checkpoint of size {size} ends with is not stored", size.wrapping_sub(1)))?;
        let (witnesses, quorum) = bundle::witnesses(village.state(), &origin, size, at);
        let cosigners = bundle::cosigners(&note, &witnesses)
            .map_err(|name| format!("the stored cosignature of {name} on the checkpoint of size {size} does not verify"))?;
        Ok(CheckpointView {
            checkpoint: Checkpoint { origin, size, root: stored.root },
            note,
            cosigners: cosigners.len() as u32,
            witnessed: cosigners.len() as u32 >= quorum,
        })
    }

    /// Adds a witness cosignature to a checkpoint. The key name must be
    /// `<deployment>/witness/<actor id>` of an enrolled supervisor, whose current key signed.
    pub async fn cosign(&self, code: &VillageCode, size: u64, line: &str) -> Result<CheckpointView, VillageError> {
        let parsed = Note::parse(format!("x\n\n{}\n", line.trim_end_matches('\n')).as_bytes())
            .map_err(|e| VillageError::invalid("signature_line", e.to_string()))?;
        let sig = parsed.signatures().first().cloned().ok_or_else(|| VillageError::invalid("signature_line", "no signature"))?;
        let arc = self.existing(code).await?;
        let stored = self.store.checkpoint(code, Some(size)).await?;
        let stored = stored
            .ok_or_else(|| VillageError::refused(Refusal::UnknownCheckpoint, format!("ledger {code} has no checkpoint of size {size}")))?;
        let mut v = arc.lock().await;
        self.catch_up(&mut v, size).await?;
        let prefix = format!("{}/witness/", self.deployment);
        let actor_id = sig
            .name
            .strip_prefix(&prefix)
            .ok_or_else(|| VillageError::invalid("signature_line", format!("witness key names are \"{prefix}<actor id>\"")))?;
        let actor =
            v.state().actor(actor_id).ok_or_else(|| VillageError::refused(Refusal::UnknownWitness, format!("no actor {actor_id}")))?;
        let at = stored.last_recorded_at.ok_or_else(|| {
            VillageError::corrupt(code, Some(size - 1), format!("record {} that the checkpoint ends with is not stored", size - 1))
        })?;
        // The witnesses of this checkpoint, as an offline verifier derives them: supervisors
        // enrolled and unrevoked after its records, in term at its time, with their key then.
        let (witnesses, _) = bundle::witnesses(v.state(), &v.origin().unwrap_or_default(), size, at);
        let Some(verifier) = witnesses.iter().find(|w| w.name() == sig.name) else {
            return Err(VillageError::refused(
                Refusal::NotAWitness,
                format!("{actor_id} is not an enrolled supervisor, unrevoked and in term, at the checkpoint of size {size}"),
            ));
        };
        if verifier.id() != sig.id {
            let current = key_id(&sig.name, &actor.key.0) == sig.id;
            return Err(VillageError::refused(
                Refusal::WrongWitnessKey,
                if current {
                    "the key ID is the supervisor's current key, not the key they held when the checkpoint was made"
                } else {
                    "the key ID is not that of the supervisor's key"
                },
            ));
        }
        let corrupt = |e: String| VillageError::Store(StoreError::Corrupt { ledger: code.to_string(), seq: -1, error: e });
        let text = Note::parse(stored.note.as_bytes()).map_err(|e| corrupt(e.to_string()))?.text().to_owned();
        let signature: [u8; 64] =
            sig.signature.as_slice().try_into().map_err(|_| VillageError::invalid("signature_line", "an Ed25519 signature is 64 bytes"))?;
        // The one check of a cosignature, strict, as every verifier makes it (FORMAT.md §3, §6).
        if !verifier.verify(text.as_bytes(), &signature) {
            return Err(VillageError::refused(Refusal::BadCosignature, "the cosignature does not verify over the checkpoint"));
        }
        drop(v);
        self.store.insert_cosignature(code, size, &sig.name, sig.id, &sig.signature).await?;
        let stored = self.store.checkpoint(code, Some(size)).await?.expect("just read");
        let mut v = arc.lock().await;
        let view = self.view(&v, &stored).map_err(|why| VillageError::corrupt(code, None, why))?;
        if v.latest.as_ref().is_some_and(|c| c.checkpoint.size == size) {
            v.latest = Some(view.clone());
        }
        Ok(view)
    }

    /// A checkpoint of a village: the latest, or the one of `size`.
    /// Served even when the stored rows fail verification: a checkpoint is the log's signed
    /// statement, which a supervisor verifying the village needs.
    pub async fn checkpoint_view(&self, code: &VillageCode, size: Option<u64>) -> Result<CheckpointView, VillageError> {
        let arc = self.loaded(code).await?;
        let stored = self.store.checkpoint(code, size).await?;
        let stored =
            stored.ok_or_else(|| VillageError::refused(Refusal::UnknownCheckpoint, format!("ledger {code} has no such checkpoint yet")))?;
        let mut v = arc.lock().await;
        self.catch_up(&mut v, stored.tree_size).await?;
        self.view(&v, &stored).map_err(|why| VillageError::corrupt(code, None, why))
    }

    /// Brings a village's state up to a checkpoint of `size` records that another process
    /// signed, by reloading it: its witnesses are judged on the state after those records,
    /// which this process may not hold yet. A village whose rows failed a check stays as it is
    /// (its checkpoints are served as stored).
    pub(super) async fn catch_up(&self, v: &mut Village, size: u64) -> Result<(), VillageError> {
        if size <= v.len() || v.corrupt.is_some() {
            return Ok(());
        }
        self.reload(v).await?;
        if size > v.len() && v.corrupt.is_none() {
            return Err(VillageError::refused(
                Refusal::CheckpointAhead,
                format!("ledger {} has a checkpoint of {size} records, but only {} could be loaded; retry", v.code, v.len()),
            ));
        }
        Ok(())
    }
}

/// A stored checkpoint's note with the cosignature lines added since it was signed.
pub(super) fn stored_note(stored: &StoredCheckpoint) -> Result<Note, String> {
    let mut note =
        Note::parse(stored.note.as_bytes()).map_err(|e| format!("the stored note of size {} is malformed: {e}", stored.tree_size))?;
    for (name, id, sig) in &stored.cosignatures {
        note.add_signature(NoteSignature { name: name.clone(), id: *id, signature: sig.clone() });
    }
    Ok(note)
}

/// How far a loaded village's log is ahead of its signatures and witnesses (the metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backlog {
    pub village: VillageCode,
    /// Records stored.
    pub stored: u64,
    /// The size of the latest signed checkpoint.
    pub signed: u64,
    /// When the oldest record not in a signed checkpoint was recorded (µs), if there is one.
    pub oldest_unsigned_at: Option<i64>,
    /// The size of the latest checkpoint its witnesses' quorum cosigned (0 with none).
    pub witnessed: u64,
}

impl Villages {
    /// The backlog of every village this process holds (a village whose rows failed a check,
    /// or that cannot be read now, is left out).
    pub async fn backlogs(&self) -> Vec<Backlog> {
        let villages: Vec<(VillageCode, Arc<Mutex<Village>>)> =
            self.map.lock().expect("village map").iter().map(|(code, v)| (code.clone(), v.clone())).collect();
        let mut out = Vec::with_capacity(villages.len());
        for (code, arc) in villages {
            let (stored, signed) = {
                let v = arc.lock().await;
                if v.corrupt.is_some() || v.stale || v.stored == 0 {
                    continue;
                }
                (v.stored, v.latest.as_ref().map_or(0, |l| l.checkpoint.size))
            };
            let oldest_unsigned_at = match signed < stored {
                true => self.store.recorded_at(&code, signed).await.ok().flatten(),
                false => None,
            };
            let Ok(sizes) = self.store.cosigned_sizes(&code, stored).await else { continue };
            let mut witnessed = 0;
            for size in sizes.into_iter().rev() {
                if self.checkpoint_view(&code, Some(size)).await.is_ok_and(|view| view.witnessed) {
                    witnessed = size;
                    break;
                }
            }
            out.push(Backlog { village: code, stored, signed, oldest_unsigned_at, witnessed });
        }
        out
    }
}

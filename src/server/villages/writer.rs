//! The append path: decide a request's events on the live state under its undo journal (with
//! the balances view and the Merkle tree beside it), persist them through the esrs
//! `EventStore` together with the read-model rows they change and the signed checkpoint of the
//! new tip, in one transaction, then fold the other views. A refused event or a failed store
//! leaves the village as it was: a refusal costs the request, never a reload.

use super::*;

/// What a client learns about an appended event.
#[derive(Clone, Debug)]
pub struct Appended {
    pub ledger_id: String,
    pub seq: u64,
    pub record_hash: Hash,
    pub recorded_at: i64,
    pub duplicate: bool,
}

/// Why an append failed.
#[derive(Debug)]
pub enum AppendError {
    /// The write-model refused event `index` of the request.
    Rejected {
        index: usize,
        rejection: Rejection,
    },
    Store(StoreError),
    /// The village's stored rows failed verification.
    Corrupt {
        code: VillageCode,
        corruption: Corruption,
    },
    /// The deployment does not let this key open this village.
    Open(OpenRefusal),
}

/// A village locked for an append. However the append ends (returned, or its task stopped at
/// an await or by a panic), a batch it left open in the state's journal is rolled back when
/// the lock is released, so the state never holds events that were not stored.
struct WriterLock(OwnedMutexGuard<Village>);

impl std::ops::Deref for WriterLock {
    type Target = Village;
    fn deref(&self) -> &Village {
        &self.0
    }
}

impl std::ops::DerefMut for WriterLock {
    fn deref_mut(&mut self) -> &mut Village {
        &mut self.0
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        let v = &mut self.0;
        v.state.rollback_batch();
        v.views.rollback();
        let stored = v.stored;
        v.tree.truncate(stored);
    }
}

impl Villages {
    /// Appends signed events to one ledger, all or nothing, in order.
    pub async fn append(&self, code: &VillageCode, events: &[Signed]) -> Result<Vec<Appended>, AppendError> {
        let (arc, mut village) = loop {
            // Cached even while it has no record, so that concurrent first appends to a new
            // ledger share one copy (and one lock); dropped again below if nothing lands.
            let arc = self.village_or_load(code, true).await.map_err(AppendError::Store)?;
            let village = WriterLock(arc.clone().lock_owned().await);
            if !village.stale {
                break (arc, village);
            }
        };
        let mut result = None;
        for attempt in 0..2 {
            match self.try_append(&mut village, events).await {
                Err(AppendError::Store(StoreError::Conflict { .. })) if attempt == 0 => {
                    // Another process appended to this village: reload and decide again.
                    if let Err(e) = self.reload(&mut village).await {
                        result = Some(Err(AppendError::Store(e)));
                        break;
                    }
                }
                Ok(out) => {
                    // Kept in memory from its first record on (already so, unless a failed
                    // first append dropped the shared copy meanwhile).
                    self.map.lock().expect("village map").entry(code.clone()).or_insert_with(|| arc.clone());
                    result = Some(Ok(out));
                    break;
                }
                other => {
                    result = Some(other);
                    break;
                }
            }
        }
        let result = result.expect("the loop sets a result on its second attempt");
        if village.is_empty() {
            // No record of this ledger landed: an unknown code does not stay in the map.
            let mut map = self.map.lock().expect("village map");
            if map.get(code).is_some_and(|cached| Arc::ptr_eq(cached, &arc)) {
                map.remove(code);
            }
        }
        result
    }

    /// Loads the village again from the store, keeping the channels subscribers and
    /// checkpoint waiters listen on. If the store cannot be read, the village is emptied,
    /// marked stale and dropped from the map (subscriptions end), so nothing that was not
    /// stored is ever served and the next use loads it afresh.
    pub(super) async fn reload(&self, village: &mut Village) -> Result<(), StoreError> {
        let code = village.code.clone();
        // A copy that failed a check is loaded again from its records, every one replayed:
        // nothing is served before the verdict on the whole history.
        let snapshot = village.corrupt.is_none();
        match self.load_from(&code, snapshot).await {
            Ok(fresh) => {
                {
                    let old = std::mem::replace(village, fresh);
                    let size = village.latest.as_ref().map_or(0, |c| c.checkpoint.size);
                    village.records_tx = old.records_tx;
                    village.checkpoint_tx = old.checkpoint_tx;
                    village.checkpoint_tx.send_replace(size);
                }
                // The old copy is gone: what it held goes back to the system too.
                load::release_freed_memory();
                self.check_history_of(village);
                Ok(())
            }
            Err(e) => {
                tracing::error!(village = %code, error = %e, "a failed batch could not be undone by reloading: the village will be loaded again");
                *village = Village::empty(code.clone());
                village.stale = true;
                self.map.lock().expect("village map").remove(&code);
                Err(e)
            }
        }
    }

    /// Decides and stores `events`, all or nothing. The events are decided and applied one
    /// by one under the state's undo journal (`begin_batch`), so each sees the ones before
    /// it, and folded into the balances view under its own journal; their leaves join the
    /// tree. The records are then stored with the read-model rows they changed and the signed
    /// checkpoint of the new tree, in one transaction. A refusal or a store failure rolls all
    /// of it back, with no copy and no reload. Once stored, the other views are folded: after
    /// a lone event on the state as it is; after a batch, the state's batch is rolled back and
    /// applied again event by event, so each view sees the state right after its event.
    pub(super) async fn try_append(&self, village: &mut Village, events: &[Signed]) -> Result<Vec<Appended>, AppendError> {
        if let Some(corruption) = &village.corrupt {
            return Err(AppendError::Corrupt { code: village.code.clone(), corruption: corruption.clone() });
        }
        if village.is_empty() {
            self.check_opener(&village.code, events)?;
        }
        let now = self.now_for(village);
        let before = village.len();
        let rulebooks_before = village.state.rulebooks().len();
        village.state.begin_batch();
        village.views.begin();
        let decided = self.decide_all(village, events, now).await;
        let stored = match decided {
            Ok((accepted, results)) if !accepted.is_empty() => {
                for a in &accepted {
                    village.tree.push_record_hash(&a.hash());
                }
                match self.derive(village, before, rulebooks_before) {
                    Ok((derived, view)) => {
                        let mut scratch = AggregateState::with_id(aggregate_id(&village.code));
                        self.events
                            .persist_with(&mut scratch, accepted.clone(), Some(derived))
                            .await
                            .map(|_| (accepted, results, Some(view)))
                            .map_err(AppendError::Store)
                    }
                    Err(e) => Err(AppendError::Store(e)),
                }
            }
            Ok((accepted, results)) => Ok((accepted, results, None)),
            Err(e) => Err(e),
        };
        let (accepted, results, view) = match stored {
            Ok(s) => s,
            Err(e) => {
                village.state.rollback_batch();
                village.views.rollback();
                village.tree.truncate(before);
                return Err(e);
            }
        };
        // The records are stored: the state, the views, the tree and the record hashes keep
        // what the request changed.
        village.state.commit_batch();
        village.views.commit();
        let retired = village.views.publicity.take_retired();
        village.retired.add(retired);
        village.stored += accepted.len() as u64;
        if let Some(view) = view {
            // The stored records' hashes give the nodes a proof needs (`Store::merkle_nodes`).
            village.tree.forget_below(village.stored);
            if self.snapshot_due(village) {
                self.snapshot_in_background(village);
            }
            village.checkpoint_tx.send_replace(view.checkpoint.size);
            village.latest = Some(view);
        }
        let records: Vec<Record> = accepted.iter().map(|a| a.record().clone()).collect();
        let mut fresh = records.iter();
        let out = results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    let rec = fresh.next().expect("one record per accepted event");
                    let hash = rec.hash();
                    let _ = village.records_tx.send(rec.clone());
                    Appended {
                        ledger_id: village.code.to_string(),
                        seq: rec.seq(),
                        record_hash: hash,
                        recorded_at: rec.recorded_at(),
                        duplicate: false,
                    }
                })
            })
            .collect();
        Ok(out)
    }

    /// What a request's events derive, to store with them: the read-model rows they changed
    /// (the state and the balances view hold them under their journals) and the checkpoint of
    /// the new tree, signed; and the checkpoint as it will be served once stored.
    fn derive(&self, village: &Village, before: u64, rulebooks_before: usize) -> Result<(Derived, CheckpointView), StoreError> {
        let size = village.len();
        let bad = |e: String| StoreError::Corrupt { ledger: village.code.to_string(), seq: -1, error: e };
        let origin = village.origin().ok_or_else(|| bad("a ledger with records but no genesis".into()))?;
        let root = village.tree.root(size).map_err(|e| bad(e.to_string()))?;
        let checkpoint = Checkpoint { origin: origin.clone(), size, root };
        let signed = checkpoint.sign(&self.log.signer(&origin));
        let (rows, parts) = Rows::changed(&village.state, &village.views, rulebooks_before);
        let derived = Derived {
            tip: Tip { old_size: before, size, root, note: signed.encode() },
            last_recorded_at: village.state.last_recorded_at(),
            book_year: village.state.balances().year(),
            rows,
            parts: Some(parts),
            acts: village.views.audit.acts().to_vec(),
        };
        // No cosignature yet, and every quorum is at least 1.
        Ok((derived, CheckpointView { checkpoint, note: signed.note().clone(), cosigners: 0, witnessed: false }))
    }

    /// Decides each event on the state and applies it (so that later events see it), folding
    /// the balances view too: the accepted events, and a result per event (`None` for an
    /// accepted one, filled in once stored; the earlier record for a duplicate).
    async fn decide_all(
        &self,
        village: &mut Village,
        events: &[Signed],
        now: i64,
    ) -> Result<(Vec<Accepted>, Vec<Option<Appended>>), AppendError> {
        let mut accepted: Vec<Accepted> = Vec::new();
        let mut results: Vec<Option<Appended>> = Vec::new();
        for (index, event) in events.iter().enumerate() {
            match village.state.decide(event.command(now)) {
                Ok(Decision::Append(a)) => {
                    village.state.apply(&a);
                    village.views.apply(&a, &village.state);
                    results.push(None);
                    accepted.push(*a);
                }
                Ok(Decision::Duplicate { seq }) => {
                    // One of this request's records, or an earlier request's (stored).
                    let (hash, recorded_at) = if seq >= village.stored {
                        (accepted.get((seq - village.stored) as usize).map(|a| a.hash()), now)
                    } else {
                        match self.store.record(&village.code, seq).await.map_err(AppendError::Store)? {
                            Some(r) => (Some(r.hash()), r.recorded_at()),
                            None => {
                                return Err(AppendError::Store(StoreError::Corrupt {
                                    ledger: village.code.to_string(),
                                    seq: seq as i64,
                                    error: format!("record {seq}, which an idempotency key names, is no longer stored"),
                                }))
                            }
                        }
                    };
                    results.push(Some(Appended {
                        ledger_id: village.code.to_string(),
                        seq,
                        record_hash: hash.unwrap_or_default(),
                        recorded_at,
                        duplicate: true,
                    }));
                }
                Err(rejection) => return Err(AppendError::Rejected { index, rejection }),
            }
        }
        Ok((accepted, results))
    }

    /// Refuses a genesis signed by a key the deployment did not enrol for the village's
    /// township (the write-model has checked nothing yet; this is the deployment's own rule).
    pub(super) fn check_opener(&self, code: &VillageCode, events: &[Signed]) -> Result<(), AppendError> {
        use jifen_ledger::pb::event_body::Payload;
        for event in events {
            let Ok(body) = jifen_ledger::body::decode_body(event.body()) else { continue };
            if let Some(Payload::LedgerOpened(p)) = &body.payload {
                // A malformed key is left to the write-model's own, more specific refusal.
                if let Some(key) = jifen_ledger::signature::PublicKey::from_slice(&p.township_key) {
                    self.townships.may_open(code, &key).map_err(AppendError::Open)?;
                }
            }
        }
        Ok(())
    }
}

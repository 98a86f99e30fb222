//! The append path: decide a request's events on the live state (a batch's under the state's
//! undo journal), persist them through the esrs `EventStore`, then apply them and fold the
//! views. A refused event or a failed store leaves the village as it was: a refusal costs the
//! request, never a reload.

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

impl From<AppendError> for Status {
    fn from(e: AppendError) -> Status {
        match e {
            AppendError::Rejected { index, rejection } => {
                let s = status::rejection(&rejection);
                if index == 0 {
                    s
                } else {
                    Status::with_details(s.code(), format!("event {index}: {}", s.message()), s.details().to_vec().into())
                }
            }
            AppendError::Store(e) => status::store(&e),
            AppendError::Corrupt { code, corruption } => status::corrupt(&code, corruption.seq, &corruption.reason),
            AppendError::Open(OpenRefusal::UnknownTownship { township }) => status::plain(
                Code::PermissionDenied,
                "UNKNOWN_TOWNSHIP",
                format!("this deployment enrols no authority key for township {township}: no village of it can be opened here (see `jifen serve --townships`)"),
            ),
            AppendError::Open(OpenRefusal::KeyNotEnrolled { township }) => status::plain(
                Code::PermissionDenied,
                "TOWNSHIP_KEY_NOT_ENROLLED",
                format!("the key that signs this LedgerOpened is not a township authority key this deployment enrolled for township {township}"),
            ),
        }
    }
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
        self.0.state.rollback_batch();
    }
}

impl Villages {
    /// Appends signed events to one ledger, all or nothing, in order.
    pub async fn append(&self, code: &VillageCode, events: Vec<Signed>) -> Result<Vec<Appended>, AppendError> {
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
            match self.try_append(&mut village, &events).await {
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
                    if out.iter().any(|a| !a.duplicate) {
                        // Wakes the checkpointer: every append, a settlement included, is
                        // covered by a signed checkpoint within CHECKPOINT_BATCH.
                        self.mark_dirty(code);
                    }
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
        match self.load(&code).await {
            Ok(fresh) => {
                let old = std::mem::replace(village, fresh);
                let size = village.latest.as_ref().map_or(0, |c| c.checkpoint.size);
                village.records_tx = old.records_tx;
                village.checkpoint_tx = old.checkpoint_tx;
                village.checkpoint_tx.send_replace(size);
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

    /// Decides and stores `events`, all or nothing. A single event is decided on the state,
    /// stored, then applied. A batch is decided and applied event by event under the state's
    /// undo journal (`begin_batch`), so each later event sees the earlier ones; a refusal or a
    /// store failure rolls the state back, with no copy and no reload. Once stored, the batch
    /// is rolled back and applied again event by event with the views folded after each, so
    /// each view sees the state right after its event.
    pub(super) async fn try_append(&self, village: &mut Village, events: &[Signed]) -> Result<Vec<Appended>, AppendError> {
        if let Some(corruption) = &village.corrupt {
            return Err(AppendError::Corrupt { code: village.code.clone(), corruption: corruption.clone() });
        }
        if village.is_empty() {
            self.check_opener(&village.code, events)?;
        }
        let now = self.now_for(village);
        let batch = events.len() > 1;
        if batch {
            village.state.begin_batch();
        }
        let decided = self.decide_all(village, events, now, batch).await;
        let stored = match decided {
            Ok((accepted, results)) if !accepted.is_empty() => {
                let mut scratch = AggregateState::with_id(aggregate_id(&village.code));
                self.events.persist(&mut scratch, accepted.clone()).await.map(|_| (accepted, results)).map_err(AppendError::Store)
            }
            other => other,
        };
        // The batch's changes are undone in every case: on failure for good, on success to be
        // applied again below with the views.
        village.state.rollback_batch();
        let (accepted, results) = stored?;
        for a in &accepted {
            village.state.apply(a);
            village.views.apply(a, &village.state);
        }
        let records: Vec<Record> = accepted.iter().map(|a| a.record().clone()).collect();
        let mut fresh = records.iter();
        let out = results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    let rec = fresh.next().expect("one record per accepted event");
                    let hash = rec.hash();
                    village.tree.push_record_hash(&hash);
                    village.record_hashes.push(hash);
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

    /// Decides each event on the state (applying it too, in a batch, so that later events see
    /// it): the accepted events, and a result per event (`None` for an accepted one, filled in
    /// once stored; the earlier record for a duplicate).
    async fn decide_all(
        &self,
        village: &mut Village,
        events: &[Signed],
        now: i64,
        batch: bool,
    ) -> Result<(Vec<Accepted>, Vec<Option<Appended>>), AppendError> {
        let mut accepted: Vec<Accepted> = Vec::new();
        let mut results: Vec<Option<Appended>> = Vec::new();
        for (index, event) in events.iter().enumerate() {
            match village.state.decide(event.command(now)) {
                Ok(Decision::Append(a)) => {
                    if batch {
                        village.state.apply(&a);
                    }
                    results.push(None);
                    accepted.push(*a);
                }
                Ok(Decision::Duplicate { seq }) => {
                    let hash = village.record_hash(seq).or_else(|| accepted.get((seq - village.len()) as usize).map(|a| a.hash()));
                    let recorded_at = match self.store.record(&village.code, seq).await.map_err(AppendError::Store)? {
                        Some(r) => r.recorded_at(),
                        None => now,
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

//! The append path: decide and apply a request's events on a clone of the state (O(1): the
//! state's collections are persistent), persist them through the esrs `EventStore`, then keep
//! the clone and fold the views. A refused event or a failed store leaves the village as it
//! was: a refusal costs the request, never a reload.

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

impl Villages {
    /// Appends signed events to one ledger, all or nothing, in order.
    pub async fn append(&self, code: &VillageCode, events: Vec<Signed>) -> Result<Vec<Appended>, AppendError> {
        let (arc, mut village) = loop {
            let arc = self.village_or_load(code).await.map_err(AppendError::Store)?;
            let village = arc.clone().lock_owned().await;
            if !village.stale {
                break (arc, village);
            }
        };
        for attempt in 0..2 {
            match self.try_append(&mut village, &events).await {
                Err(AppendError::Store(StoreError::Conflict { .. })) if attempt == 0 => {
                    // Another process appended to this village: reload and decide again.
                    self.reload(&mut village).await.map_err(AppendError::Store)?;
                }
                Ok(out) => {
                    // A new ledger is kept in memory from its first record on.
                    self.map.lock().expect("village map").entry(code.clone()).or_insert_with(|| arc.clone());
                    if out.iter().any(|a| !a.duplicate) {
                        // Wakes the checkpointer: every append, a settlement included, is
                        // covered by a signed checkpoint within CHECKPOINT_BATCH.
                        self.mark_dirty(code);
                    }
                    return Ok(out);
                }
                other => return other,
            }
        }
        unreachable!("the loop returns on its second attempt")
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

    /// Decides and stores `events`, all or nothing. Each event is decided and applied on a
    /// clone of the state, so each later event sees the earlier ones; a refusal or a store
    /// failure drops the clone and leaves the village untouched. Once the records are stored,
    /// the clone becomes the state and the views are folded, each event with the state right
    /// after it (a snapshot, O(1)).
    pub(super) async fn try_append(&self, village: &mut Village, events: &[Signed]) -> Result<Vec<Appended>, AppendError> {
        if let Some(corruption) = &village.corrupt {
            return Err(AppendError::Corrupt { code: village.code.clone(), corruption: corruption.clone() });
        }
        if village.is_empty() {
            self.check_opener(&village.code, events)?;
        }
        let now = self.now_for(village);
        let mut next = village.state.clone();
        let mut accepted: Vec<Accepted> = Vec::new();
        let mut after: Vec<VillageState> = Vec::new();
        let mut results: Vec<Option<Appended>> = Vec::new();
        for (index, event) in events.iter().enumerate() {
            match next.decide(event.command(now)) {
                Ok(Decision::Append(a)) => {
                    next.apply(&a);
                    after.push(next.clone());
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
        let records: Vec<Record> = accepted.iter().map(|a| a.record().clone()).collect();
        if !accepted.is_empty() {
            // Persisted through the esrs EventStore; the state is ours, kept below.
            let mut scratch = AggregateState::with_id(aggregate_id(&village.code));
            self.events.persist(&mut scratch, accepted.clone()).await.map_err(AppendError::Store)?;
        }
        village.state = next;
        for (a, state) in accepted.iter().zip(&after) {
            village.views.apply(a, state);
        }
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

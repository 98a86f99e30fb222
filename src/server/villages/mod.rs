//! One writer per village, inside the process.
//!
//! Each village's state (the write-model state, the Merkle tree and the latest checkpoint) is
//! kept in memory behind its own async mutex, loaded lazily from the store on first use.
//! Appends to one village are serialised, and different villages proceed in parallel. Events
//! are decided by the write-model, then persisted through the esrs `EventStore`
//! ([`VillageEventStore`]) in one transaction per request. If another process appended to the
//! same village first, the unique (ledger, seq) constraint refuses our records. The writer then
//! reloads the village and decides again, once, and never forks the chain.
//!
//! Each append stores, in its own transaction, the read-model rows it changed and the signed
//! checkpoint of the new tip (docs/adr/0005): every tree a query names has a signed
//! checkpoint, and no task signs behind the writers. No Merkle node is stored: the tree keeps
//! its upper levels, and a proof computes the lower ones it needs from the stored records'
//! hashes.
//!
//! Files, one concept each: `village` (one village in memory), `load` (from the store, every
//! row checked, the read model too), `writer` (the append path), `witnessing` (checkpoints as
//! served, cosignatures), `proofs` (from a tree that forgot its lower levels), `export` (year
//! bundles), `log_key`, `error` (what they refuse, in the domain's terms: the gRPC layer alone
//! builds statuses). This file holds the map of villages.

use super::clock::Clock;
use crate::auth::Guard;
use crate::store::event_store::{aggregate_id, VillageEventStore};
use crate::store::read_model::{acts_digest, all_boards_digest, BoardDigests, Derived, Head, RetiredBoards, Rows, Tip};
use crate::store::{Store, StoreError, StoredCheckpoint};
use crate::townships::{OpenRefusal, Townships};
use ed25519_dalek::SigningKey;
use esrs::AggregateState;
use jifen_ledger::bundle::{self, Bundle, ConsistencyStep};
use jifen_ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use jifen_ledger::hash::Hash;
use jifen_ledger::ids::VillageCode;
use jifen_ledger::merkle::Tree;
use jifen_ledger::note::NoteVerifier;
use jifen_ledger::note::{key_id, Note, NoteSignature, NoteSigner};
use jifen_ledger::record::Record;
use jifen_ledger::time::Date;
use jifen_ledger::verify::{check_stored_from, replay_stored_decoded, ChainTip};
use jifen_ledger::village::{Accepted, Decision, Rejection, Signed, VillageState};
use jifen_projections::audit::{Act, AuditTrail};
use jifen_projections::publicity::Board;
use jifen_projections::Views;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex as SyncMutex};
use tokio::sync::{broadcast, watch, Mutex, OwnedMutexGuard};

mod error;
mod export;
mod load;
mod log_key;
mod proofs;
mod snapshot;
mod village;
mod witnessing;
mod writer;

pub use error::{Refusal, VillageError};
pub use load::{acts_difference, replay_stored, ActsCheck, ActsMode, RebuildError, Rebuilt, Replayed};
pub use log_key::LogKey;
pub use proofs::{ConsistencyProof, InclusionProof};
pub use snapshot::SNAPSHOT_EVERY;
pub use village::{CheckpointView, Corruption, Village};
pub use witnessing::Backlog;
pub use writer::{AppendError, Appended};

/// All villages of the deployment.
pub struct Villages {
    store: Store,
    events: VillageEventStore,
    clock: Arc<dyn Clock>,
    log: LogKey,
    deployment: String,
    map: SyncMutex<HashMap<VillageCode, Arc<Mutex<Village>>>>,
    guard: Guard,
    townships: Townships,
    /// Villages loaded from the store since start (first uses and reloads).
    loads: std::sync::atomic::AtomicU64,
    /// The checks of what lies before the snapshots villages were loaded from.
    history: snapshot::HistoryChecks,
    /// [`Villages::set_snapshot_every`].
    snapshot_every: std::sync::atomic::AtomicU64,
}

impl Villages {
    /// How many villages are held in memory.
    pub fn loaded_villages(&self) -> usize {
        self.map.lock().expect("village map").len()
    }

    /// How many times a village was loaded from the store since start (first uses, and
    /// reloads after another process appended to a village first).
    pub fn loads(&self) -> u64 {
        self.loads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Now (µs) by the deployment's clock.
    pub fn now(&self) -> i64 {
        self.clock.now_micros()
    }

    /// Now (µs), never before the last record of `village`: the time queries judge balances
    /// at (an annual expiry due by now is shown before any record of the new year books it).
    pub fn now_for(&self, village: &Village) -> i64 {
        self.clock.now_micros().max(village.state().last_recorded_at())
    }

    /// The villages served from `store`, with time from `clock`, checkpoints signed by `log`.
    pub fn new(store: Store, clock: Arc<dyn Clock>, log: LogKey, deployment: &str, townships: Townships) -> Villages {
        Villages {
            events: VillageEventStore::new(store.clone()),
            store,
            clock,
            log,
            deployment: deployment.to_owned(),
            map: SyncMutex::default(),
            guard: Guard::default(),
            townships,
            loads: Default::default(),
            history: snapshot::HistoryChecks::new(),
            snapshot_every: snapshot::SNAPSHOT_EVERY.into(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The guard of request tokens (the gRPC layer's `authorized`).
    pub(crate) fn guard(&self) -> &Guard {
        &self.guard
    }

    /// The township authority keys the deployment enrols.
    pub(crate) fn townships(&self) -> &Townships {
        &self.townships
    }

    /// The deployment origin (`<deployment>/village/<code>` is a ledger's origin).
    pub fn deployment(&self) -> &str {
        &self.deployment
    }

    /// A village, loaded from the store on first use (empty if it has no records yet).
    pub async fn village(&self, code: &VillageCode) -> Result<Arc<Mutex<Village>>, VillageError> {
        Ok(self.village_or_load(code, false).await?)
    }

    async fn village_or_load(&self, code: &VillageCode, for_append: bool) -> Result<Arc<Mutex<Village>>, StoreError> {
        if let Some(v) = self.map.lock().expect("village map").get(code) {
            return Ok(v.clone());
        }
        let loaded = self.load(code).await?;
        if loaded.is_empty() && loaded.corrupt.is_none() && !for_append {
            // Not cached: a ledger exists only once its genesis is stored (unknown codes must
            // not fill the map). An append caches it while it runs (`append`).
            return Ok(Arc::new(Mutex::new(loaded)));
        }
        let kept = !loaded.is_empty();
        let arc = {
            let mut map = self.map.lock().expect("village map");
            match map.get(code) {
                Some(winner) => winner.clone(),
                None => {
                    // Queued under the map's lock, before anyone can reach the copy: a call that
                    // serves its history finds the check pending, and the check's verdict (which
                    // takes the map's lock) finds the copy in the map.
                    self.check_history_of(&loaded);
                    map.insert(code.clone(), Arc::new(Mutex::new(loaded)));
                    map.get(code).expect("just inserted").clone()
                }
            }
        };
        if kept {
            load::release_freed_memory();
        }
        Ok(arc)
    }

    /// Records that the stored rows of a village failed verification: from now on it takes
    /// no appends and answers no public query, until it is loaded again from rows that pass.
    pub async fn mark_corrupt(&self, code: &VillageCode, corruption: Corruption) {
        let arc = self.map.lock().expect("village map").get(code).cloned();
        if let Some(arc) = arc {
            let mut v = arc.lock().await;
            if v.corrupt.is_none() {
                tracing::error!(village = %code, seq = ?corruption.seq, reason = %corruption.reason, "stored rows fail verification: appends and queries stop");
                v.corrupt = Some(corruption);
            }
        }
    }

    /// The log's note verifier key for a village origin.
    pub fn log_verifier(&self, origin: &str) -> NoteVerifier {
        self.log.signer(origin).verifier().clone()
    }

    /// The origin a village's checkpoints are signed under and the log's verifier key for it:
    /// the origin of its genesis, or (a village whose stored rows failed their checks before a
    /// genesis was read) the one the deployment gives it.
    pub async fn log_key_of(&self, code: &VillageCode) -> Result<(String, NoteVerifier), VillageError> {
        let arc = self.loaded(code).await?;
        let origin = arc.lock().await.origin().unwrap_or_else(|| format!("{}/village/{code}", self.deployment));
        let verifier = self.log_verifier(&origin);
        Ok((origin, verifier))
    }

    /// A village that must exist and whose stored rows pass the checks of a load.
    pub async fn existing(&self, code: &VillageCode) -> Result<Arc<Mutex<Village>>, VillageError> {
        let arc = self.loaded(code).await?;
        arc.lock().await.serving()?;
        Ok(arc)
    }

    /// A village that must exist, whether or not its stored rows pass verification.
    pub(crate) async fn loaded(&self, code: &VillageCode) -> Result<Arc<Mutex<Village>>, VillageError> {
        let v = self.village(code).await?;
        {
            let g = v.lock().await;
            if g.is_empty() && g.corrupt.is_none() {
                return Err(VillageError::UnknownLedger(code.clone()));
            }
        }
        Ok(v)
    }
}

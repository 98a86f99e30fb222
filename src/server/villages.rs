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
//! The checkpointer ([`run_checkpointer`]) signs a checkpoint of every village with new records
//! within a fraction of a second of the append (batched), storing the new Merkle nodes with it.

use super::clock::Clock;
use super::status;
use crate::auth::Guard;
use crate::store::event_store::{aggregate_id, VillageEventStore};
use crate::store::{Store, StoreError, StoredCheckpoint};
use crate::townships::{OpenRefusal, Townships};
use ed25519_dalek::SigningKey;
use esrs::store::EventStore;
use esrs::{Aggregate, AggregateState};
use jifen_ledger::bundle::{self, Bundle, ConsistencyStep};
use jifen_ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use jifen_ledger::hash::Hash;
use jifen_ledger::ids::VillageCode;
use jifen_ledger::merkle::Tree;
use jifen_ledger::note::NoteVerifier;
use jifen_ledger::note::{key_id, Note, NoteSignature, NoteSigner};
use jifen_ledger::record::Record;
use jifen_ledger::time::Date;
use jifen_ledger::verify::{check_stored_from, replay_one, ChainTip};
use jifen_ledger::village::{Accepted, Decision, Rejection, Signed, Village as VillageAggregate, VillageState};
use jifen_projections::Views;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch, Mutex, Notify, OwnedMutexGuard};
use tonic::{Code, Status};

/// Applies one accepted event to the aggregate state and then to the views.
fn fold(agg: AggregateState<VillageState>, views: &mut Views, a: Accepted) -> AggregateState<VillageState> {
    let id = *agg.id();
    let copy = a.clone();
    let agg = agg.apply_store_events(vec![VillageEventStore::store_event(id, a)], VillageAggregate::apply_event);
    views.apply(&copy, agg.inner());
    agg
}

/// The deployment's log key: it signs every village's checkpoints, under the village's origin.
pub struct LogKey(SigningKey);

impl LogKey {
    /// A log key from its 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> LogKey {
        LogKey(SigningKey::from_bytes(&seed))
    }

    /// Loads the key from `path` (64 hex digits), creating a new random one only if no file is
    /// there. A file that is there but cannot be read as a key is an error that says so: the
    /// log key is never replaced, or every supervisor's pinned key would stop verifying.
    pub fn load_or_create(path: &Path) -> std::io::Result<LogKey> {
        match std::fs::read(path) {
            Ok(bytes) => LogKey::parse(&bytes).map_err(|why| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {why}; the log key is never replaced: restore the file from backup", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                getrandom(&mut seed)?;
                let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
                #[cfg(unix)]
                std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
                std::io::Write::write_all(&mut f, jifen_ledger::hex(&seed).as_bytes())?;
                f.sync_all()?;
                Ok(LogKey::from_seed(seed))
            }
            Err(e) => Err(std::io::Error::new(e.kind(), format!("reading the log key {}: {e}", path.display()))),
        }
    }

    /// A key file's contents: exactly 64 hex digits, with surrounding white space allowed.
    pub fn parse(bytes: &[u8]) -> Result<LogKey, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not text (expected 64 hex digits)".to_owned())?.trim();
        let seed = crate::hex32(text).ok_or_else(|| format!("expected 64 hex digits, found {} characters", text.chars().count()))?;
        Ok(LogKey::from_seed(seed))
    }

    /// The note signer for a village origin.
    pub fn signer(&self, origin: &str) -> NoteSigner {
        NoteSigner::new(origin, self.0.clone()).expect("origins are valid key names")
    }
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// What a client learns about an appended event.
#[derive(Clone, Debug)]
pub struct Appended {
    pub ledger_id: String,
    pub seq: u64,
    pub record_hash: Hash,
    pub recorded_at: i64,
    pub duplicate: bool,
}

/// A checkpoint as served: the note with every cosignature, and whether it is witnessed.
#[derive(Clone, Debug)]
pub struct CheckpointView {
    pub checkpoint: Checkpoint,
    pub note: Note,
    pub cosigners: u32,
    pub witnessed: bool,
}

/// One village in memory.
pub struct Village {
    code: VillageCode,
    agg: Option<AggregateState<VillageState>>,
    tree: Tree,
    record_hashes: Vec<Hash>,
    nodes_stored: u64,
    latest: Option<CheckpointView>,
    records_tx: broadcast::Sender<Record>,
    checkpoint_tx: watch::Sender<u64>,
    /// The read models, folded with the state after each event.
    views: Views,
    /// Set when a failed batch could not be undone (the store was unreachable for the
    /// reload): the village is empty and out of the map, and must be loaded again.
    stale: bool,
    /// Set when the stored rows failed a check (on load, or in VerifyLedger): the state and
    /// views are those of the records before the first bad one, kept only to authenticate
    /// supervisors' and auditors' tokens. Nothing is appended and no query is answered.
    corrupt: Option<Corruption>,
}

/// Why a village's stored rows cannot be served: the first bad seq, where one is named, and
/// why. A village in this state can still be verified, read and exported by its supervisors
/// and auditors; writes and public queries get `DATA_LOSS` / `LEDGER_CORRUPT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    pub seq: Option<u64>,
    pub reason: String,
}

impl Corruption {
    fn at(seq: u64, reason: impl Into<String>) -> Corruption {
        Corruption { seq: Some(seq), reason: reason.into() }
    }
}

impl Village {
    /// A village with no records (and new channels).
    fn empty(code: VillageCode) -> Village {
        let id = aggregate_id(&code);
        Village {
            code,
            agg: Some(AggregateState::with_id(id)),
            tree: Tree::default(),
            record_hashes: Vec::new(),
            nodes_stored: 0,
            latest: None,
            records_tx: broadcast::channel(1024).0,
            checkpoint_tx: watch::channel(0).0,
            views: Views::default(),
            stale: false,
            corrupt: None,
        }
    }

    /// The read models.
    pub fn views(&self) -> &Views {
        &self.views
    }
    /// The tree size and root the state and views were computed from.
    pub fn as_of(&self) -> (u64, Hash) {
        (self.len(), self.tree.root(self.len()).expect("size"))
    }
    /// The write-model state.
    pub fn state(&self) -> &VillageState {
        self.agg.as_ref().expect("state present outside an append").inner()
    }
    /// Why the stored rows cannot be served, if they failed a check.
    pub fn corruption(&self) -> Option<&Corruption> {
        self.corrupt.as_ref()
    }
    /// `DATA_LOSS` if the stored rows failed a check: for writes and public queries.
    pub fn serving(&self) -> Result<(), Status> {
        self.corrupt.as_ref().map_or(Ok(()), |c| Err(status::corrupt(&self.code, c.seq, &c.reason)))
    }
    /// The number of records.
    pub fn len(&self) -> u64 {
        self.tree.len()
    }
    /// Whether the village has no records yet.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
    /// The Merkle tree.
    pub fn tree(&self) -> &Tree {
        &self.tree
    }
    /// The record hash at `seq`.
    pub fn record_hash(&self, seq: u64) -> Option<Hash> {
        self.record_hashes.get(seq as usize).copied()
    }
    /// The latest signed checkpoint.
    pub fn latest_checkpoint(&self) -> Option<&CheckpointView> {
        self.latest.as_ref()
    }
    /// New records, as they are appended.
    pub fn subscribe(&self) -> broadcast::Receiver<Record> {
        self.records_tx.subscribe()
    }
    /// The size of the latest checkpoint, as it changes.
    pub fn checkpoints(&self) -> watch::Receiver<u64> {
        self.checkpoint_tx.subscribe()
    }

    fn origin(&self) -> Option<String> {
        self.state().genesis().map(|g| g.origin.clone())
    }
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

/// All villages of the deployment.
pub struct Villages {
    store: Store,
    events: VillageEventStore,
    clock: Arc<dyn Clock>,
    log: LogKey,
    deployment: String,
    map: SyncMutex<HashMap<VillageCode, Arc<Mutex<Village>>>>,
    dirty: SyncMutex<HashSet<VillageCode>>,
    wake: Notify,
    guard: Guard,
    townships: Townships,
}

impl Villages {
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
            dirty: SyncMutex::default(),
            wake: Notify::new(),
            guard: Guard::default(),
            townships,
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The deployment origin (`<deployment>/village/<code>` is a ledger's origin).
    pub fn deployment(&self) -> &str {
        &self.deployment
    }

    /// A village, loaded from the store on first use (empty if it has no records yet).
    pub async fn village(&self, code: &VillageCode) -> Result<Arc<Mutex<Village>>, Status> {
        self.village_or_load(code).await.map_err(|e| status::store(&e))
    }

    async fn village_or_load(&self, code: &VillageCode) -> Result<Arc<Mutex<Village>>, StoreError> {
        if let Some(v) = self.map.lock().expect("village map").get(code) {
            return Ok(v.clone());
        }
        let loaded = self.load(code).await?;
        if loaded.is_empty() && loaded.corrupt.is_none() {
            // Not cached: a ledger exists only once its genesis is stored (unknown codes must
            // not fill the map). Racing genesis appends are settled by the database.
            return Ok(Arc::new(Mutex::new(loaded)));
        }
        let mut map = self.map.lock().expect("village map");
        Ok(map.entry(code.clone()).or_insert_with(|| Arc::new(Mutex::new(loaded))).clone())
    }

    /// A village that must exist, for a guarded call of `method`: the request must carry a
    /// valid token of an enrolled supervisor, township or auditor (see [`crate::auth`]).
    /// A village whose stored rows failed verification is refused (`DATA_LOSS`).
    pub async fn authorized<T>(
        &self,
        request: &tonic::Request<T>,
        method: &str,
        code: &VillageCode,
    ) -> Result<Arc<Mutex<Village>>, Status> {
        let arc = self.authorized_audit(request, method, code).await?;
        arc.lock().await.serving()?;
        Ok(arc)
    }

    /// [`Villages::authorized`] for the calls that must work when the stored rows fail
    /// verification (VerifyLedger, ReadRecords, ExportBundle): the token is checked against
    /// the state replayed up to the last good record, and the deployment's township keys for
    /// the village's township are accepted as well.
    pub async fn authorized_audit<T>(
        &self,
        request: &tonic::Request<T>,
        method: &str,
        code: &VillageCode,
    ) -> Result<Arc<Mutex<Village>>, Status> {
        let arc = self.loaded(code).await?;
        let now = self.clock.now_micros().div_euclid(1_000_000);
        let deployment_key = |key: &jifen_ledger::signature::PublicKey| self.townships.is_enrolled_for(code, key);
        self.guard.check(request.metadata(), method, code, arc.lock().await.state(), now, &deployment_key)?;
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

    /// The year bundle of a village (docs/FORMAT.md §11): the records up to the last witnessed
    /// checkpoint whose last record was recorded in `year` or before, every cosigned
    /// checkpoint up to it, and the consistency proofs between them.
    pub async fn export_bundle(&self, code: &VillageCode, year: u16) -> Result<Vec<u8>, Status> {
        // Works on a village whose stored rows fail verification: the bundle carries the rows
        // as stored, and the proofs between the checkpoints are computed from them, so an
        // auditor's offline verification names the first bad record.
        let arc = self.loaded(code).await?;
        let err = |e: StoreError| status::store(&e);
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
            let v = arc.lock().await;
            let witnessed =
                if v.corrupt.is_some() { !stored.cosignatures.is_empty() } else { self.view(&v, &stored).is_ok_and(|c| c.witnessed) };
            drop(v);
            if in_year && witnessed {
                chosen = Some(size);
                break;
            }
        }
        let size = chosen.ok_or_else(|| {
            status::plain(
                Code::FailedPrecondition,
                "NO_WITNESSED_CHECKPOINT",
                format!("ledger {code} has no checkpoint of {year} or before with the supervisor cosignatures its witness quorum needs (supervisors run `jifen cosign`)"),
            )
        })?;
        let rows = self.store.read_rows(code, 0, size).await.map_err(err)?;
        if let Some((seq, why)) = rows.undecodable {
            return Err(status::corrupt(code, Some(seq), &format!("stored row {seq} is not a record ({why}), and a bundle can only carry records; VerifyLedger and ReadRecords still show the rows")));
        }
        let records = rows.records;
        let included: Vec<u64> = sizes.into_iter().filter(|s| *s <= size).collect();
        let mut checkpoints = Vec::with_capacity(included.len());
        for &s in &included {
            let stored = self.store.checkpoint(code, Some(s)).await.map_err(err)?;
            let stored = stored.ok_or_else(|| status::corrupt(code, None, &format!("the checkpoint of size {s} is gone")))?;
            checkpoints.push(stored_note(&stored).map_err(|why| status::corrupt(code, None, &why))?.encode());
        }
        let log_key = self.log_verifier(&origin).to_string();
        let ledger = code.clone();
        let build = move || -> Result<Vec<u8>, Status> {
            let hashes: Vec<Hash> = records.iter().map(Record::hash).collect();
            let tree = Tree::from_record_hashes(&hashes);
            let proofs = included
                .windows(2)
                .map(|w| {
                    let proof = tree.consistency_proof(w[0], w[1]).map_err(|e| status::corrupt(&ledger, None, &e.to_string()))?;
                    Ok(ConsistencyStep { old: w[0], new: w[1], proof })
                })
                .collect::<Result<Vec<_>, Status>>()?;
            Ok(Bundle { ledger, log_key, origin, year, records, checkpoints, proofs }.encode())
        };
        tokio::task::spawn_blocking(build).await.map_err(|e| Status::internal(e.to_string()))?
    }

    /// The origin a ledger was opened with, as stored beside it.
    async fn origin_of(&self, code: &VillageCode) -> Result<String, Status> {
        let origin = self.store.origin(code).await.map_err(|e| status::store(&e))?;
        origin.ok_or_else(|| status::plain(Code::NotFound, "UNKNOWN_LEDGER", format!("no ledger {code}")))
    }

    /// A village that must exist and whose stored rows pass the checks of a load.
    pub async fn existing(&self, code: &VillageCode) -> Result<Arc<Mutex<Village>>, Status> {
        let arc = self.loaded(code).await?;
        arc.lock().await.serving()?;
        Ok(arc)
    }

    /// A village that must exist, whether or not its stored rows pass verification.
    async fn loaded(&self, code: &VillageCode) -> Result<Arc<Mutex<Village>>, Status> {
        let v = self.village(code).await?;
        {
            let g = v.lock().await;
            if g.is_empty() && g.corrupt.is_none() {
                return Err(status::plain(Code::NotFound, "UNKNOWN_LEDGER", format!("no ledger {code}")));
            }
        }
        Ok(v)
    }

    /// Loads a village from its stored rows, page by page (the records of a large village
    /// never sit in memory all at once). Each row is checked as it is read: the chain, the
    /// stored `record_hash` column, and the write-model's decision on it (so no stored row
    /// reaches `apply` undecided); then the stored Merkle leaves and the latest checkpoint, whose
    /// log signature must open and whose root must match. Signatures are left to VerifyLedger.
    /// Rows that fail leave the village loaded up to the last good record and marked corrupt:
    /// an `Err` is only the store failing.
    async fn load(&self, code: &VillageCode) -> Result<Village, StoreError> {
        let id = aggregate_id(code);
        let mut agg = AggregateState::with_id(id);
        let mut views = Views::default();
        let mut tip = ChainTip::default();
        let mut hashes = Vec::new();
        let mut corrupt = None;
        'pages: loop {
            let rows = self.store.read_rows(code, tip.next_seq, tip.next_seq + LOAD_PAGE).await?;
            let full = (rows.records.len() as u64 + u64::from(rows.undecodable.is_some())) >= LOAD_PAGE;
            let (good, fault) = check_stored_from(&tip, &rows.records, &rows.hashes);
            let page = &rows.records[..good.len()];
            for (r, h) in page.iter().zip(&good) {
                match replay_one(agg.inner(), r) {
                    Ok(a) => {
                        agg = fold(agg, &mut views, a);
                        hashes.push(*h);
                    }
                    Err(e) => {
                        corrupt = Some(Corruption { seq: e.seq(), reason: e.to_string() });
                        break 'pages;
                    }
                }
            }
            tip = tip.after(page, &good);
            if let Some(e) = fault {
                corrupt = Some(Corruption { seq: e.seq(), reason: e.to_string() });
                break;
            }
            if let Some((seq, why)) = rows.undecodable {
                corrupt = Some(Corruption::at(seq.min(tip.next_seq), format!("stored row {seq} is not a record: {why}")));
                break;
            }
            if !full {
                break;
            }
        }
        let tree = Tree::from_record_hashes(&hashes);
        let nodes_stored = self.store.stored_leaves(code).await?;
        let mut village = Village { agg: Some(agg), tree, record_hashes: hashes, nodes_stored, views, ..Village::empty(code.clone()) };
        if corrupt.is_none() && nodes_stored > village.len() {
            corrupt = Some(Corruption::at(
                village.len(),
                format!(
                    "Merkle leaves of {nodes_stored} records are stored with the checkpoints, but only {} records (the tail was removed)",
                    village.len()
                ),
            ));
        }
        if corrupt.is_none() {
            if let Some(stored) = self.store.checkpoint(code, None).await? {
                match self.check_stored_checkpoint(&village, &stored) {
                    Ok(view) => {
                        village.latest = Some(view);
                        village.checkpoint_tx.send_replace(stored.tree_size);
                    }
                    Err(c) => corrupt = Some(c),
                }
            }
        }
        if let Some(c) = corrupt {
            tracing::error!(village = %code, seq = ?c.seq, reason = %c.reason, "stored rows fail verification: the village takes no appends and answers no public query");
            village.corrupt = Some(c);
        } else if village.latest.as_ref().map_or(0, |c| c.checkpoint.size) < village.len() {
            self.mark_dirty(code);
        }
        Ok(village)
    }

    /// Checks the latest stored checkpoint against the records loaded: the note must open
    /// with the log key under the village's origin, say what the row's columns say, cover no
    /// more records than are stored, and have the root of the loaded records.
    fn check_stored_checkpoint(&self, village: &Village, stored: &StoredCheckpoint) -> Result<CheckpointView, Corruption> {
        let len = village.len();
        let origin = village.origin().unwrap_or_default();
        let bad = |why: String| Corruption { seq: None, reason: format!("the stored checkpoint of size {}: {why}", stored.tree_size) };
        let (signed, _) =
            SignedCheckpoint::open(stored.note.as_bytes(), &origin, &self.log_verifier(&origin), &[]).map_err(|e| bad(e.to_string()))?;
        let c = signed.checkpoint();
        if c.size != stored.tree_size || c.root != stored.root {
            return Err(bad(format!(
                "its columns (size {}, root {}) are not what the log signed (size {}, root {})",
                stored.tree_size, stored.root, c.size, c.root
            )));
        }
        if c.size > len {
            return Err(Corruption::at(
                len,
                format!("the checkpoint of size {} covers more than the {len} records stored (truncated)", c.size),
            ));
        }
        let root = village.tree.root(c.size).map_err(|e| bad(e.to_string()))?;
        if root != c.root {
            return Err(bad(format!("the Merkle root of the first {} stored records is {root}, the log signed {}", c.size, c.root)));
        }
        self.view(village, stored).map_err(bad)
    }

    /// A stored checkpoint as served. Its cosigners are the distinct witnesses whose lines
    /// verify, and it is witnessed when they reach the quorum: both as of the checkpoint's
    /// size and time (`bundle::witnesses`), exactly as an offline verifier counts them.
    fn view(&self, village: &Village, stored: &StoredCheckpoint) -> Result<CheckpointView, String> {
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

    fn mark_dirty(&self, code: &VillageCode) {
        self.dirty.lock().expect("dirty set").insert(code.clone());
        self.wake.notify_one();
    }

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
    async fn reload(&self, village: &mut Village) -> Result<(), StoreError> {
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

    /// Decides and stores `events`. A single event is decided on the state, stored, then
    /// applied. A batch is decided and applied event by event on the live state and views
    /// (each later event sees the earlier ones, each view the state right after its event:
    /// no copy of the state is made); if an event is refused or the store fails, the village
    /// is reloaded from the store, which has none of the batch.
    async fn try_append(&self, village: &mut Village, events: &[Signed]) -> Result<Vec<Appended>, AppendError> {
        if let Some(corruption) = &village.corrupt {
            return Err(AppendError::Corrupt { code: village.code.clone(), corruption: corruption.clone() });
        }
        if village.is_empty() {
            self.check_opener(&village.code, events)?;
        }
        let now = self.now_for(village);
        let in_place = events.len() > 1;
        let mut agg = village.agg.take().expect("state present");
        let id = *agg.id();
        let mut accepted: Vec<Accepted> = Vec::new();
        let mut results: Vec<Option<Appended>> = Vec::new();
        let mut failure = None;
        for (index, event) in events.iter().enumerate() {
            match agg.inner().decide(event.command(now)) {
                Ok(Decision::Append(a)) => {
                    if in_place {
                        agg = agg.apply_store_events(vec![VillageEventStore::store_event(id, (*a).clone())], VillageAggregate::apply_event);
                        village.views.apply(&a, agg.inner());
                    }
                    results.push(None);
                    accepted.push(*a);
                }
                Ok(Decision::Duplicate { seq }) => {
                    let hash = village.record_hash(seq).or_else(|| accepted.get((seq - village.len()) as usize).map(|a| a.hash()));
                    let recorded_at = match self.store.record(&village.code, seq).await {
                        Ok(Some(r)) => r.recorded_at(),
                        Ok(None) => now,
                        Err(e) => {
                            failure = Some(AppendError::Store(e));
                            break;
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
                Err(rejection) => {
                    failure = Some(AppendError::Rejected { index, rejection });
                    break;
                }
            }
        }
        let records: Vec<Record> = accepted.iter().map(|a| a.record().clone()).collect();
        if failure.is_none() && !accepted.is_empty() {
            // Persisted through the esrs EventStore; a batch is already applied, so its
            // events are not applied again.
            let mut scratch = AggregateState::with_id(id);
            let target = if in_place { &mut scratch } else { &mut agg };
            match self.events.persist(target, accepted).await {
                Ok(store_events) if !in_place => {
                    for e in store_events {
                        let a = e.payload.clone();
                        agg = agg.apply_store_events(vec![e], VillageAggregate::apply_event);
                        village.views.apply(&a, agg.inner());
                    }
                }
                Ok(_) => {}
                Err(e) => failure = Some(AppendError::Store(e)),
            }
        }
        village.agg = Some(agg);
        if let Some(failure) = failure {
            if in_place && !records.is_empty() {
                // Undo the batch's events in memory. A reload that fails leaves the village
                // stale; the append's own error is what the caller learns.
                let _ = self.reload(village).await;
            }
            return Err(failure);
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
    fn check_opener(&self, code: &VillageCode, events: &[Signed]) -> Result<(), AppendError> {
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
    async fn sign_tip(&self, v: &mut Village) -> Result<(), StoreError> {
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
        self.sign_tip(&mut v).await.map_err(|e| status::store(&e))?;
        Ok(v)
    }

    /// Adds a witness cosignature to a checkpoint. The key name must be
    /// `<deployment>/witness/<actor id>` of an enrolled supervisor, whose current key signed.
    pub async fn cosign(&self, code: &VillageCode, size: u64, line: &str) -> Result<CheckpointView, Status> {
        let parsed = Note::parse(format!("x\n\n{}\n", line.trim_end_matches('\n')).as_bytes())
            .map_err(|e| status::invalid("signature_line", e.to_string()))?;
        let sig = parsed.signatures().first().cloned().ok_or_else(|| status::invalid("signature_line", "no signature"))?;
        let arc = self.existing(code).await?;
        let stored = self.store.checkpoint(code, Some(size)).await.map_err(|e| status::store(&e))?;
        let stored = stored.ok_or_else(|| {
            status::plain(Code::NotFound, "UNKNOWN_CHECKPOINT", format!("ledger {code} has no checkpoint of size {size}"))
        })?;
        let v = arc.lock().await;
        let prefix = format!("{}/witness/", self.deployment);
        let actor_id = sig
            .name
            .strip_prefix(&prefix)
            .ok_or_else(|| status::invalid("signature_line", format!("witness key names are \"{prefix}<actor id>\"")))?;
        let actor =
            v.state().actor(actor_id).ok_or_else(|| status::plain(Code::NotFound, "UNKNOWN_WITNESS", format!("no actor {actor_id}")))?;
        let at = stored.last_recorded_at.ok_or_else(|| {
            status::corrupt(code, Some(size - 1), &format!("record {} that the checkpoint ends with is not stored", size - 1))
        })?;
        // The witnesses of this checkpoint, as an offline verifier derives them: supervisors
        // enrolled and unrevoked after its records, in term at its time, with their key then.
        let (witnesses, _) = bundle::witnesses(v.state(), &v.origin().unwrap_or_default(), size, at);
        let Some(verifier) = witnesses.iter().find(|w| w.name() == sig.name) else {
            return Err(status::plain(
                Code::PermissionDenied,
                "NOT_A_WITNESS",
                format!("{actor_id} is not an enrolled supervisor, unrevoked and in term, at the checkpoint of size {size}"),
            ));
        };
        if verifier.id() != sig.id {
            let current = key_id(&sig.name, &actor.key.0) == sig.id;
            return Err(status::plain(
                Code::Unauthenticated,
                "WRONG_WITNESS_KEY",
                if current {
                    "the key ID is the supervisor's current key, not the key they held when the checkpoint was made"
                } else {
                    "the key ID is not that of the supervisor's key"
                },
            ));
        }
        let corrupt = |e: String| status::store(&StoreError::Corrupt { ledger: code.to_string(), seq: -1, error: e });
        let text = Note::parse(stored.note.as_bytes()).map_err(|e| corrupt(e.to_string()))?.text().to_owned();
        let signature: [u8; 64] =
            sig.signature.as_slice().try_into().map_err(|_| status::invalid("signature_line", "an Ed25519 signature is 64 bytes"))?;
        // The one check of a cosignature, strict, as every verifier makes it (FORMAT.md §3, §6).
        if !verifier.verify(text.as_bytes(), &signature) {
            return Err(status::plain(Code::Unauthenticated, "BAD_COSIGNATURE", "the cosignature does not verify over the checkpoint"));
        }
        drop(v);
        self.store.insert_cosignature(code, size, &sig.name, sig.id, &sig.signature).await.map_err(|e| status::store(&e))?;
        let stored = self.store.checkpoint(code, Some(size)).await.map_err(|e| status::store(&e))?.expect("just read");
        let mut v = arc.lock().await;
        let view = self.view(&v, &stored).map_err(|why| status::corrupt(code, None, &why))?;
        if v.latest.as_ref().is_some_and(|c| c.checkpoint.size == size) {
            v.latest = Some(view.clone());
        }
        Ok(view)
    }

    /// A checkpoint of a village: the latest, or the one of `size`.
    /// Served even when the stored rows fail verification: a checkpoint is the log's signed
    /// statement, which a supervisor verifying the village needs.
    pub async fn checkpoint_view(&self, code: &VillageCode, size: Option<u64>) -> Result<CheckpointView, Status> {
        let arc = self.loaded(code).await?;
        let stored = self.store.checkpoint(code, size).await.map_err(|e| status::store(&e))?;
        let stored = stored
            .ok_or_else(|| status::plain(Code::NotFound, "UNKNOWN_CHECKPOINT", format!("ledger {code} has no such checkpoint yet")))?;
        let v = arc.lock().await;
        self.view(&v, &stored).map_err(|why| status::corrupt(code, None, &why))
    }

    /// Takes the villages with unsigned records.
    fn take_dirty(&self) -> Vec<VillageCode> {
        self.dirty.lock().expect("dirty set").drain().collect()
    }
}

/// A stored checkpoint's note with the cosignature lines added since it was signed.
fn stored_note(stored: &StoredCheckpoint) -> Result<Note, String> {
    let mut note =
        Note::parse(stored.note.as_bytes()).map_err(|e| format!("the stored note of size {} is malformed: {e}", stored.tree_size))?;
    for (name, id, sig) in &stored.cosignatures {
        note.add_signature(NoteSignature { name: name.clone(), id: *id, signature: sig.clone() });
    }
    Ok(note)
}

/// Records per page when a village is loaded.
const LOAD_PAGE: u64 = 10_000;

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

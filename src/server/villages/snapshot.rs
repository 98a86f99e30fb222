//! Sealed snapshots of a village (ADR 0005 step 6): a cold start that does not replay the
//! world, and trusts nothing a database superuser could forge unnoticed.
//!
//! A snapshot is what a served village holds after its first `size` records — the write-model
//! state, the server's views, the digests of the retired 公示 boards and the upper levels of
//! the Merkle tree — serialised (postcard), and sealed by the log key: a signed note
//!
//! ```text
//! jifen snapshot v1
//! <origin>
//! <size>
//! <root of the first size records, base64>
//! <SHA-256 of the body, base64>
//! ```
//!
//! A load opens the latest one (the seal must open with the log key under the village's origin
//! and name the body's digest; the state must be of `size` records whose tree has that root),
//! replays only the records after it, checking their chain from the sealed state's head, and
//! compares the read model with the views as a full load does. What lies before the snapshot
//! (every record, its stored hash, its decision, the acts) is checked again in the
//! background by a full replay ([`Villages::start_history_checks`]); a difference stops the
//! village as a load would have. A superuser can delete a snapshot (the load then replays
//! everything) but cannot forge one without the log key.
//!
//! The note cannot be taken for a checkpoint: its second line is an origin, not a size.

use super::*;
use crate::store::snapshots::StoredSnapshot;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use load::Loaded;

/// The first line of a seal: the snapshot's format. A seal of another format is not opened
/// (the load replays the records and seals a new one). What a snapshot holds is the serde form
/// of the state's and views' types: change any of them and this must change too (the test
/// `a_snapshots_bytes_are_pinned` fails until it does).
pub(super) const FORMAT: &str = "jifen snapshot v1";

/// The fewest records since the latest snapshot for which a new one is sealed, by default
/// (`jifen serve --snapshot-every`).
pub const SNAPSHOT_EVERY: u64 = 10_000;

/// Whether a village of `size` records, whose latest snapshot is of `last`, is due a new one:
/// `every` records since, and an eighth of the ledger (so that the cost of sealing stays a
/// small share of the appends', however large the state is).
pub(super) fn due(size: u64, last: u64, every: u64) -> bool {
    size.saturating_sub(last) >= every.max(1).max(size / 8)
}

/// What a snapshot holds, as it is serialised.
#[derive(serde::Serialize)]
struct Parts<'a> {
    state: &'a VillageState,
    views: &'a Views,
    retired: &'a RetiredBoards,
    tree: &'a Tree,
}

/// What a snapshot holds, opened.
#[derive(serde::Deserialize)]
pub(super) struct Restored {
    pub state: VillageState,
    pub views: Views,
    pub retired: RetiredBoards,
    pub tree: Tree,
}

fn seal_text(origin: &str, size: u64, root: &Hash, digest: &Hash) -> String {
    format!("{FORMAT}\n{origin}\n{size}\n{}\n{}\n", B64.encode(root.as_bytes()), B64.encode(digest.as_bytes()))
}

/// What a snapshot of `state`, `views` and `retired` holds but the tree, digested: what a
/// history check compares with the replay of the records before the snapshot (the tree is
/// compared by its root).
pub(super) fn parts_digest(state: &VillageState, views: &Views, retired: &RetiredBoards) -> Result<Hash, String> {
    #[derive(serde::Serialize)]
    struct Decisions<'a> {
        state: &'a VillageState,
        views: &'a Views,
        retired: &'a RetiredBoards,
    }
    postcard::to_allocvec(&Decisions { state, views, retired }).map(|b| Hash::of(&b)).map_err(|e| format!("serialising the village: {e}"))
}

/// What [`Villages::open_snapshot`] found in a snapshot whose seal holds.
pub(super) enum Opened {
    Restored(Box<Restored>),
    /// A format this version does not read (another format line, or a body that does not
    /// deserialise into this version's types): the records are replayed instead.
    Other(String),
}

/// The serialised form of a village's state, views, retired boards and tree: the same
/// contents always give the same bytes.
pub(super) fn serialise(state: &VillageState, views: &Views, retired: &RetiredBoards, tree: &Tree) -> Result<Vec<u8>, String> {
    postcard::to_allocvec(&Parts { state, views, retired, tree }).map_err(|e| format!("serialising the village: {e}"))
}

impl Villages {
    /// Seals a snapshot of a village once `every` records (and an eighth of the ledger) were
    /// appended or replayed since the latest one.
    pub fn set_snapshot_every(&self, every: u64) {
        self.snapshot_every.store(every, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether `v` is due a new snapshot.
    pub(super) fn snapshot_due(&self, v: &Village) -> bool {
        due(v.len(), v.snapshot, self.snapshot_every.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Seals a snapshot of a village as it stands between requests (no journal open, its
    /// records and their checkpoint stored).
    pub(super) fn seal_snapshot(&self, v: &Village) -> Result<StoredSnapshot, String> {
        self.unsealed(v)?.seal()
    }

    /// A snapshot of `v` serialised (under its lock), to be sealed and stored off it.
    fn unsealed(&self, v: &Village) -> Result<Unsealed, String> {
        let size = v.len();
        let origin = v.origin().ok_or("a ledger with no genesis")?;
        let root = v.tree.root(size).map_err(|e| e.to_string())?;
        let body = serialise(&v.state, &v.views, &v.retired, &v.tree)?;
        Ok(Unsealed { signer: self.log.signer(&origin), origin, size, root, body })
    }

    /// Seals a snapshot of `v` and stores it in the background (the village's lock is not held
    /// while it is written); a failure is logged, and the next one due is sealed anyway.
    pub(super) fn snapshot_in_background(&self, v: &mut Village) {
        let started = std::time::Instant::now();
        match self.unsealed(v) {
            Ok(unsealed) => {
                // The next one is due from here whether or not this one is stored: a store that
                // fails is not retried on every request.
                v.snapshot = unsealed.size;
                let (store, code) = (self.store.clone(), v.code.clone());
                let serialised_ms = started.elapsed().as_millis() as u64;
                tokio::spawn(async move {
                    let size = unsealed.size;
                    let sealed = tokio::task::spawn_blocking(move || unsealed.seal()).await.map_err(|e| e.to_string()).and_then(|r| r);
                    let stored = match sealed {
                        Ok(snapshot) => {
                            store.insert_snapshot(&code, &snapshot).await.map(|()| snapshot.body.len()).map_err(|e| e.to_string())
                        }
                        Err(e) => Err(e),
                    };
                    match stored {
                        Ok(bytes) => tracing::info!(village = %code, size, bytes, serialised_ms, "snapshot stored"),
                        Err(e) => tracing::warn!(village = %code, size, error = %e, "a snapshot could not be sealed or stored"),
                    }
                });
            }
            Err(e) => tracing::warn!(village = %v.code, error = %e, "a snapshot could not be serialised"),
        }
    }

    /// Opens a stored snapshot of ledger `code`, whose origin is `origin`. `Err` (why) for
    /// one whose seal, body or contents do not hold: a forgery or damage, and the village is
    /// stopped, as for any stored row that fails. A snapshot the log sealed in a format this
    /// version does not read is [`Opened::Other`].
    pub(super) fn open_snapshot(&self, code: &VillageCode, origin: &str, stored: &StoredSnapshot) -> Result<Opened, String> {
        let note = Note::parse(stored.seal.as_bytes()).map_err(|e| format!("its seal is not a signed note: {e}"))?;
        let verifier = self.log_verifier(origin);
        if note.verify(std::slice::from_ref(&verifier)).map_or(true, |signed| signed.is_empty()) {
            return Err(format!("its seal is not signed by the log key {verifier}"));
        }
        let mut lines = note.text().strip_suffix('\n').unwrap_or_default().split('\n');
        match lines.next() {
            Some(FORMAT) => {}
            Some(other) if other.starts_with("jifen snapshot ") => return Ok(Opened::Other(format!("its format is {other}"))),
            _ => return Err("its seal is not a snapshot's".to_owned()),
        }
        let fields: Vec<&str> = lines.collect();
        let [sealed_origin, size, root, digest] = fields[..] else {
            return Err("its seal does not have four lines after the format".into());
        };
        let hash = |s: &str| B64.decode(s).ok().and_then(|b| Hash::from_slice(&b));
        let (Some(root), Some(digest)) = (hash(root), hash(digest)) else { return Err("its seal's root or digest is not a hash".into()) };
        if sealed_origin != origin || size != stored.tree_size.to_string() {
            return Err(format!("its seal names {sealed_origin} at size {size}, the row {origin} at size {}", stored.tree_size));
        }
        if Hash::of(&stored.body) != digest {
            return Err("its body is not the one the log sealed".into());
        }
        // Sealed by the log, so not a forgery: a version whose types differ (without a new format
        // line) reads it no more.
        let restored: Restored = match postcard::from_bytes(&stored.body) {
            Ok(r) => r,
            Err(e) => return Ok(Opened::Other(format!("its sealed body does not deserialise here: {e}"))),
        };
        let size = stored.tree_size;
        let genesis = restored.state.genesis().map(|g| (&g.ledger_id, g.origin.as_str()));
        if genesis != Some((code, origin)) || restored.state.next_seq() != size || restored.tree.len() != size {
            return Err(format!("its state is not of the {size} records of {code}"));
        }
        if restored.tree.root(size).ok() != Some(root) {
            return Err("its tree does not have the sealed root".into());
        }
        Ok(Opened::Restored(Box::new(restored)))
    }
}

/// A snapshot serialised, not yet sealed: hashing and signing it is left to another thread.
struct Unsealed {
    signer: NoteSigner,
    origin: String,
    size: u64,
    root: Hash,
    body: Vec<u8>,
}

impl Unsealed {
    fn seal(self) -> Result<StoredSnapshot, String> {
        let mut note = Note::new(seal_text(&self.origin, self.size, &self.root, &Hash::of(&self.body))).map_err(|e| e.to_string())?;
        note.sign(&self.signer);
        Ok(StoredSnapshot { tree_size: self.size, seal: note.encode(), body: self.body })
    }
}

/// A village loaded from a snapshot of this size.
type HistoryCheck = (VillageCode, u64);

/// The queue of history checks: one runs at a time, beside the service.
pub(super) struct HistoryChecks {
    tx: tokio::sync::mpsc::UnboundedSender<HistoryCheck>,
    rx: SyncMutex<Option<tokio::sync::mpsc::UnboundedReceiver<HistoryCheck>>>,
    /// The villages with a check queued or running, and how many.
    pending: watch::Sender<HashMap<VillageCode, usize>>,
    /// Per village, the largest snapshot size whose history was checked, or is queued: a
    /// reload from the same snapshot is not checked again.
    checked: SyncMutex<HashMap<VillageCode, u64>>,
}

impl HistoryChecks {
    pub(super) fn new() -> HistoryChecks {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        HistoryChecks {
            tx,
            rx: SyncMutex::new(Some(rx)),
            pending: watch::channel(HashMap::new()).0,
            checked: SyncMutex::new(HashMap::new()),
        }
    }

    fn done(&self, code: &VillageCode) {
        self.pending.send_modify(|m| {
            if let Some(n) = m.get_mut(code) {
                *n -= 1;
                if *n == 0 {
                    m.remove(code);
                }
            }
        });
    }
}

/// What a history check found.
enum Verdict {
    Clean,
    /// A difference: the village is stopped.
    Corrupt(Corruption),
    /// The snapshot's seal holds and its records are sound, but the state it holds is not
    /// their replay's ([`Villages::replace_snapshot_state`]).
    Unlike(String),
}

fn release_and_log(code: &VillageCode, size: u64, started: std::time::Instant, ok: bool) {
    load::release_freed_memory();
    tracing::info!(village = %code, snapshot = size, ms = started.elapsed().as_millis() as u64, ok, "history before the snapshot checked");
}

/// Longest wait between two attempts at a history check the store failed.
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

impl Villages {
    /// Starts the task that checks, one village at a time, what lies before the snapshot each
    /// village was loaded from (the server starts it; without it the checks wait, and so do
    /// the calls that serve history: [`Villages::history_checked_for`]). A check the store
    /// fails is tried again, with growing waits, until it runs: a village's history is never
    /// taken as checked before it was.
    pub fn start_history_checks(self: &Arc<Self>) {
        let Some(mut rx) = self.history.rx.lock().expect("history checks").take() else { return };
        let villages = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some((code, size)) = rx.recv().await {
                let mut wait = std::time::Duration::from_millis(100);
                loop {
                    let Some(this) = villages.upgrade() else { return };
                    // On a task of its own: a panic is reported, not the end of every check.
                    let check = {
                        let (this, code) = (this.clone(), code.clone());
                        tokio::spawn(async move { this.check_history(&code, size).await })
                    };
                    match check.await {
                        Ok(Ok(Verdict::Clean)) => break,
                        Ok(Ok(Verdict::Corrupt(corruption))) => {
                            this.mark_corrupt(&code, corruption).await;
                            break;
                        }
                        Ok(Ok(Verdict::Unlike(why))) => {
                            this.replace_snapshot_state(&code, &why).await;
                            break;
                        }
                        // Rows no code writes: a verdict, not a reason to try again.
                        Ok(Err(StoreError::Corrupt { error, .. })) => {
                            this.mark_corrupt(&code, Corruption { seq: None, reason: error }).await;
                            break;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(village = %code, error = %e, retry_ms = wait.as_millis() as u64, "the history check could not read the store: it is tried again");
                        }
                        Err(e) => {
                            // A defect: the village is stopped rather than served unchecked.
                            let reason = format!("the check of the history behind the snapshot of size {size} failed: {e}");
                            this.mark_corrupt(&code, Corruption { seq: None, reason }).await;
                            break;
                        }
                    }
                    drop(this);
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETRY_MAX);
                }
                if let Some(this) = villages.upgrade() {
                    // Checks merge only while one is queued or running: a later load from the
                    // same snapshot is checked again.
                    this.forget_history_check(&code, size);
                    this.history.done(&code);
                }
            }
        });
    }

    /// Waits until no history check is queued or running.
    pub async fn history_checked(&self) {
        let mut pending = self.history.pending.subscribe();
        let _ = pending.wait_for(|m| m.is_empty()).await;
    }

    /// Waits until no history check of `code` is queued or running: the calls that serve the
    /// stored history as it is (records, acts, bundles) wait for it, so that nothing is served
    /// that no check has covered. Queries of balances and boards do not: they answer from the
    /// sealed state and the read model compared with it.
    pub async fn history_checked_for(&self, code: &VillageCode) {
        let mut pending = self.history.pending.subscribe();
        let _ = pending.wait_for(|m| !m.contains_key(code)).await;
    }

    /// Queues the check of the history behind the snapshot `v` was loaded from, if it was and
    /// that snapshot's history is not checked or queued already. Called once `v` is the copy
    /// in the map, so that a difference found marks it.
    pub(super) fn check_history_of(&self, v: &Village) {
        let Some((size, _)) = v.restored_from else { return };
        if v.corrupt.is_some() || v.stale {
            return;
        }
        {
            let mut checked = self.history.checked.lock().expect("history checks");
            let known = checked.entry(v.code.clone()).or_default();
            if *known >= size {
                return;
            }
            *known = size;
        }
        self.history.pending.send_modify(|m| *m.entry(v.code.clone()).or_default() += 1);
        if self.history.tx.send((v.code.clone(), size)).is_err() {
            self.history.done(&v.code);
        }
    }

    /// Forgets the check of a village's history behind its snapshot of `size` (once it ran):
    /// its next load from a snapshot is checked again.
    fn forget_history_check(&self, code: &VillageCode, size: u64) {
        let mut checked = self.history.checked.lock().expect("history checks");
        if checked.get(code) == Some(&size) {
            checked.remove(code);
        }
    }

    /// The latest snapshot, sealed by the log key, holds a state unlike its records' replay:
    /// not a forgery (a superuser cannot seal), but another version's state under the same
    /// format line, or a defect. The village is served from its records instead: its snapshots
    /// are deleted (derived; the next one is sealed from the replay) and the copy in the map is
    /// loaded again, every record replayed.
    async fn replace_snapshot_state(&self, code: &VillageCode, why: &str) {
        tracing::error!(village = %code, why = %why, "a sealed snapshot holds a state unlike its records' replay: it is deleted and the village replayed from its records");
        if let Err(e) = self.store.delete_snapshots(code).await {
            tracing::warn!(village = %code, error = %e, "the snapshots could not be deleted");
        }
        let arc = self.map.lock().expect("village map").get(code).cloned();
        if let Some(arc) = arc {
            let mut v = arc.lock().await;
            let code = v.code.clone();
            match self.load_from(&code, false).await {
                Ok(fresh) => {
                    let old = std::mem::replace(&mut *v, fresh);
                    v.records_tx = old.records_tx;
                    v.checkpoint_tx = old.checkpoint_tx;
                }
                Err(e) => {
                    v.corrupt = Some(Corruption { seq: None, reason: format!("{why}; and the records could not be read again: {e}") });
                }
            }
        }
    }

    /// Replays every stored record of a village loaded from a snapshot of `size` records, as a
    /// load without one does (the chain, each stored hash, each decision, the acts, the
    /// latest checkpoint), and checks the latest snapshot against it: its seal, and that the
    /// records before it give what it holds (the same state and views, byte for byte, and the
    /// same root). The verdict; `Err` only when the store fails.
    async fn check_history(&self, code: &VillageCode, size: u64) -> Result<Verdict, StoreError> {
        let started = std::time::Instant::now();
        // The latest snapshot (the next start loads it): this one or a newer one.
        let sealed = match self.store.latest_snapshot(code).await? {
            None => None,
            Some(stored) => {
                let origin = self.store.origin(code).await?.unwrap_or_default();
                match self.open_snapshot(code, &origin, &stored) {
                    Err(why) => {
                        return Ok(Verdict::Corrupt(Corruption {
                            seq: None,
                            reason: format!("the snapshot of size {}: {why}", stored.tree_size),
                        }))
                    }
                    Ok(Opened::Other(_)) => None,
                    Ok(Opened::Restored(r)) => {
                        let at = stored.tree_size;
                        let root =
                            r.tree.root(at).map_err(|e| StoreError::Corrupt { ledger: code.to_string(), seq: -1, error: e.to_string() })?;
                        let digest = parts_digest(&r.state, &r.views, &r.retired).map_err(|error| StoreError::Corrupt {
                            ledger: code.to_string(),
                            seq: -1,
                            error,
                        })?;
                        Some((at, root, digest))
                    }
                }
            }
        };
        let at = sealed.map(|(at, _, _)| at);
        let Loaded { village: full, acts, at_digest } = self.load_records(code, ActsMode::Compare, load::How::History { at }).await?;
        let found = match (full.corrupt.clone(), acts.difference) {
            (Some(c), _) => Some(c),
            // The acts of the records before the snapshot, compared page by page.
            (None, Some(reason)) => Some(Corruption { seq: None, reason }),
            (None, None) => match sealed {
                None => None,
                Some((at, _, _)) if full.len() < at => Some(Corruption::at(
                    full.len(),
                    format!("the snapshot of size {at} covers more than the {} records stored", full.len()),
                )),
                Some((at, root, digest)) => match (full.tree.root(at), at_digest) {
                    (Ok(r), _) if r != root => Some(Corruption {
                        seq: None,
                        reason: format!("the snapshot of size {at} was sealed at root {root}, but the stored records give {r}"),
                    }),
                    (Ok(_), Some(Ok(replayed))) if replayed == digest => None,
                    (Ok(_), Some(Ok(_))) => {
                        let why = format!("the snapshot of size {at} holds a state that is not what its records give when replayed");
                        release_and_log(code, size, started, false);
                        return Ok(Verdict::Unlike(why));
                    }
                    (Ok(_), Some(Err(e))) => Some(Corruption { seq: None, reason: format!("the replay at the snapshot's size {at}: {e}") }),
                    (Ok(_), None) => Some(Corruption { seq: None, reason: format!("the replay did not reach the snapshot's size {at}") }),
                    (Err(e), _) => Some(Corruption { seq: None, reason: format!("the records' tree at the snapshot's size {at}: {e}") }),
                },
            },
        };
        drop(full);
        release_and_log(code, size, started, found.is_none());
        Ok(found.map_or(Verdict::Clean, Verdict::Corrupt))
    }
}

impl Villages {
    /// How the latest stored snapshot of a village fails to be what the verified records
    /// (`hashes`, from seq 0) give, if it does: VerifyLedger's check of the snapshot the next
    /// start would load from. Its seal must open with the log key and name its body, its
    /// contents must be of its size, and its root must be the records' root at that size. A
    /// snapshot of records appended after those verified is left to the next verification.
    pub async fn snapshot_difference(&self, code: &VillageCode, origin: &str, hashes: &[Hash]) -> Result<Option<String>, StoreError> {
        let Some(stored) = self.store.latest_snapshot(code).await? else { return Ok(None) };
        let size = stored.tree_size;
        if size > hashes.len() as u64 {
            let end = self.store.stored_end(code).await?;
            if end >= size {
                // Appended and sealed since the records were read.
                return Ok(None);
            }
            return Ok(Some(format!("the snapshot of size {size} covers more than the {end} records stored")));
        }
        let restored = match self.open_snapshot(code, origin, &stored) {
            Ok(Opened::Restored(restored)) => restored,
            // Sealed in a format this version does not read: the next start replays instead.
            Ok(Opened::Other(_)) => return Ok(None),
            Err(why) => return Ok(Some(format!("the snapshot of size {size}: {why}"))),
        };
        let sealed =
            restored.tree.root(size).map_err(|e| StoreError::Corrupt { ledger: code.to_string(), seq: -1, error: e.to_string() })?;
        drop(restored);
        let leaves = hashes[..size as usize].to_vec();
        let records = tokio::task::spawn_blocking(move || Tree::from_record_hashes(&leaves).root(size))
            .await
            .map_err(|e| StoreError::PoolSetup(format!("building the records' tree: {e}")))?
            .map_err(|e| StoreError::Corrupt { ledger: code.to_string(), seq: -1, error: e.to_string() })?;
        Ok((records != sealed).then(|| format!("the snapshot of size {size} was sealed at root {sealed}, but the records give {records}")))
    }
}

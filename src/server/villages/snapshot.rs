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
//! (every record, its decision, the acts, the stored Merkle nodes) is checked again in the
//! background by a full replay ([`Villages::start_history_checks`]); a difference stops the
//! village as a load would have. A superuser can delete a snapshot (the load then replays
//! everything) but cannot forge one without the log key.
//!
//! The note cannot be taken for a checkpoint: its second line is an origin, not a size.

use super::*;
use crate::store::snapshots::StoredSnapshot;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

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
        let size = v.len();
        let origin = v.origin().ok_or("a ledger with no genesis")?;
        let root = v.tree.root(size).map_err(|e| e.to_string())?;
        let body = serialise(&v.state, &v.views, &v.retired, &v.tree)?;
        let mut note = Note::new(seal_text(&origin, size, &root, &Hash::of(&body))).map_err(|e| e.to_string())?;
        note.sign(&self.log.signer(&origin));
        Ok(StoredSnapshot { tree_size: size, seal: note.encode(), body })
    }

    /// Seals a snapshot of `v` and stores it in the background (the village's lock is not held
    /// while it is written); a failure is logged, and the next one due is sealed anyway.
    pub(super) fn snapshot_in_background(&self, v: &mut Village) {
        let started = std::time::Instant::now();
        match self.seal_snapshot(v) {
            Ok(snapshot) => {
                v.snapshot = snapshot.tree_size;
                let (store, code) = (self.store.clone(), v.code.clone());
                let sealed_ms = started.elapsed().as_millis() as u64;
                tokio::spawn(async move {
                    let bytes = snapshot.body.len();
                    match store.insert_snapshot(&code, &snapshot).await {
                        Ok(()) => tracing::info!(village = %code, size = snapshot.tree_size, bytes, sealed_ms, "snapshot stored"),
                        Err(e) => tracing::warn!(village = %code, size = snapshot.tree_size, error = %e, "a snapshot could not be stored"),
                    }
                });
            }
            Err(e) => tracing::warn!(village = %v.code, error = %e, "a snapshot could not be sealed"),
        }
    }

    /// Opens a stored snapshot of ledger `code`, whose origin is `origin`: `Ok(None)` for a
    /// snapshot of another format, `Err` (why) for one whose seal, body or contents do not
    /// hold (a forgery or damage: the village is stopped, as for any stored row that fails).
    pub(super) fn open_snapshot(&self, code: &VillageCode, origin: &str, stored: &StoredSnapshot) -> Result<Option<Restored>, String> {
        let note = Note::parse(stored.seal.as_bytes()).map_err(|e| format!("its seal is not a signed note: {e}"))?;
        let mut lines = note.text().strip_suffix('\n').unwrap_or_default().split('\n');
        match lines.next() {
            Some(FORMAT) => {}
            Some(other) if other.starts_with("jifen snapshot ") => return Ok(None),
            _ => return Err("its seal is not a snapshot's".to_owned()),
        }
        let verifier = self.log_verifier(origin);
        if note.verify(std::slice::from_ref(&verifier)).map_or(true, |signed| signed.is_empty()) {
            return Err(format!("its seal is not signed by the log key {verifier}"));
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
        let restored: Restored = postcard::from_bytes(&stored.body).map_err(|e| format!("its sealed body does not open: {e}"))?;
        let size = stored.tree_size;
        let genesis = restored.state.genesis().map(|g| (&g.ledger_id, g.origin.as_str()));
        if genesis != Some((code, origin)) || restored.state.next_seq() != size || restored.tree.len() != size {
            return Err(format!("its state is not of the {size} records of {code}"));
        }
        if restored.tree.root(size).ok() != Some(root) {
            return Err("its tree does not have the sealed root".into());
        }
        Ok(Some(restored))
    }
}

/// A village loaded from a snapshot: its code, and the snapshot's size and root.
type HistoryCheck = (VillageCode, u64, Hash);

/// The queue of history checks: one runs at a time, beside the service.
pub(super) struct HistoryChecks {
    tx: tokio::sync::mpsc::UnboundedSender<HistoryCheck>,
    rx: SyncMutex<Option<tokio::sync::mpsc::UnboundedReceiver<HistoryCheck>>>,
    /// The villages with a check queued or running, and how many.
    pending: watch::Sender<HashMap<VillageCode, usize>>,
}

impl HistoryChecks {
    pub(super) fn new() -> HistoryChecks {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        HistoryChecks { tx, rx: SyncMutex::new(Some(rx)), pending: watch::channel(HashMap::new()).0 }
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

impl Villages {
    /// Starts the task that checks, one village at a time, what lies before the snapshot each
    /// village was loaded from (the server starts it; without it the checks wait, and so do
    /// the calls that serve history: [`Villages::history_checked_for`]).
    pub fn start_history_checks(self: &Arc<Self>) {
        let Some(mut rx) = self.history.rx.lock().expect("history checks").take() else { return };
        let villages = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some((code, size, root)) = rx.recv().await {
                let Some(villages) = villages.upgrade() else { return };
                villages.check_history(&code, size, root).await;
                villages.history.done(&code);
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

    pub(super) fn check_history_later(&self, code: &VillageCode, size: u64, root: Hash) {
        self.history.pending.send_modify(|m| *m.entry(code.clone()).or_default() += 1);
        if self.history.tx.send((code.clone(), size, root)).is_err() {
            self.history.done(code);
        }
    }

    /// Replays every stored record of a village loaded from a snapshot of `size` records with
    /// `root`, as a load without one does (the chain, each decision, the acts, the stored
    /// Merkle nodes, the latest checkpoint), and checks that the records give the sealed
    /// root. A difference stops the village, as a load that found it would have.
    async fn check_history(&self, code: &VillageCode, size: u64, root: Hash) {
        let started = std::time::Instant::now();
        let found = match self.load_records(code, ActsMode::Compare, load::How::History).await {
            Err(e) => {
                tracing::warn!(village = %code, error = %e, "the history check could not read the store; it runs again at the next load");
                return;
            }
            Ok((full, acts)) => match (full.corrupt.clone(), acts.difference) {
                (Some(c), _) => Some(c),
                // The acts of the records before the snapshot, compared page by page.
                (None, Some(reason)) => Some(Corruption { seq: None, reason }),
                (None, None) if full.len() < size => Some(Corruption::at(
                    full.len(),
                    format!("the snapshot of size {size} covers more than the {} records stored", full.len()),
                )),
                (None, None) => match full.tree.root(size) {
                    Ok(r) if r == root => None,
                    Ok(r) => Some(Corruption {
                        seq: None,
                        reason: format!("the snapshot of size {size} was sealed at root {root}, but the stored records give {r}"),
                    }),
                    Err(e) => Some(Corruption { seq: None, reason: format!("the records' tree at the snapshot's size {size}: {e}") }),
                },
            },
        };
        load::release_freed_memory();
        tracing::info!(village = %code, snapshot = size, ms = started.elapsed().as_millis() as u64, ok = found.is_none(), "history before the snapshot checked");
        if let Some(corruption) = found {
            self.mark_corrupt(code, corruption).await;
        }
    }
}

impl Villages {
    /// How the latest stored snapshot of a village fails to be what the verified records
    /// (`hashes`, from seq 0) give, if it does: VerifyLedger's check of the snapshot the next
    /// start would load from. Its seal must open with the log key and name its body, its
    /// contents must be of its size, and its root must be the records' root at that size.
    pub async fn snapshot_difference(&self, code: &VillageCode, origin: &str, hashes: &[Hash]) -> Result<Option<String>, StoreError> {
        let Some(stored) = self.store.latest_snapshot(code).await? else { return Ok(None) };
        let size = stored.tree_size;
        if size > hashes.len() as u64 {
            return Ok(Some(format!("the snapshot of size {size} covers more than the {} records verified", hashes.len())));
        }
        let restored = match self.open_snapshot(code, origin, &stored) {
            Ok(Some(restored)) => restored,
            // Another format: the next start replays the records instead.
            Ok(None) => return Ok(None),
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

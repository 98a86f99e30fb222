//! Loading a village from the store, checking every stored row and
//! the latest checkpoint on the way.

use super::*;
use jifen_ledger::body::decode_body;
use jifen_ledger::pb::EventBody;
use snapshot::Opened;

impl Villages {
    /// Loads a village from its stored rows, page by page (the records of a large village
    /// never sit in memory all at once). Each row is checked as it is read: the chain, the
    /// stored `record_hash` column, and the write-model's decision on it (so no stored row
    /// reaches `apply` undecided); then the latest checkpoint, whose
    /// log signature must open and whose root must match. Signatures are left to VerifyLedger.
    /// Rows that fail leave the village loaded up to the last good record and marked corrupt:
    /// an `Err` is only the store failing.
    pub(super) async fn load(&self, code: &VillageCode) -> Result<Village, StoreError> {
        self.load_from(code, true).await
    }

    /// [`Villages::load`], from the latest snapshot only if `snapshot` (a copy that failed a
    /// check is loaded again from its records, so that nothing is served before the verdict).
    pub(super) async fn load_from(&self, code: &VillageCode, snapshot: bool) -> Result<Village, StoreError> {
        // With a read model, the acts are compared page by page as the records replay;
        // without, they are kept to build it.
        let started = std::time::Instant::now();
        let mode = if self.store.read_model_head(code).await?.is_some() { ActsMode::Compare } else { ActsMode::Collect };
        // The read model's summary (and PostgreSQL's digests of the boards) is read while the
        // records replay; it is used if it reflects the tree the replay reaches.
        let summary = (mode == ActsMode::Compare).then(|| {
            let (store, code) = (self.store.clone(), code.clone());
            tokio::spawn(async move { store.read_model_summary(&code).await })
        });
        let loaded = self.load_records(code, mode, if snapshot { How::Serve } else { How::Full }).await;
        if let (Err(_), Some(task)) = (&loaded, &summary) {
            task.abort();
        }
        let Loaded { mut village, acts, .. } = loaded?;
        let replayed = started.elapsed();
        if village.corrupt.is_none() && !village.is_empty() {
            village.corrupt = self.compare_read_model(&village, acts, summary, true).await?.map(|reason| Corruption { seq: None, reason });
        } else if let Some(task) = summary {
            task.abort();
        }
        // Kept whole only to build a missing read model.
        village.retired.forget_whole();
        let sealing = std::time::Instant::now();
        // Not when a stopped copy is loaded again from its records: a snapshot that failed
        // stays where VerifyLedger names it, until `jifen rebuild`.
        if snapshot && village.corrupt.is_none() && !village.is_empty() && self.snapshot_due(&village) {
            // Sealed now, so that the next start need not replay what this one did (the history
            // behind a snapshot it was loaded from is checked once it is in the map:
            // `Villages::village_or_load`, `Villages::reload`).
            match self.seal_snapshot(&village) {
                Ok(snapshot) => match self.store.insert_snapshot(code, &snapshot).await {
                    Ok(()) => village.snapshot = snapshot.tree_size,
                    Err(e) => tracing::warn!(village = %code, error = %e, "a snapshot could not be stored"),
                },
                Err(e) => tracing::warn!(village = %code, error = %e, "a snapshot could not be sealed"),
            }
        }
        if !village.is_empty() {
            tracing::info!(
                village = %code,
                records = village.len(),
                from_snapshot = village.restored_from.map_or(0, |(size, _)| size),
                replay_ms = replayed.as_millis() as u64,
                                read_model_ms = (sealing - started - replayed).as_millis() as u64,
                seal_ms = sealing.elapsed().as_millis() as u64,
                "village loaded"
            );
        }
        if let Some(c) = &village.corrupt {
            tracing::error!(village = %code, seq = ?c.seq, reason = %c.reason, "stored rows fail verification: the village takes no appends and answers no public query");
        }
        Ok(village)
    }

    /// [`Villages::load`] but for the read model: the rows and the
    /// latest checkpoint checked, records stored without a checkpoint signed.
    pub(super) async fn load_records(&self, code: &VillageCode, mode: ActsMode, how: How) -> Result<Loaded, StoreError> {
        if how == How::Serve || how == How::Full {
            self.loads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        // A load to serve starts from the latest sealed snapshot, if it opens (only with a read
        // model to compare: a load that builds one replays every record). It is read first: a
        // snapshot is sealed only once its records and checkpoint are stored, so what is read
        // after it (another process may append and seal meanwhile) covers it.
        let stored_snapshot = if how == How::Serve && mode == ActsMode::Compare { self.store.latest_snapshot(code).await? } else { None };
        let (mut start, mut snapshot_fault, mut snapshot) = (None, None, 0);
        if let Some(stored) = &stored_snapshot {
            let origin = self.store.origin(code).await?.unwrap_or_default();
            match self.open_snapshot(code, &origin, stored) {
                Ok(Opened::Restored(restored)) => {
                    snapshot = stored.tree_size;
                    start = Some(*restored);
                }
                Ok(Opened::Other(why)) => {
                    tracing::warn!(village = %code, size = stored.tree_size, why = %why, "a snapshot this version does not open: the records are replayed");
                }
                Err(why) => {
                    snapshot_fault = Some(Corruption { seq: None, reason: format!("the snapshot of size {}: {why}", stored.tree_size) })
                }
            }
        }
        drop(stored_snapshot);
        // The latest checkpoint is read before the rows: another process may append and sign
        // meanwhile, and rows read later can only be more.
        let latest_stored = self.store.checkpoint(code, None).await?;
        let restored_from = start.as_ref().map(|r| (r.tree.len(), r.tree.root(r.tree.len()).unwrap_or_default()));
        let at = match how {
            How::History { at } => at,
            _ => None,
        };
        let Replayed { state, views, retired, tree, mut corrupt, acts, at_digest } =
            replay_stored_from(&self.store, code, mode, start.take(), at).await?;
        let stored = tree.len();
        let mut village = Village { state, tree, stored, views, retired, snapshot, restored_from, ..Village::empty(code.clone()) };
        if corrupt.is_none() {
            corrupt = snapshot_fault.take();
        }
        if let (None, Some((size, _))) = (&corrupt, restored_from) {
            let end = self.store.stored_end(code).await?;
            if end < size {
                corrupt =
                    Some(Corruption::at(end, format!("the snapshot of size {size} covers more than the {end} records stored (truncated)")));
            } else if latest_stored.as_ref().is_none_or(|c| c.tree_size < size) {
                // A snapshot is sealed only once the checkpoint of its records is stored.
                let latest = latest_stored.as_ref().map_or("none".to_owned(), |c| format!("size {}", c.tree_size));
                corrupt = Some(Corruption {
                    seq: None,
                    reason: format!(
                        "the latest stored checkpoint ({latest}) is older than the snapshot of size {size}, which is sealed only once its checkpoint is stored"
                    ),
                });
            }
        }
        if corrupt.is_none() {
            if let Some(stored) = latest_stored {
                match self.check_stored_checkpoint(&village, &stored) {
                    Ok(view) => {
                        village.latest = Some(view);
                        village.checkpoint_tx.send_replace(stored.tree_size);
                    }
                    Err(c) => corrupt = Some(c),
                }
            }
        }
        if corrupt.is_none()
            && !matches!(how, How::History { .. })
            && village.latest.as_ref().map_or(0, |c| c.checkpoint.size) < village.len()
        {
            // Records stored without their checkpoint (by a version before read models, or by
            // the store alone): signed now, as every append signs its own.
            self.sign_tail(&mut village).await?;
        }
        village.corrupt = corrupt;
        // The lower levels of the stored records' tree are their hashes' (`Store::merkle_nodes`
        // computes what a proof needs). A history check keeps them, to compare a snapshot's root.
        if !matches!(how, How::History { .. }) {
            village.tree.forget_below(village.stored);
        }
        Ok(Loaded { village, acts, at_digest })
    }

    /// Signs and stores the checkpoint of all of a village's records (idempotent: a checkpoint
    /// of a size is the same note whoever signs it).
    async fn sign_tail(&self, v: &mut Village) -> Result<(), StoreError> {
        let size = v.len();
        let Some(origin) = v.origin() else { return Ok(()) };
        let root = v.tree.root(size).map_err(|e| StoreError::Corrupt { ledger: v.code.to_string(), seq: -1, error: e.to_string() })?;
        let checkpoint = Checkpoint { origin: origin.clone(), size, root };
        let signed = checkpoint.sign(&self.log.signer(&origin));
        self.store.insert_checkpoint(&v.code, size, &root, &signed.encode()).await?;
        // No cosignature yet, and every quorum is at least 1.
        v.latest = Some(CheckpointView { checkpoint, note: signed.note().clone(), cosigners: 0, witnessed: false });
        v.checkpoint_tx.send_replace(size);
        Ok(())
    }

    /// The first difference between a village's stored read model and a replay of its
    /// records, under the village's lock: VerifyLedger's check of the read model, once the
    /// records verified. The replay is the village in memory, loaded from rows that passed
    /// its checks, or loaded again when it may not be the stored records' (another process
    /// appended since, or it was stopped for rows that may have been restored since): then
    /// whatever that load finds (a stored Merkle leaf or read-model head beyond the records,
    /// say) is the answer.
    pub async fn read_model_difference(&self, code: &VillageCode) -> Result<Option<Corruption>, StoreError> {
        let arc = self.village_or_load(code, false).await?;
        let mut v = arc.lock().await;
        let ahead = self.store.read_model_head(code).await?.is_some_and(|head| head.tree_size > v.len());
        if v.corrupt.is_some() || ahead {
            self.reload(&mut v).await?;
            return Ok(v.corrupt.clone());
        }
        let acts = ActsCheck { mode: ActsMode::Skip, difference: None, collected: Vec::new() };
        Ok(self.compare_read_model(&v, acts, None, false).await?.map(|reason| Corruption { seq: None, reason }))
    }

    /// Compares a village's stored read model with its state and views (a replay of its
    /// records): the first difference, if any. A ledger with records and no read model (stored
    /// by a version before read models, or by the store alone) has one built when `build`.
    /// A read model ahead of the village is compared only if it is ahead of the stored records
    /// too (then it is wrong); otherwise another process appended since, and a later load or
    /// verification compares it.
    async fn compare_read_model(
        &self,
        village: &Village,
        acts: ActsCheck,
        summary: Option<tokio::task::JoinHandle<Result<Option<StoredSummary>, StoreError>>>,
        build: bool,
    ) -> Result<Option<String>, StoreError> {
        let len = village.len();
        let expected_head = Head {
            tree_size: len,
            root: village.tree.root(len).map_err(|e| StoreError::Corrupt {
                ledger: village.code.to_string(),
                seq: -1,
                error: e.to_string(),
            })?,
            last_recorded_at: village.state.last_recorded_at(),
            book_year: village.state.balances().year(),
        };
        // The boards' entries and objections are compared by digest (PostgreSQL computes the
        // stored rows'), and read only if the digests differ.
        let early = match summary {
            Some(task) => task.await.ok(),
            None => None,
        };
        // Read during the replay, of the same tree: as good as reading it now, unless it
        // differs (a rebuild may have replaced the rows meanwhile: then it is read again).
        let (stored, early) = match early {
            Some(Ok(Some(s))) if s.0.tree_size == len => (Ok(Some(s)), true),
            _ => (self.store.read_model_summary(&village.code).await, false),
        };
        let stored = match stored {
            // A row no code writes (a count below zero, say): that is the difference.
            Err(StoreError::Corrupt { error, .. }) => return Ok(Some(error)),
            other => other?,
        };
        let Some((head, rows, digests)) = stored else {
            if len == 0 {
                return Ok(None);
            }
            if !build || acts.mode != ActsMode::Collect {
                return Ok(Some(format!("the ledger has {len} records but no read model (rows in read_models and the rm_ tables)")));
            }
            // Stored before read models (or removed: derived rows lose nothing, but say so).
            tracing::warn!(village = %village.code, records = len, "the ledger has no read model: building it from the records");
            let expected = Rows::all(&village.state, &village.views, &village.retired);
            return match self.store.rebuild_read_model(&village.code, &expected_head, &expected, &acts.collected).await {
                Ok(()) | Err(StoreError::Conflict { .. }) => Ok(None),
                Err(e) => Err(e),
            };
        };
        // The acts of the records replayed never change, whatever the head says now; nor may
        // any act lie outside the head's tree, nor the index find acts by another function.
        let acts_found = match acts.mode {
            ActsMode::Collect => compare_collected(&self.store, &village.code, &acts.collected).await?,
            _ => acts.difference,
        };
        if let Some(d) = acts_found {
            return Ok(Some(d));
        }
        if let Some(d) = self.store.act_keys_function().await? {
            return Ok(Some(d));
        }
        let found = self.summary_difference(village, &expected_head, (head, rows, digests)).await?;
        if found.is_none() || !early {
            return Ok(found);
        }
        match self.store.read_model_summary(&village.code).await {
            Err(StoreError::Corrupt { error, .. }) => Ok(Some(error)),
            Ok(Some(fresh)) => self.summary_difference(village, &expected_head, fresh).await,
            Ok(None) => Ok(Some(format!("the ledger has {len} records but no read model (rows in read_models and the rm_ tables)"))),
            Err(e) => Err(e),
        }
    }

    /// The first difference between a read model's summary (read in one snapshot) and the
    /// village's replay, whose head is `expected_head`; the boards' rows are read only if their
    /// digests differ, to name the row.
    async fn summary_difference(
        &self,
        village: &Village,
        expected_head: &Head,
        stored: StoredSummary,
    ) -> Result<Option<String>, StoreError> {
        let (head, rows, digests) = stored;
        let len = village.len();
        if head.tree_size > len {
            let stored = self.store.stored_end(&village.code).await?;
            if head.tree_size <= stored {
                return acts_out_of_bounds(&self.store, &village.code).await;
            }
            return Ok(Some(format!("read model: it reflects a tree of {} records, but {stored} are stored", head.tree_size)));
        }
        if head != *expected_head {
            return Ok(Some(format!("read model: its head is stored as {head:?}, but the records give {expected_head:?}")));
        }
        if let Some(d) = acts_out_of_bounds(&self.store, &village.code).await? {
            return Ok(Some(d));
        }
        if let Some(d) = rows.first_difference(&Rows::summary(&village.state, &village.views, &village.retired)) {
            return Ok(Some(d));
        }
        let expected = all_boards_digest(&village.views, &village.retired);
        let Some(id) = first_board_difference(&digests, &expected) else { return Ok(None) };
        if village.retired.contains(&id) {
            // The server keeps no retired board: the records give it again, to name the row.
            return retired_board_difference(&self.store, &village.code, &id).await;
        }
        // Read them to name the row.
        let full = match self.store.read_model(&village.code).await {
            Err(StoreError::Corrupt { error, .. }) => return Ok(Some(error)),
            other => other?,
        };
        let expected = Rows::all(&village.state, &village.views, &village.retired);
        let live = |rows: Rows| Rows { boards: rows.boards.into_iter().filter(|b| !village.retired.contains(&b.id)).collect(), ..rows };
        let named = full.and_then(|(_, rows)| live(rows).first_difference(&live(expected)));
        Ok(Some(named.unwrap_or_else(|| format!("read model: the stored rows of 公示 {id} differ from the records'"))))
    }

    /// Checks the latest stored checkpoint against the records loaded: the note must open
    /// with the log key under the village's origin, say what the row's columns say, cover no
    /// more records than are stored, and have the root of the loaded records.
    pub(super) fn check_stored_checkpoint(&self, village: &Village, stored: &StoredCheckpoint) -> Result<CheckpointView, Corruption> {
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
}

/// What a load is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum How {
    /// To serve: from the latest sealed snapshot, where one opens.
    Serve,
    /// Every record replayed (a rebuild).
    Full,
    /// Every record replayed, to check what a load from a snapshot did not: nothing is signed
    /// or stored, and the load is not counted. With `at`, what a snapshot at that size would
    /// hold is digested on the way ([`Loaded::at_digest`]).
    History { at: Option<u64> },
}

/// A village loaded ([`Villages::load_records`]).
pub(super) struct Loaded {
    pub village: Village,
    /// Its acts, compared or collected.
    pub acts: ActsCheck,
    /// With [`How::History`]'s `at`: what a snapshot there would hold, digested.
    pub at_digest: Option<Result<Hash, String>>,
}

/// A village's stored rows, replayed: the state and views of the records before the first
/// bad row, their Merkle tree, and what is wrong with that row, if anything.
pub struct Replayed {
    pub state: VillageState,
    pub views: Views,
    /// The boards the views retired (whole with [`ActsMode::Collect`], to build a read model).
    pub retired: RetiredBoards,
    pub tree: Tree,
    pub corrupt: Option<Corruption>,
    /// The acts of the records replayed, as `mode` asked.
    pub acts: ActsCheck,
    /// What a snapshot at the size asked for would hold, digested, if the replay got there.
    pub at_digest: Option<Result<Hash, String>>,
}

/// What a replay does with the acts of the audit trail, which a server does not keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActsMode {
    /// Compares them with the stored acts, page by page (a load with a read model).
    Compare,
    /// Keeps them, to build a read model.
    Collect,
    /// Neither.
    Skip,
}

/// A read model's head, its rows but the boards' items, and the boards' digests
/// ([`Store::read_model_summary`]).
type StoredSummary = (Head, Rows, crate::store::read_model::BoardDigests);

/// A digest of stored acts being computed: the seqs `from..to` it covers, and the task.
pub type StoredDigest = (u64, u64, tokio::task::JoinHandle<Result<[u8; 32], StoreError>>);

/// The acts of a replay, compared or collected page by page.
pub struct ActsCheck {
    pub mode: ActsMode,
    /// The first stored act that differs from the replay's, if any.
    pub difference: Option<String>,
    /// The acts, with [`ActsMode::Collect`].
    pub collected: Vec<Act>,
}

impl ActsCheck {
    pub fn new(mode: ActsMode) -> ActsCheck {
        ActsCheck { mode, difference: None, collected: Vec::new() }
    }

    /// Asks PostgreSQL for the digest of the stored acts of seqs `from..to` while the
    /// caller folds those records ([`ActsCheck::page`] takes the answer), if it compares.
    pub fn prefetch(&self, store: &Store, code: &VillageCode, from: u64, to: u64) -> Option<StoredDigest> {
        (self.mode == ActsMode::Compare && self.difference.is_none() && to > from).then(|| {
            let (store, code) = (store.clone(), code.clone());
            (from, to, tokio::spawn(async move { store.acts_digest(&code, from, to).await }))
        })
    }

    /// Takes the acts of the records `from..from + acts.len()`: compares them with the
    /// stored ones (by the SHA-256 of their canonical lines, computed by PostgreSQL, asked
    /// for ahead by [`ActsCheck::prefetch`] or now; the rows are read only if the digests
    /// differ, to name the first act that does), or keeps them.
    pub async fn page(
        &mut self,
        store: &Store,
        code: &VillageCode,
        from: u64,
        acts: Vec<Act>,
        prefetched: Option<StoredDigest>,
    ) -> Result<(), StoreError> {
        match self.mode {
            ActsMode::Skip => {}
            ActsMode::Collect => self.collected.extend(acts),
            ActsMode::Compare if self.difference.is_some() || acts.is_empty() => {}
            ActsMode::Compare => {
                let to = from + acts.len() as u64;
                let stored = match prefetched {
                    Some((f, t, task)) if (f, t) == (from, to) => match task.await {
                        Ok(digest) => digest?,
                        Err(_) => store.acts_digest(code, from, to).await?,
                    },
                    _ => store.acts_digest(code, from, to).await?,
                };
                if stored != acts_digest(&acts) {
                    self.difference = Some(stored_act_difference(store, code, from, to, &acts).await?);
                }
            }
        }
        Ok(())
    }
}

/// A page of stored rows with their records' bodies decoded ([`read_page`]).
struct Page {
    rows: crate::store::AuditRows,
    bodies: Vec<Result<EventBody, Rejection>>,
}

/// Reads the stored rows of seqs `from..to`, and decodes their bodies on every core (off the
/// async workers): what [`VillageState::decide_stored`] would decode first.
async fn read_page(store: Store, code: VillageCode, from: u64, to: u64) -> Result<Page, StoreError> {
    let rows = store.read_rows(&code, from, to).await?;
    let decode = move || {
        use rayon::prelude::*;
        let bodies = rows.records.par_iter().map(|r| decode_body(r.body()).map_err(Rejection::from)).collect();
        Page { rows, bodies }
    };
    tokio::task::spawn_blocking(decode).await.map_err(|e| StoreError::PoolSetup(format!("decoding a page of records: {e}")))
}

/// Replays a village's stored rows, page by page (the records of a large village never sit in
/// memory all at once). Each row is checked as it is read: the chain, the stored `record_hash`
/// column, and the write-model's decision on it, so no stored row reaches `apply` undecided.
/// Signatures are left to VerifyLedger. An `Err` is only the store failing.
pub async fn replay_stored(store: &Store, code: &VillageCode, mode: ActsMode) -> Result<Replayed, StoreError> {
    replay_stored_from(store, code, mode, None, None).await
}

/// [`replay_stored`] from a snapshot's village, if one is given: only the records after it are
/// read, their chain checked from the sealed state's head. With `at`, the digest of what a
/// snapshot of the first `at` records would hold ([`snapshot::parts_digest`]) is taken when the
/// replay passes there.
pub(super) async fn replay_stored_from(
    store: &Store,
    code: &VillageCode,
    mode: ActsMode,
    start: Option<snapshot::Restored>,
    at: Option<u64>,
) -> Result<Replayed, StoreError> {
    let (mut state, mut views, mut retired, mut tree) = match start {
        Some(r) => (r.state, r.views, r.retired, r.tree),
        None => {
            let retired = if mode == ActsMode::Collect { RetiredBoards::keeping_whole() } else { RetiredBoards::default() };
            (VillageState::new(), Views::serving(), retired, Tree::default())
        }
    };
    let mut acts = ActsCheck::new(mode);
    let mut next: Option<tokio::task::JoinHandle<Result<Page, StoreError>>> = None;
    let mut tip = ChainTip {
        next_seq: state.next_seq(),
        head: state.head(),
        last_recorded_at: state.last_recorded_at(),
        ledger: state.genesis().map(|g| g.ledger_id.clone()),
    };
    let mut corrupt = None;
    let mut at_digest = None;
    // Pages end at `at` too.
    let page_end = |from: u64| match at {
        Some(a) if from < a => (from + LOAD_PAGE).min(a),
        _ => from + LOAD_PAGE,
    };
    'pages: loop {
        let wanted = page_end(tip.next_seq) - tip.next_seq;
        let Page { rows, bodies } = match next.take() {
            Some(task) => task.await.map_err(|e| StoreError::PoolSetup(format!("reading a page of records: {e}")))??,
            None => read_page(store.clone(), code.clone(), tip.next_seq, tip.next_seq + wanted).await?,
        };
        let full = (rows.records.len() as u64 + u64::from(rows.undecodable.is_some())) >= wanted;
        if full && rows.undecodable.is_none() {
            // The next page is read and decoded on other threads while this one is folded.
            let from = tip.next_seq + rows.records.len() as u64;
            next = Some(tokio::spawn(read_page(store.clone(), code.clone(), from, page_end(from))));
        }
        let (good, fault) = check_stored_from(&tip, &rows.records, &rows.hashes);
        let mut page = rows.records;
        page.truncate(good.len());
        let next_tip = tip.after(&page, &good);
        // PostgreSQL digests the page's stored acts while the page is folded here.
        let prefetched = acts.prefetch(store, code, tip.next_seq, tip.next_seq + page.len() as u64);
        // Each record is decided as it is stored (moved, its hash from the chain check).
        for ((r, h), body) in page.into_iter().zip(&good).zip(bodies) {
            match replay_stored_decoded(&state, r, *h, body) {
                Ok(a) => {
                    state.apply(&a);
                    views.apply(&a, &state);
                    tree.push_record_hash(h);
                }
                Err(e) => {
                    corrupt = Some(Corruption { seq: e.seq(), reason: e.to_string() });
                    break 'pages;
                }
            }
        }
        acts.page(store, code, tip.next_seq, views.audit.take_acts(), prefetched).await?;
        retired.add(views.publicity.take_retired());
        tip = next_tip;
        if at.is_some_and(|a| a == tip.next_seq) && fault.is_none() {
            at_digest = Some(snapshot::parts_digest(&state, &views, &retired));
        }
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
    if let Some(task) = next {
        // Read ahead past a bad row: not needed.
        task.abort();
    }
    Ok(Replayed { state, views, retired, tree, corrupt, acts, at_digest })
}

/// How a retired board's stored rows (their digest differs) differ from the records': the
/// board is folded again from the records (the view retires it at its month's settlement)
/// and compared row by row with the stored one. Only ever run on a difference found.
async fn retired_board_difference(store: &Store, code: &VillageCode, id: &str) -> Result<Option<String>, StoreError> {
    let mut state = VillageState::new();
    let mut publicity = jifen_projections::publicity::Publicity::serving();
    let mut board = None;
    let mut from = 0;
    // The records verified on the load; one that no longer decodes ends the fold (the board
    // is then not found, and the difference is named by board).
    'pages: while board.is_none() {
        let rows = store.read_rows(code, from, from + LOAD_PAGE).await?;
        for r in &rows.records {
            let Ok(a) = Accepted::from_verified_record(r.clone()) else { break 'pages };
            state.apply(&a);
            publicity.apply(&a, &state);
        }
        board = publicity.take_retired().into_iter().find(|b| b.id == id);
        if (rows.records.len() as u64) < LOAD_PAGE {
            break;
        }
        from += LOAD_PAGE;
    }
    let stored = match store.read_board(code, id).await {
        Err(StoreError::Corrupt { error, .. }) => return Ok(Some(error)),
        other => other?,
    };
    let only = |board: Option<Board>| Rows { boards: board.into_iter().collect(), ..Rows::default() };
    let named = only(stored.and_then(|(_, b)| b)).first_difference(&only(board));
    Ok(Some(named.unwrap_or_else(|| format!("read model: the stored rows of 公示 {id} differ from the records'"))))
}

/// The first publication whose stored digests (entries or objections) differ from a replay's.
fn first_board_difference(stored: &BoardDigests, expected: &BoardDigests) -> Option<String> {
    let first = |s: &[(String, [u8; 32])], e: &[(String, [u8; 32])]| {
        let n = s.iter().zip(e).take_while(|(a, b)| a == b).count();
        match (s.get(n), e.get(n)) {
            (None, None) => None,
            (Some(a), Some(b)) => Some(a.0.clone().min(b.0.clone())),
            (Some(a), None) | (None, Some(a)) => Some(a.0.clone()),
        }
    };
    match (first(&stored.0, &expected.0), first(&stored.1, &expected.1)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// How the stored acts of seqs `from..to` (read because their digest differs from the
/// replay's) differ from `replayed`: the first act that does, or the first row that is no act.
async fn stored_act_difference(store: &Store, code: &VillageCode, from: u64, to: u64, replayed: &[Act]) -> Result<String, StoreError> {
    match store.read_acts(code, from, to).await {
        Ok(stored) => Ok(first_act_difference(&stored, replayed)),
        Err(StoreError::Corrupt { error, .. }) => Ok(error),
        Err(e) => Err(e),
    }
}

/// How the stored acts of a page (`stored`) differ from a replay's (`replayed`): the first
/// act that does.
fn first_act_difference(stored: &[Act], replayed: &[Act]) -> String {
    let mut s = stored.iter();
    replayed
        .iter()
        .find_map(|a| match s.next() {
            Some(x) if x == a => None,
            Some(x) if x.seq == a.seq => Some(format!("read model rm_acts: seq {} is stored as {x:?}, but the records give {a:?}", a.seq)),
            _ => Some(format!("read model rm_acts: seq {} is missing (the records give {a:?})", a.seq)),
        })
        .or_else(|| s.next().map(|x| format!("read model rm_acts: seq {} is stored but no record gives it", x.seq)))
        // Same rows, another digest: a row the canonical line cannot carry.
        .unwrap_or_else(|| "read model rm_acts: the stored acts differ from the records'".to_owned())
}

/// The acts of `records` (verified, from seq 0), page by page, folded off the async workers:
/// each page's digest, or with `keep` the acts of page `keep` too.
async fn replay_acts(records: Arc<Vec<Record>>, keep: Option<usize>) -> Result<(Vec<[u8; 32]>, Vec<Act>), String> {
    let fold = move || {
        let mut state = VillageState::new();
        let mut audit = AuditTrail::serving();
        let (mut digests, mut kept) = (Vec::new(), Vec::new());
        for (n, page) in records.chunks(LOAD_PAGE as usize).enumerate() {
            for r in page {
                let a = Accepted::from_verified_record(r.clone()).map_err(|e| format!("seq {}: {e}", r.seq()))?;
                state.apply(&a);
                audit.apply(&a, &state);
            }
            let acts = audit.take_acts();
            digests.push(acts_digest(&acts));
            if keep == Some(n) {
                kept = acts;
                break;
            }
        }
        Ok((digests, kept))
    };
    tokio::task::spawn_blocking(fold).await.map_err(|e| e.to_string())?
}

/// The first stored act of `records`' seqs that differs from what `records` (the whole
/// ledger, verified) give, compared page by page as a load compares them: VerifyLedger's check
/// of the acts, which a server does not keep in memory.
pub async fn acts_difference(store: &Store, code: &VillageCode, records: Vec<Record>) -> Result<Option<String>, StoreError> {
    let len = records.len() as u64;
    let records = Arc::new(records);
    // Never "no difference" for want of a fold: every page must have its digest.
    let cannot = |why: String| format!("read model rm_acts: the verified records could not be folded to compare their acts: {why}");
    let digests = match replay_acts(records.clone(), None).await {
        Ok((d, _)) if d.len() as u64 == len.div_ceil(LOAD_PAGE) => d,
        Ok((d, _)) => return Ok(Some(cannot(format!("{} pages of {}", d.len(), len.div_ceil(LOAD_PAGE))))),
        Err(e) => return Ok(Some(cannot(e))),
    };
    for (n, digest) in digests.iter().enumerate() {
        let from = n as u64 * LOAD_PAGE;
        let to = (from + LOAD_PAGE).min(len);
        if store.acts_digest(code, from, to).await? != *digest {
            let replayed = replay_acts(records, Some(n)).await.map(|(_, acts)| acts).unwrap_or_default();
            return Ok(Some(stored_act_difference(store, code, from, to, &replayed).await?));
        }
    }
    // Acts outside the head's tree and the index's function are the read model's checks
    // (`Villages::read_model_difference`), which VerifyLedger runs first.
    Ok(None)
}

/// Hands the memory a load freed back to the system. A load allocates and frees far more than
/// it keeps (pages of records, the whole Merkle tree before it forgets its lower levels, each
/// month's 公示 boards until they retire), and glibc keeps large freed blocks in its heap once
/// its mmap threshold has grown: on the large village the server stayed at 281–308 MB
/// resident for a live heap of 116 MB, and at 245 MB with the threshold fixed. Called once a
/// village with records is loaded and cached, or reloaded and its old copy dropped: never for
/// a code with no ledger (which anyone may ask about), so no request can make it run at will.
pub(super) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns free memory of glibc's heaps to the system; it takes
    // the allocator's locks like any allocation and touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// An act stored outside the tree the read model reflects (below seq 0, or at or beyond its
/// head, read in the same statement: an append stores its acts with its head), if any.
async fn acts_out_of_bounds(store: &Store, code: &VillageCode) -> Result<Option<String>, StoreError> {
    let Some((size, min, max)) = store.acts_bounds(code).await? else { return Ok(None) };
    let outside = [min, max].into_iter().flatten().find(|s| *s < 0 || *s as u64 >= size);
    Ok(outside
        .map(|seq| format!("read model rm_acts: seq {seq} is stored but no record gives it (the read model reflects {size} records)")))
}

/// The first difference between the stored acts and `acts` (a replay's, from seq 0), compared
/// page by page as a load compares them.
async fn compare_collected(store: &Store, code: &VillageCode, acts: &[Act]) -> Result<Option<String>, StoreError> {
    let mut check = ActsCheck::new(ActsMode::Compare);
    for (n, page) in acts.chunks(LOAD_PAGE as usize).enumerate() {
        check.page(store, code, n as u64 * LOAD_PAGE, page.to_vec(), None).await?;
    }
    Ok(check.difference)
}

/// Why a read model was not rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("no ledger {0}")]
    UnknownLedger(VillageCode),
    #[error("the records of ledger {code} fail their checks at {}: {}; the read model is not rebuilt from them", .corruption.seq.map_or("their checkpoint".to_owned(), |s| format!("seq {s}")), .corruption.reason)]
    Records { code: VillageCode, corruption: Corruption },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a rebuild found and did.
#[derive(Debug)]
pub struct Rebuilt {
    pub records: u64,
    pub households: usize,
    pub monthly_rows: usize,
    /// The first difference between the read model as it was and the rebuilt one, if any.
    pub difference: Option<String>,
}

impl Villages {
    /// Rebuilds a ledger's read model from its stored records (`jifen rebuild`): loads the
    /// village with every check of a load but the read model's (rows,
    /// the log-signed latest checkpoint; a tail stored without one is signed), refuses if one
    /// fails, and replaces the read-model rows in one transaction (refused if appends landed
    /// meanwhile: run it again).
    pub async fn rebuild_read_model(&self, code: &VillageCode) -> Result<Rebuilt, RebuildError> {
        let Loaded { village, acts, .. } = self.load_records(code, ActsMode::Collect, How::Full).await?;
        if let Some(corruption) = village.corrupt {
            return Err(RebuildError::Records { code: code.clone(), corruption });
        }
        if village.is_empty() {
            return Err(RebuildError::UnknownLedger(code.clone()));
        }
        let len = village.len();
        let head = Head {
            tree_size: len,
            root: village.tree.root(len).map_err(|e| StoreError::Corrupt { ledger: code.to_string(), seq: -1, error: e.to_string() })?,
            last_recorded_at: village.state.last_recorded_at(),
            book_year: village.state.balances().year(),
        };
        let rows = Rows::all(&village.state, &village.views, &village.retired);
        let difference = match self.store.read_model(code).await? {
            None => Some("there was no read model".to_owned()),
            Some((stored_head, _)) if stored_head != head => {
                Some(format!("its head was stored as {stored_head:?}, the records give {head:?}"))
            }
            Some((_, stored)) => stored.first_difference(&rows),
        };
        let difference = match difference {
            Some(d) => Some(d),
            // The acts as stored, checked the way a load checks them.
            None => compare_collected(&self.store, code, &acts.collected).await?,
        };
        self.store.rebuild_read_model(code, &head, &rows, &acts.collected).await?;
        Ok(Rebuilt { records: len, households: rows.balances.len(), monthly_rows: rows.periods.len(), difference })
    }
}

/// Records per page when a village is loaded.
const LOAD_PAGE: u64 = 10_000;

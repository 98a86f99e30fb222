//! One village in memory: the write-model state, the Merkle tree, the views, the latest
//! checkpoint, and whether its stored rows failed a check.

use super::*;

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
    pub(super) code: VillageCode,
    pub(super) state: VillageState,
    pub(super) tree: Tree,
    /// The number of records stored (the tree may hold a request's leaves beyond them while
    /// it is being decided).
    pub(super) stored: u64,
    pub(super) latest: Option<CheckpointView>,
    pub(super) records_tx: broadcast::Sender<Record>,
    pub(super) checkpoint_tx: watch::Sender<u64>,
    /// The read models, folded with the state after each event.
    pub(super) views: Views,
    /// The 公示 boards the views retired (closed, of settled months): their digests.
    pub(super) retired: RetiredBoards,
    /// The size of the latest snapshot sealed or found (0 with none).
    pub(super) snapshot: u64,
    /// The size and root of the snapshot this copy was loaded from, if it was.
    pub(super) restored_from: Option<(u64, Hash)>,
    /// Set when a failed batch could not be undone (the store was unreachable for the
    /// reload): the village is empty and out of the map, and must be loaded again.
    pub(super) stale: bool,
    /// Set when the stored rows failed a check (on load, or in VerifyLedger): the state and
    /// views are those of the records before the first bad one, kept only to authenticate
    /// supervisors' and auditors' tokens. Nothing is appended and no query is answered.
    pub(super) corrupt: Option<Corruption>,
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
    pub(super) fn at(seq: u64, reason: impl Into<String>) -> Corruption {
        Corruption { seq: Some(seq), reason: reason.into() }
    }
}

impl Village {
    /// A village with no records (and new channels).
    pub(super) fn empty(code: VillageCode) -> Village {
        Village {
            code,
            state: VillageState::new(),
            tree: Tree::default(),
            stored: 0,
            latest: None,
            records_tx: broadcast::channel(1024).0,
            checkpoint_tx: watch::channel(0).0,
            views: Views::serving(),
            retired: RetiredBoards::default(),
            snapshot: 0,
            restored_from: None,
            stale: false,
            corrupt: None,
        }
    }

    /// The size of the sealed snapshot this copy was loaded from, if it was.
    pub fn loaded_from_snapshot(&self) -> Option<u64> {
        self.restored_from.map(|(size, _)| size)
    }
    /// The SHA-256 of what a snapshot of this copy would hold (its state, views, retired
    /// boards and tree, serialised): two copies decide alike when their digests are equal.
    pub fn digest(&self) -> Result<Hash, String> {
        super::snapshot::serialise(&self.state, &self.views, &self.retired, &self.tree).map(|b| Hash::of(&b))
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
        &self.state
    }
    /// Why the stored rows cannot be served, if they failed a check.
    pub fn corruption(&self) -> Option<&Corruption> {
        self.corrupt.as_ref()
    }
    /// `DATA_LOSS` if the stored rows failed a check: for writes and public queries.
    pub fn serving(&self) -> Result<(), VillageError> {
        self.corrupt.as_ref().map_or(Ok(()), |c| Err(VillageError::corrupt(&self.code, c.seq, c.reason.clone())))
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

    pub(super) fn origin(&self) -> Option<String> {
        self.state().genesis().map(|g| g.origin.clone())
    }
}

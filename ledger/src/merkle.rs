//! Merkle tree over record hashes, as RFC 9162 §2.1 (the RFC 6962 tree).
//!
//! ```text
//! leaf hash  = SHA-256(0x00 || record_hash)          RFC 9162 §2.1.1
//! node hash  = SHA-256(0x01 || left || right)
//! MTH({})    = SHA-256()                              the empty tree
//! MTH(D[n])  = node(MTH(D[0:k]), MTH(D[k:n]))         k = largest power of two < n
//! ```
//!
//! Inclusion proofs follow §2.1.3.1 (PATH) and are verified as §2.1.3.2; consistency proofs
//! follow §2.1.4.1 (PROOF/SUBPROOF) and are verified as §2.1.4.2. The same proofs verify with
//! Go's `golang.org/x/mod/sumdb/tlog` (`CheckRecord`, `CheckTree`) given the record hashes.
//!
//! [`Tree`] keeps every complete subtree's hash (the "stored hashes" of tlog), so the root of
//! any prefix and every proof take O(log n) hash operations; a server's tree forgets the lower
//! levels it has stored ([`Tree::forget_below`]) and fetches them for a proof.

use crate::hash::Hash;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use thiserror::Error;

/// The leaf hash of a record hash: `SHA-256(0x00 || record_hash)`.
pub fn leaf_hash(record_hash: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(record_hash.as_bytes());
    Hash(h.finalize().into())
}

/// An interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left.as_bytes());
    h.update(right.as_bytes());
    Hash(h.finalize().into())
}

/// The hash of the complete subtree over `leaves` (leaf hashes, in order), or `None` unless
/// their number is a power of two: how a store computes a node a [`Tree`] forgot from the
/// records it covers.
pub fn subtree_root(leaves: &[Hash]) -> Option<Hash> {
    if !leaves.len().is_power_of_two() {
        return None;
    }
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        level = level.chunks_exact(2).map(|p| node_hash(&p[0], &p[1])).collect();
    }
    level.pop()
}

/// The root of the empty tree: `SHA-256()`.
pub fn empty_root() -> Hash {
    Hash(Sha256::digest([]).into())
}

/// Why a proof was refused or could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    #[error("index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree size {size} is larger than the {len} leaves known")]
    SizeOutOfRange { size: u64, len: u64 },
    #[error("consistency needs 0 < old size {old} <= new size {new}")]
    BadSizes { old: u64, new: u64 },
    #[error("proof has {got} hashes, expected {want}")]
    WrongLength { got: usize, want: usize },
    #[error("consistency proof has the wrong number of hashes ({0})")]
    Malformed(usize),
    #[error("proof does not lead to the expected root")]
    RootMismatch,
    #[error("the tree has forgotten {} stored nodes this needs", .0.len())]
    Forgotten(Vec<(u8, u64)>),
}

/// The largest power of two strictly less than `n` (n >= 2).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Complete-subtree hashes from elsewhere (a store), by `(level, index)`: what a [`Tree`] that
/// forgot its lower levels ([`Tree::forget_below`]) needs for a proof or an older root.
pub type Nodes = HashMap<(u8, u64), Hash>;

/// The levels a [`Tree`] may forget: below this one, only the nodes of its last leaves are kept.
pub const FORGETTABLE_LEVELS: usize = 8;

/// A Merkle tree that grows by appending leaves and remembers every complete subtree, or,
/// once told to forget ([`Tree::forget_below`]), every complete subtree of 2^8 leaves or more
/// and only the last leaves' smaller ones: the frontier and upper levels, enough for the root
/// of the whole tree and for appending. A proof or an older root that needs a forgotten node
/// is refused with [`ProofError::Forgotten`], naming the nodes to fetch, and computed by the
/// `_with` methods once they are given.
#[derive(serde::Serialize, serde::Deserialize, Clone, Default, Debug)]
pub struct Tree {
    /// `levels[k][i - first(k)]` is the hash of the complete subtree of leaves
    /// `[i·2^k, (i+1)·2^k)`.
    levels: Vec<Vec<Hash>>,
    /// The leaves whose nodes below [`FORGETTABLE_LEVELS`] are forgotten: a multiple of 2^8.
    forgotten: u64,
}

/// Looks nodes up in the tree, then in nodes given, and notes those it finds in neither.
struct Lookup<'a> {
    tree: &'a Tree,
    given: Option<&'a Nodes>,
    missing: Vec<(u8, u64)>,
}

impl Lookup<'_> {
    fn node(&mut self, k: usize, i: u64) -> Hash {
        if let Some(h) = self.tree.node(k, i).or_else(|| self.given.and_then(|n| n.get(&(k as u8, i)).copied())) {
            return h;
        }
        self.missing.push((k as u8, i));
        Hash::default()
    }

    /// MTH(D[lo:hi]) for a range the RFC recursion produces (lo aligned to the split).
    fn subtree(&mut self, lo: u64, hi: u64) -> Hash {
        let n = hi - lo;
        if n.is_power_of_two() {
            let k = n.trailing_zeros() as usize;
            return self.node(k, lo >> k);
        }
        let k = split_point(n);
        let (left, right) = (self.subtree(lo, lo + k), self.subtree(lo + k, hi));
        node_hash(&left, &right)
    }

    /// PATH(m, D[lo:hi]); pushes the deepest hash first.
    fn path(&mut self, m: u64, lo: u64, hi: u64, out: &mut Vec<Hash>) {
        let n = hi - lo;
        if n <= 1 {
            return;
        }
        let k = split_point(n);
        if m < k {
            self.path(m, lo, lo + k, out);
            out.push(self.subtree(lo + k, hi));
        } else {
            self.path(m - k, lo + k, hi, out);
            out.push(self.subtree(lo, lo + k));
        }
    }

    /// SUBPROOF(m, D[lo:hi], b).
    fn subproof(&mut self, m: u64, lo: u64, hi: u64, b: bool, out: &mut Vec<Hash>) {
        let n = hi - lo;
        if m == n {
            if !b {
                out.push(self.subtree(lo, hi));
            }
            return;
        }
        let k = split_point(n);
        if m <= k {
            self.subproof(m, lo, lo + k, b, out);
            out.push(self.subtree(lo + k, hi));
        } else {
            self.subproof(m - k, lo + k, hi, false, out);
            out.push(self.subtree(lo, lo + k));
        }
    }

    /// The result, or the nodes it lacked.
    fn finish<T>(self, value: T) -> Result<T, ProofError> {
        if self.missing.is_empty() {
            Ok(value)
        } else {
            let mut missing = self.missing;
            missing.sort_unstable();
            missing.dedup();
            Err(ProofError::Forgotten(missing))
        }
    }
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Tree {
        Tree::default()
    }

    /// Builds a tree over record hashes.
    pub fn from_record_hashes<'a>(hashes: impl IntoIterator<Item = &'a Hash>) -> Tree {
        let mut t = Tree::new();
        for h in hashes {
            t.push_record_hash(h);
        }
        t
    }

    /// The index of the first node level `k` keeps.
    fn first(&self, k: usize) -> u64 {
        if k < FORGETTABLE_LEVELS {
            self.forgotten >> k
        } else {
            0
        }
    }

    /// The number of nodes of level `k` (kept or forgotten).
    fn level_len(&self, k: usize) -> u64 {
        self.levels.get(k).map_or(0, |l| self.first(k) + l.len() as u64)
    }

    /// The hash of the complete subtree `i` of level `k`, if the tree has it and keeps it.
    pub fn node(&self, k: usize, i: u64) -> Option<Hash> {
        let first = self.first(k);
        if i < first {
            return None;
        }
        self.levels.get(k)?.get((i - first) as usize).copied()
    }

    /// The number of leaves.
    pub fn len(&self) -> u64 {
        self.level_len(0)
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the leaf of a record hash.
    pub fn push_record_hash(&mut self, record_hash: &Hash) {
        self.push_leaf(leaf_hash(record_hash));
    }

    /// Appends a leaf hash, completing every subtree it closes.
    pub fn push_leaf(&mut self, leaf: Hash) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let mut k = 0;
        // A forgotten prefix of a level is even (a multiple of 2^(8-k)), so a level's last
        // two kept nodes are the pair its new node completes.
        while self.level_len(k).is_multiple_of(2) {
            let n = self.levels[k].len();
            let parent = node_hash(&self.levels[k][n - 2], &self.levels[k][n - 1]);
            if self.levels.len() == k + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[k + 1].push(parent);
            k += 1;
        }
    }

    /// Forgets every leaf from `len` on (and the subtrees they complete): the tree of its
    /// first `len` leaves again. A writer undoes the leaves of a batch that was not stored.
    /// Never below what the tree forgot ([`Tree::forget_below`]).
    pub fn truncate(&mut self, len: u64) {
        let len = len.max(self.forgotten);
        for k in 0..self.levels.len() {
            let keep = (len >> k).saturating_sub(self.first(k)) as usize;
            self.levels[k].truncate(keep);
        }
        while !self.levels.is_empty() && self.level_len(self.levels.len() - 1) == 0 {
            self.levels.pop();
        }
    }

    /// Forgets the nodes below level [`FORGETTABLE_LEVELS`] of the leaves before `len`
    /// (rounded down to a multiple of 2^8): they are stored, and a proof that needs them
    /// fetches them ([`ProofError::Forgotten`]). What remains is about 1/128 of the tree.
    pub fn forget_below(&mut self, len: u64) {
        let upto = (len.min(self.len()) >> FORGETTABLE_LEVELS) << FORGETTABLE_LEVELS;
        if upto <= self.forgotten {
            return;
        }
        for k in 0..FORGETTABLE_LEVELS.min(self.levels.len()) {
            let drop = ((upto >> k) - (self.forgotten >> k)) as usize;
            let level = &mut self.levels[k];
            level.drain(..drop.min(level.len()));
            level.shrink_to_fit();
        }
        self.forgotten = upto;
    }

    /// The complete-subtree hashes that exist in this tree but not in its first `old_len`
    /// leaves, as `(level, index, hash)`: what to store after appending leaves.
    pub fn nodes_since(&self, old_len: u64) -> Vec<(u8, u64, Hash)> {
        let mut out = Vec::new();
        for k in 0..self.levels.len() {
            for i in (old_len >> k)..self.level_len(k) {
                if let Some(h) = self.node(k, i) {
                    out.push((k as u8, i, h));
                }
            }
        }
        out
    }

    /// The leaf hash at `index`, if kept.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.node(0, index)
    }

    fn lookup<'a>(&'a self, given: Option<&'a Nodes>) -> Lookup<'a> {
        Lookup { tree: self, given, missing: Vec::new() }
    }

    /// The root hash of the first `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, ProofError> {
        self.root_with(size, &Nodes::new())
    }

    /// [`Tree::root`], with forgotten nodes given.
    pub fn root_with(&self, size: u64, nodes: &Nodes) -> Result<Hash, ProofError> {
        if size > self.len() {
            return Err(ProofError::SizeOutOfRange { size, len: self.len() });
        }
        if size == 0 {
            return Ok(empty_root());
        }
        let mut l = self.lookup(Some(nodes));
        let root = l.subtree(0, size);
        l.finish(root)
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size` leaves
    /// (RFC 9162 §2.1.3.1), ordered from the leaf upwards.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.inclusion_proof_with(index, size, &Nodes::new())
    }

    /// [`Tree::inclusion_proof`], with forgotten nodes given.
    pub fn inclusion_proof_with(&self, index: u64, size: u64, nodes: &Nodes) -> Result<Vec<Hash>, ProofError> {
        if size > self.len() {
            return Err(ProofError::SizeOutOfRange { size, len: self.len() });
        }
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut proof = Vec::new();
        let mut l = self.lookup(Some(nodes));
        l.path(index, 0, size, &mut proof);
        l.finish(proof)
    }

    /// The consistency proof between the trees of `old` and `new` leaves (RFC 9162 §2.1.4.1).
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        self.consistency_proof_with(old, new, &Nodes::new())
    }

    /// [`Tree::consistency_proof`], with forgotten nodes given.
    pub fn consistency_proof_with(&self, old: u64, new: u64, nodes: &Nodes) -> Result<Vec<Hash>, ProofError> {
        if new > self.len() {
            return Err(ProofError::SizeOutOfRange { size: new, len: self.len() });
        }
        if old == 0 || old > new {
            return Err(ProofError::BadSizes { old, new });
        }
        let mut proof = Vec::new();
        let mut l = self.lookup(Some(nodes));
        l.subproof(old, 0, new, true, &mut proof);
        l.finish(proof)
    }
}

/// Verifies that `leaf` is at `index` in the tree of `size` leaves with root `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let computed = root_from_inclusion_proof(leaf, index, size, proof)?;
    if &computed == root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// The expected length of an inclusion proof: the bits of `index` and `size - 1` below their
/// highest differing bit, plus the ones set in what remains above.
fn inclusion_len(index: u64, size: u64) -> usize {
    let last = size - 1;
    let inner = 64 - (index ^ last).leading_zeros() as usize;
    let border = (index >> inner).count_ones() as usize;
    inner + border
}

/// The root an inclusion proof leads to (RFC 9162 §2.1.3.2, steps 1–5).
pub fn root_from_inclusion_proof(leaf: &Hash, index: u64, size: u64, proof: &[Hash]) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let want = inclusion_len(index, size);
    if proof.len() != want {
        return Err(ProofError::WrongLength { got: proof.len(), want });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongLength { got: proof.len(), want });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength { got: proof.len(), want });
    }
    Ok(r)
}

/// Verifies that the tree of `old` leaves with root `old_root` is a prefix of the tree of
/// `new` leaves with root `new_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(old: u64, new: u64, old_root: &Hash, new_root: &Hash, proof: &[Hash]) -> Result<(), ProofError> {
    if old == 0 || old > new {
        return Err(ProofError::BadSizes { old, new });
    }
    if old == new {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength { got: proof.len(), want: 0 });
        }
        return if old_root == new_root { Ok(()) } else { Err(ProofError::RootMismatch) };
    }
    let (fr, sr) = roots_from_consistency_proof(old, new, old_root, proof)?;
    if &fr == old_root && &sr == new_root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// The two roots a consistency proof from `old` to `new` (0 < old < new) leads to: the root
/// of the first `old` leaves and the root of all `new` leaves of the tree the proof's nodes
/// come from (RFC 9162 §2.1.4.2, steps 1–6). `old_root` is used only when `old` is a power
/// of two (the proof then starts from it). A proof whose second root matches a signed new
/// root but whose first root differs from a signed old root shows, by collision resistance,
/// that the new tree does not extend the old one.
pub fn roots_from_consistency_proof(old: u64, new: u64, old_root: &Hash, proof: &[Hash]) -> Result<(Hash, Hash), ProofError> {
    if old == 0 || old >= new {
        return Err(ProofError::BadSizes { old, new });
    }
    // Step 1: if old is an exact power of two, prepend old_root to the proof.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    if path.is_empty() {
        return Err(ProofError::Malformed(proof.len()));
    }
    // Steps 2–3.
    let (mut fn_, mut sn) = (old - 1, new - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 4.
    let (mut fr, mut sr) = (path[0], path[0]);
    // Step 5.
    for c in &path[1..] {
        if sn == 0 {
            return Err(ProofError::Malformed(proof.len()));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 6.
    if sn != 0 {
        return Err(ProofError::Malformed(proof.len()));
    }
    Ok((fr, sr))
}

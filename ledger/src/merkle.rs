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
//! any prefix and every proof take O(log n) hash operations.

use crate::hash::Hash;
use sha2::{Digest, Sha256};
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
}

/// The largest power of two strictly less than `n` (n >= 2).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// A Merkle tree that grows by appending leaves and remembers every complete subtree.
#[derive(Clone, Default, Debug)]
pub struct Tree {
    /// `levels[k][i]` is the hash of the complete subtree of leaves `[i·2^k, (i+1)·2^k)`.
    levels: Vec<Vec<Hash>>,
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

    /// The number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
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
        while self.levels[k].len() % 2 == 0 {
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
    pub fn truncate(&mut self, len: u64) {
        for (k, level) in self.levels.iter_mut().enumerate() {
            level.truncate((len >> k) as usize);
        }
        while self.levels.last().is_some_and(|l| l.is_empty()) {
            self.levels.pop();
        }
    }

    /// The complete-subtree hashes that exist in this tree but not in its first `old_len`
    /// leaves, as `(level, index, hash)`: what to store after appending leaves.
    pub fn nodes_since(&self, old_len: u64) -> Vec<(u8, u64, Hash)> {
        let mut out = Vec::new();
        for (k, level) in self.levels.iter().enumerate() {
            let from = (old_len >> k) as usize;
            for (i, h) in level.iter().enumerate().skip(from) {
                out.push((k as u8, i as u64, *h));
            }
        }
        out
    }

    /// The leaf hash at `index`.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.levels.first()?.get(index as usize).copied()
    }

    /// MTH(D[lo:hi]) for a range the RFC recursion produces (lo aligned to the split).
    fn subtree(&self, lo: u64, hi: u64) -> Hash {
        let n = hi - lo;
        if n.is_power_of_two() {
            let k = n.trailing_zeros() as usize;
            return self.levels[k][(lo >> k) as usize];
        }
        let k = split_point(n);
        node_hash(&self.subtree(lo, lo + k), &self.subtree(lo + k, hi))
    }

    /// The root hash of the first `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, ProofError> {
        if size > self.len() {
            return Err(ProofError::SizeOutOfRange { size, len: self.len() });
        }
        Ok(if size == 0 { empty_root() } else { self.subtree(0, size) })
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size` leaves
    /// (RFC 9162 §2.1.3.1), ordered from the leaf upwards.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        if size > self.len() {
            return Err(ProofError::SizeOutOfRange { size, len: self.len() });
        }
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut proof = Vec::new();
        self.path(index, 0, size, &mut proof);
        Ok(proof)
    }

    /// PATH(m, D[lo:hi]); pushes the deepest hash first.
    fn path(&self, m: u64, lo: u64, hi: u64, out: &mut Vec<Hash>) {
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

    /// The consistency proof between the trees of `old` and `new` leaves (RFC 9162 §2.1.4.1).
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        if new > self.len() {
            return Err(ProofError::SizeOutOfRange { size: new, len: self.len() });
        }
        if old == 0 || old > new {
            return Err(ProofError::BadSizes { old, new });
        }
        let mut proof = Vec::new();
        self.subproof(old, 0, new, true, &mut proof);
        Ok(proof)
    }

    /// SUBPROOF(m, D[lo:hi], b).
    fn subproof(&self, m: u64, lo: u64, hi: u64, b: bool, out: &mut Vec<Hash>) {
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

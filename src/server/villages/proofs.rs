//! Inclusion and consistency proofs from a village's tree, which keeps its upper levels and
//! frontier only ([`Tree::forget_below`]): a proof that needs a forgotten node has the store
//! compute the ones it names from the stored records' hashes, and is computed again. No proof
//! is served that does not lead to the root of its tree as the log signed it (the latest
//! checkpoint's, or one proved consistent with it): a stored record or hash changed since it
//! was written is refused as `DATA_LOSS`, never passed on.

use super::*;
use jifen_ledger::merkle::{leaf_hash, root_from_inclusion_proof, verify_consistency, Nodes, ProofError};

/// An inclusion proof as served.
pub struct InclusionProof {
    pub size: u64,
    pub record_hash: Hash,
    pub proof: Vec<Hash>,
}

/// A consistency proof as served.
pub struct ConsistencyProof {
    pub new: u64,
    pub proof: Vec<Hash>,
}

/// The most rounds of fetching forgotten nodes one proof takes (the tree may forget more
/// between two rounds, as appends land).
const FETCH_ROUNDS: usize = 4;

fn bad_request(e: ProofError) -> VillageError {
    VillageError::refused(Refusal::BadProofRequest, e.to_string())
}

impl Villages {
    /// Computes `f` on a village's tree under its lock, with the forgotten nodes it names
    /// computed from the stored records between rounds, without the lock.
    async fn with_stored_nodes<T>(
        &self,
        code: &VillageCode,
        f: impl Fn(&Village, &Nodes) -> Result<Result<T, ProofError>, VillageError>,
    ) -> Result<T, VillageError> {
        let arc = self.existing(code).await?;
        let mut nodes = Nodes::new();
        for _ in 0..FETCH_ROUNDS {
            let missing = {
                let v = arc.lock().await;
                match f(&v, &nodes)? {
                    Ok(t) => return Ok(t),
                    Err(ProofError::Forgotten(missing)) => missing,
                    Err(e) => return Err(bad_request(e)),
                }
            };
            let fetched = self.store.merkle_nodes(code, &missing).await?;
            if let Some((k, i)) = missing.iter().find(|key| !fetched.contains_key(key)) {
                return Err(VillageError::corrupt(
                    code,
                    None,
                    format!("the records under the Merkle node ({k}, {i}) a proof needs are not all stored"),
                ));
            }
            nodes.extend(fetched);
        }
        Err(VillageError::refused(Refusal::Busy, "the tree moved on while its stored nodes were read; retry"))
    }

    /// The size a request names, or the latest checkpoint's (0).
    fn size_or_latest(v: &Village, size: u64) -> Result<u64, VillageError> {
        if size != 0 {
            return Ok(size);
        }
        v.latest_checkpoint()
            .map(|c| c.checkpoint.size)
            .ok_or_else(|| VillageError::refused(Refusal::UnknownCheckpoint, "no checkpoint yet"))
    }

    /// The root of the tree of `size` records, authenticated: the latest signed checkpoint's
    /// when it is that size; else computed (from nodes that may be fetched) and proved
    /// consistent with the latest signed root, so a changed stored node cannot vouch for
    /// itself. `Err` (corrupt) when it is not.
    fn root_of(v: &Village, size: u64, nodes: &Nodes) -> Result<Result<Hash, ProofError>, VillageError> {
        let Some(latest) = v.latest_checkpoint().map(|c| (c.checkpoint.size, c.checkpoint.root)) else {
            return Err(VillageError::refused(Refusal::UnknownCheckpoint, "no checkpoint yet"));
        };
        if latest.0 == size {
            return Ok(Ok(latest.1));
        }
        let root = match v.tree().root_with(size, nodes) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let ((old, old_root), (new, new_root)) = if size < latest.0 { ((size, root), latest) } else { (latest, (size, root)) };
        let proof = match v.tree().consistency_proof_with(old, new, nodes) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        if verify_consistency(old, new, &old_root, &new_root, &proof).is_err() {
            return Err(VillageError::corrupt(
                &v.code,
                None,
                format!("the stored records' hashes do not give a tree of {size} records consistent with the signed one of {}", latest.0),
            ));
        }
        Ok(Ok(root))
    }

    /// The inclusion proof of record `seq` in the tree of `tree_size` records (0: the latest
    /// checkpoint's), with the record's hash as stored.
    pub async fn inclusion_proof(&self, code: &VillageCode, seq: u64, tree_size: u64) -> Result<InclusionProof, VillageError> {
        let (size, proof, root) = self
            .with_stored_nodes(code, |v, nodes| {
                let size = Self::size_or_latest(v, tree_size)?;
                let proof = match v.tree().inclusion_proof_with(seq, size, nodes) {
                    Ok(p) => p,
                    Err(e) => return Ok(Err(e)),
                };
                Ok(Self::root_of(v, size, nodes)?.map(|root| (size, proof, root)))
            })
            .await?;
        let record = self.store.record(code, seq).await?;
        let record_hash =
            record.map(|r| r.hash()).ok_or_else(|| VillageError::corrupt(code, Some(seq), "the record is no longer stored"))?;
        if root_from_inclusion_proof(&leaf_hash(&record_hash), seq, size, &proof) != Ok(root) {
            return Err(VillageError::corrupt(
                code,
                Some(seq),
                format!("the stored record or the stored records' hashes do not lead to the root of the tree of {size} records"),
            ));
        }
        Ok(InclusionProof { size, record_hash, proof })
    }

    /// The consistency proof between the trees of `old` and `new_size` records (0: the
    /// latest checkpoint's).
    pub async fn consistency_proof(&self, code: &VillageCode, old: u64, new_size: u64) -> Result<ConsistencyProof, VillageError> {
        let (new, proof, old_root, new_root) = self
            .with_stored_nodes(code, |v, nodes| {
                let new = Self::size_or_latest(v, new_size)?;
                let (proof, old_root) =
                    match v.tree().consistency_proof_with(old, new, nodes).and_then(|p| Ok((p, v.tree().root_with(old, nodes)?))) {
                        Ok(x) => x,
                        Err(e) => return Ok(Err(e)),
                    };
                // The new root authenticated; the proof's check then authenticates the old one.
                Ok(Self::root_of(v, new, nodes)?.map(|new_root| (new, proof, old_root, new_root)))
            })
            .await?;
        if verify_consistency(old, new, &old_root, &new_root, &proof).is_err() {
            return Err(VillageError::corrupt(
                code,
                None,
                format!("the stored records' hashes do not prove the tree of {old} records a prefix of the tree of {new}"),
            ));
        }
        Ok(ConsistencyProof { new, proof })
    }
}

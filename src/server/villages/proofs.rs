//! Inclusion and consistency proofs from a village's tree, which keeps its upper levels and
//! frontier only ([`Tree::forget_below`]): a proof that needs a forgotten node fetches the
//! stored ones it names and is computed again. No proof is served that does not lead to the
//! root it claims (the signed checkpoint's, where the size is the latest one's): a stored node
//! or record changed since it was written is refused as `DATA_LOSS`, never passed on.

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

fn bad_request(e: ProofError) -> Status {
    status::plain(Code::OutOfRange, "BAD_PROOF_REQUEST", e.to_string())
}

impl Villages {
    /// Computes `f` on a village's tree under its lock, with the stored nodes it names
    /// fetched between rounds, without the lock.
    async fn with_stored_nodes<T>(
        &self,
        code: &VillageCode,
        f: impl Fn(&Village, &Nodes) -> Result<Result<T, ProofError>, Status>,
    ) -> Result<T, Status> {
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
            let fetched = self.store.merkle_nodes(code, &missing).await.map_err(|e| status::store(&e))?;
            if let Some((k, i)) = missing.iter().find(|key| !fetched.contains_key(key)) {
                return Err(status::corrupt(code, None, &format!("the Merkle node ({k}, {i}) a proof needs is not stored")));
            }
            nodes.extend(fetched);
        }
        Err(status::plain(Code::Unavailable, "BUSY", "the tree moved on while its stored nodes were read; retry"))
    }

    /// The size a request names, or the latest checkpoint's (0).
    fn size_or_latest(v: &Village, size: u64) -> Result<u64, Status> {
        if size != 0 {
            return Ok(size);
        }
        v.latest_checkpoint()
            .map(|c| c.checkpoint.size)
            .ok_or_else(|| status::plain(Code::NotFound, "UNKNOWN_CHECKPOINT", "no checkpoint yet"))
    }

    /// The root of the tree of `size` records: the latest signed checkpoint's when it is
    /// that size, else computed.
    fn root_of(v: &Village, size: u64, nodes: &Nodes) -> Result<Hash, ProofError> {
        match v.latest_checkpoint() {
            Some(c) if c.checkpoint.size == size => Ok(c.checkpoint.root),
            _ => v.tree().root_with(size, nodes),
        }
    }

    /// The inclusion proof of record `seq` in the tree of `tree_size` records (0: the latest
    /// checkpoint's), with the record's hash as stored.
    pub async fn inclusion_proof(&self, code: &VillageCode, seq: u64, tree_size: u64) -> Result<InclusionProof, Status> {
        let (size, proof, root) = self
            .with_stored_nodes(code, |v, nodes| {
                let size = Self::size_or_latest(v, tree_size)?;
                Ok(v.tree().inclusion_proof_with(seq, size, nodes).and_then(|proof| Ok((size, proof, Self::root_of(v, size, nodes)?))))
            })
            .await?;
        let record = self.store.record(code, seq).await.map_err(|e| status::store(&e))?;
        let record_hash = record.map(|r| r.hash()).ok_or_else(|| status::corrupt(code, Some(seq), "the record is no longer stored"))?;
        if root_from_inclusion_proof(&leaf_hash(&record_hash), seq, size, &proof) != Ok(root) {
            return Err(status::corrupt(
                code,
                Some(seq),
                &format!("the stored record or Merkle nodes do not lead to the root of the tree of {size} records"),
            ));
        }
        Ok(InclusionProof { size, record_hash, proof })
    }

    /// The consistency proof between the trees of `old` and `new_size` records (0: the
    /// latest checkpoint's).
    pub async fn consistency_proof(&self, code: &VillageCode, old: u64, new_size: u64) -> Result<ConsistencyProof, Status> {
        let (new, proof, old_root, new_root) = self
            .with_stored_nodes(code, |v, nodes| {
                let new = Self::size_or_latest(v, new_size)?;
                Ok(v.tree()
                    .consistency_proof_with(old, new, nodes)
                    .and_then(|proof| Ok((new, proof, v.tree().root_with(old, nodes)?, Self::root_of(v, new, nodes)?))))
            })
            .await?;
        if verify_consistency(old, new, &old_root, &new_root, &proof).is_err() {
            return Err(status::corrupt(
                code,
                None,
                &format!("the stored Merkle nodes do not prove the tree of {old} records a prefix of the tree of {new}"),
            ));
        }
        Ok(ConsistencyProof { new, proof })
    }
}

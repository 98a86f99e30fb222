//! The `snapshots` table: sealed snapshots of a village's decision state (ADR 0005 step 6).
//! The store keeps the bytes; sealing and opening them is `server::villages::snapshot`'s.

use super::{Store, StoreError};
use jifen_ledger::ids::VillageCode;

/// A snapshot as stored: the tree size it was taken at, its seal (a signed note) and body.
#[derive(Clone, Debug)]
pub struct StoredSnapshot {
    pub tree_size: u64,
    pub seal: String,
    pub body: Vec<u8>,
}

impl Store {
    /// Stores a snapshot and drops the ledger's older ones (one of the same size is replaced:
    /// both describe the same records, and the new one is in this version's format).
    pub async fn insert_snapshot(&self, ledger: &VillageCode, snapshot: &StoredSnapshot) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let size = snapshot.tree_size.min(i64::MAX as u64) as i64;
        tx.execute(
            "INSERT INTO snapshots (ledger_id, tree_size, seal, body) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (ledger_id, tree_size) DO UPDATE SET seal = EXCLUDED.seal, body = EXCLUDED.body",
            &[&ledger.as_str(), &size, &snapshot.seal, &snapshot.body],
        )
        .await?;
        tx.execute("DELETE FROM snapshots WHERE ledger_id = $1 AND tree_size < $2", &[&ledger.as_str(), &size]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The latest snapshot of a ledger, if any.
    pub async fn latest_snapshot(&self, ledger: &VillageCode) -> Result<Option<StoredSnapshot>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT tree_size, seal, body FROM snapshots WHERE ledger_id = $1 ORDER BY tree_size DESC LIMIT 1",
                &[&ledger.as_str()],
            )
            .await?;
        Ok(row.map(|r| StoredSnapshot { tree_size: r.get::<_, i64>(0).max(0) as u64, seal: r.get(1), body: r.get(2) }))
    }

    /// Deletes a ledger's snapshots (derived: the next load replays every record).
    pub async fn delete_snapshots(&self, ledger: &VillageCode) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client.execute("DELETE FROM snapshots WHERE ledger_id = $1", &[&ledger.as_str()]).await?;
        Ok(())
    }
}

//! `jifen rebuild --village V`: the operator's repair of a village's read model (the balance,
//! monthly-figure and rulebook tables queries read). The records are replayed with every check
//! of a load; if one fails, nothing is rebuilt. Otherwise the read-model rows are replaced in
//! one transaction, and the first difference the rebuild repaired is printed. Records are
//! never touched: they are what the read model is rebuilt from.
//!
//! It uses the same storage and log key as `jifen serve`: the managed cluster in `--data-dir`
//! or `--database-url`, and `log.key` in `--data-dir` (read, never created), against which
//! the stored checkpoint is checked as on a load. A running server on the same village should be restarted afterwards, so
//! that it loads the village again (until then it refuses the village if it had found the
//! difference).

use jifen::server::clock::SystemClock;
use jifen::server::villages::{LogKey, RebuildError, Villages};
use jifen::townships::Townships;
use jifen_ledger::ids::VillageCode;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct RebuildArgs {
    /// The village (12-digit code) whose read model to rebuild.
    #[arg(long)]
    pub village: String,
    #[command(flatten)]
    pub storage: super::serve::StorageArgs,
}

pub fn run(args: RebuildArgs) -> anyhow::Result<()> {
    let code = VillageCode::parse(&args.village).map_err(|e| anyhow::anyhow!("--village: {e}"))?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let settings = args.storage.settings()?;
        let storage = settings.start_storage(2).await?;
        let log = LogKey::load(&settings.log_key())?;
        // It opens no village and names no witness: no townships, no deployment origin.
        let villages = Villages::new(storage.store.clone(), Arc::new(SystemClock), log, "", Townships::none());
        let result = villages.rebuild_read_model(&code).await;
        drop(villages);
        drop(storage);
        match result {
            Ok(done) => {
                println!(
                    "rebuilt the read model of {code}: {} records replayed, {} household balances, {} monthly rows",
                    done.records, done.households, done.monthly_rows
                );
                match done.difference {
                    Some(d) => println!("repaired: {d}"),
                    None => println!("the read model was already what the records give"),
                }
                Ok(())
            }
            Err(e @ RebuildError::Records { .. }) => {
                Err(anyhow::anyhow!("{e}\nverify the ledger (`jifen verify`) and restore its records from a backup first"))
            }
            Err(e) => Err(e.into()),
        }
    })
}

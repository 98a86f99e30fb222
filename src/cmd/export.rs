//! `jifen export`: the year bundle of a village, from a server (a guarded call).

use anyhow::Context;
use jifen::api::audit_service_client::AuditServiceClient;
use jifen::api::{self};
use jifen::auth::{authorized, method, unix_now};
use jifen_ledger::bundle::Bundle;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    server: super::connect::ServerArgs,
    /// The village (12-digit code).
    #[arg(long)]
    village: String,
    /// The calendar year.
    #[arg(long)]
    year: u32,
    /// The bundle file to write.
    #[arg(long)]
    out: PathBuf,
    /// A supervisor's, township's or auditor's key file, to sign the request.
    #[arg(long)]
    key: PathBuf,
}

/// `jifen export`.
pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let key = super::submit::read_key(&args.key)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut client = AuditServiceClient::new(args.server.channel().await?);
        let request = authorized(
            api::ExportBundleRequest { ledger_id: args.village.clone(), year: args.year },
            &key,
            method::EXPORT_BUNDLE,
            &args.village,
            unix_now(),
        );
        let mut stream = client.export_bundle(request).await.context("ExportBundle")?.into_inner();
        // Written to a side file and renamed once complete and well-formed; removed on failure.
        let tmp = args.out.with_extension("partial");
        let bar = indicatif::ProgressBar::new_spinner().with_message("export");
        let received = async {
            let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let mut n = 0u64;
            while let Some(m) = stream.message().await? {
                f.write_all(&m.chunk)?;
                n += m.chunk.len() as u64;
                bar.set_position(n);
            }
            f.sync_all()?;
            drop(f);
            let bundle = Bundle::decode(&std::fs::read(&tmp)?).context("the server sent a malformed bundle")?;
            std::fs::rename(&tmp, &args.out)?;
            anyhow::Ok((n, bundle))
        }
        .await;
        bar.finish_and_clear();
        let (n, bundle) = received.inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        println!(
            "wrote {} ({n} bytes): {} records of {}, {} checkpoints; verify with: jifen verify --bundle {} --log-key '{}'",
            args.out.display(),
            bundle.records.len(),
            bundle.origin,
            bundle.checkpoints.len(),
            args.out.display(),
            bundle.log_key
        );
        Ok(())
    })
}

//! `jifen query`: balances, 公示 boards, 红黑榜 and audit trails from a server, as readable
//! tables with Chinese labels.

use super::tables::{table, when};
use anyhow::Context;
use jifen::api::{self, query_service_client::QueryServiceClient};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct QueryArgs {
    #[command(flatten)]
    server: super::connect::ServerArgs,
    /// The village (12-digit code).
    #[arg(long)]
    village: String,
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// Every household's points (积分余额).
    Balances {
        /// Show only this household, with its months.
        #[arg(long)]
        household: Option<String>,
    },
    /// A 公示 board with its objections.
    Publication { id: String },
    /// A month's 红黑榜 and its quarter's column.
    Rankings { period: String },
    /// The audit trail of an entry, a household or an actor, with the red flags its acts raise;
    /// with none, every act that raises a red flag. The monthly flags come with either.
    Audit {
        #[arg(long, group = "subject")]
        entry: Option<String>,
        #[arg(long, group = "subject")]
        household: Option<String>,
        #[arg(long, group = "subject")]
        actor: Option<String>,
        /// A supervisor's, township's or auditor's key file: the audit trail is not public.
        #[arg(long)]
        key: PathBuf,
    },
}

fn as_of(a: &Option<api::AsOf>) -> String {
    a.as_ref().map_or_else(String::new, |a| {
        format!("（依据：树大小 {}，根 {}…）", a.tree_size, jifen_ledger::hex(&a.root_hash[..6.min(a.root_hash.len())]))
    })
}

pub fn run(args: QueryArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut q = QueryServiceClient::new(args.server.channel().await?);
        let v = args.village.clone();
        match args.what {
            What::Balances { household: Some(h) } => {
                let r = q.get_balance(api::GetBalanceRequest { ledger_id: v, household_id: h, ..Default::default() }).await?.into_inner();
                let b = r.balance.context("the server answered without the balance")?;
                println!("【{} {} 积分】{}", b.household_id, b.display_name, as_of(&r.as_of));
                println!(
                    "基础 {}，贡献 {}，扣分 {}，已兑换 {}，可用 {}，累计获得 {}",
                    b.basic, b.contribution, b.deducted, b.redeemed, b.available, b.ever_earned
                );
                let rows: Vec<Vec<String>> = r
                    .periods
                    .iter()
                    .map(|p| {
                        vec![
                            p.period.clone(),
                            p.basic.to_string(),
                            p.contribution.to_string(),
                            p.deducted.to_string(),
                            p.redeemed.to_string(),
                        ]
                    })
                    .collect();
                print!("{}", table(&["月份", "基础积分", "贡献积分", "扣分", "兑换"], &rows));
            }
            What::Balances { household: None } => {
                let r = q.list_balances(api::ListBalancesRequest { ledger_id: v, ..Default::default() }).await?.into_inner();
                println!("【积分余额】{}", as_of(&r.as_of));
                print!("{}", super::tables::household_balances(&r.balances));
            }
            What::Publication { id } => {
                let b = q
                    .get_publication(api::GetPublicationRequest { ledger_id: v, publication_id: id, ..Default::default() })
                    .await?
                    .into_inner();
                println!(
                    "【{} 积分公示】{} 公示期 {} 至 {} {}",
                    b.period,
                    b.publication_id,
                    when(b.window_start),
                    when(b.window_end),
                    as_of(&b.as_of)
                );
                print!("{}", super::tables::board_entries(&b.entries.iter().collect::<Vec<_>>()));
                let rows: Vec<Vec<String>> = b
                    .objections
                    .iter()
                    .map(|o| {
                        vec![
                            o.objection_id.clone(),
                            o.entry_id.clone(),
                            o.objector.clone(),
                            o.reason.clone(),
                            o.outcome.clone(),
                            o.finding.clone(),
                        ]
                    })
                    .collect();
                if !rows.is_empty() {
                    print!("\n{}", table(&["异议编号", "记分编号", "异议人", "理由", "结果", "核实情况"], &rows));
                }
            }
            What::Rankings { period } => {
                let r = q
                    .get_rankings(api::GetRankingsRequest { ledger_id: v, period: period.clone(), size: 10, ..Default::default() })
                    .await?
                    .into_inner();
                println!("【{period} 红黑榜】{}", as_of(&r.as_of));
                let n = r.red_list.len().max(r.black_list.len());
                let rows: Vec<Vec<String>> = (0..n)
                    .map(|i| {
                        let f = |l: &[api::Ranked]| {
                            l.get(i).map_or_else(String::new, |x| format!("{} {} ({})", x.household_id, x.display_name, x.points))
                        };
                        vec![(i + 1).to_string(), f(&r.red_list), f(&r.black_list)]
                    })
                    .collect();
                print!("{}", table(&["名次", "红榜", "黑榜（扣分）"], &rows));
            }
            What::Audit { entry, household, actor, key } => {
                use api::get_audit_trail_request::Subject;
                let subject = entry.map(Subject::EntryId).or(household.map(Subject::HouseholdId)).or(actor.map(Subject::ActorId));
                let key = super::submit::read_key(&key)?;
                // Page by page: the acts of every page, the act flags of every page, and the
                // monthly flags (on every page) once.
                let (mut acts, mut flags, mut from_seq) = (Vec::new(), Vec::new(), 0);
                let (monthly, as_of_last): (Vec<api::RedFlag>, Option<api::AsOf>);
                loop {
                    let request = jifen::auth::authorized(
                        api::GetAuditTrailRequest { ledger_id: v.clone(), subject: subject.clone(), from_seq, ..Default::default() },
                        &key,
                        jifen::auth::method::GET_AUDIT_TRAIL,
                        &v,
                        jifen::auth::unix_now(),
                    );
                    let r = q.get_audit_trail(request).await?.into_inner();
                    acts.extend(r.acts);
                    let (m, a): (Vec<_>, Vec<_>) =
                        r.red_flags.into_iter().partition(|f| f.kind == "LONE_SCORER" || f.kind == "CONCENTRATION");
                    flags.extend(a);
                    if r.next_from_seq == 0 {
                        // The last page's tree: every page before it covered its range whole.
                        (monthly, as_of_last) = (m, r.as_of);
                        break;
                    }
                    anyhow::ensure!(r.next_from_seq > from_seq, "the server did not move on from seq {from_seq}");
                    from_seq = r.next_from_seq;
                }
                flags.extend(monthly);
                println!("【审计】{}", as_of(&as_of_last));
                let rows: Vec<Vec<String>> = acts
                    .iter()
                    .map(|a| vec![a.seq.to_string(), a.kind.clone(), a.signers.join("+"), when(a.recorded_at), when(a.occurred_at)])
                    .collect();
                print!("{}", table(&["序号", "事项", "签署人", "录入时间", "声称发生时间"], &rows));
                println!("\n风险提示 {} 条", flags.len());
                for f in &flags {
                    println!("  · {}", f.description);
                }
            }
        }
        Ok(())
    })
}

//! `jifen demo`: a village's month, end to end over gRPC on the embedded PostgreSQL.
//!
//! It starts the managed PostgreSQL and the server (on a port of its own), loads the village's
//! first two months from the generator, then plays March live: the panel scores, a villager
//! self-declares, the 两委 open the 公示, two objections come in (one upheld with its
//! correction, one dismissed), the 公示 closes, the month is settled with two supervisors'
//! co-signatures, stock arrives and households redeem points. Then the ledger is verified, two
//! supervisors cosign the checkpoint, and the 公示 board, balances and audit summary are
//! printed from QueryService. The server's clock is the demo's: seven days of 公示 pass in a
//! moment.

use super::tables::{table, when};
use anyhow::{bail, Context};
use jifen::api::audit_service_client::AuditServiceClient;
use jifen::api::ledger_service_client::LedgerServiceClient;
use jifen::api::query_service_client::QueryServiceClient;
use jifen::api::{self, SignedEvent};
use jifen::server::clock::ManualClock;
use jifen::server::villages::{LogKey, Villages};
use jifen::store::storage::start_embedded;
use jifen_ledger::hash::Hash;
use jifen_ledger::note::{Note, NoteSigner};
use jifen_ledger::pb::{self, event_body::Payload};
use jifen_ledger::sample::{generate, sign, ActorKey, SampleConfig, DEPLOYMENT_ORIGIN};
use jifen_ledger::time::{Date, Period};
use jifen_ledger::EventSignature;
use std::path::PathBuf;
use std::sync::Arc;
use tonic::transport::Channel;

const HOUR: i64 = 3_600_000_000;
const DAY: i64 = 24 * HOUR;
const SURNAMES: &[&str] = &["王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "马", "胡", "朱", "高"];
const GIVEN: &[&str] = &["建国", "秀英", "志强", "桂兰", "海军", "玉梅", "永明", "淑珍", "国庆", "丽华", "文斌", "春燕"];

#[derive(clap::Args)]
pub struct GrpcDemoArgs {
    /// Seed of the generated village.
    #[arg(long, default_value_t = 2025)]
    pub seed: u64,
    /// Number of households (default: 300).
    #[arg(long, value_parser = super::demo_offline::households_arg(), default_value_t = 300)]
    pub households: usize,
    /// Where the embedded PostgreSQL lives (default: a temporary directory, removed at the end).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Keep the server running after the demo (until Ctrl-C), so it can be queried.
    #[arg(long)]
    pub serve: bool,
    /// The address to serve on with --serve (default: any free port on 127.0.0.1).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
}

struct Client {
    ledger: LedgerServiceClient<Channel>,
    query: QueryServiceClient<Channel>,
    audit: AuditServiceClient<Channel>,
    clock: Arc<ManualClock>,
    village: String,
    n: u64,
    /// The auditor's key, for the guarded reads (audit trail, verification).
    reader: ActorKey,
}

fn event(body: Vec<u8>, sigs: &[EventSignature]) -> SignedEvent {
    SignedEvent::new(body, sigs)
}

impl Client {
    /// A guarded request, with a token signed by the auditor at the demo clock's time.
    fn authorized<T>(&self, message: T, method: &str) -> tonic::Request<T> {
        let now = jifen::server::clock::Clock::now_micros(self.clock.as_ref()).div_euclid(1_000_000);
        jifen::auth::authorized(message, &self.reader.key, method, &self.village, now)
    }

    /// Signs and appends an event now (the demo clock), returning its seq.
    async fn submit(&mut self, author: &ActorKey, cosigners: &[&ActorKey], payload: Payload) -> anyhow::Result<u64> {
        self.n += 1;
        let now = jifen::server::clock::Clock::now_micros(self.clock.as_ref());
        let (body, sigs) = sign(&self.village, author, cosigners, now - 60_000_000, &format!("demo-{}", self.n), payload);
        let r = self.ledger.append(api::AppendRequest { event: Some(event(body, &sigs)) }).await.context("append")?;
        self.clock.advance(30_000_000);
        Ok(r.into_inner().result.expect("result").seq)
    }
}

pub fn run(args: GrpcDemoArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(run_async(args))
}

async fn run_async(args: GrpcDemoArgs) -> anyhow::Result<()> {
    let temp = match &args.data_dir {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("jifen-demo-").tempdir()?),
    };
    let data_dir = args.data_dir.clone().unwrap_or_else(|| temp.as_ref().expect("temp dir").path().to_owned());
    println!("启动内置 PostgreSQL（{}）……", data_dir.display());
    let storage = start_embedded(&data_dir, 8).await?;

    // The village's first two months, generated through the write-model.
    let sample = generate(&SampleConfig { seed: args.seed, households: Some(args.households), months: 2, scores_per_household: 3.0 })
        .map_err(|r| anyhow::anyhow!("the generator produced an inadmissible event: {r}"))?;
    let code = jifen_ledger::VillageCode::parse(&sample.writer.ledger)?;
    for (i, h) in sample.households.iter().enumerate() {
        let name = format!("{}{}", SURNAMES[i % SURNAMES.len()], GIVEN[(i * 7 + i / SURNAMES.len()) % GIVEN.len()]);
        storage.store.set_profile(&code, h, &name).await?;
    }
    let clock = Arc::new(ManualClock::new(0));
    let villages = Arc::new(Villages::new(
        storage.store.clone(),
        clock.clone(),
        LogKey::load_or_create_for(&data_dir.join("log.key"), &storage.store).await?,
        DEPLOYMENT_ORIGIN,
        // The demo's deployment enrols the sample township's authority key.
        jifen::townships::Townships::of_geneses(&sample.records()[..1]),
    ));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(jifen::server::run(listener, villages, async {
        let _ = stopped.await;
    }));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.connect().await?;
    let mut c = Client {
        ledger: LedgerServiceClient::new(channel.clone()),
        query: QueryServiceClient::new(channel.clone()),
        audit: AuditServiceClient::new(channel),
        clock: clock.clone(),
        village: sample.writer.ledger.clone(),
        n: 0,
        reader: sample.cast.auditor.clone(),
    };
    println!("服务已启动：grpc://{addr}  账本 {}", sample.origin);

    // History: each record appended at the time it was recorded.
    let records = sample.records();
    // A --data-dir from an earlier run already holds the village: show it as it is.
    let resume = c.ledger.get_checkpoint(api::GetCheckpointRequest { ledger_id: c.village.clone(), ..Default::default() }).await.is_ok();
    if resume {
        println!("账本已存在：沿用 {} 中的数据", data_dir.display());
    } else {
        print!("载入 1—2 月历史记录 {} 条……", records.len());
        for r in records {
            clock.advance_to(r.recorded_at());
            c.ledger
                .append(api::AppendRequest { event: Some(event(r.body().to_vec(), r.signatures())) })
                .await
                .with_context(|| format!("history record {}", r.seq()))?;
        }
        println!(" 完成");
    }

    if !resume {
        play_march(&mut c, &sample).await?;
    }

    // Verify as an auditor and have two supervisors cosign the checkpoint.
    let request =
        c.authorized(api::VerifyLedgerRequest { ledger_id: c.village.clone(), ..Default::default() }, jifen::auth::method::VERIFY_LEDGER);
    let verify = c.audit.verify_ledger(request).await?.into_inner();
    if !verify.ok {
        bail!("verification failed: {}", verify.reason);
    }
    let cp = c
        .ledger
        .get_checkpoint(api::GetCheckpointRequest { ledger_id: c.village.clone(), tree_size: 0, min_tree_size: verify.records })
        .await?
        .into_inner()
        .checkpoint
        .expect("checkpoint");
    let text = Note::parse(cp.note.as_bytes())?.text().to_owned();
    let mut witnessed = cp.clone();
    for s in &sample.cast.supervisors[..2] {
        let signer = NoteSigner::new(&format!("{DEPLOYMENT_ORIGIN}/witness/{}", s.id), s.key.clone())?;
        let mut note = Note::new(text.clone())?;
        note.sign(&signer);
        let line = note.encode().lines().last().expect("signature line").to_owned();
        witnessed = c
            .ledger
            .add_cosignature(api::AddCosignatureRequest { ledger_id: c.village.clone(), tree_size: cp.tree_size, signature_line: line })
            .await?
            .into_inner()
            .checkpoint
            .expect("checkpoint");
    }
    println!(
        "\nverified: {} records, {} signatures — hash chain, every signature, Merkle root of checkpoint {}, every event re-admitted by the write-model; {} witness cosignatures ({})",
        verify.records,
        verify.signatures,
        verify.checkpoint_size,
        witnessed.cosignatures,
        if witnessed.witnessed { "witnessed" } else { "not yet witnessed" }
    );
    println!("\n签名检查点：\n{}", witnessed.note);

    print_month(&mut c, Period::from_ym(2025, 3).expect("March")).await?;

    if args.serve {
        println!("服务保持运行：grpc://{addr}（Ctrl-C 停止）");
        super::serve::shutdown_signal().await;
    }
    let _ = stop.send(());
    server.await??;
    drop(storage);
    Ok(())
}

/// March, live: scoring, a self-declaration, 公示, two objections, close, settlement, supermarket.
async fn play_march(c: &mut Client, sample: &jifen_ledger::sample::Sample) -> anyhow::Result<()> {
    let cast = &sample.cast;
    let march = Period::from_ym(2025, 3).expect("valid");
    let day = |d: u32| Date::from_ymd(2025, 3, d).expect("valid").start_micros();
    c.clock.advance_to(day(3) + 8 * HOUR);
    println!("\n—— 2025 年 3 月 ——");
    // The panel scores households through the month (members never score their own household).
    let items = ["B01", "B02", "B03", "B05", "B06"];
    let mut entries = Vec::new();
    let n = sample.households.len();
    for (i, h) in sample.households.iter().enumerate() {
        // Days rise through the month with the households, as the panel goes round the village.
        let d = 3 + (i * 24 / n.max(1)) as u32;
        c.clock.advance_to(day(d) + 8 * HOUR);
        let scorer = cast.panel.iter().find(|p| p.household.as_deref() != Some(h.as_str())).expect("panel of 3+");
        let co = cast.panel.iter().rev().find(|p| p.id != scorer.id && p.household.as_deref() != Some(h.as_str())).expect("panel of 3+");
        let entry = format!("M3-{i:04}");
        c.submit(scorer, &[co], score(&entry, h, items[i % items.len()], 1 + (i as i64 % 5), &Date::of_micros(day(d)).to_string(), ""))
            .await?;
        entries.push(entry);
    }
    println!("评议小组录入评分 {} 条", entries.len());
    // A villager self-declares volunteering; the panel scores it.
    let villager = &cast.villagers[0];
    let home = villager.household.clone().expect("villagers have a household");
    c.clock.advance_to(day(26) + 10 * HOUR);
    c.submit(
        villager,
        &[],
        Payload::PointsClaimed(pb::PointsClaimed {
            claim_id: "CL-2025-03-01".into(),
            household_id: home.clone(),
            member_id: String::new(),
            item_code: "B04".into(),
            points: 6,
            occurred_on: "2025-03-25".into(),
            evidence_hashes: vec![Hash::of(b"photo of the volunteer day").0.to_vec()],
        }),
    )
    .await?;
    let scorer = cast.panel.iter().find(|p| p.household.as_deref() != Some(home.as_str())).expect("panel");
    let mut claim_score = score("M3-CLAIM", &home, "B04", 6, "2025-03-25", "CL-2025-03-01");
    if let Payload::ScoreRecorded(s) = &mut claim_score {
        s.evidence_hashes = vec![Hash::of(b"photo of the volunteer day").0.to_vec()];
    }
    c.submit(scorer, &[], claim_score).await?;
    entries.push("M3-CLAIM".into());
    println!("{} 户自主申报志愿服务，评议小组核定 6 分", home);

    // 公示 on 1 April for seven days.
    let start = Date::from_ymd(2025, 4, 1).expect("valid").start_micros() + 9 * HOUR;
    c.clock.advance_to(start);
    c.submit(
        &cast.admin,
        &[],
        Payload::PublicationOpened(pb::PublicationOpened {
            publication_id: "P-2025-03".into(),
            period: march.to_string(),
            entry_ids: entries.clone(),
            window_start: start,
            window_end: start + 7 * DAY,
        }),
    )
    .await?;
    println!("两委发布 3 月积分公示，公示期 7 天");
    // Two objections; one upheld with its correction, one dismissed.
    c.clock.advance_to(start + 2 * DAY);
    for (id, entry, by) in [("O-2025-03-1", &entries[1], 2usize), ("O-2025-03-2", &entries[2], 3usize)] {
        let objector = sample.households[by].clone();
        c.submit(
            &cast.admin,
            &[],
            Payload::ObjectionFiled(pb::ObjectionFiled {
                objection_id: id.into(),
                publication_id: "P-2025-03".into(),
                entry_id: entry.clone(),
                objector,
                reason: "认为该项计分与实际情况不符".into(),
                evidence_hash: vec![],
            }),
        )
        .await?;
    }
    c.clock.advance_to(start + 4 * DAY);
    let judge = |entry_household: &str| cast.panel.iter().find(|p| p.household.as_deref() != Some(entry_household)).expect("panel").clone();
    let h1 = sample.households[1].clone();
    let h2 = sample.households[2].clone();
    c.submit(
        &judge(&h1),
        &[&cast.supervisors[0]],
        Payload::ObjectionDecided(pb::ObjectionDecided {
            objection_id: "O-2025-03-1".into(),
            outcome: pb::ObjectionOutcome::Upheld as i32,
            finding: "经走访核实，异议成立，按细则下限计 1 分".into(),
            correction: Some(pb::Correction { change: Some(pb::correction::Change::NewPoints(1)) }),
        }),
    )
    .await?;
    c.submit(
        &judge(&h2),
        &[&cast.supervisors[1]],
        Payload::ObjectionDecided(pb::ObjectionDecided {
            objection_id: "O-2025-03-2".into(),
            outcome: pb::ObjectionOutcome::Dismissed as i32,
            finding: "经核实，原计分无误".into(),
            correction: None,
        }),
    )
    .await?;
    println!("收到异议 2 件：1 件成立并更正，1 件不成立（监督小组成员会签）");
    // Close after the window; settle with two supervisors.
    c.clock.advance_to(start + 7 * DAY + HOUR);
    c.submit(&cast.admin, &[], Payload::PublicationClosed(pb::PublicationClosed { publication_id: "P-2025-03".into() })).await?;
    let balances =
        c.query.list_balances(api::ListBalancesRequest { ledger_id: c.village.clone(), ..Default::default() }).await?.into_inner();
    let period_points: i64 = {
        let board = c
            .query
            .get_publication(api::GetPublicationRequest {
                ledger_id: c.village.clone(),
                publication_id: "P-2025-03".into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        board.entries.iter().filter(|e| e.status != "已作废").map(|e| e.points).sum()
    };
    c.submit(
        &cast.admin,
        &[&cast.supervisors[0], &cast.supervisors[1]],
        Payload::PeriodSettled(pb::PeriodSettled {
            period: march.to_string(),
            publication_id: "P-2025-03".into(),
            households: balances.balances.len() as u32,
            period_points,
            balance_digest: balances.balance_digest,
        }),
    )
    .await?;
    println!("公示期满，3 月积分核算完毕（两名监督小组成员会签，余额摘要一致）");
    // Stock and redemptions.
    c.submit(
        &cast.keeper,
        &[],
        Payload::StockReceived(jifen_ledger::sample::stock("R-2025-04-01", "G-SOAP", "", 100, pb::StockSource::Donation, "东胜区妇联")),
    )
    .await?;
    let mut redeemed = 0;
    for b in balances.balances.iter().filter(|b| b.available >= 6).take(5) {
        c.submit(
            &cast.keeper,
            &[],
            Payload::RedemptionRecorded(pb::RedemptionRecorded {
                redemption_id: format!("RD-2025-04-{}", b.household_id),
                household_id: b.household_id.clone(),
                lines: vec![pb::RedemptionLine { goods_code: "G-SOAP".into(), quantity: 2 }],
                total_points: 6,
            }),
        )
        .await?;
        redeemed += 1;
    }
    println!("爱心超市入库洗衣皂 100 件；{redeemed} 户兑换");
    Ok(())
}

fn score(entry: &str, household: &str, item: &str, points: i64, day: &str, claim: &str) -> Payload {
    Payload::ScoreRecorded(pb::ScoreRecorded {
        entry_id: entry.into(),
        household_id: household.into(),
        member_id: String::new(),
        item_code: item.into(),
        rulebook_version: 1,
        points,
        occurred_on: day.into(),
        source: if claim.is_empty() { pb::ScoreSource::Inspection } else { pb::ScoreSource::SelfDeclaration } as i32,
        evidence_hashes: vec![],
        claim_id: claim.into(),
    })
}

/// Prints March from QueryService: the 公示 board, balances and the audit summary.
async fn print_month(c: &mut Client, period: Period) -> anyhow::Result<()> {
    let board = c
        .query
        .get_publication(api::GetPublicationRequest {
            ledger_id: c.village.clone(),
            publication_id: format!("P-{period}"),
            ..Default::default()
        })
        .await?
        .into_inner();
    println!(
        "【{period} 积分公示】公示期 {} 至 {}（{}）  依据：树大小 {}",
        when(board.window_start),
        when(board.window_end),
        if board.closed { "已结束" } else { "公示中" },
        board.as_of.as_ref().map_or(0, |a| a.tree_size)
    );
    let objected: Vec<&str> = board.objections.iter().map(|o| o.entry_id.as_str()).collect();
    let mut shown: Vec<&api::BoardEntry> =
        board.entries.iter().filter(|e| objected.contains(&e.entry_id.as_str()) || e.entry_id == "M3-CLAIM").collect();
    shown.extend(board.entries.iter().filter(|e| !objected.contains(&e.entry_id.as_str()) && e.entry_id != "M3-CLAIM").take(8));
    print!("{}", super::tables::board_entries(&shown));
    println!("… 共 {} 条记分", board.entries.len());
    let rows: Vec<Vec<String>> = board
        .objections
        .iter()
        .map(|o| {
            vec![
                o.objection_id.clone(),
                o.entry_id.clone(),
                o.objector.clone(),
                o.finding.clone(),
                if o.outcome == "UPHELD" { format!("成立，{}", o.correction) } else { "不成立".into() },
            ]
        })
        .collect();
    println!("\n异议及处理");
    print!("{}", table(&["异议编号", "记分编号", "异议人", "核实情况", "结果"], &rows));

    let mut balances =
        c.query.list_balances(api::ListBalancesRequest { ledger_id: c.village.clone(), ..Default::default() }).await?.into_inner();
    balances.balances.sort_by(|a, b| b.ever_earned.cmp(&a.ever_earned).then(a.household_id.cmp(&b.household_id)));
    println!("\n【积分余额 · 累计获得前 10 户】");
    print!("{}", super::tables::household_balances(balances.balances.iter().take(10)));
    println!(
        "全村 {} 户，余额摘要 {}",
        balances.balances.len(),
        Hash::from_slice(&balances.balance_digest).map(|h| h.to_hex()).unwrap_or_default()
    );

    let ranks = c
        .query
        .get_rankings(api::GetRankingsRequest { ledger_id: c.village.clone(), period: period.to_string(), size: 3, ..Default::default() })
        .await?
        .into_inner();
    let names =
        |l: &[api::Ranked]| l.iter().map(|r| format!("{}{}({})", r.household_id, r.display_name, r.points)).collect::<Vec<_>>().join("、");
    println!(
        "\n【{period} 红黑榜】红榜：{}；黑榜：{}",
        names(&ranks.red_list),
        if ranks.black_list.is_empty() { "无".into() } else { names(&ranks.black_list) }
    );

    let trail = c
        .query
        .get_audit_trail(c.authorized(
            api::GetAuditTrailRequest {
                ledger_id: c.village.clone(),
                subject: Some(api::get_audit_trail_request::Subject::EntryId(
                    board.objections.first().map(|o| o.entry_id.clone()).unwrap_or_default(),
                )),
                ..Default::default()
            },
            jifen::auth::method::GET_AUDIT_TRAIL,
        ))
        .await?
        .into_inner();
    println!("\n【审计摘要】");
    if let Some(o) = board.objections.first() {
        let line: Vec<String> = trail.acts.iter().map(|a| format!("{}（seq {}，{}）", a.kind, a.seq, a.signers.join("+"))).collect();
        println!("记分 {} 的来龙去脉：{}", o.entry_id, line.join(" → "));
    }
    println!("风险提示 {} 条：", trail.red_flags.len());
    for f in trail.red_flags.iter().take(5) {
        println!("  · {}", f.description);
    }
    Ok(())
}

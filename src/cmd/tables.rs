//! Readable tables with Chinese labels: the 公示 board, balances, 红黑榜, supermarket month and
//! the audit summary. Plain text, aligned by display width (CJK characters count as two).

use jifen_ledger::pb::{ObjectionOutcome, StockSource};
use jifen_ledger::time::{Date, Period};
use jifen_ledger::village::VillageState;
use jifen_projections::publicity::{red_black_lists, Board};
use jifen_projections::Projections;
use std::fmt::Write;

/// The display width of a string: CJK and full-width characters count as two columns.
pub fn width(s: &str) -> usize {
    s.chars().map(|c| if (c as u32) >= 0x1100 && !matches!(c as u32, 0x2014 | 0x2018..=0x201f) { 2 } else { 1 }).sum()
}

/// A simple table: header row and rows, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let n = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            widths[i] = widths[i].max(width(c));
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(widths[i] - width(c) + 2));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    out.push_str(&widths.iter().map(|w| "─".repeat(*w)).collect::<Vec<_>>().join("  "));
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// A timestamp as a China Standard Time date and time.
pub fn when(micros: i64) -> String {
    let d = Date::of_micros(micros);
    let secs = (micros + jifen_ledger::time::CST_OFFSET_MICROS).rem_euclid(jifen_ledger::time::MICROS_PER_DAY) / 1_000_000;
    format!("{d} {:02}:{:02}", secs / 3600, secs / 60 % 60)
}

/// The 公示 board of a publication, with its objections.
pub fn board(b: &Board) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "【{} 积分公示】 公示编号 {}  公示期 {} 至 {}  {}",
        b.period,
        b.id,
        when(b.window_start),
        when(b.window_end),
        if b.closed { "（已结束）" } else { "（公示中）" }
    );
    let rows: Vec<Vec<String>> = b
        .entries
        .iter()
        .take(12)
        .map(|e| {
            vec![
                e.entry_id.clone(),
                e.household.to_string(),
                format!("{} {}", e.item_code, e.item_name),
                e.occurred_on.to_string(),
                if e.points != e.scored_points { format!("{} → {}", e.scored_points, e.points) } else { e.points.to_string() },
                e.status.label().to_owned(),
            ]
        })
        .collect();
    out.push_str(&table(&["记分编号", "户号", "积分项目", "发生日期", "分值", "状态"], &rows));
    if b.entries.len() > 12 {
        let _ = writeln!(out, "… 共 {} 条记分", b.entries.len());
    }
    if !b.objections.is_empty() {
        let _ = writeln!(out, "\n异议及处理（{} 件）", b.objections.len());
        let rows: Vec<Vec<String>> = b
            .objections
            .iter()
            .take(8)
            .map(|o| {
                vec![
                    o.id.clone(),
                    o.entry_id.clone(),
                    o.objector.clone(),
                    o.reason.clone(),
                    match o.outcome {
                        Some(ObjectionOutcome::Upheld) => format!("成立，{}", o.correction.clone().unwrap_or_default()),
                        Some(_) => "不成立".to_owned(),
                        None => "待处理".to_owned(),
                    },
                ]
            })
            .collect();
        out.push_str(&table(&["异议编号", "记分编号", "异议人", "理由", "处理结果"], &rows));
        if b.objections.len() > 8 {
            let upheld = b.objections.iter().filter(|o| o.outcome == Some(ObjectionOutcome::Upheld)).count();
            let _ = writeln!(out, "… 共 {} 件，成立 {upheld} 件", b.objections.len());
        }
    }
    out
}

/// Balances of the households with the most points ever earned, and the village totals.
pub fn balances(state: &VillageState, top: usize) -> String {
    let mut all: Vec<(&str, &jifen_ledger::balance::Balance)> = state.balances().iter().collect();
    all.sort_by(|a, b| b.1.ever_earned().cmp(&a.1.ever_earned()).then(a.0.cmp(b.0)));
    let rows: Vec<Vec<String>> = all
        .iter()
        .take(top)
        .map(|(h, b)| {
            vec![
                (*h).to_owned(),
                b.basic.to_string(),
                b.contribution.to_string(),
                b.deducted.to_string(),
                b.redeemed.to_string(),
                b.available().to_string(),
                b.ever_earned().to_string(),
            ]
        })
        .collect();
    let mut out = table(&["户号", "基础积分", "贡献积分", "扣分", "已兑换", "可用积分", "累计获得"], &rows);
    let sum = |f: fn(&jifen_ledger::balance::Balance) -> i64| all.iter().map(|(_, b)| f(b)).sum::<i64>();
    let _ = writeln!(
        out,
        "全村 {} 户：基础 {}，贡献 {}，扣分 {}，已兑换 {}，可用 {}",
        all.len(),
        sum(|b| b.basic),
        sum(|b| b.contribution),
        sum(|b| b.deducted),
        sum(|b| b.redeemed),
        sum(|b| b.available())
    );
    out
}

/// 红黑榜 of a period.
pub fn red_black(p: &Projections, period: Period) -> String {
    let (red, black) = red_black_lists(&p.balances, period, 5);
    let rows: Vec<Vec<String>> = (0..red.len().max(black.len()))
        .map(|i| {
            vec![
                (i + 1).to_string(),
                red.get(i).map_or_else(String::new, |(h, n)| format!("{h} (+{n})")),
                black.get(i).map_or_else(String::new, |(h, n)| format!("{h} (-{n})")),
            ]
        })
        .collect();
    format!("【{period} 红黑榜】\n{}", table(&["名次", "红榜", "黑榜（扣分）"], &rows))
}

/// The supermarket's month: receipts by source, exchanges.
pub fn supermarket(p: &Projections, period: Period) -> String {
    let Some(m) = p.supermarket.month(period) else { return format!("【{period} 积分超市】无记录\n") };
    let source = |s: i32| match StockSource::try_from(s) {
        Ok(StockSource::Subsidy) => "财政补助",
        Ok(StockSource::Donation) => "社会捐赠",
        Ok(StockSource::Partner) => "结对帮扶",
        Ok(StockSource::Enterprise) => "企业赞助",
        Ok(StockSource::Collective) => "集体经济",
        _ => "其他",
    };
    let received: Vec<String> = m.received_by_source().iter().map(|(s, q)| format!("{} {q} 件", source(*s))).collect();
    format!(
        "【{period} 积分超市台账】入库：{}；兑换 {} 笔（退回 {} 笔），消耗积分 {}\n",
        received.join("，"),
        m.exchanges,
        m.reversals,
        m.points
    )
}

/// The audit summary: acts per actor and red flags.
pub fn audit_summary(p: &Projections) -> String {
    let mut out = String::new();
    let is_villager = |a: &str| p.state().actor(a).is_some_and(|x| x.roles.intersects(jifen_ledger::village::RoleSet::VILLAGER));
    let mut rows: Vec<Vec<String>> =
        p.audit.actors().filter(|(a, _)| !is_villager(a)).map(|(a, n)| vec![a.to_owned(), n.to_string()]).collect();
    let (people, acts) = p.audit.actors().filter(|(a, _)| is_villager(a)).fold((0, 0), |(k, m), (_, n)| (k + 1, m + n));
    if people > 0 {
        rows.push(vec![format!("村民（{people} 人）"), acts.to_string()]);
    }
    out.push_str(&table(&["签署人", "签署事项数"], &rows));
    let flags = p.audit.red_flags(&p.balances);
    let _ = writeln!(out, "\n风险提示 {} 条：", flags.len());
    for f in flags.iter().take(8) {
        let _ = writeln!(out, "  · {}", f.describe());
    }
    if flags.len() > 8 {
        let _ = writeln!(out, "  … 另有 {} 条", flags.len() - 8);
    }
    out
}

/// A progress bar for long work (verify, replay, export).
pub fn progress(len: u64, msg: &'static str) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(len);
    b.set_style(indicatif::ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len}").expect("valid template").progress_chars("=> "));
    b.set_message(msg);
    b
}

/// The lines of a 公示 board served by QueryService, as a table.
pub fn board_entries(entries: &[&jifen::api::BoardEntry]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.entry_id.clone(),
                e.household_id.clone(),
                e.display_name.clone(),
                format!("{} {}", e.item_code, e.item_name),
                e.occurred_on.clone(),
                if e.points != e.scored_points { format!("{} → {}", e.scored_points, e.points) } else { e.points.to_string() },
                e.status.clone(),
            ]
        })
        .collect();
    table(&["记分编号", "户号", "户主", "积分项目", "发生日期", "分值", "状态"], &rows)
}

/// Household balances served by QueryService, as a table.
pub fn household_balances<'a>(balances: impl IntoIterator<Item = &'a jifen::api::HouseholdBalance>) -> String {
    let rows: Vec<Vec<String>> = balances
        .into_iter()
        .map(|b| {
            vec![
                b.household_id.clone(),
                b.display_name.clone(),
                b.basic.to_string(),
                b.contribution.to_string(),
                b.deducted.to_string(),
                b.redeemed.to_string(),
                b.available.to_string(),
                b.ever_earned.to_string(),
            ]
        })
        .collect();
    table(&["户号", "户主", "基础积分", "贡献积分", "扣分", "已兑换", "可用积分", "累计获得"], &rows)
}

//! The auditor's tools behind `fafcab audit …` and the audit bench: replaying the budget ledger
//! straight from the log (independently of the read models) and comparing it with what the read
//! model answers, and exporting a ledger's journal with everything needed to recompute its hashes
//! without our code (docs/AUDIT.md, scripts/verify_export.py).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use chrono::{DateTime, Utc};
use domain::budget::{LedgerEvent, TxKind};
use eventstore::{AuditFilter, AuditRow, BrokenLog, Checkpoint, EventStore};
use futures::TryStreamExt;
use rust_decimal::Decimal;

use crate::progress::Progress;
use crate::service::budget::{balances_from, BalanceDto};

/// The aggregate type of the budget ledger streams (`budget_ledger/<CUR>`).
pub const BUDGET_LEDGER: &str = <domain::budget::Ledger as cqrs_es::Aggregate>::TYPE;
/// The read model `audit replay` compares with.
pub const BUDGET_PROJECTION: &str = projections::budget::BudgetProjection::NAME;

/// One currency's books, as `GET /budget/balance` answers them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Books {
    pub balance: Decimal,
    pub income: Decimal,
    pub expenses: Decimal,
    pub donations: Decimal,
    pub debts_outstanding: Decimal,
}

impl Books {
    pub const FIGURES: [&'static str; 5] = [
        "balance",
        "income",
        "expenses",
        "donations",
        "debts_outstanding",
    ];

    fn figures(&self) -> [Decimal; 5] {
        [
            self.balance,
            self.income,
            self.expenses,
            self.donations,
            self.debts_outstanding,
        ]
    }

    /// Folds one ledger event straight from its meaning (not through the double-entry postings
    /// the read model is built from), if it occurred by `as_of`.
    pub fn apply(&mut self, ev: &LedgerEvent, as_of: Option<DateTime<Utc>>) {
        let by = |t: &DateTime<Utc>| as_of.is_none_or(|a| *t <= a);
        let kind_total = |b: &mut Books, kind: TxKind, amount: Decimal| match kind {
            TxKind::Income => {
                b.income += amount;
                b.balance += amount;
            }
            TxKind::Donation => {
                b.donations += amount;
                b.balance += amount;
            }
            TxKind::Expense => {
                b.expenses += amount;
                b.balance -= amount;
            }
        };
        match ev {
            LedgerEvent::TransactionRecorded { transaction: t, .. } if by(&t.occurred_at) => {
                kind_total(self, t.kind, t.amount)
            }
            LedgerEvent::TransactionReversed {
                kind,
                amount,
                reversed_at,
                ..
            } if by(reversed_at) => kind_total(self, *kind, -*amount),
            LedgerEvent::DebtCreated { debt, created_at } if by(created_at) => {
                self.debts_outstanding += debt.amount
            }
            LedgerEvent::DebtPaymentRecorded {
                amount, paid_at, ..
            } if by(paid_at) => {
                self.balance += amount;
                self.income += amount;
                self.debts_outstanding -= amount;
            }
            LedgerEvent::DebtForgiven {
                amount,
                forgiven_at,
                ..
            } if by(forgiven_at) => self.debts_outstanding -= amount,
            _ => {}
        }
    }
}

fn money(d: Decimal) -> String {
    let mut d = d;
    d.rescale(2);
    d.to_string()
}

/// One figure on which the log and the read model disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub currency: String,
    pub figure: &'static str,
    pub log: Decimal,
    pub read_model: Decimal,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DIFFERENCE {} {}: log {}, read model {}",
            self.currency,
            self.figure,
            money(self.log),
            money(self.read_model)
        )
    }
}

/// What `audit replay` found.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    /// The stable position the log was read up to.
    pub position: i64,
    pub as_of: Option<DateTime<Utc>>,
    /// Ledger events folded.
    pub events: u64,
    /// The books folded from every ledger event in the log.
    pub log: BTreeMap<String, Books>,
    /// The read model's checkpoint: only the events it has applied are compared.
    pub read_model_at: Checkpoint,
    /// Ledger events after the read model's checkpoint (not compared).
    pub not_yet_projected: u64,
    pub read_model: BTreeMap<String, Books>,
    pub differences: Vec<Difference>,
}

fn books_of(dtos: Vec<BalanceDto>) -> BTreeMap<String, Books> {
    dtos.into_iter()
        .map(|b| {
            (
                b.currency,
                Books {
                    balance: b.balance,
                    income: b.income,
                    expenses: b.expenses,
                    donations: b.donations,
                    debts_outstanding: b.debts_outstanding,
                },
            )
        })
        .collect()
}

/// The read model's answer (what `GET /budget/balance?as_of=` gives) and the checkpoint it was
/// read at, taken consistently: retried if the projection moved meanwhile.
async fn read_model_books(
    store: &EventStore,
    as_of: Option<DateTime<Utc>>,
) -> anyhow::Result<(Checkpoint, BTreeMap<String, Books>)> {
    let db = store.db();
    for _ in 0..50 {
        let before = eventstore::checkpoints::load_checkpoint_db(&db, BUDGET_PROJECTION).await?;
        let rows = projections::budget::queries::balances(&db, as_of, None)
            .await
            .context("failed to query the budget read model")?;
        let after = eventstore::checkpoints::load_checkpoint_db(&db, BUDGET_PROJECTION).await?;
        if before == after {
            return Ok((after, books_of(balances_from(rows))));
        }
    }
    anyhow::bail!("the budget read model kept moving; try again")
}

/// Folds every budget ledger event from the log (up to its stable position) and compares the
/// fold of the events the read model has applied with the read model's balances.
pub async fn replay_budget(
    store: &EventStore,
    as_of: Option<DateTime<Utc>>,
) -> anyhow::Result<ReplayReport> {
    replay_budget_counted(store, as_of, &AtomicU64::new(0)).await
}

/// [`replay_budget`], counting the ledger events folded so far in `seen` (for progress).
pub async fn replay_budget_counted(
    store: &EventStore,
    as_of: Option<DateTime<Utc>>,
    seen: &AtomicU64,
) -> anyhow::Result<ReplayReport> {
    // The read model first: every event it has applied committed before the stable position is
    // taken, so the fold below covers all of them.
    let (read_model_at, read_model) = read_model_books(store, as_of).await?;
    let position = store.stable_position().await?;
    let mut report = ReplayReport {
        position,
        as_of,
        read_model_at,
        read_model,
        ..Default::default()
    };
    let mut compared: BTreeMap<String, Books> = BTreeMap::new();
    let mut rows = store.audit_rows(AuditFilter {
        up_to: position,
        aggregate_type: Some(BUDGET_LEDGER.into()),
    });
    while let Some(row) = rows.try_next().await? {
        let ev = decode_ledger_event(store, &row)?;
        let currency = row.aggregate_id.clone();
        report
            .log
            .entry(currency.clone())
            .or_default()
            .apply(&ev, as_of);
        if row.checkpoint() <= read_model_at {
            compared.entry(currency).or_default().apply(&ev, as_of);
        } else {
            report.not_yet_projected += 1;
        }
        report.events += 1;
        seen.store(report.events, Ordering::Relaxed);
    }
    let currencies: std::collections::BTreeSet<&String> =
        compared.keys().chain(report.read_model.keys()).collect();
    let zero = Books::default();
    for c in currencies {
        let log = compared.get(c).unwrap_or(&zero).figures();
        let rm = report.read_model.get(c).unwrap_or(&zero).figures();
        for (i, figure) in Books::FIGURES.iter().enumerate() {
            if log[i] != rm[i] {
                report.differences.push(Difference {
                    currency: c.clone(),
                    figure,
                    log: log[i],
                    read_model: rm[i],
                });
            }
        }
    }
    Ok(report)
}

fn decode_ledger_event(store: &EventStore, row: &AuditRow) -> anyhow::Result<LedgerEvent> {
    let mut event_type = row.event_type.clone();
    let mut version = row.event_version.clone();
    let mut payload: serde_json::Value = serde_json::from_str(&row.payload)
        .with_context(|| format!("bad payload at position {}", row.position))?;
    store
        .upcasters()
        .upcast_parts(&mut event_type, &mut version, &mut payload);
    domain::codec::decode(&event_type, payload).with_context(|| {
        format!(
            "cannot decode {} at position {} ({}/{} #{})",
            event_type, row.position, row.aggregate_type, row.aggregate_id, row.sequence
        )
    })
}

/// The text `fafcab audit replay` prints.
pub fn render_replay(r: &ReplayReport) -> String {
    let mut out = format!(
        "budget ledger replayed from the log: {} events up to position {}{}\n",
        r.events,
        r.position,
        r.as_of
            .map(|t| format!(
                ", as of {}",
                t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            ))
            .unwrap_or_default()
    );
    for (currency, b) in &r.log {
        out.push_str(&format!(
            "{currency} balance {} income {} expenses {} donations {} debts_outstanding {}\n",
            money(b.balance),
            money(b.income),
            money(b.expenses),
            money(b.donations),
            money(b.debts_outstanding)
        ));
    }
    if r.not_yet_projected > 0 {
        out.push_str(&format!(
            "note: the read model has applied the log up to position {}; {} later ledger events are not compared\n",
            r.read_model_at.position, r.not_yet_projected
        ));
    }
    for d in &r.differences {
        out.push_str(&format!("{d}\n"));
    }
    if r.differences.is_empty() {
        out.push_str("ok: the budget read model agrees with the log\n");
    } else {
        out.push_str(&format!(
            "MISMATCH: the budget read model disagrees with the log on {} figure(s)\n",
            r.differences.len()
        ));
    }
    out
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    /// JSON Lines: one JSON object per event, one per line.
    Json,
}

/// The columns of an export, in order (CSV header; JSON keys).
pub const EXPORT_COLUMNS: [&str; 16] = [
    "position",
    "stream",
    "aggregate_type",
    "aggregate_id",
    "sequence",
    "event_type",
    "event_version",
    "event_id",
    "recorded_at",
    "metadata",
    "payload",
    "redaction",
    "hash_version",
    "content_hash",
    "prev_chain_hash",
    "chain_hash",
];

fn csv_field(out: &mut Vec<u8>, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        out.extend_from_slice(s.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

/// Re-serialises stored JSON text compactly (numbers keep their exact text).
fn compact(json: &str) -> anyhow::Result<String> {
    let v: serde_json::Value = serde_json::from_str(json).context("bad stored JSON")?;
    Ok(v.to_string())
}

fn export_line(
    row: &AuditRow,
    prev: &[u8],
    format: ExportFormat,
    out: &mut Vec<u8>,
) -> anyhow::Result<()> {
    let metadata = compact(&row.metadata)?;
    let payload = compact(&row.payload)?;
    let redaction = row.redaction.as_deref().map(compact).transpose()?;
    let text: [String; 16] = [
        row.position.to_string(),
        format!("{}/{}", row.aggregate_type, row.aggregate_id),
        row.aggregate_type.clone(),
        row.aggregate_id.clone(),
        row.sequence.to_string(),
        row.event_type.clone(),
        row.event_version.clone(),
        row.event_id.to_string(),
        eventstore::format_time(&row.recorded_at),
        metadata,
        payload,
        redaction.unwrap_or_default(),
        row.hash_version.to_string(),
        hex::encode(&row.payload_hash),
        hex::encode(prev),
        hex::encode(&row.hash),
    ];
    match format {
        ExportFormat::Csv => {
            for (i, t) in text.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                csv_field(out, t);
            }
            out.extend_from_slice(b"\r\n");
        }
        ExportFormat::Json => {
            out.push(b'{');
            for (i, (k, t)) in EXPORT_COLUMNS.iter().zip(&text).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'"');
                out.extend_from_slice(k.as_bytes());
                out.extend_from_slice(b"\":");
                match *k {
                    "position" | "sequence" | "hash_version" | "metadata" | "payload" => {
                        out.extend_from_slice(t.as_bytes())
                    }
                    "redaction" if t.is_empty() => out.extend_from_slice(b"null"),
                    "redaction" => out.extend_from_slice(t.as_bytes()),
                    _ => serde_json::to_writer(&mut *out, t)?,
                }
            }
            out.extend_from_slice(b"}\n");
        }
    }
    Ok(())
}

/// Writes the journal of `aggregate_type` (every type with `None`) up to the log's stable
/// position, in position order, streamed. Progress goes to stderr (never into the export).
/// Returns (events written, stable position).
pub async fn export(
    store: &EventStore,
    aggregate_type: Option<&str>,
    format: ExportFormat,
    out: &mut dyn Write,
) -> anyhow::Result<(u64, i64)> {
    let position = store.stable_position().await?;
    let filter = AuditFilter {
        up_to: position,
        aggregate_type: aggregate_type.map(str::to_string),
    };
    let total = store.audit_count(&filter).await?.max(0) as u64;
    let progress = Progress::start("audit export", "events", total);
    if format == ExportFormat::Csv {
        out.write_all(EXPORT_COLUMNS.join(",").as_bytes())?;
        out.write_all(b"\r\n")?;
    }
    let mut prev: HashMap<(String, String), Vec<u8>> = HashMap::new();
    let mut rows = store.audit_rows(filter);
    let mut buf = Vec::with_capacity(1 << 16);
    let mut n = 0u64;
    while let Some(row) = rows.try_next().await? {
        let key = (row.aggregate_type.clone(), row.aggregate_id.clone());
        let before = prev.insert(key, row.hash.clone()).unwrap_or_default();
        export_line(&row, &before, format, &mut buf)?;
        n += 1;
        if buf.len() >= 1 << 16 {
            out.write_all(&buf)?;
            buf.clear();
            progress.set(n);
        }
    }
    out.write_all(&buf)?;
    out.flush()?;
    progress.set(n);
    progress.finish().await;
    Ok((n, position))
}

/// The ledgers `audit replay` and `audit export` know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Ledger {
    /// The budget ledger (streams `budget_ledger/<CUR>`).
    Budget,
    /// Every stream of the log (export only): lets the digest be recomputed from the export.
    All,
}

impl Ledger {
    fn aggregate_type(self) -> Option<&'static str> {
        match self {
            Ledger::Budget => Some(BUDGET_LEDGER),
            Ledger::All => None,
        }
    }
}

/// `fafcab audit verify [--digest H --position P]`: prints the outcome; `Ok(false)` when a link
/// is broken or the digest differs.
pub async fn cli_verify(store: &EventStore, digest: Option<(&str, i64)>) -> anyhow::Result<bool> {
    // Checked before `stable_position`, which briefly holds appends back on PostgreSQL.
    if let Some((hex_digest, _)) = digest {
        if hex_digest.len() != 64 || hex::decode(hex_digest).is_err() {
            anyhow::bail!("--digest must be 64 hex digits (a SHA-256)");
        }
    }
    let head = store.stable_position().await?;
    let up_to = match digest {
        Some((_, position)) => {
            if !(0..=head).contains(&position) {
                anyhow::bail!(
                    "--position {position} is not in the log (its stable head is {head})"
                );
            }
            position
        }
        None => head,
    };
    let total = store
        .audit_count(&AuditFilter {
            up_to,
            aggregate_type: None,
        })
        .await?
        .max(0) as u64;
    let progress = Progress::start("audit verify", "events", total);
    let r = store.verify_log_counted(up_to, &progress.counter()).await;
    progress.finish().await;
    let r = r?;
    if !r.breaks.is_empty() {
        print!(
            "{}",
            render_broken(&BrokenLog {
                position: r.position,
                streams: r.streams,
                breaks: r.breaks.clone(),
            })
        );
        println!("({} events checked)", r.events);
        if digest.is_some() {
            println!("MISMATCH: the log up to position {up_to} cannot match any digest: it does not verify");
        }
        return Ok(false);
    }
    println!(
        "ok: {} streams, {} events, every hash chain intact",
        r.streams, r.events
    );
    let d = r.digest.expect("a verified log has a digest");
    match digest {
        None => {
            println!("digest at position {}: {}", d.position, d.hex());
            Ok(true)
        }
        Some((expected, _)) if expected.eq_ignore_ascii_case(&d.hex()) => {
            println!(
                "ok: the log up to position {} matches digest {}",
                d.position,
                d.hex()
            );
            Ok(true)
        }
        Some((expected, _)) => {
            println!(
                "MISMATCH: the log up to position {} has digest {}, not {}",
                d.position,
                d.hex(),
                expected.to_ascii_lowercase()
            );
            Ok(false)
        }
    }
}

/// `BROKEN: stream … at sequence … (position …): what broke` for every broken stream, then a
/// count.
pub fn render_broken(b: &BrokenLog) -> String {
    let mut out = String::new();
    for s in &b.breaks {
        out.push_str(&format!("BROKEN: {s}\n"));
    }
    out.push_str(&format!(
        "BROKEN: {} of {} streams, up to position {}\n",
        b.breaks.len(),
        b.streams,
        b.position
    ));
    out
}

/// `fafcab audit digest`: verifies the log, then prints `position P hash H events N`; a broken log
/// gets no digest: its broken streams are printed and the answer is `Ok(false)`.
pub async fn cli_digest(store: &EventStore) -> anyhow::Result<bool> {
    match store.log_digest().await {
        Ok(d) => {
            println!(
                "position {} hash {} events {}",
                d.position,
                d.hex(),
                d.events
            );
            Ok(true)
        }
        Err(e) => match e.downcast_ref::<BrokenLog>() {
            Some(b) => {
                print!("{}", render_broken(b));
                println!("no digest: the log does not verify (see `fafcab audit verify`)");
                Ok(false)
            }
            None => Err(e),
        },
    }
}

/// `fafcab audit replay --ledger budget [--as-of T]`: `Ok(false)` when the read model differs.
pub async fn cli_replay(
    store: &EventStore,
    ledger: Ledger,
    as_of: Option<DateTime<Utc>>,
) -> anyhow::Result<bool> {
    if ledger != Ledger::Budget {
        anyhow::bail!("audit replay knows --ledger budget");
    }
    let total = store
        .audit_count(&AuditFilter {
            up_to: i64::MAX,
            aggregate_type: Some(BUDGET_LEDGER.into()),
        })
        .await?
        .max(0) as u64;
    let progress = Progress::start("audit replay", "events", total);
    let r = replay_budget_counted(store, as_of, &progress.counter()).await;
    progress.finish().await;
    let r = r?;
    print!("{}", render_replay(&r));
    Ok(r.differences.is_empty())
}

/// `fafcab audit export --ledger budget|all --format csv|json [--output FILE]`.
pub async fn cli_export(
    store: &EventStore,
    ledger: Ledger,
    format: ExportFormat,
    output: Option<&std::path::Path>,
) -> anyhow::Result<bool> {
    match output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut w = std::io::BufWriter::new(file);
            let (n, p) = export(store, ledger.aggregate_type(), format, &mut w).await?;
            println!(
                "exported {n} events up to position {p} to {}",
                path.display()
            );
        }
        None => {
            let mut w = std::io::BufWriter::new(std::io::stdout());
            export(store, ledger.aggregate_type(), format, &mut w).await?;
        }
    }
    Ok(true)
}

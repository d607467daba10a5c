//! `fafcab-audit-bench`: appends budget ledger events to a fresh PostgreSQL database, then times
//! `projections rebuild budget`, `audit replay --ledger budget`, `audit verify` and the digest of
//! `GET /audit/digest`, and prints events/s for each.
//!
//! Appends go through the store's ordinary append API (`EventStore::append`: 100 events per
//! append, one multi-row INSERT each, every payload and chain hash computed as in production), one
//! writer per currency stream, concurrently. The timed steps run the same library code as the CLI.
//!
//! ```text
//! cargo build --release -p api --bin fafcab-audit-bench
//! target/release/fafcab-audit-bench --events 1000000
//! ```

use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Duration, SubsecRound, Utc};
use clap::Parser;
use domain::budget::{DebtSpec, LedgerEvent, TransactionSpec, TxKind};
use eventstore::{AppendRequest, EventMetadata, EventStore, NewEvent};
use rust_decimal::Decimal;
use sqlx::Connection as _;
use uuid::Uuid;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Ledger events to append.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Currencies (one stream and one concurrent writer each).
    #[arg(long, default_value_t = 4)]
    currencies: u64,
    #[arg(
        long,
        env = "TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pg: String,
    /// Time the steps on this existing database instead of creating and filling a new one.
    #[arg(long)]
    reuse: Option<String>,
    /// Keep the database afterwards (its URL is printed).
    #[arg(long)]
    keep: bool,
}

const PER_APPEND: u64 = 100;
const CURRENCIES: [&str; 8] = ["MDL", "EUR", "USD", "RON", "GBP", "CHF", "PLN", "UAH"];

/// The `i`-th event (from 0) of a currency's stream: mostly transactions, and per ten events a
/// debt, a payment of it and the reversal of a transaction.
fn event(
    currency: &str,
    i: u64,
    base: DateTime<Utc>,
    last_tx: &mut Option<TransactionSpec>,
    last_debt: &mut Option<Uuid>,
) -> LedgerEvent {
    let at = base + Duration::milliseconds(i as i64);
    match i % 10 {
        7 => {
            let id = Uuid::now_v7();
            *last_debt = Some(id);
            LedgerEvent::DebtCreated {
                debt: DebtSpec {
                    debt_id: id,
                    user_id: format!("u_{}", i % 97),
                    amount: Decimal::new(1_000, 2),
                    currency: currency.into(),
                    reason: "tea".into(),
                    source_ref: None,
                    created_by: "u_bench".into(),
                },
                created_at: at,
            }
        }
        8 => LedgerEvent::DebtPaymentRecorded {
            debt_id: last_debt.expect("a debt before"),
            payment_id: Uuid::now_v7(),
            user_id: format!("u_{}", (i - 1) % 97),
            amount: Decimal::new(400, 2),
            outstanding_after: Decimal::new(600, 2),
            recorded_by: "u_bench".into(),
            paid_at: at,
        },
        9 => {
            let t = last_tx.take().expect("a transaction before");
            LedgerEvent::TransactionReversed {
                reversal_id: Uuid::now_v7(),
                transaction_id: t.transaction_id,
                kind: t.kind,
                category: t.category,
                amount: t.amount,
                reason: "bench".into(),
                reversed_by: "u_bench".into(),
                reversed_at: at,
            }
        }
        k => {
            let kind = [TxKind::Income, TxKind::Expense, TxKind::Donation][(k % 3) as usize];
            let t = TransactionSpec {
                transaction_id: Uuid::now_v7(),
                kind,
                amount: Decimal::new(100 + (i % 5_000) as i64, 2),
                currency: currency.into(),
                category: ["membership", "consumables", "events"][(i % 3) as usize].into(),
                description: Some("bench".into()),
                occurred_at: at,
                reference: None,
                recorded_by: "u_bench".into(),
            };
            if k == 0 {
                *last_tx = Some(t.clone());
            }
            LedgerEvent::TransactionRecorded {
                transaction: t,
                recorded_at: at,
            }
        }
    }
}

async fn fill(store: &EventStore, currency: &'static str, n: u64) -> anyhow::Result<()> {
    let base = (Utc::now() - Duration::days(30)).trunc_subsecs(6);
    let (mut last_tx, mut last_debt) = (None, None);
    let mut seq = 0i64;
    let mut hash = Vec::new();
    let mut i = 0u64;
    while i < n {
        let k = PER_APPEND.min(n - i);
        let events = (i..i + k)
            .map(|j| {
                let (event_type, payload) =
                    domain::codec::encode(&event(currency, j, base, &mut last_tx, &mut last_debt))?;
                Ok(NewEvent {
                    event_type,
                    event_version: "1.0".into(),
                    payload,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let id = Uuid::now_v7();
        let stored = store
            .append(AppendRequest {
                aggregate_type: "budget_ledger".into(),
                aggregate_id: currency.into(),
                expected_sequence: seq,
                expected_hash: Some(hash),
                events,
                metadata: EventMetadata {
                    actor: "u_bench".into(),
                    correlation_id: id,
                    causation_id: id,
                    command_id: id,
                },
                claims: vec![],
                releases: vec![],
                idempotency: None,
            })
            .await
            .map_err(|e| anyhow::anyhow!("append failed: {e}"))?;
        let last = stored.last().expect("appended");
        seq = last.sequence;
        hash = last.hash.clone();
        i += k;
    }
    Ok(())
}

fn rate(n: u64, secs: f64) -> String {
    format!(
        "{:>9.0} events/s  ({n} events in {secs:.2} s)",
        n as f64 / secs
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut created = None;
    let url = match &args.reuse {
        Some(u) => u.clone(),
        None => {
            let url = benchkit::fresh_db("postgres", &args.pg, "fafcab_auditbench").await?;
            created = Some(
                url.rsplit_once('/')
                    .context("bad database URL")?
                    .1
                    .to_string(),
            );
            url
        }
    };
    let store = EventStore::connect(&url, 8).await?;
    if args.reuse.is_none() {
        let currencies = args.currencies.clamp(1, CURRENCIES.len() as u64);
        let per = args.events / currencies;
        let t = Instant::now();
        let mut tasks = vec![];
        for (c, cur) in CURRENCIES.iter().take(currencies as usize).enumerate() {
            let n = per + u64::from((c as u64) < args.events % currencies);
            let store = store.clone();
            tasks.push(tokio::spawn(async move { fill(&store, cur, n).await }));
        }
        for task in tasks {
            task.await??;
        }
        println!(
            "append (store API, {PER_APPEND} per append, {currencies} writers): {}",
            rate(args.events, t.elapsed().as_secs_f64())
        );
        sqlx::query("VACUUM ANALYZE events")
            .execute(&sqlx::PgPool::connect(&url).await?)
            .await?;
    }
    let runner = api::app::projections_for(&store);

    let t = Instant::now();
    let applied = runner.rebuild("budget").await?;
    println!(
        "projections rebuild budget:      {}",
        rate(applied, t.elapsed().as_secs_f64())
    );

    let t = Instant::now();
    let replay = api::audit::replay_budget(&store, None).await?;
    println!(
        "audit replay --ledger budget:    {}",
        rate(replay.events, t.elapsed().as_secs_f64())
    );
    anyhow::ensure!(
        replay.differences.is_empty(),
        "replay disagrees: {:?}",
        replay.differences
    );

    let t = Instant::now();
    let head = store.stable_position().await?;
    let verify = store.verify_log(head).await?;
    println!(
        "audit verify:                    {}",
        rate(verify.events, t.elapsed().as_secs_f64())
    );
    anyhow::ensure!(
        verify.first_break.is_none(),
        "verify failed: {:?}",
        verify.first_break
    );

    let t = Instant::now();
    let digest = store.log_digest().await?;
    println!(
        "GET /audit/digest (log digest):  {}",
        rate(digest.events, t.elapsed().as_secs_f64())
    );
    anyhow::ensure!(Some(&digest) == verify.digest.as_ref(), "digests differ");

    drop(store);
    if let Some(name) = created {
        if args.keep {
            println!("database kept: {url}");
        } else {
            let mut c = sqlx::PgConnection::connect(&args.pg).await?;
            sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
                .execute(&mut c)
                .await?;
        }
    }
    Ok(())
}

//! `fafcab audit replay|export|digest|verify` run as an auditor would, on SQLite and PostgreSQL:
//! replay agrees with the budget read model and names the difference once the read model is
//! tampered with; exports verify with the documented Python script (docs/AUDIT.md); tampering one
//! stored ledger event breaks `audit verify` and the digest check; a chain rewritten consistently
//! passes `audit verify` but not the digest check.

use std::path::PathBuf;
use std::process::Command;

use chrono::{DateTime, Utc};
use commands::{CommandBus, Context};
use domain::budget::{DebtSpec, TransactionSpec, TxKind};
use domain::{Actor, Role};
use eventstore::{db_exec, AuditFilter, Db, EventStore};
use futures::TryStreamExt;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::common::{fresh, run};

/// Runs the script docs/AUDIT.md documents on an export.
fn verify_export(path: &std::path::Path, extra: &[&str]) -> (i32, String) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/verify_export.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(path)
        .args(extra)
        .output()
        .expect("python3 runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `fafcab audit export --ledger <ledger> --format <format> --output <path>`.
fn export_to(url: &str, ledger: &str, format: &str, path: &std::path::Path) -> (i32, String) {
    let path = path.to_str().unwrap();
    run(
        url,
        &[
            "audit", "export", "--ledger", ledger, "--format", format, "--output", path,
        ],
    )
}

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("fafcab-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{}-{name}", Uuid::new_v4().simple()))
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn money(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn tx(kind: TxKind, amount: &str, currency: &str, occurred_at: DateTime<Utc>) -> TransactionSpec {
    TransactionSpec {
        transaction_id: Uuid::now_v7(),
        kind,
        amount: money(amount),
        currency: currency.into(),
        category: "membership".into(),
        description: Some("tea, \"green\"\nand more".into()),
        occurred_at,
        reference: None,
        recorded_by: "u_admin".into(),
    }
}

/// MDL: income 250.00 (January), expense 40.50 (February), a donation of 10.00 reversed, a debt
/// of 30.00 with 12.00 paid; EUR: income 5.00; a threshold. Returns the store.
async fn books(url: &str) -> EventStore {
    let store = EventStore::connect(url, 4).await.unwrap();
    let bus = CommandBus::new(store.clone());
    let ctx = Context::new(Actor::new("u_admin", vec![Role::Admin]));
    let book = |t: TransactionSpec| {
        let bus = bus.clone();
        let ctx = ctx.clone();
        async move {
            commands::budget::record_transaction(&bus, &ctx, t, None)
                .await
                .unwrap()
        }
    };
    book(tx(
        TxKind::Income,
        "250.00",
        "MDL",
        at("2026-01-10T10:00:00Z"),
    ))
    .await;
    book(tx(
        TxKind::Expense,
        "40.50",
        "MDL",
        at("2026-02-01T10:00:00Z"),
    ))
    .await;
    let donation = tx(TxKind::Donation, "10", "MDL", at("2026-03-01T10:00:00Z"));
    let donation_id = donation.transaction_id;
    book(donation).await;
    commands::budget::reverse_transaction(&bus, &ctx, "MDL", donation_id, "typo".into(), None)
        .await
        .unwrap();
    let debt_id = Uuid::now_v7();
    let debt = DebtSpec {
        debt_id,
        user_id: "u_7".into(),
        amount: money("30"),
        currency: "MDL".into(),
        reason: "tea".into(),
        source_ref: None,
        created_by: "u_admin".into(),
    };
    commands::budget::create_debt(&bus, &ctx, debt, None)
        .await
        .unwrap();
    commands::budget::pay_debt(&bus, &ctx, "MDL", debt_id, money("12"), None)
        .await
        .unwrap();
    book(tx(TxKind::Income, "5", "EUR", at("2026-03-02T10:00:00Z"))).await;
    commands::budget::set_threshold(&bus, &ctx, "MDL", money("1"))
        .await
        .unwrap();
    store
}

const MDL_NOW: &str =
    "MDL balance 221.50 income 262.00 expenses 40.50 donations 0.00 debts_outstanding 18.00";

async fn replay_names_the_difference(pg: bool) {
    let url = fresh(pg).await;
    let store = books(&url).await;
    // No server runs here: build the read model.
    let (code, out) = run(&url, &["projections", "rebuild", "budget"]);
    assert_eq!(code, 0, "{out}");

    let (code, out) = run(&url, &["audit", "replay", "--ledger", "budget"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(MDL_NOW), "{out}");
    assert!(
        out.contains(
            "EUR balance 5.00 income 5.00 expenses 0.00 donations 0.00 debts_outstanding 0.00"
        ),
        "{out}"
    );
    assert!(
        out.contains("ok: the budget read model agrees with the log"),
        "{out}"
    );
    assert!(!out.contains("DIFFERENCE"), "{out}");

    // As of the end of January only the income had occurred.
    let (code, out) = run(
        &url,
        &[
            "audit",
            "replay",
            "--ledger",
            "budget",
            "--as-of",
            "2026-01-31T00:00:00Z",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "MDL balance 250.00 income 250.00 expenses 0.00 donations 0.00 debts_outstanding 0.00"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "EUR balance 0.00 income 0.00 expenses 0.00 donations 0.00 debts_outstanding 0.00"
        ),
        "{out}"
    );

    // One cent… one whole unit more cash in the read model than the log says.
    let db = store.db();
    let n = db_exec!(
        &db,
        "UPDATE budget_lines SET debit_cents = debit_cents + 100 WHERE account = 'cash' AND currency = 'MDL' \
         AND position = (SELECT MIN(position) FROM budget_lines WHERE account = 'cash' AND currency = 'MDL')"
    )
    .unwrap();
    assert_eq!(n, 1);
    let (code, out) = run(&url, &["audit", "replay", "--ledger", "budget"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(MDL_NOW), "the log's figures: {out}");
    assert!(
        out.contains("DIFFERENCE MDL balance: log 221.50, read model 222.50"),
        "{out}"
    );
    assert!(!out.contains("DIFFERENCE EUR"), "{out}");
    assert!(
        out.contains("MISMATCH: the budget read model disagrees with the log on 1 figure(s)"),
        "{out}"
    );

    // A debt line dropped from the read model is named too.
    db_exec!(
        &db,
        "DELETE FROM budget_lines WHERE account_type = 'receivable' AND credit_cents > 0"
    )
    .unwrap();
    let (code, out) = run(&url, &["audit", "replay", "--ledger", "budget"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("DIFFERENCE MDL debts_outstanding: log 18.00, read model 30.00"),
        "{out}"
    );

    // Rebuilding the read model from the log repairs it.
    let (code, out) = run(&url, &["projections", "rebuild", "budget"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&url, &["audit", "replay", "--ledger", "budget"]);
    assert_eq!(code, 0, "{out}");

    // Usage errors are 2, not a disagreement.
    let (code, _) = run(&url, &["audit", "replay", "--ledger", "all"]);
    assert_eq!(code, 2);
}

async fn exports_verify_with_the_documented_script(pg: bool) {
    let url = fresh(pg).await;
    let store = books(&url).await;
    let ledger_events = store
        .audit_rows(AuditFilter {
            up_to: i64::MAX,
            aggregate_type: Some("budget_ledger".into()),
        })
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .len();
    assert!(ledger_events >= 8, "{ledger_events}");

    let json = temp_file("budget.jsonl");
    let (code, out) = export_to(&url, "budget", "json", &json);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(&format!("exported {ledger_events} events up to position ")),
        "{out}"
    );
    let text = std::fs::read_to_string(&json).unwrap();
    assert_eq!(text.lines().count(), ledger_events);
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["stream"], "budget_ledger/MDL");
    assert_eq!(first["sequence"], 1);
    assert_eq!(first["prev_chain_hash"], "");
    assert_eq!(first["payload"]["transaction"]["amount"], "250.00");
    let (code, out) = verify_export(&json, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("ok: {ledger_events} events in 2 streams")),
        "{out}"
    );

    // CSV to stdout: a header, then one record per event (quoted fields may span lines).
    let (code, csv) = run(
        &url,
        &["audit", "export", "--ledger", "budget", "--format", "csv"],
    );
    assert_eq!(code, 0);
    assert!(csv.starts_with(
        "position,stream,aggregate_type,aggregate_id,sequence,event_type,event_version,event_id,\
         recorded_at,metadata,payload,redaction,hash_version,content_hash,prev_chain_hash,chain_hash\r\n"
    ));
    let csv_path = temp_file("budget.csv");
    std::fs::write(&csv_path, &csv).unwrap();
    let (code, out) = verify_export(&csv_path, &[]);
    assert_eq!(code, 0, "{out}");

    // The whole log with the digest, recomputed without our code.
    let (code, out) = run(&url, &["audit", "digest"]);
    assert_eq!(code, 0, "{out}");
    let words: Vec<&str> = out.split_whitespace().collect();
    let (position, hash) = (words[1], words[3]);
    let all = temp_file("all.csv");
    let (code, out) = export_to(&url, "all", "csv", &all);
    assert_eq!(code, 0, "{out}");
    let (code, out) = verify_export(&all, &["--digest", hash, "--position", position]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("ok: digest up to position {position} matches")));
    let wrong = "00".repeat(32);
    let (code, out) = verify_export(&all, &["--digest", &wrong, "--position", position]);
    assert_eq!(code, 1, "{out}");

    // A forged amount in an exported line is caught by the script.
    let forged = temp_file("forged.jsonl");
    std::fs::write(&forged, text.replacen("\"250.00\"", "\"2500.00\"", 1)).unwrap();
    let (code, out) = verify_export(&forged, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL at position") && out.contains("content hash does not match"),
        "{out}"
    );
    // Metadata beyond the four hashed keys is a broken chain hash (docs/AUDIT.md), not ignored.
    assert!(text.contains("\"actor\":"), "{text}");
    let extra = temp_file("extra.jsonl");
    std::fs::write(
        &extra,
        text.replacen("\"actor\":", "\"extra\":1,\"actor\":", 1),
    )
    .unwrap();
    let (code, out) = verify_export(&extra, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("chain hash does not match"), "{out}");
}

async fn tampering_breaks_verify_and_the_digest(pg: bool) {
    let url = fresh(pg).await;
    let store = books(&url).await;
    let (code, out) = run(&url, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&url, &["audit", "digest"]);
    assert_eq!(code, 0, "{out}");
    let words: Vec<&str> = out.split_whitespace().collect();
    let (position, digest) = (words[1].to_string(), words[3].to_string());
    let (code, out) = run(
        &url,
        &[
            "audit",
            "verify",
            "--digest",
            &digest,
            "--position",
            &position,
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "ok: the log up to position {position} matches digest {digest}"
        )),
        "{out}"
    );

    // The income of 250.00 becomes 2,500.00 in the stored event.
    let first = store
        .load::<domain::budget::Ledger>("MDL", 0)
        .await
        .unwrap();
    let mut forged = first[0].payload.clone();
    forged["transaction"]["amount"] = "2500.00".into();
    store
        .tamper_payload_for_tests("budget_ledger", "MDL", 1, forged)
        .await
        .unwrap();
    let (code, out) = run(&url, &["audit", "verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("BROKEN: stream budget_ledger/MDL at sequence 1 (position "),
        "{out}"
    );
    assert!(out.contains("): content hash"), "which hash broke: {out}");
    assert!(out.contains("BROKEN: 1 of 2 streams"), "{out}");
    // No digest for a broken log: the broken stream instead, exit 1.
    let (code, out) = run(&url, &["audit", "digest"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("BROKEN: stream budget_ledger/MDL at sequence 1 (position "),
        "{out}"
    );
    assert!(
        !out.contains(&digest) && !out.lines().any(|l| l.starts_with("position ")),
        "{out}"
    );
    let (code, out) = run(
        &url,
        &[
            "audit",
            "verify",
            "--digest",
            &digest,
            "--position",
            &position,
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("MISMATCH"), "{out}");

    // Bad arguments are errors (2), not verdicts.
    let (code, _) = run(
        &url,
        &[
            "audit",
            "verify",
            "--digest",
            "xyz",
            "--position",
            &position,
        ],
    );
    assert_eq!(code, 2);
    let (code, _) = run(
        &url,
        &[
            "audit",
            "verify",
            "--digest",
            &digest,
            "--position",
            "999999",
        ],
    );
    assert_eq!(code, 2);
}

/// Someone who can write the database rewrites an event *and* its hashes consistently: every
/// chain link holds again, only the digest taken before shows it.
async fn a_rewritten_chain_passes_verify_but_not_the_digest(pg: bool) {
    let url = fresh(pg).await;
    let store = books(&url).await;
    let digest = store.log_digest().await.unwrap();
    let rows: Vec<_> = store
        .audit_rows(AuditFilter {
            up_to: digest.position,
            aggregate_type: Some("budget_ledger".into()),
        })
        .try_collect()
        .await
        .unwrap();
    let eur: Vec<_> = rows.iter().filter(|r| r.aggregate_id == "EUR").collect();
    assert_eq!(eur.len(), 1, "EUR has one event: the last of its stream");
    let row = eur[0];
    let mut payload: serde_json::Value = serde_json::from_str(&row.payload).unwrap();
    payload["transaction"]["amount"] = "5000.00".into();
    let payload_hash = eventstore::payload_hash(&payload);
    let metadata: eventstore::EventMetadata = serde_json::from_str(&row.metadata).unwrap();
    let hash = eventstore::event_hash(
        &[],
        &row.aggregate_type,
        &row.aggregate_id,
        row.sequence,
        &row.event_type,
        &row.event_version,
        row.event_id,
        &row.recorded_at,
        &metadata,
        &payload_hash,
    );
    let sql = "UPDATE events SET payload = $1, payload_hash = $2, hash = $3 WHERE position = $4";
    match store.db() {
        Db::Pg(p) => sqlx::query(sql)
            .bind(&payload)
            .bind(&payload_hash)
            .bind(&hash)
            .bind(row.position)
            .execute(&p)
            .await
            .map(|_| ()),
        Db::Sqlite { write, .. } => sqlx::query(sql)
            .bind(payload.to_string())
            .bind(&payload_hash)
            .bind(&hash)
            .bind(row.position)
            .execute(&write)
            .await
            .map(|_| ()),
    }
    .unwrap();
    let (code, out) = run(&url, &["audit", "verify"]);
    assert_eq!(code, 0, "every link holds: {out}");
    let (code, out) = run(
        &url,
        &[
            "audit",
            "verify",
            "--digest",
            &digest.hex(),
            "--position",
            &digest.position.to_string(),
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "MISMATCH: the log up to position {} has digest",
            digest.position
        )),
        "{out}"
    );
}

/// Every broken stream is named, each with what broke: a payload edit (content hash), a stored
/// chain hash edit (chain hash) and a removed event (sequence).
async fn verify_names_every_broken_stream(pg: bool) {
    let url = fresh(pg).await;
    let store = books(&url).await;
    let (code, out) = run(&url, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}");

    let mdl = store
        .load::<domain::budget::Ledger>("MDL", 0)
        .await
        .unwrap();
    let mut forged = mdl[2].payload.clone();
    forged["transaction"]["amount"] = "100".into();
    store
        .tamper_payload_for_tests("budget_ledger", "MDL", 3, forged)
        .await
        .unwrap();
    let db = store.db();
    db_exec!(
        &db,
        "UPDATE events SET hash = payload_hash WHERE aggregate_type = 'budget_ledger' AND aggregate_id = 'EUR'"
    )
    .unwrap();
    let (code, out) = run(&url, &["audit", "verify"]);
    assert_eq!(code, 1, "{out}");
    let broken: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("BROKEN: stream"))
        .collect();
    assert_eq!(broken.len(), 2, "{out}");
    assert!(
        broken[0].starts_with("BROKEN: stream budget_ledger/MDL at sequence 3 (position ")
            && broken[0].contains("): content hash"),
        "{out}"
    );
    assert!(
        broken[1].starts_with("BROKEN: stream budget_ledger/EUR at sequence 1 (position ")
            && broken[1].contains("): chain hash"),
        "{out}"
    );
    assert!(out.contains("BROKEN: 2 of 2 streams"), "{out}");

    // The budget ledger's first MDL event removed: the next one's sequence breaks the stream
    // earlier than the payload edit does.
    db_exec!(
        &db,
        "DELETE FROM events WHERE aggregate_type = 'budget_ledger' AND aggregate_id = 'MDL' AND sequence = 1"
    )
    .unwrap();
    let (code, out) = run(&url, &["audit", "verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("BROKEN: stream budget_ledger/MDL at sequence 2 (position ")
            && out.contains("): sequence (expected 1"),
        "{out}"
    );
    assert!(out.contains("BROKEN: 2 of 2 streams"), "{out}");
    let (code, out) = run(&url, &["audit", "digest"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("BROKEN: stream"))
            .count(),
        2,
        "{out}"
    );
}

macro_rules! both {
    ($($name:ident),*) => {
        mod sqlite { $( #[tokio::test] async fn $name() { super::$name(false).await } )* }
        mod postgres { $( #[tokio::test] async fn $name() { super::$name(true).await } )* }
    };
}

both!(
    replay_names_the_difference,
    exports_verify_with_the_documented_script,
    tampering_breaks_verify_and_the_digest,
    verify_names_every_broken_stream,
    a_rewritten_chain_passes_verify_but_not_the_digest
);

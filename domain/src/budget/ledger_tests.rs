use std::collections::BTreeMap;

use chrono::TimeZone;
use proptest::prelude::*;
use rust_decimal::Decimal;

use super::*;
use crate::budget::postings;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn tx(id: u128, kind: TxKind, amount: &str) -> TransactionSpec {
    TransactionSpec {
        transaction_id: Uuid::from_u128(id),
        kind,
        amount: d(amount),
        currency: "MDL".into(),
        category: "consumables".into(),
        description: None,
        occurred_at: at(),
        reference: None,
        recorded_by: "u_admin".into(),
    }
}

fn debt(id: u128, amount: &str) -> DebtSpec {
    DebtSpec {
        debt_id: Uuid::from_u128(id),
        user_id: "u_1".into(),
        amount: d(amount),
        currency: "MDL".into(),
        reason: "broken mug".into(),
        source_ref: None,
        created_by: "u_admin".into(),
    }
}

/// Runs one command: the events it emitted (applied to `ledger`), or its refusal.
fn run(ledger: &mut Ledger, cmd: LedgerCommand) -> Result<Vec<LedgerEvent>, LedgerError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let sink = EventSink::<Ledger>::default();
        ledger.handle(cmd, &(), &sink).await?;
        Ok(sink.collect().await)
    })
}

fn record(l: &mut Ledger, t: TransactionSpec) -> Result<Vec<LedgerEvent>, LedgerError> {
    run(
        l,
        LedgerCommand::Record {
            transaction: t,
            at: at(),
        },
    )
}

#[test]
fn amounts_are_positive_with_two_decimals_and_currency_is_fixed() {
    let mut l = Ledger::default();
    for bad in ["0", "-1", "1.005"] {
        assert!(matches!(
            record(&mut l, tx(1, TxKind::Income, bad)),
            Err(LedgerError::Invalid(_))
        ));
    }
    assert!(record(&mut l, tx(1, TxKind::Income, "1.50")).is_ok());
    let mut eur = tx(2, TxKind::Income, "1");
    eur.currency = "EUR".into();
    assert!(matches!(record(&mut l, eur), Err(LedgerError::Invalid(_))));
    let mut cat = tx(3, TxKind::Income, "1");
    cat.category = "Bad Category".into();
    assert!(matches!(record(&mut l, cat), Err(LedgerError::Invalid(_))));
    let mut future = tx(4, TxKind::Income, "1");
    future.occurred_at = at() + Duration::hours(1);
    assert!(matches!(
        record(&mut l, future),
        Err(LedgerError::Invalid(_))
    ));
}

#[test]
fn recording_the_same_id_twice_books_once() {
    let mut l = Ledger::default();
    assert_eq!(
        record(&mut l, tx(1, TxKind::Expense, "5")).unwrap().len(),
        1
    );
    assert_eq!(record(&mut l, tx(1, TxKind::Expense, "5")).unwrap(), vec![]);
    assert_eq!(l.balance, d("-5"));
}

#[test]
fn reversal_restores_the_balance_once() {
    let mut l = Ledger::default();
    record(&mut l, tx(1, TxKind::Income, "100")).unwrap();
    let rev = |id| LedgerCommand::Reverse {
        transaction_id: Uuid::from_u128(id),
        reversal_id: Uuid::from_u128(99),
        reason: "typo".into(),
        by: "u_admin".into(),
        at: at(),
    };
    assert_eq!(run(&mut l, rev(7)), Err(LedgerError::TransactionNotFound));
    assert_eq!(run(&mut l, rev(1)).unwrap().len(), 1);
    assert_eq!(l.balance, Decimal::ZERO);
    assert!(matches!(run(&mut l, rev(1)), Err(LedgerError::Conflict(_))));
    assert!(matches!(
        run(&mut l, rev(99)),
        Err(LedgerError::Conflict(_))
    ));
}

#[test]
fn low_balance_fires_when_crossing_below_the_threshold_only() {
    let mut l = Ledger::default();
    record(&mut l, tx(1, TxKind::Income, "100")).unwrap();
    run(
        &mut l,
        LedgerCommand::SetThreshold {
            currency: "MDL".into(),
            threshold: d("50"),
            by: "u_admin".into(),
            at: at(),
        },
    )
    .unwrap();
    assert_eq!(
        record(&mut l, tx(2, TxKind::Expense, "50")).unwrap().len(),
        1
    );
    let ev = record(&mut l, tx(3, TxKind::Expense, "0.01")).unwrap();
    assert_eq!(
        ev[1],
        LedgerEvent::LowBalanceDetected {
            currency: "MDL".into(),
            balance: d("49.99"),
            threshold: d("50"),
            detected_at: at()
        }
    );
    // Already below: no second alert.
    assert_eq!(
        record(&mut l, tx(4, TxKind::Expense, "1")).unwrap().len(),
        1
    );
}

#[test]
fn debts_are_paid_partially_settled_and_never_overpaid() {
    let mut l = Ledger::default();
    run(
        &mut l,
        LedgerCommand::CreateDebt {
            debt: debt(1, "30"),
            at: at(),
        },
    )
    .unwrap();
    let pay = |amount: &str| LedgerCommand::PayDebt {
        debt_id: Uuid::from_u128(1),
        payment_id: Uuid::now_v7(),
        amount: d(amount),
        by: "u_admin".into(),
        at: at(),
    };
    run(&mut l, pay("10")).unwrap();
    assert_eq!(l.debts_outstanding(), d("20"));
    assert!(matches!(
        run(&mut l, pay("20.01")),
        Err(LedgerError::Invalid(_))
    ));
    run(&mut l, pay("20")).unwrap();
    assert_eq!(l.debts[&Uuid::from_u128(1)].status, DebtStatus::Settled);
    assert_eq!(l.balance, d("30"));
    assert!(matches!(
        run(&mut l, pay("1")),
        Err(LedgerError::Conflict(_))
    ));
    let forgive = |id| LedgerCommand::ForgiveDebt {
        debt_id: Uuid::from_u128(id),
        reason: "kind".into(),
        by: "u_admin".into(),
        at: at(),
    };
    assert!(matches!(
        run(&mut l, forgive(1)),
        Err(LedgerError::Conflict(_))
    ));
    assert_eq!(run(&mut l, forgive(2)), Err(LedgerError::DebtNotFound));
    run(
        &mut l,
        LedgerCommand::CreateDebt {
            debt: debt(2, "5"),
            at: at(),
        },
    )
    .unwrap();
    let ev = run(&mut l, forgive(2)).unwrap();
    assert!(matches!(&ev[0], LedgerEvent::DebtForgiven { amount, .. } if *amount == d("5")));
    assert_eq!(l.debts_outstanding(), Decimal::ZERO);
}

#[derive(Debug, Clone)]
enum Op {
    Record(TxKind, i64, u8),
    Reverse(usize),
    CreateDebt(i64, u8),
    Pay(usize, i64),
    Forgive(usize),
    Threshold(i64),
}

fn op() -> impl Strategy<Value = Op> {
    let kind = prop_oneof![
        Just(TxKind::Income),
        Just(TxKind::Expense),
        Just(TxKind::Donation)
    ];
    prop_oneof![
        4 => (kind, 1i64..100_000, 0u8..3).prop_map(|(k, c, cat)| Op::Record(k, c, cat)),
        1 => (0usize..50).prop_map(Op::Reverse),
        2 => (1i64..50_000, 0u8..3).prop_map(|(c, u)| Op::CreateDebt(c, u)),
        2 => (0usize..50, 1i64..60_000).prop_map(|(i, c)| Op::Pay(i, c)),
        1 => (0usize..50).prop_map(Op::Forgive),
        1 => (0i64..200_000).prop_map(Op::Threshold),
    ]
}

fn cents(c: i64) -> Decimal {
    Decimal::new(c, 2)
}

proptest! {
    /// After any sequence of operations: every event balances, debits equal credits over the
    /// whole ledger, the cash account is the aggregate's balance, receivables are the open debts,
    /// and a low-balance alert appears exactly when a command crossed below the threshold.
    #[test]
    fn double_entry_balances_after_any_sequence(ops in prop::collection::vec(op(), 1..60)) {
        let mut l = Ledger::default();
        let mut accounts: BTreeMap<String, Decimal> = BTreeMap::new();
        let (mut txs, mut debts) = (vec![], vec![]);
        for (n, o) in ops.into_iter().enumerate() {
            let id = Uuid::from_u128(n as u128 + 1);
            let cmd = match o {
                Op::Record(kind, c, cat) => {
                    let mut t = tx(n as u128 + 1, kind, "1");
                    t.amount = cents(c);
                    t.category = ["consumables", "events", "misc"][cat as usize].into();
                    txs.push(id);
                    LedgerCommand::Record { transaction: t, at: at() }
                }
                Op::Reverse(i) => LedgerCommand::Reverse {
                    transaction_id: txs.get(i).copied().unwrap_or(id),
                    reversal_id: id, reason: "r".into(), by: "u".into(), at: at(),
                },
                Op::CreateDebt(c, u) => {
                    let mut s = debt(n as u128 + 1, "1");
                    s.amount = cents(c);
                    s.user_id = format!("u_{u}");
                    debts.push(id);
                    LedgerCommand::CreateDebt { debt: s, at: at() }
                }
                Op::Pay(i, c) => LedgerCommand::PayDebt {
                    debt_id: debts.get(i).copied().unwrap_or(id), payment_id: id,
                    amount: cents(c), by: "u".into(), at: at(),
                },
                Op::Forgive(i) => LedgerCommand::ForgiveDebt {
                    debt_id: debts.get(i).copied().unwrap_or(id), reason: "r".into(), by: "u".into(), at: at(),
                },
                Op::Threshold(c) => LedgerCommand::SetThreshold {
                    currency: "MDL".into(), threshold: cents(c), by: "u".into(), at: at(),
                },
            };
            let before = l.balance;
            let Ok(events) = run(&mut l, cmd) else { continue };
            let alerted = events.iter().any(|e| matches!(e, LedgerEvent::LowBalanceDetected { .. }));
            let crossed = l.threshold.is_some_and(|t| before >= t && l.balance < t);
            prop_assert_eq!(alerted, crossed);
            for e in &events {
                let lines = postings(e);
                let dr: Decimal = lines.iter().map(|x| x.debit).sum();
                let cr: Decimal = lines.iter().map(|x| x.credit).sum();
                prop_assert_eq!(dr, cr, "unbalanced event {:?}", e);
                for x in lines {
                    *accounts.entry(x.account).or_default() += x.debit - x.credit;
                }
            }
        }
        let total: Decimal = accounts.values().sum();
        prop_assert_eq!(total, Decimal::ZERO);
        prop_assert_eq!(accounts.get("cash").copied().unwrap_or_default(), l.balance);
        let receivable: Decimal = accounts
            .iter()
            .filter(|(k, _)| k.starts_with("receivable:"))
            .map(|(_, v)| *v)
            .sum();
        prop_assert_eq!(receivable, l.debts_outstanding());
        prop_assert!(accounts.iter().filter(|(k, _)| k.starts_with("receivable:")).all(|(_, v)| *v >= Decimal::ZERO));
    }
}

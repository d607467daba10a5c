//! Given/when/then tests of every `Item` rule, and property tests of the stock invariants.

use super::*;
use crate::Role;
use cqrs_es::test::TestFramework;
use proptest::prelude::*;

type F = TestFramework<Item>;

fn t0() -> DateTime<Utc> {
    "2025-09-11T10:00:00Z".parse().unwrap()
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn spec() -> ItemSpec {
    ItemSpec {
        name: "Tea Bags".into(),
        unit: "bag".into(),
        category: "beverage".into(),
        sku: Some("TEA-001".into()),
        active: true,
        track_expiry: false,
        min_stock_qty: 50,
        tags: vec!["kitchen".into()],
    }
}

fn created() -> ItemEvent {
    ItemEvent::ItemCreated {
        item_id: id(1),
        spec: spec(),
        created_at: t0(),
    }
}

fn batch(n: u128, qty: i64, expiry: Option<&str>) -> BatchSpec {
    BatchSpec {
        batch_id: id(100 + n),
        batch_code: format!("PO-{n}"),
        supplier_ref: None,
        expiry_date: expiry.map(|d| d.parse().unwrap()),
        qty_received: qty,
        currency: "USD".into(),
        cost_total: Decimal::new(4990, 2),
        received_at: t0(),
    }
}

fn received(n: u128, qty: i64, expiry: Option<&str>) -> ItemEvent {
    ItemEvent::BatchReceived {
        batch: batch(n, qty, expiry),
    }
}

fn student() -> Actor {
    Actor::new("u_42", vec![Role::Student])
}

fn consume(qty: i64, batch_id: Option<Uuid>, user: &str, actor: Actor) -> ItemCommand {
    ItemCommand::Consume {
        consumption: ConsumptionSpec {
            consumption_id: id(900),
            qty,
            batch_id,
            user_id: user.into(),
            source: ConsumptionSource::SelfService,
            notes: None,
            consumed_at: t0(),
        },
        actor,
        at: t0(),
    }
}

fn consumed(qty: i64, allocations: Vec<(u128, i64)>, stock_after: i64) -> ItemEvent {
    ItemEvent::StockConsumed {
        consumption_id: id(900),
        qty,
        allocations: allocations
            .into_iter()
            .map(|(b, q)| Allocation {
                batch_id: id(100 + b),
                qty: q,
            })
            .collect(),
        user_id: "u_42".into(),
        source: ConsumptionSource::SelfService,
        notes: None,
        consumed_at: t0(),
        recorded_at: t0(),
        stock_after,
    }
}

#[tokio::test]
async fn create_emits_item_created() {
    F::with(())
        .given_no_previous_events()
        .when_async(ItemCommand::Create {
            item_id: id(1),
            spec: spec(),
            at: t0(),
        })
        .await
        .then_expect_events(vec![created()]);
}

#[tokio::test]
async fn create_twice_is_a_conflict() {
    F::with(())
        .given(vec![created()])
        .when_async(ItemCommand::Create {
            item_id: id(1),
            spec: spec(),
            at: t0(),
        })
        .await
        .then_expect_error(ItemError::AlreadyExists);
}

#[tokio::test]
async fn create_validates_fields() {
    for bad in [
        ItemSpec {
            name: " ".into(),
            ..spec()
        },
        ItemSpec {
            unit: "".into(),
            ..spec()
        },
        ItemSpec {
            min_stock_qty: -1,
            ..spec()
        },
        ItemSpec {
            name: "x".repeat(201),
            ..spec()
        },
        ItemSpec {
            tags: vec!["t".into(); 21],
            ..spec()
        },
    ] {
        let r = F::with(())
            .given_no_previous_events()
            .when_async(ItemCommand::Create {
                item_id: id(1),
                spec: bad,
                at: t0(),
            })
            .await
            .inspect_result();
        assert!(matches!(r, Err(ItemError::Invalid(_))), "{r:?}");
    }
}

#[tokio::test]
async fn update_records_only_changed_fields() {
    let patch = ItemPatch {
        name: Some("Tea Bags (Jasmine)".into()),
        min_stock_qty: Some(50),
        ..Default::default()
    };
    F::with(())
        .given(vec![created()])
        .when_async(ItemCommand::Update { patch, at: t0() })
        .await
        .then_expect_events(vec![ItemEvent::ItemUpdated {
            changes: ItemPatch {
                name: Some("Tea Bags (Jasmine)".into()),
                ..Default::default()
            },
            updated_at: t0(),
        }]);
}

#[tokio::test]
async fn update_without_changes_emits_nothing_and_unknown_item_is_not_found() {
    F::with(())
        .given(vec![created()])
        .when_async(ItemCommand::Update {
            patch: ItemPatch {
                name: Some("Tea Bags".into()),
                ..Default::default()
            },
            at: t0(),
        })
        .await
        .then_expect_events(vec![]);
    F::with(())
        .given_no_previous_events()
        .when_async(ItemCommand::Update {
            patch: ItemPatch::default(),
            at: t0(),
        })
        .await
        .then_expect_error(ItemError::NotFound);
}

#[tokio::test]
async fn batch_is_received_and_validated() {
    F::with(())
        .given(vec![created()])
        .when_async(ItemCommand::ReceiveBatch {
            batch: batch(1, 200, None),
            at: t0(),
        })
        .await
        .then_expect_events(vec![received(1, 200, None)]);
    for bad in [
        BatchSpec {
            qty_received: 0,
            ..batch(1, 1, None)
        },
        BatchSpec {
            currency: "usd".into(),
            ..batch(1, 1, None)
        },
        BatchSpec {
            cost_total: Decimal::new(-1, 0),
            ..batch(1, 1, None)
        },
        BatchSpec {
            cost_total: Decimal::new(1001, 3),
            ..batch(1, 1, None)
        },
        // Above what the budget ledger books (it would never reach the books).
        BatchSpec {
            cost_total: crate::budget::MAX_AMOUNT + Decimal::ONE,
            ..batch(1, 1, None)
        },
        BatchSpec {
            batch_code: "".into(),
            ..batch(1, 1, None)
        },
    ] {
        let r = F::with(())
            .given(vec![created()])
            .when_async(ItemCommand::ReceiveBatch {
                batch: bad,
                at: t0(),
            })
            .await
            .inspect_result();
        assert!(matches!(r, Err(ItemError::Invalid(_))), "{r:?}");
    }
}

#[tokio::test]
async fn expiry_is_required_when_tracked() {
    let tracked = ItemEvent::ItemCreated {
        item_id: id(1),
        spec: ItemSpec {
            track_expiry: true,
            ..spec()
        },
        created_at: t0(),
    };
    let r = F::with(())
        .given(vec![tracked])
        .when_async(ItemCommand::ReceiveBatch {
            batch: batch(1, 5, None),
            at: t0(),
        })
        .await
        .inspect_result();
    assert!(matches!(r, Err(ItemError::Invalid(_))));
}

#[tokio::test]
async fn consumption_is_fifo_by_receipt() {
    F::with(())
        .given(vec![
            created(),
            received(1, 3, None),
            received(2, 100, None),
        ])
        .when_async(consume(5, None, "u_42", student()))
        .await
        .then_expect_events(vec![consumed(5, vec![(1, 3), (2, 2)], 98)]);
}

#[tokio::test]
async fn consumption_is_fifo_by_expiry_when_tracked() {
    let tracked = ItemEvent::ItemCreated {
        item_id: id(1),
        spec: ItemSpec {
            track_expiry: true,
            min_stock_qty: 0,
            ..spec()
        },
        created_at: t0(),
    };
    F::with(())
        .given(vec![
            tracked,
            received(1, 10, Some("2026-01-01")),
            received(2, 10, Some("2025-10-01")),
        ])
        .when_async(consume(12, None, "u_42", student()))
        .await
        .then_expect_events(vec![consumed(12, vec![(2, 10), (1, 2)], 8)]);
}

#[tokio::test]
async fn consumption_from_a_named_batch() {
    F::with(())
        .given(vec![
            created(),
            received(1, 100, None),
            received(2, 100, None),
        ])
        .when_async(consume(4, Some(id(102)), "u_42", student()))
        .await
        .then_expect_events(vec![consumed(4, vec![(2, 4)], 196)]);
    F::with(())
        .given(vec![created(), received(1, 100, None)])
        .when_async(consume(4, Some(id(999)), "u_42", student()))
        .await
        .then_expect_error(ItemError::BatchNotFound);
    F::with(())
        .given(vec![
            created(),
            received(1, 100, None),
            received(2, 3, None),
        ])
        .when_async(consume(4, Some(id(102)), "u_42", student()))
        .await
        .then_expect_error(ItemError::InsufficientStock {
            requested: 4,
            available: 3,
        });
}

#[tokio::test]
async fn insufficient_stock_is_a_conflict() {
    F::with(())
        .given(vec![created(), received(1, 2, None)])
        .when_async(consume(3, None, "u_42", student()))
        .await
        .then_expect_error(ItemError::InsufficientStock {
            requested: 3,
            available: 2,
        });
}

#[tokio::test]
async fn students_consume_only_for_themselves() {
    F::with(())
        .given(vec![created(), received(1, 100, None)])
        .when_async(consume(1, None, "u_7", student()))
        .await
        .then_expect_error(ItemError::Forbidden(
            "only admins and executors may record consumption for another user".into(),
        ));
    let r = F::with(())
        .given(vec![created(), received(1, 100, None)])
        .when_async(consume(
            1,
            None,
            "u_42",
            Actor::new("u_exec", vec![Role::Executor]),
        ))
        .await
        .inspect_result();
    assert!(r.is_ok());
}

#[tokio::test]
async fn inactive_items_and_future_dates_are_refused() {
    let inactive = ItemEvent::ItemUpdated {
        changes: ItemPatch {
            active: Some(false),
            ..Default::default()
        },
        updated_at: t0(),
    };
    F::with(())
        .given(vec![created(), received(1, 100, None), inactive])
        .when_async(consume(1, None, "u_42", student()))
        .await
        .then_expect_error(ItemError::Inactive);
    let mut cmd = consume(1, None, "u_42", student());
    if let ItemCommand::Consume { consumption, .. } = &mut cmd {
        consumption.consumed_at = t0() + Duration::hours(1);
    }
    let r = F::with(())
        .given(vec![created(), received(1, 100, None)])
        .when_async(cmd)
        .await
        .inspect_result();
    assert!(matches!(r, Err(ItemError::Invalid(_))));
}

#[tokio::test]
async fn crossing_below_the_threshold_emits_low_stock_once() {
    F::with(())
        .given(vec![created(), received(1, 52, None)])
        .when_async(consume(3, None, "u_42", student()))
        .await
        .then_expect_events(vec![
            consumed(3, vec![(1, 3)], 49),
            ItemEvent::LowStockDetected {
                current_qty: 49,
                threshold: 50,
                detected_at: t0(),
            },
        ]);
    // Already below: no second alert.
    F::with(())
        .given(vec![
            created(),
            received(1, 52, None),
            consumed(3, vec![(1, 3)], 49),
        ])
        .when_async(consume(1, None, "u_42", student()))
        .await
        .then_expect_events(vec![consumed(1, vec![(1, 1)], 48)]);
}

#[tokio::test]
async fn threshold_rule_overrides_min_stock_qty_and_keeps_its_id() {
    let rule = ItemEvent::ThresholdSet {
        threshold_id: id(7),
        min_qty: 10,
        notify_config: NotifyConfig {
            channels: vec!["tea-room".into()],
            notify_roles: vec![],
        },
        created: true,
        at: t0(),
    };
    // 49 < 50 but not < 10: no alert under the rule.
    F::with(())
        .given(vec![created(), received(1, 52, None), rule.clone()])
        .when_async(consume(3, None, "u_42", student()))
        .await
        .then_expect_events(vec![consumed(3, vec![(1, 3)], 49)]);
    F::with(())
        .given(vec![created(), rule])
        .when_async(ItemCommand::SetThreshold {
            threshold_id: id(8),
            min_qty: 20,
            notify_config: NotifyConfig {
                channels: vec![],
                notify_roles: vec![],
            },
            at: t0(),
        })
        .await
        .then_expect_events(vec![ItemEvent::ThresholdSet {
            threshold_id: id(7),
            min_qty: 20,
            notify_config: NotifyConfig {
                channels: vec![],
                notify_roles: vec![],
            },
            created: false,
            at: t0(),
        }]);
}

#[test]
fn events_round_trip_through_the_codec() {
    let events = vec![
        created(),
        received(1, 5, Some("2025-12-31")),
        consumed(1, vec![(1, 1)], 4),
    ];
    for e in events {
        let (ty, payload) = crate::codec::encode(&e).unwrap();
        assert_eq!(ty, e.event_type());
        let back: ItemEvent = crate::codec::decode(&ty, payload).unwrap();
        assert_eq!(back, e);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Receive(i64),
    Consume(i64, Option<usize>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1i64..50).prop_map(Op::Receive),
        (1i64..60, proptest::option::of(0usize..5)).prop_map(|(q, b)| Op::Consume(q, b)),
    ]
}

async fn run(item: &mut Item, cmd: ItemCommand) -> Result<Vec<ItemEvent>, ItemError> {
    let sink = EventSink::default();
    let mut next = item.clone();
    next.handle(cmd, &(), &sink).await?;
    let events = sink.collect().await;
    for e in &events {
        item.apply(e.clone());
    }
    assert_eq!(
        *item, next,
        "handle's state must equal the fold of its events"
    );
    Ok(events)
}

proptest! {
    #[test]
    fn stock_never_goes_negative_and_folds_deterministically(ops in proptest::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let mut item = Item::default();
            let mut log = vec![];
            log.extend(run(&mut item, ItemCommand::Create { item_id: id(1), spec: spec(), at: t0() }).await.unwrap());
            let mut n = 0u128;
            for op in ops {
                let r = match op {
                    Op::Receive(q) => { n += 1; run(&mut item, ItemCommand::ReceiveBatch { batch: batch(n, q, None), at: t0() }).await }
                    Op::Consume(q, b) => {
                        let batch_id = b.and_then(|i| item.batches.get(i).map(|l| l.batch_id));
                        run(&mut item, consume(q, batch_id, "u_42", student())).await
                    }
                };
                if let Ok(evs) = r { log.extend(evs); }
                prop_assert!(item.stock() >= 0);
                prop_assert!(item.batches.iter().all(|b| b.qty_remaining >= 0 && b.qty_remaining <= b.qty_received));
            }
            // A fresh fold of the log reaches the same state.
            let mut fresh = Item::default();
            for e in log.iter().cloned() { fresh.apply(e); }
            prop_assert_eq!(&fresh, &item);
            // The last StockConsumed's stock_after agrees with the fold at that point.
            let received: i64 = log.iter().map(|e| match e { ItemEvent::BatchReceived { batch } => batch.qty_received, _ => 0 }).sum();
            let consumed: i64 = log.iter().map(|e| match e { ItemEvent::StockConsumed { qty, .. } => *qty, _ => 0 }).sum();
            prop_assert_eq!(received - consumed, item.stock());
            Ok(())
        })?;
    }
}

use chrono::TimeZone;
use rust_decimal::Decimal;

use super::*;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn spec(owner: &str) -> AssetSpec {
    AssetSpec {
        asset_id: Uuid::from_u128(1),
        name: "Soldering iron".into(),
        category: "tools".into(),
        owner_id: owner.into(),
        replacement_cost: d("300"),
        currency: "MDL".into(),
        notes: None,
        registered_by: "u_admin".into(),
    }
}

fn run(a: &mut Asset, cmd: AssetCommand) -> Result<Vec<AssetEvent>, AssetError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let sink = EventSink::<Asset>::default();
        a.handle(cmd, &(), &sink).await?;
        Ok(sink.collect().await)
    })
}

fn registered(owner: &str) -> Asset {
    let mut a = Asset::default();
    run(
        &mut a,
        AssetCommand::Register {
            spec: spec(owner),
            at: at(),
        },
    )
    .unwrap();
    a
}

fn take(a: &mut Asset, user: &str, due_in: Duration) -> Result<Vec<AssetEvent>, AssetError> {
    run(
        a,
        AssetCommand::Take {
            loan_id: Uuid::now_v7(),
            user_id: user.into(),
            due_at: at() + due_in,
            at: at(),
        },
    )
}

fn give_back(a: &mut Asset, by: &str, is_admin: bool) -> Result<Vec<AssetEvent>, AssetError> {
    run(
        a,
        AssetCommand::Return {
            condition: Condition::Ok,
            notes: None,
            by: by.into(),
            is_admin,
            at: at() + Duration::hours(2),
        },
    )
}

fn damage(
    a: &mut Asset,
    id: u128,
    by: &str,
    staff: bool,
    cost: &str,
) -> Result<Vec<AssetEvent>, AssetError> {
    run(
        a,
        AssetCommand::ReportDamage {
            report_id: Uuid::from_u128(id),
            user_id: "u_1".into(),
            description: "cracked tip".into(),
            cost: d(cost),
            by: by.into(),
            is_staff: staff,
            at: at(),
        },
    )
}

#[test]
fn registration_validates() {
    let mut a = Asset::default();
    for bad in [
        AssetSpec {
            name: "".into(),
            ..spec("lab")
        },
        AssetSpec {
            replacement_cost: d("0"),
            ..spec("lab")
        },
        AssetSpec {
            currency: "EURO".into(),
            ..spec("lab")
        },
        AssetSpec {
            category: " ".into(),
            ..spec("lab")
        },
    ] {
        assert!(matches!(
            run(
                &mut a,
                AssetCommand::Register {
                    spec: bad,
                    at: at()
                }
            ),
            Err(AssetError::Invalid(_))
        ));
    }
    assert_eq!(
        take(&mut Asset::default(), "u_1", Duration::days(1)),
        Err(AssetError::NotFound)
    );
}

#[test]
fn one_holder_at_a_time() {
    let mut a = registered(LAB);
    assert!(matches!(
        take(&mut a, "u_1", Duration::zero()),
        Err(AssetError::Invalid(_))
    ));
    assert!(matches!(
        take(&mut a, "u_1", Duration::days(400)),
        Err(AssetError::Invalid(_))
    ));
    take(&mut a, "u_1", Duration::days(7)).unwrap();
    assert_eq!(a.holder.as_ref().unwrap().user_id, "u_1");
    assert_eq!(
        take(&mut a, "u_1", Duration::days(7)),
        Err(AssetError::Conflict("you already hold this asset".into()))
    );
    assert!(matches!(
        take(&mut a, "u_2", Duration::days(7)),
        Err(AssetError::Conflict(_))
    ));
    // Someone else may not return it; the holder may.
    assert!(matches!(
        give_back(&mut a, "u_2", false),
        Err(AssetError::Forbidden(_))
    ));
    let ev = give_back(&mut a, "u_1", false).unwrap();
    assert!(matches!(&ev[0], AssetEvent::ItemReturned { loan, .. } if loan.user_id == "u_1"));
    assert!(a.holder.is_none());
    assert!(matches!(
        give_back(&mut a, "u_1", false),
        Err(AssetError::Conflict(_))
    ));
    take(&mut a, "u_2", Duration::days(1)).unwrap();
    give_back(&mut a, "u_admin", true).unwrap();
    assert_eq!(a.loans, 2);
}

#[test]
fn owners_return_and_do_not_take_their_own() {
    let mut a = registered("u_owner");
    assert!(matches!(
        take(&mut a, "u_owner", Duration::days(1)),
        Err(AssetError::Conflict(_))
    ));
    take(&mut a, "u_1", Duration::days(1)).unwrap();
    give_back(&mut a, "u_owner", false).unwrap();
}

#[test]
fn damage_reports_are_bounded_by_the_replacement_cost() {
    let mut a = registered("u_owner");
    assert!(matches!(
        damage(&mut a, 1, "u_2", false, "10"),
        Err(AssetError::Forbidden(_))
    ));
    assert!(matches!(
        damage(&mut a, 1, "u_admin", true, "300.01"),
        Err(AssetError::Invalid(_))
    ));
    assert!(matches!(
        damage(&mut a, 1, "u_admin", true, "0"),
        Err(AssetError::Invalid(_))
    ));
    let to_lab = run(
        &mut a,
        AssetCommand::ReportDamage {
            report_id: Uuid::from_u128(9),
            user_id: LAB.into(),
            description: "x".into(),
            cost: d("1"),
            by: "u_admin".into(),
            is_staff: true,
            at: at(),
        },
    );
    assert!(matches!(to_lab, Err(AssetError::Invalid(_))));
    // The owner may only charge someone who held the asset.
    assert!(matches!(
        damage(&mut a, 1, "u_owner", false, "45.5"),
        Err(AssetError::Forbidden(_))
    ));
    take(&mut a, "u_1", Duration::days(1)).unwrap();
    give_back(&mut a, "u_1", false).unwrap();
    let ev = damage(&mut a, 1, "u_owner", false, "45.5").unwrap();
    assert!(matches!(&ev[0], AssetEvent::DamageReported { report, .. }
        if report.currency == "MDL" && report.cost == d("45.5") && report.user_id == "u_1"));
    assert!(
        damage(&mut a, 1, "u_owner", false, "45.5")
            .unwrap()
            .is_empty(),
        "same id: no-op"
    );
}

#[test]
fn charges_to_one_user_never_exceed_the_replacement_cost() {
    let mut a = registered("u_owner");
    take(&mut a, "u_1", Duration::days(1)).unwrap();
    // An open loan counts as holding.
    damage(&mut a, 1, "u_owner", false, "200").unwrap();
    assert!(matches!(
        damage(&mut a, 2, "u_owner", false, "100.01"),
        Err(AssetError::Invalid(_))
    ));
    assert!(matches!(
        damage(&mut a, 2, "u_admin", true, "100.01"),
        Err(AssetError::Invalid(_))
    ));
    damage(&mut a, 2, "u_owner", false, "100").unwrap();
}

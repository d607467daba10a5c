use chrono::TimeZone;
use rust_decimal::Decimal;

use super::*;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn spec(goal: &str) -> CampaignSpec {
    CampaignSpec {
        campaign_id: Uuid::from_u128(1),
        title: "New kettle".into(),
        description: None,
        goal_amount: d(goal),
        currency: "MDL".into(),
        ends_at: at() + Duration::days(30),
        purpose: Some("equipment".into()),
        created_by: "u_admin".into(),
    }
}

fn donation(id: u128, donor: &str, amount: &str) -> DonationSpec {
    DonationSpec {
        donation_id: Uuid::from_u128(id),
        donor_id: donor.into(),
        amount: d(amount),
        currency: "MDL".into(),
        anonymous: false,
        message: None,
    }
}

fn run(c: &mut Campaign, cmd: CampaignCommand) -> Result<Vec<CampaignEvent>, CampaignError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let sink = EventSink::<Campaign>::default();
        c.handle(cmd, &(), &sink).await?;
        Ok(sink.collect().await)
    })
}

fn created(goal: &str) -> Campaign {
    let mut c = Campaign::default();
    run(
        &mut c,
        CampaignCommand::Create {
            spec: spec(goal),
            at: at(),
        },
    )
    .unwrap();
    c
}

fn start(c: &mut Campaign, available: &str) -> Result<Vec<CampaignEvent>, CampaignError> {
    run(
        c,
        CampaignCommand::Start {
            available: d(available),
            by: "u_admin".into(),
            at: at(),
        },
    )
}

fn donate(c: &mut Campaign, dn: DonationSpec) -> Result<Vec<CampaignEvent>, CampaignError> {
    run(
        c,
        CampaignCommand::Donate {
            donation: dn,
            at: at() + Duration::hours(1),
        },
    )
}

fn conflict(r: Result<Vec<CampaignEvent>, CampaignError>) {
    assert!(matches!(r, Err(CampaignError::Conflict(_))), "{r:?}");
}

fn invalid_(r: Result<Vec<CampaignEvent>, CampaignError>) {
    assert!(matches!(r, Err(CampaignError::Invalid(_))), "{r:?}");
}

#[test]
fn creation_validates_and_starts_in_draft() {
    let mut c = Campaign::default();
    for bad in [
        CampaignSpec {
            title: " ".into(),
            ..spec("10")
        },
        spec("0"),
        spec("1.001"),
        CampaignSpec {
            currency: "mdl".into(),
            ..spec("10")
        },
        CampaignSpec {
            ends_at: at(),
            ..spec("10")
        },
        CampaignSpec {
            ends_at: at() + Duration::days(10 * 366),
            ..spec("10")
        },
    ] {
        invalid_(run(
            &mut c,
            CampaignCommand::Create {
                spec: bad,
                at: at(),
            },
        ));
    }
    let c = created("100");
    assert_eq!(c.status, CampaignStatus::Draft);
    // Nothing but create works on a campaign that does not exist.
    assert_eq!(
        start(&mut Campaign::default(), "0"),
        Err(CampaignError::NotFound)
    );
}

#[test]
fn start_checks_the_budget_and_only_from_draft() {
    let mut c = created("100");
    // Not active yet: no donations.
    conflict(donate(&mut c, donation(10, "u_1", "5")));
    let ev = start(&mut c, "30.50").unwrap();
    assert_eq!(
        ev,
        vec![CampaignEvent::CampaignStarted {
            available: d("30.50"),
            shortfall: d("69.50"),
            started_by: "u_admin".into(),
            started_at: at(),
        }]
    );
    conflict(start(&mut c, "0"));
    // A rich budget has no shortfall; a negative balance counts as nothing available.
    let mut rich = created("100");
    let ev = start(&mut rich, "500").unwrap();
    assert!(
        matches!(&ev[0], CampaignEvent::CampaignStarted { shortfall, .. } if shortfall.is_zero())
    );
    let mut poor = created("100");
    let ev = start(&mut poor, "-20").unwrap();
    assert!(
        matches!(&ev[0], CampaignEvent::CampaignStarted { available, shortfall, .. }
        if available.is_zero() && *shortfall == d("100"))
    );
    // Past its end it cannot start.
    let mut late = created("100");
    let r = run(
        &mut late,
        CampaignCommand::Start {
            available: d("0"),
            by: "u".into(),
            at: at() + Duration::days(31),
        },
    );
    conflict(r);
}

#[test]
fn donations_complete_the_campaign_exactly_once() {
    let mut c = created("100");
    start(&mut c, "0").unwrap();
    invalid_(donate(
        &mut c,
        DonationSpec {
            currency: "EUR".into(),
            ..donation(1, "u_1", "5")
        },
    ));
    invalid_(donate(&mut c, donation(1, "u_1", "0")));
    invalid_(donate(&mut c, donation(1, "u_1", "-1")));
    let ev = donate(&mut c, donation(1, "u_1", "60")).unwrap();
    assert_eq!(ev.len(), 1);
    // The same donation id again is a no-op.
    assert!(donate(&mut c, donation(1, "u_1", "60")).unwrap().is_empty());
    assert_eq!(c.raised, d("60"));
    let ev = donate(&mut c, donation(2, "u_2", "45.5")).unwrap();
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert!(
        matches!(&ev[1], CampaignEvent::CampaignCompleted { raised, .. } if *raised == d("105.5"))
    );
    assert_eq!(c.status, CampaignStatus::Completed);
    assert_eq!(c.donors.len(), 2);
    // Completed: no more donations, so no second completion.
    conflict(donate(&mut c, donation(3, "u_3", "1")));
}

#[test]
fn donations_after_ends_at_are_refused() {
    let mut c = created("100");
    start(&mut c, "0").unwrap();
    let r = run(
        &mut c,
        CampaignCommand::Donate {
            donation: donation(1, "u_1", "5"),
            at: at() + Duration::days(30) + Duration::seconds(1),
        },
    );
    conflict(r);
}

#[test]
fn close_cancel_and_purchases_follow_the_life_cycle() {
    let purchase = |id: u128| CampaignCommand::RecordPurchase {
        purchase: PurchaseSpec {
            purchase_id: Uuid::from_u128(id),
            amount: d("80"),
            description: "kettle".into(),
            receipt_ref: Some("R-1".into()),
            recorded_by: "u_exec".into(),
        },
        at: at(),
    };
    let close = CampaignCommand::Close {
        by: "u_admin".into(),
        at: at(),
    };
    let cancel = CampaignCommand::Cancel {
        reason: None,
        by: "u_admin".into(),
        at: at(),
    };
    let mut draft = created("100");
    conflict(run(&mut draft, purchase(1)));
    conflict(run(&mut draft, close.clone()));
    run(&mut draft, cancel.clone()).unwrap();
    assert_eq!(draft.status, CampaignStatus::Cancelled);
    conflict(run(&mut draft, cancel.clone()));
    conflict(start(&mut draft, "0"));

    let mut c = created("100");
    start(&mut c, "0").unwrap();
    let ev = run(&mut c, purchase(1)).unwrap();
    assert!(
        matches!(&ev[0], CampaignEvent::PurchaseRecorded { currency, .. } if currency == "MDL")
    );
    assert!(
        run(&mut c, purchase(1)).unwrap().is_empty(),
        "same id: no-op"
    );
    run(&mut c, close.clone()).unwrap();
    assert_eq!(c.status, CampaignStatus::Closed);
    conflict(run(&mut c, close));
    conflict(run(&mut c, cancel));
    conflict(donate(&mut c, donation(5, "u_1", "1")));
    // A closed campaign may still record what it bought.
    run(&mut c, purchase(2)).unwrap();
    assert_eq!(c.spent, d("160"));
    let bad = CampaignCommand::RecordPurchase {
        purchase: PurchaseSpec {
            purchase_id: Uuid::from_u128(3),
            amount: d("1"),
            description: "".into(),
            receipt_ref: None,
            recorded_by: "u".into(),
        },
        at: at(),
    };
    invalid_(run(&mut c, bad));
}

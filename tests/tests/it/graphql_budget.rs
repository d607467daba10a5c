//! Budgeting over GraphQL: the same read model, roles and rules as `/budget/*`, on both backends.

use domain::Role;
use fafcab_tests::*;
use serde_json::{json, Value};

on_both_backends!(budget_queries_and_mutations);

async fn gql(app: &TestApp, token: &str, query: &str, variables: Value) -> Value {
    let r = app
        .send(
            "POST",
            "/graphql",
            Some(token),
            Some(json!({"query": query, "variables": variables})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("none")
}

async fn budget_queries_and_mutations(b: Backend) {
    let app = spawn_app(b).await;
    let (auditor, u1) = (token("u_audit", &[Role::Auditor]), student("u_1"));
    let record = "mutation($i: TransactionInput!) { recordTransaction(input: $i) { id kind amount currency category recordedBy } }";
    let income = json!({"i": {"kind": "INCOME", "amount": "100", "currency": "MDL", "category": "membership"}});
    assert_eq!(
        code(&gql(&app, &auditor, record, income.clone()).await),
        "FORBIDDEN"
    );
    assert_eq!(
        code(&gql(&app, &u1, record, income.clone()).await),
        "FORBIDDEN"
    );
    let bad =
        json!({"i": {"kind": "INCOME", "amount": "lots", "currency": "MDL", "category": "x"}});
    assert_eq!(
        code(&gql(&app, &admin(), record, bad).await),
        "VALIDATION_ERROR"
    );
    let t = gql(&app, &admin(), record, income).await;
    let tx = &t["data"]["recordTransaction"];
    assert_eq!(
        (
            tx["kind"].clone(),
            tx["amount"].clone(),
            tx["recordedBy"].clone()
        ),
        (json!("income"), json!("100.00"), json!("u_admin")),
        "{t}"
    );
    let tx_id = tx["id"].as_str().unwrap().to_string();
    let expense =
        json!({"i": {"kind": "EXPENSE", "amount": "30.25", "currency": "MDL", "category": "tea"}});
    gql(&app, &admin(), record, expense).await;
    let balances = "{ budgetBalances { currency balance income expenses } }";
    assert_eq!(
        code(&gql(&app, &u1, balances, json!({})).await),
        "FORBIDDEN"
    );
    assert_eq!(
        gql(&app, &auditor, balances, json!({})).await["data"]["budgetBalances"],
        json!([{"currency": "MDL", "balance": "69.75", "income": "100.00", "expenses": "30.25"}])
    );
    // Reversal: a reversing entry, linked both ways.
    let rev = gql(
        &app,
        &admin(),
        "mutation($id: ID!) { reverseTransaction(id: $id, reason: \"typo\") { id kind reversalOf amount } }",
        json!({"id": tx_id}),
    )
    .await;
    let r = &rev["data"]["reverseTransaction"];
    assert_eq!(r["reversalOf"], json!(tx_id), "{rev}");
    let list = gql(
        &app,
        &auditor,
        "{ budgetTransactions(first: 1) { edges { node { id reversedBy } } pageInfo { hasNextPage } } }",
        json!({}),
    )
    .await;
    let page = &list["data"]["budgetTransactions"];
    assert_eq!(page["edges"][0]["node"]["id"], json!(tx_id), "{list}");
    assert_eq!(page["edges"][0]["node"]["reversedBy"], r["id"]);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    assert_eq!(
        gql(&app, &auditor, balances, json!({})).await["data"]["budgetBalances"][0]["balance"],
        "-30.25"
    );
    // Debts: students see their own only; payments and forgiveness as in REST.
    let debt = gql(
        &app,
        &admin(),
        "mutation { createDebt(input: {userId: \"u_1\", amount: \"20\", currency: \"MDL\", reason: \"tea\"}) { id status outstanding } }",
        json!({}),
    )
    .await;
    let d = &debt["data"]["createDebt"];
    assert_eq!(
        (d["status"].clone(), d["outstanding"].clone()),
        (json!("open"), json!("20.00")),
        "{debt}"
    );
    let debt_id = d["id"].as_str().unwrap().to_string();
    let get = "query($id: ID!) { debt(id: $id) { userId outstanding } }";
    assert_eq!(
        gql(&app, &u1, get, json!({"id": debt_id})).await["data"]["debt"]["userId"],
        "u_1"
    );
    assert_eq!(
        gql(&app, &student("u_2"), get, json!({"id": debt_id})).await["data"]["debt"],
        Value::Null
    );
    assert_eq!(
        code(
            &gql(
                &app,
                &student("u_2"),
                "{ debts(userId: \"u_1\") { edges { cursor } } }",
                json!({})
            )
            .await
        ),
        "FORBIDDEN"
    );
    let pay = "mutation($id: ID!, $a: String!) { payDebt(id: $id, amountPaid: $a) { amountPaid outstanding status } }";
    assert_eq!(
        code(&gql(&app, &u1, pay, json!({"id": debt_id, "a": "5"})).await),
        "FORBIDDEN"
    );
    let paid = gql(&app, &admin(), pay, json!({"id": debt_id, "a": "5"})).await;
    assert_eq!(
        paid["data"]["payDebt"],
        json!({"amountPaid": "5.00", "outstanding": "15.00", "status": "open"})
    );
    let forgiven = gql(
        &app,
        &admin(),
        "mutation($id: ID!) { forgiveDebt(id: $id, reason: \"graduated\") { status outstanding } }",
        json!({"id": debt_id}),
    )
    .await;
    assert_eq!(
        forgiven["data"]["forgiveDebt"],
        json!({"status": "forgiven", "outstanding": "0.00"})
    );
    let mine = gql(
        &app,
        &u1,
        "{ debts { edges { node { id status } } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        mine["data"]["debts"]["edges"],
        json!([{"node": {"id": debt_id, "status": "forgiven"}}])
    );
    let threshold =
        "mutation { setLowBalanceThreshold(currency: \"MDL\", threshold: \"10\") { currency } }";
    assert_eq!(
        code(
            &gql(
                &app,
                &token("u_exec", &[Role::Executor]),
                threshold,
                json!({})
            )
            .await
        ),
        "FORBIDDEN"
    );
    assert_eq!(
        gql(&app, &admin(), threshold, json!({})).await["data"]["setLowBalanceThreshold"][0]
            ["currency"],
        "MDL"
    );
}

//! GraphQL: `schema.graphql` at the root is exactly what the server serves; queries need a token,
//! read the same read models as REST, page like Relay connections and are bounded in depth.

use fafcab_tests::*;
use serde_json::{json, Value};

on_both_backends!(schema_file_is_what_is_served, queries_read_tea_with_limits);

async fn schema_file_is_what_is_served(b: Backend) {
    let app = spawn_app(b).await;
    let served = app
        .send("GET", "/graphql/schema.graphql", None, None, &[])
        .await;
    assert_eq!(served.status, 200);
    let file = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schema.graphql"))
        .expect("schema.graphql at the root");
    assert_eq!(served.text, file, "schema.graphql differs from the served SDL: regenerate it from GET /graphql/schema.graphql");
    assert_eq!(api::graphql::schema().sdl(), file);
    let page = app.send("GET", "/graphql", None, None, &[]).await;
    assert!(page.text.contains("graphiql"), "GraphiQL is served");
}

async fn gql(app: &TestApp, token: Option<&str>, query: &str, variables: Value) -> Res {
    app.send(
        "POST",
        "/graphql",
        token,
        Some(json!({"query": query, "variables": variables})),
        &[],
    )
    .await
}

async fn queries_read_tea_with_limits(b: Backend) {
    let app = spawn_app(b).await;
    let tea = app.item("Tea", 50).await;
    app.batch(&tea, 10, None).await;
    app.item("Sugar", 0).await;
    let q = "query($first: Int, $after: String) { items(first: $first, after: $after) { edges { cursor node { id name stockQty lowStock } } pageInfo { hasNextPage endCursor } } }";
    assert_error(&gql(&app, None, q, json!({})).await, 401, "UNAUTHORIZED");
    let s = student("u_1");
    let p1 = gql(&app, Some(&s), q, json!({"first": 1})).await;
    assert_eq!(p1.status, 200, "{}", p1.text);
    assert_eq!(
        p1.body["data"]["items"]["edges"][0]["node"],
        json!({"id": tea, "name": "Tea", "stockQty": 10, "lowStock": true})
    );
    assert_eq!(p1.body["data"]["items"]["pageInfo"]["hasNextPage"], true);
    let after = p1.body["data"]["items"]["pageInfo"]["endCursor"]
        .as_str()
        .unwrap();
    let p2 = gql(&app, Some(&s), q, json!({"first": 1, "after": after})).await;
    assert_eq!(
        p2.body["data"]["items"]["edges"][0]["node"]["name"],
        "Sugar"
    );
    assert_eq!(
        p2.body["data"]["items"]["pageInfo"],
        json!({"hasNextPage": false, "endCursor": null})
    );
    let one = gql(
        &app,
        Some(&s),
        "query($id: ID!) { item(id: $id) { name sku tags } }",
        json!({"id": tea}),
    )
    .await;
    assert_eq!(
        one.body["data"]["item"],
        json!({"name": "Tea", "sku": null, "tags": []})
    );
    let none = gql(&app, Some(&s), "{ item(id: \"nope\") { name } }", json!({})).await;
    assert_eq!(none.body["data"]["item"], Value::Null);
    // Errors carry the REST codes; abusive queries are refused, never served.
    let bad = gql(
        &app,
        Some(&s),
        "{ items(first: 500) { edges { cursor } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        bad.body["errors"][0]["extensions"]["code"], "VALIDATION_ERROR",
        "{}",
        bad.text
    );
    let nested = "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } } }";
    let refused = gql(&app, Some(&s), nested, json!({})).await;
    assert!(
        refused.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("nested too deep"),
        "{}",
        refused.text
    );
    assert_error(
        &app.send(
            "POST",
            "/graphql",
            Some(&s),
            Some(json!("not a request")),
            &[],
        )
        .await,
        422,
        "VALIDATION_ERROR",
    );
}

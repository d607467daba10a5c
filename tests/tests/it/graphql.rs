//! GraphQL: `schema.graphql` at the root is exactly what the server serves; queries need a token,
//! read the same read models as REST, page like Relay connections and are bounded in depth and
//! complexity; the standard introspection query of graphql-js (GraphiQL, code generators,
//! fuzzers) fits the default limits.

use fafcab_tests::*;
use serde_json::{json, Value};

on_both_backends!(
    schema_file_is_what_is_served,
    queries_read_tea_with_limits,
    mutations_follow_the_rest_rules,
    introspection_fits_and_abuse_does_not
);

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
    // Introspection fan-out (`fields { type { fields ...` ) counts like any field.
    let nested = "{ __schema { types { fields { type { fields { type { fields { type { fields { type { name } } } } } } } } } } }";
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

fn code(r: &Res) -> &str {
    r.body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("none")
}

async fn mutations_follow_the_rest_rules(b: Backend) {
    let app = spawn_app(b).await;
    let (u1, u2, out) = (student("u_1"), student("u_2"), student("u_9"));
    // Tea: roles as in REST; the mutation returns the resulting object.
    let create = "mutation($i: CreateItemInput!) { createItem(input: $i) { id name stockQty } }";
    let input = json!({"i": {"name": "Tea", "unit": "bag", "category": "beverage"}});
    assert_eq!(
        code(&gql(&app, Some(&u1), create, input.clone()).await),
        "FORBIDDEN"
    );
    let item = gql(&app, Some(&admin()), create, input.clone()).await;
    assert_eq!(
        item.body["data"]["createItem"]["stockQty"], 0,
        "{}",
        item.text
    );
    let id = item.body["data"]["createItem"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        code(&gql(&app, Some(&admin()), create, input).await),
        "CONFLICT"
    );
    let batch = gql(
        &app,
        Some(&admin()),
        "mutation($id: ID!) { receiveBatch(itemId: $id, input: {batchCode: \"PO-1\", qtyReceived: 20, currency: \"MDL\", costTotal: \"49.90\"}) { stockQty } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(
        batch.body["data"]["receiveBatch"]["stockQty"], 20,
        "{}",
        batch.text
    );
    let consume = "mutation($id: ID!, $q: Int!) { consume(itemId: $id, qty: $q) { stockQty } }";
    let c = gql(&app, Some(&u1), consume, json!({"id": id, "q": 3})).await;
    assert_eq!(c.body["data"]["consume"]["stockQty"], 17, "{}", c.text);
    assert_eq!(
        code(&gql(&app, Some(&u1), consume, json!({"id": id, "q": 100})).await),
        "CONFLICT"
    );

    // Chats: privacy as in REST.
    let chat = gql(
        &app,
        Some(&u1),
        "mutation { createChat(input: {type: GROUP, name: \"kitchen\", memberIds: [\"u_2\"]}) { id type isPrivate memberCount } }",
        json!({}),
    )
    .await;
    let c = &chat.body["data"]["createChat"];
    assert_eq!(
        (
            c["type"].clone(),
            c["isPrivate"].clone(),
            c["memberCount"].clone()
        ),
        (json!("group"), json!(true), json!(2)),
        "{}",
        chat.text
    );
    let chat_id = c["id"].as_str().unwrap().to_string();
    let get = "query($id: ID!) { chat(id: $id) { name } }";
    assert_eq!(
        gql(&app, Some(&out), get, json!({"id": chat_id}))
            .await
            .body["data"]["chat"],
        Value::Null
    );
    assert_eq!(
        gql(&app, Some(&u2), get, json!({"id": chat_id})).await.body["data"]["chat"]["name"],
        "kitchen"
    );
    let post = "mutation($c: ID!, $t: String!) { postMessage(chatId: $c, text: $t) { operationId status } }";
    assert_eq!(
        code(&gql(&app, Some(&out), post, json!({"c": chat_id, "t": "hi"})).await),
        "NOT_FOUND"
    );
    let list = "query($c: ID!) { messages(chatId: $c) { edges { node { id authorId text reactions { emoji userId } } } } }";
    assert_eq!(
        code(&gql(&app, Some(&out), list, json!({"c": chat_id})).await),
        "NOT_FOUND"
    );
    let op = gql(
        &app,
        Some(&u2),
        post,
        json!({"c": chat_id, "t": "tea's out"}),
    )
    .await;
    assert_eq!(
        op.body["data"]["postMessage"]["status"], "accepted",
        "{}",
        op.text
    );
    let op_id = op.body["data"]["postMessage"]["operationId"]
        .as_str()
        .unwrap()
        .to_string();
    let done = eventually(std::time::Duration::from_secs(20), || async {
        let r = gql(
            &app,
            Some(&u2),
            "query($id: ID!) { operation(id: $id) { status messageId } }",
            json!({"id": op_id}),
        )
        .await;
        (r.body["data"]["operation"]["status"] == "completed")
            .then_some(r.body["data"]["operation"].clone())
    })
    .await;
    let msg = done["messageId"].as_str().unwrap().to_string();
    let react = gql(
        &app,
        Some(&u1),
        "mutation($c: ID!, $m: ID!) { addReaction(chatId: $c, messageId: $m, emoji: \"👍\") { reactions { emoji userId } } }",
        json!({"c": chat_id, "m": msg}),
    )
    .await;
    assert_eq!(
        react.body["data"]["addReaction"]["reactions"],
        json!([{"emoji": "👍", "userId": "u_1"}]),
        "{}",
        react.text
    );
    let listed = gql(&app, Some(&u1), list, json!({"c": chat_id})).await;
    assert_eq!(
        listed.body["data"]["messages"]["edges"][0]["node"],
        json!({"id": msg, "authorId": "u_2", "text": "tea's out", "reactions": [{"emoji": "👍", "userId": "u_1"}]})
    );
    let edit = "mutation($c: ID!, $m: ID!) { editMessage(chatId: $c, messageId: $m, text: \"mine\") { text } }";
    assert_eq!(
        code(&gql(&app, Some(&u1), edit, json!({"c": chat_id, "m": msg})).await),
        "FORBIDDEN"
    );
    let del = "mutation($c: ID!, $m: ID!) { deleteMessage(chatId: $c, messageId: $m) { text deletedAt } }";
    let d = gql(&app, Some(&u2), del, json!({"c": chat_id, "m": msg})).await;
    assert_eq!(
        d.body["data"]["deleteMessage"]["text"],
        Value::Null,
        "{}",
        d.text
    );
    assert!(d.body["data"]["deleteMessage"]["deletedAt"].is_string());
    let filters =
        "mutation($v: Int!) { replaceFilters(phrases: [\"badword\"], version: $v) { version } }";
    assert_eq!(
        code(&gql(&app, Some(&admin()), filters, json!({"v": 5})).await),
        "CONFLICT"
    );
    assert_eq!(
        code(&gql(&app, Some(&u1), filters, json!({"v": 1})).await),
        "FORBIDDEN"
    );
    assert_eq!(
        gql(&app, Some(&admin()), filters, json!({"v": 1}))
            .await
            .body["data"]["replaceFilters"]["version"],
        1
    );
    // Retention and notices.
    let ret = "mutation($c: ID!, $d: Int) { setRetention(chatId: $c, retentionDays: $d, postPolicy: \"mods\") { retentionDays postPolicy } }";
    assert_eq!(
        code(&gql(&app, Some(&u2), ret, json!({"c": chat_id, "d": 30})).await),
        "FORBIDDEN"
    );
    assert_eq!(
        code(&gql(&app, Some(&u1), ret, json!({"c": chat_id, "d": 0})).await),
        "VALIDATION_ERROR"
    );
    let r = gql(&app, Some(&u1), ret, json!({"c": chat_id, "d": 30})).await;
    assert_eq!(
        r.body["data"]["setRetention"],
        json!({"retentionDays": 30, "postPolicy": "mods"}),
        "{}",
        r.text
    );
    assert_eq!(
        code(&gql(&app, Some(&u2), post, json!({"c": chat_id, "t": "hi"})).await),
        "FORBIDDEN"
    );
    let notice = "mutation($c: ID!) { broadcastNotice(title: \"Closed\", body: \"Cleaning\", chatIds: [$c]) { id createdBy chatIds } }";
    assert_eq!(
        code(&gql(&app, Some(&u1), notice, json!({"c": chat_id})).await),
        "FORBIDDEN"
    );
    let n = gql(&app, Some(&admin()), notice, json!({"c": chat_id})).await;
    assert_eq!(
        n.body["data"]["broadcastNotice"]["chatIds"],
        json!([chat_id]),
        "{}",
        n.text
    );
}

/// `getIntrospectionQuery()` of graphql-js 16.15.0 with its default options, byte for byte (what
/// GraphiQL's docs pane, graphql-codegen and schemathesis send): `ofType` nested 9 deep.
const STANDARD_INTROSPECTION: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/graphql-js-16.15.0-getIntrospectionQuery.graphql"
));

fn refused_with(r: &Res, words: &str) {
    assert_eq!(
        r.body["data"],
        Value::Null,
        "{}",
        &r.text[..300.min(r.text.len())]
    );
    let message = r.body["errors"][0]["message"].as_str().unwrap_or("");
    assert!(
        message.to_lowercase().contains(words),
        "expected \"{words}\": {}",
        &r.text[..300.min(r.text.len())]
    );
}

async fn introspection_fits_and_abuse_does_not(b: Backend) {
    let app = spawn_app(b).await;
    let s = student("u_1");
    app.item("Tea", 5).await;
    // The standard introspection query, at default settings, over HTTP POST.
    assert_eq!(STANDARD_INTROSPECTION.matches("ofType").count(), 9);
    let r = app
        .send(
            "POST",
            "/graphql",
            Some(&s),
            Some(json!({"query": STANDARD_INTROSPECTION, "operationName": "IntrospectionQuery"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.body["errors"].is_null(),
        "{}",
        &r.text[..300.min(r.text.len())]
    );
    let schema = &r.body["data"]["__schema"];
    assert_eq!(schema["queryType"]["name"], "Query");
    assert_eq!(schema["subscriptionType"]["name"], "Subscription");
    let types = schema["types"].as_array().unwrap();
    let item = types.iter().find(|t| t["name"] == "Item").expect("Item");
    let tags = item["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "tags")
        .unwrap();
    // [String!]! unwrapped through three ofType levels.
    assert_eq!(tags["type"]["kind"], "NON_NULL");
    assert_eq!(tags["type"]["ofType"]["kind"], "LIST");
    assert_eq!(tags["type"]["ofType"]["ofType"]["ofType"]["name"], "String");

    // Complexity weighs a page by its size: the review's 160 aliased searches are refused ...
    let searches: String = (0..160)
        .map(|i| format!("s{i}: searchMessages(q: \"a\") {{ pageInfo {{ hasNextPage }} }} "))
        .collect();
    refused_with(
        &gql(&app, Some(&s), &format!("{{ {searches} }}"), json!({})).await,
        "too complex",
    );
    // ... and tiny pages still pay for their query: 60 one-row pages are too many.
    let tiny: String = (0..60)
        .map(|i| format!("t{i}: items(first: 1) {{ pageInfo {{ hasNextPage }} }} "))
        .collect();
    refused_with(
        &gql(&app, Some(&s), &format!("{{ {tiny} }}"), json!({})).await,
        "too complex",
    );
    // One-row lookups cost 20 each: 250 of them are refused, 20 are served.
    let lookups = |k: usize| -> String {
        (0..k)
            .map(|i| format!("l{i}: item(id: \"x\") {{ id }} "))
            .collect()
    };
    refused_with(
        &gql(
            &app,
            Some(&s),
            &format!("{{ {} }}", lookups(250)),
            json!({}),
        )
        .await,
        "too complex",
    );
    let few = gql(&app, Some(&s), &format!("{{ {} }}", lookups(20)), json!({})).await;
    assert!(few.body["errors"].is_null(), "{}", few.text);
    assert_eq!(few.body["data"]["l19"], Value::Null);
    // Whole-schema walks are few per request.
    let walks: String = (0..6)
        .map(|i| format!("w{i}: __schema {{ types {{ fields {{ name }} }} }} "))
        .collect();
    refused_with(
        &gql(&app, Some(&s), &format!("{{ {walks} }}"), json!({})).await,
        "introspection fields",
    );
    // A normal page, even the largest, is served.
    let page = gql(
        &app,
        Some(&s),
        "query($n: Int) { items(first: $n) { edges { cursor node { id name unit category stockQty lowStock tags } } pageInfo { hasNextPage endCursor } } }",
        json!({"n": 200}),
    )
    .await;
    assert!(page.body["errors"].is_null(), "{}", page.text);
    assert_eq!(
        page.body["data"]["items"]["edges"][0]["node"]["name"],
        "Tea"
    );
    // The page size is read from variables too: three pages of 200 are refused before any query runs.
    let many: String = (0..3)
        .map(|i| format!("p{i}: items(first: $n) {{ edges {{ node {{ id name unit category stockQty lowStock tags }} }} }} "))
        .collect();
    refused_with(
        &gql(
            &app,
            Some(&s),
            &format!("query($n: Int) {{ {many} }}"),
            json!({"n": 200}),
        )
        .await,
        "too complex",
    );

    // Depth still bounds the real schema (which nests at most 5 deep, so under a lowered limit).
    let mut settings = api::Settings::for_tests(&fresh_database(b).await);
    settings.graphql.max_depth = 3;
    let app = spawn_with(settings).await;
    refused_with(
        &gql(
            &app,
            Some(&s),
            "{ items { edges { node { name } } } }",
            json!({}),
        )
        .await,
        "nested too deep",
    );
    let ok = gql(
        &app,
        Some(&s),
        "{ items { pageInfo { hasNextPage } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        ok.body["data"]["items"]["pageInfo"]["hasNextPage"], false,
        "{}",
        ok.text
    );

    // Turned off, introspection answers the standard query with no schema.
    let mut settings = api::Settings::for_tests(&fresh_database(b).await);
    settings.graphql.introspection = false;
    let app = spawn_with(settings).await;
    let r = gql(&app, Some(&s), STANDARD_INTROSPECTION, json!({})).await;
    assert_eq!(r.body["data"]["__schema"], Value::Null, "{}", r.text);
}

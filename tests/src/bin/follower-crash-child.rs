//! Child process of the log follower's crash test (`tests/tests/projections.rs`): runs the given
//! number of counting projections on the follower against `DATABASE_URL` until it is killed.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL")?;
    let n: usize = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "10".into())
        .parse()?;
    let store = eventstore::EventStore::connect(&url, 16).await?;
    fafcab_tests::counting::create_table(&store.db()).await?;
    projections::ProjectionRunner::new(store, fafcab_tests::counting::counting(n)).spawn();
    // Says it runs, then works until SIGKILL.
    println!("running");
    std::future::pending::<()>().await;
    Ok(())
}

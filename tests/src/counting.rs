//! Counting projections for the log follower's crash test: each keeps, per stream of the
//! `counted` aggregate type, how many events it applied and the sum of their positions, one
//! statement per event (so a batch takes a while and a kill lands inside one).

use std::sync::Arc;

use async_trait::async_trait;
use eventstore::{tx_exec, Db, StoredEvent, Tx};
use projections::Projection;

/// The aggregate type the counting projections apply.
pub const COUNTED: &str = "counted";

/// One counting projection; its rows are keyed by its name.
pub struct Counting(pub &'static str);

/// `n` counting projections, `count.0` … `count.<n-1>`.
pub fn counting(n: usize) -> Vec<Arc<dyn Projection>> {
    (0..n)
        .map(|i| {
            let name: &'static str = Box::leak(format!("count.{i}").into_boxed_str());
            Arc::new(Counting(name)) as Arc<dyn Projection>
        })
        .collect()
}

/// Creates the counting read model (the same SQL on both backends).
pub async fn create_table(db: &Db) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    tx_exec!(
        &mut tx,
        "CREATE TABLE IF NOT EXISTS follow_counts (projection TEXT NOT NULL, \
         aggregate_id TEXT NOT NULL, n BIGINT NOT NULL, pos_sum BIGINT NOT NULL, \
         PRIMARY KEY (projection, aggregate_id))"
    )?;
    tx.commit().await?;
    Ok(())
}

#[async_trait]
impl Projection for Counting {
    fn name(&self) -> &'static str {
        self.0
    }

    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&[COUNTED])
    }

    async fn apply(&self, tx: &mut Tx, e: &StoredEvent) -> anyhow::Result<()> {
        if e.aggregate_type != COUNTED {
            return Ok(());
        }
        tx_exec!(
            tx,
            "INSERT INTO follow_counts (projection, aggregate_id, n, pos_sum) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (projection, aggregate_id) DO UPDATE SET n = follow_counts.n + 1, \
             pos_sum = follow_counts.pos_sum + excluded.pos_sum",
            self.0,
            &e.aggregate_id,
            e.position
        )?;
        Ok(())
    }

    async fn reset(&self, tx: &mut Tx) -> anyhow::Result<()> {
        tx_exec!(
            tx,
            "DELETE FROM follow_counts WHERE projection = $1",
            self.0
        )?;
        Ok(())
    }
}

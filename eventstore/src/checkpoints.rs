//! Where each log reader (projection, relay, sink, process manager) has read up to. A checkpoint
//! only moves if nobody else moved it, so two readers that both think they lead cannot both apply.

use chrono::Utc;

use crate::{db_fetch_optional, tx_exec, tx_fetch_optional, Checkpoint, Db, Tx};

#[derive(sqlx::FromRow)]
struct CheckpointRow {
    tx_id: i64,
    position: i64,
}

pub async fn load_checkpoint(tx: &mut Tx, name: &str) -> anyhow::Result<Checkpoint> {
    let row = tx_fetch_optional!(
        tx,
        CheckpointRow,
        "SELECT tx_id, position FROM projection_checkpoints WHERE name = $1",
        name
    )?;
    Ok(row
        .map(|r| Checkpoint {
            tx_id: r.tx_id as u64,
            position: r.position,
        })
        .unwrap_or(Checkpoint::START))
}

/// Moves the checkpoint from `from` to `to`; fails if another worker moved it meanwhile.
pub async fn save_checkpoint(
    tx: &mut Tx,
    name: &str,
    from: Checkpoint,
    to: Checkpoint,
) -> anyhow::Result<()> {
    let n = tx_exec!(
        tx,
        "INSERT INTO projection_checkpoints (name, tx_id, position, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (name) DO UPDATE SET tx_id = excluded.tx_id, position = excluded.position, \
         updated_at = excluded.updated_at \
         WHERE projection_checkpoints.tx_id = $5 AND projection_checkpoints.position = $6",
        name,
        to.tx_id as i64,
        to.position,
        Utc::now(),
        from.tx_id as i64,
        from.position
    )?;
    anyhow::ensure!(
        n == 1,
        "checkpoint of {name} moved under us (another worker?)"
    );
    Ok(())
}

/// The checkpoint of `name` as committed (START when it has none).
pub async fn load_checkpoint_db(db: &Db, name: &str) -> anyhow::Result<Checkpoint> {
    let row = db_fetch_optional!(
        db,
        CheckpointRow,
        "SELECT tx_id, position FROM projection_checkpoints WHERE name = $1",
        name
    )?;
    Ok(row
        .map(|r| Checkpoint {
            tx_id: r.tx_id as u64,
            position: r.position,
        })
        .unwrap_or(Checkpoint::START))
}

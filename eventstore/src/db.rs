//! Backend-neutral access to the database that holds the log and the read models, for code that
//! must run the same SQL on PostgreSQL and SQLite (read models, checkpoints).
//!
//! SQL passed through these macros must be valid in both dialects: `$1` placeholders (sqlx binds
//! them on SQLite too), `lower(x) LIKE …` rather than `ILIKE`, booleans, TEXT, BIGINT.

use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

/// The database pools. SQLite has a single-connection write pool: one writer at a time is what
/// SQLite allows anyway, and queueing in-process avoids `SQLITE_BUSY` on lock upgrades.
#[derive(Clone, Debug)]
pub enum Db {
    Pg(PgPool),
    Sqlite { read: SqlitePool, write: SqlitePool },
}

/// A write transaction on either backend.
pub enum Tx {
    Pg(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

impl Db {
    pub async fn begin(&self) -> sqlx::Result<Tx> {
        Ok(match self {
            Db::Pg(p) => Tx::Pg(p.begin().await?),
            Db::Sqlite { write, .. } => Tx::Sqlite(write.begin().await?),
        })
    }

    pub fn is_pg(&self) -> bool {
        matches!(self, Db::Pg(_))
    }
}

impl Tx {
    pub async fn commit(self) -> sqlx::Result<()> {
        match self {
            Tx::Pg(t) => t.commit().await,
            Tx::Sqlite(t) => t.commit().await,
        }
    }

    pub fn is_pg(&self) -> bool {
        matches!(self, Tx::Pg(_))
    }
}

/// Executes a statement in a [`Tx`]; evaluates to `sqlx::Result<u64>` (rows affected).
#[macro_export]
macro_rules! tx_exec {
    ($tx:expr, $sql:expr $(, $arg:expr)* $(,)?) => {
        match $tx {
            $crate::Tx::Pg(t) => ::sqlx::query($sql)$(.bind($arg))*.execute(&mut **t).await.map(|r| r.rows_affected()),
            $crate::Tx::Sqlite(t) => ::sqlx::query($sql)$(.bind($arg))*.execute(&mut **t).await.map(|r| r.rows_affected()),
        }
    };
}

/// Fetches rows as `$ty` (a `sqlx::FromRow` for both backends) inside a [`Tx`].
#[macro_export]
macro_rules! tx_fetch_all {
    ($tx:expr, $ty:ty, $sql:expr $(, $arg:expr)* $(,)?) => {
        match $tx {
            $crate::Tx::Pg(t) => ::sqlx::query_as::<_, $ty>($sql)$(.bind($arg))*.fetch_all(&mut **t).await,
            $crate::Tx::Sqlite(t) => ::sqlx::query_as::<_, $ty>($sql)$(.bind($arg))*.fetch_all(&mut **t).await,
        }
    };
}

/// Fetches at most one row as `$ty` inside a [`Tx`].
#[macro_export]
macro_rules! tx_fetch_optional {
    ($tx:expr, $ty:ty, $sql:expr $(, $arg:expr)* $(,)?) => {
        match $tx {
            $crate::Tx::Pg(t) => ::sqlx::query_as::<_, $ty>($sql)$(.bind($arg))*.fetch_optional(&mut **t).await,
            $crate::Tx::Sqlite(t) => ::sqlx::query_as::<_, $ty>($sql)$(.bind($arg))*.fetch_optional(&mut **t).await,
        }
    };
}

/// Fetches rows as `$ty` from a [`Db`] (the read pool on SQLite).
#[macro_export]
macro_rules! db_fetch_all {
    ($db:expr, $ty:ty, $sql:expr $(, $arg:expr)* $(,)?) => {
        match $db {
            $crate::Db::Pg(p) => ::sqlx::query_as::<_, $ty>($sql)$(.bind($arg))*.fetch_all(p).await,
            $crate::Db::Sqlite { read, .. } => ::sqlx::query_as::<_, $ty>($sql)$(.bind($arg))*.fetch_all(read).await,
        }
    };
}

/// Fetches at most one row as `$ty` from a [`Db`].
#[macro_export]
macro_rules! db_fetch_optional {
    ($db:expr, $ty:ty, $sql:expr $(, $arg:expr)* $(,)?) => {
        match $db {
            $crate::Db::Pg(p) => ::sqlx::query_as::<_, $ty>($sql)$(.bind($arg))*.fetch_optional(p).await,
            $crate::Db::Sqlite { read, .. } => ::sqlx::query_as::<_, $ty>($sql)$(.bind($arg))*.fetch_optional(read).await,
        }
    };
}

/// Executes a statement on a [`Db`] outside any transaction (the write pool on SQLite).
#[macro_export]
macro_rules! db_exec {
    ($db:expr, $sql:expr $(, $arg:expr)* $(,)?) => {
        match $db {
            $crate::Db::Pg(p) => ::sqlx::query($sql)$(.bind($arg))*.execute(p).await.map(|r| r.rows_affected()),
            $crate::Db::Sqlite { write, .. } => ::sqlx::query($sql)$(.bind($arg))*.execute(write).await.map(|r| r.rows_affected()),
        }
    };
}

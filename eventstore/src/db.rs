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

/// A bind value for statements whose parameter count is only known at run time (bulk writes).
#[derive(Debug, Clone)]
pub enum Arg {
    I64(i64),
    Text(String),
    OptText(Option<String>),
    Time(chrono::DateTime<chrono::Utc>),
}

impl Tx {
    /// Executes `sql` with `args` bound in order.
    pub async fn execute_args(&mut self, sql: &str, args: Vec<Arg>) -> sqlx::Result<u64> {
        macro_rules! bind_all {
            ($q:expr) => {{
                let mut q = $q;
                for a in args {
                    q = match a {
                        Arg::I64(v) => q.bind(v),
                        Arg::Text(v) => q.bind(v),
                        Arg::OptText(v) => q.bind(v),
                        Arg::Time(v) => q.bind(v),
                    };
                }
                q
            }};
        }
        match self {
            Tx::Pg(t) => bind_all!(sqlx::query(sql))
                .execute(&mut **t)
                .await
                .map(|r| r.rows_affected()),
            Tx::Sqlite(t) => bind_all!(sqlx::query(sql))
                .execute(&mut **t)
                .await
                .map(|r| r.rows_affected()),
        }
    }
}

/// `($1, $2, …), ($k, …)`: `rows` groups of `cols` numbered placeholders.
pub fn placeholders(rows: usize, cols: usize) -> String {
    let mut s = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push_str(", ");
            }
            s.push('$');
            s.push_str(&(r * cols + c + 1).to_string());
        }
        s.push(')');
    }
    s
}

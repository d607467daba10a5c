//! Helpers of the tests that run the `fafcab` binary: a fresh database, a run of the binary.

use std::process::Command;

use sqlx::Connection;
use uuid::Uuid;

pub const BIN: &str = env!("CARGO_BIN_EXE_fafcab");

/// A fresh, empty database: a new PostgreSQL database (`TEST_DATABASE_URL`) or SQLite file.
pub async fn fresh(pg: bool) -> String {
    let name = format!("fafcab_t_{}", Uuid::new_v4().simple());
    if pg {
        let admin = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let mut c = sqlx::PgConnection::connect(&admin)
            .await
            .expect("PostgreSQL reachable");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await
            .unwrap();
        format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
    } else {
        let dir = std::env::temp_dir().join("fafcab-tests");
        std::fs::create_dir_all(&dir).unwrap();
        format!("sqlite://{}", dir.join(format!("{name}.db")).display())
    }
}

/// Runs `fafcab args…` on `url`: (exit code, stdout).
pub fn run(url: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "error")
        .output()
        .expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

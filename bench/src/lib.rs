//! Set-up shared by the bench binaries (`fafcab-bench`, `fafcab-ws-bench`, `fafcab-sub-bench`):
//! a fresh database, and a `fafcab serve` child process (the `fafcab` binary next to the bench's
//! own, so build both: `cargo build --release` at the workspace root) that is killed when the
//! bench ends; and [`client`], the `graphql-transport-ws` client of the benches and the tests.

pub mod client;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sqlx::Connection;

/// How long a started server may take to answer `GET /health`.
const STARTUP_LIMIT: Duration = Duration::from_secs(30);

/// A new, empty database for `backend` (`sqlite`: a file in a fresh temporary directory;
/// `postgres`: a new database on the server of `pg`, named `<prefix>_<uuid>`, which the test
/// script drops later like every `fafcab_bench_…` database).
pub async fn fresh_db(backend: &str, pg: &str, prefix: &str) -> anyhow::Result<String> {
    let id = uuid::Uuid::new_v4().simple();
    Ok(match backend {
        "sqlite" => {
            let dir = std::env::temp_dir().join(format!("{}-{id}", prefix.replace('_', "-")));
            std::fs::create_dir_all(&dir)?;
            format!("sqlite://{}", dir.join("bench.db").display())
        }
        "postgres" => {
            let name = format!("{prefix}_{id}");
            let mut c = sqlx::PgConnection::connect(pg)
                .await
                .context("connect to PostgreSQL")?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut c)
                .await?;
            format!("{}/{name}", pg.rsplit_once('/').context("bad --pg URL")?.0)
        }
        other => bail!("unknown backend {other:?}"),
    })
}

/// A running `fafcab serve`; dropping it kills the process.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// `127.0.0.1:<port>`.
    pub addr: String,
}

impl Server {
    /// Starts `fafcab serve` on `db` with `AUTH_JWT_SECRET` = `secret` and the extra `env`, on
    /// `port` (0: a free one), and waits until it answers `GET /health`.
    pub async fn start(
        db: &str,
        port: u16,
        secret: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Server> {
        let exe = std::env::current_exe()?.with_file_name("fafcab");
        if !exe.exists() {
            bail!(
                "no {} next to this bench: build both (`cargo build --release` at the workspace root)",
                exe.display()
            );
        }
        let port = match port {
            0 => std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port(),
            p => p,
        };
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(&exe);
        cmd.arg("serve")
            .env("DATABASE_URL", db)
            .env("FAFCAB_ADDR", &addr)
            .env("AUTH_JWT_SECRET", secret)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("failed to start {}", exe.display()))?;
        let server = Server {
            child,
            base: format!("http://{addr}"),
            addr,
        };
        let client = reqwest::Client::new();
        let started = Instant::now();
        while client
            .get(format!("{}/health", server.base))
            .send()
            .await
            .is_err()
        {
            if started.elapsed() > STARTUP_LIMIT {
                bail!("server did not come up within {STARTUP_LIMIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

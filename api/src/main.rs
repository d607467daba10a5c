//! `fafcab`: one binary, many roles (serve, worker, migrate, projections, audit, token).

use std::process::ExitCode;

use anyhow::Context;
use api::app::{open_store, projections_for, shutdown_signal};
use api::settings::SettingsArgs;
use api::{Application, Settings};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use domain::Role;

// The request path allocates many small buffers (JSON, SQL rows); mimalloc measurably lowers CPU
// per request against glibc malloc on the 2-core target (see README, Performance).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "fafcab",
    version,
    about = "FAFCab backend",
    after_help = "Every setting is a flag or its environment variable (the flag wins); a value out of its range is refused."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (default). Runs the projection workers too unless --no-workers.
    Serve {
        #[arg(long)]
        no_workers: bool,
    },
    /// Run only the projection workers (scale-out next to `serve --no-workers`).
    Worker,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Read-model maintenance.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Ledger audits.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Message retention.
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// Run one sink alone: `notifications` or `discord`.
    Sink { name: String },
    /// Print the GraphQL schema (SDL) this build serves.
    Schema,
    /// Print a development token.
    Token {
        #[arg(long)]
        user: String,
        /// Repeatable: admin, student, teacher, executor, auditor.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Lifetime in hours.
        #[arg(long, default_value_t = 24)]
        hours: i64,
    },
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Drop and rebuild a read model from the log (all of them without NAME).
    Rebuild { name: Option<String> },
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// One pass of the retention job: expire and redact messages past their chat's retention.
    Run {
        /// Decide expiry as of this RFC 3339 time instead of now (to look ahead).
        #[arg(long)]
        now: Option<chrono::DateTime<chrono::Utc>>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute every payload hash and chain link; exit 1 naming every broken stream and what
    /// broke (content hash, chain hash or sequence). With --digest and --position, also prove the
    /// log up to that position matches the digest.
    Verify {
        /// A digest from `GET /audit/digest` or `fafcab audit digest` (64 hex digits).
        #[arg(long, requires = "position")]
        digest: Option<String>,
        /// The position that digest was taken at.
        #[arg(long, requires = "digest")]
        position: Option<i64>,
    },
    /// Verify the whole log, then print its digest up to its stable position (as GET
    /// /audit/digest); a broken log gets no digest (exit 1, its broken streams named).
    Digest,
    /// Fold a ledger from the log alone and compare it with its read model; exit 1 on a difference.
    Replay {
        #[arg(long, value_enum)]
        ledger: api::audit::Ledger,
        /// Count only what occurred up to this RFC 3339 time.
        #[arg(long)]
        as_of: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Write a ledger's journal (every event with its hashes) as CSV or JSON Lines.
    Export {
        #[arg(long, value_enum)]
        ledger: api::audit::Ledger,
        #[arg(long, value_enum, default_value = "json")]
        format: api::audit::ExportFormat,
        /// Write to this file instead of stdout.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
}

fn init_tracing(filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("warning: RUST_LOG {filter:?} is not a valid filter ({e}): using info");
        EnvFilter::new("info,sqlx=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

/// A setting's variable set to an empty (or blank) value counts as unset, as it always has
/// (`FOO= fafcab`, an empty line of a compose file). Runs before any thread exists.
fn forget_blank_settings() {
    for arg in Cli::command().get_arguments() {
        if let Some(name) = arg.get_env() {
            if std::env::var_os(name).is_some_and(|v| v.to_string_lossy().trim().is_empty()) {
                std::env::remove_var(name);
            }
        }
    }
}

/// Parses the command line; each setting's value is named by its variable, so a refused value
/// says which variable (or flag) to fix: `invalid value '1' for '--addr <FAFCAB_ADDR>': …`.
fn parse_cli() -> Cli {
    let command = Cli::command().mut_args(|a| match a.get_env() {
        Some(env) => {
            // Built once per process: leaking these few short names is harmless.
            let name: &'static str = Box::leak(env.to_string_lossy().into_owned().into_boxed_str());
            a.value_name(name)
        }
        None => a,
    });
    Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit())
}

fn main() -> ExitCode {
    forget_blank_settings();
    let cli = parse_cli();
    init_tracing(&cli.settings.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // `audit` answers 1 for "the log or read model disagrees", so its errors are 2 (like diff).
    let audit = matches!(cli.command, Some(Command::Audit { .. }));
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(if audit { 2 } else { 1 })
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut settings = Settings::from_args(cli.settings);
    match cli.command.unwrap_or(Command::Serve { no_workers: false }) {
        Command::Serve { no_workers } => {
            settings.run_workers = !no_workers;
            settings.check_serve()?;
            if settings.jwt_secret_is_dev {
                tracing::warn!(
                    addr = %settings.addr,
                    "AUTH_JWT_SECRET is not set: using the public DEVELOPMENT secret (accepted on a \
                     loopback address only). Anyone can mint tokens for this server. Never run \
                     like this in production."
                );
            }
            tracing::info!(settings = ?settings, "starting");
            let app = Application::build(settings).await?;
            tracing::info!(addr = %app.addr(), "listening");
            app.run_until_stopped(shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker => {
            let store = open_store(&settings).await?;
            let runner = projections_for(&store);
            runner.spawn();
            let bus = commands::CommandBus::new(store.clone());
            commands::message::spawn_worker(bus.clone());
            commands::budget::spawn_tea_policy(bus.clone());
            commands::fundraising::spawn_policy(bus.clone());
            commands::sharing::spawn_policy(bus.clone());
            api::retention::spawn_worker(bus, settings.retention_interval);
            if settings.amqp_url.is_some() {
                projections::relay::Relay::new(store.clone(), settings.amqp_url.clone()).spawn();
            }
            let _sinks = api::app::spawn_sinks(&store, &settings, None);
            tracing::info!(projections = ?runner.names(), relay = settings.amqp_url.is_some(), "workers running");
            shutdown_signal().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sink { name } => {
            if !["notifications", "discord"].contains(&name.as_str()) {
                anyhow::bail!("unknown sink {name:?}: notifications or discord");
            }
            if name == "discord" && settings.discord_webhook_url.is_none() {
                anyhow::bail!("DISCORD_WEBHOOK_URL is not set");
            }
            let store = open_store(&settings).await?;
            let sinks = api::app::spawn_sinks(&store, &settings, Some(&name));
            tracing::info!(sink = name, count = sinks.len(), "sink running");
            shutdown_signal().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            open_store(&settings).await?;
            println!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Projections {
            command: ProjectionsCommand::Rebuild { name },
        } => {
            let store = open_store(&settings).await?;
            let runner = projections_for(&store);
            let names = match name {
                Some(n) => vec![n],
                None => runner.names().into_iter().map(String::from).collect(),
            };
            for n in names {
                // Progress in log positions (the rebuild reads the whole log).
                let head = store.head_position().await?.max(0) as u64;
                let progress = api::progress::Progress::start(
                    &format!("projections rebuild {n}"),
                    "positions",
                    head,
                );
                let counter = progress.counter();
                let applied = runner
                    .rebuild_with(&n, &|p| {
                        counter.store(p.max(0) as u64, std::sync::atomic::Ordering::Relaxed)
                    })
                    .await;
                progress.finish().await;
                let applied = applied.with_context(|| format!("failed to rebuild {n}"))?;
                println!("rebuilt {n}: {applied} events applied");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command } => {
            let store = open_store(&settings).await?;
            let ok = match command {
                AuditCommand::Verify { digest, position } => {
                    api::audit::cli_verify(&store, digest.as_deref().zip(position)).await?
                }
                AuditCommand::Digest => api::audit::cli_digest(&store).await?,
                AuditCommand::Replay { ledger, as_of } => {
                    api::audit::cli_replay(&store, ledger, as_of).await?
                }
                AuditCommand::Export {
                    ledger,
                    format,
                    output,
                } => api::audit::cli_export(&store, ledger, format, output.as_deref()).await?,
            };
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Schema => {
            print!("{}", api::graphql::schema().sdl());
            Ok(ExitCode::SUCCESS)
        }
        Command::Retention {
            command: RetentionCommand::Run { now },
        } => {
            let store = open_store(&settings).await?;
            let bus = commands::CommandBus::new(store);
            let now = now.unwrap_or_else(chrono::Utc::now);
            let r = api::retention::run_once(&bus, now, api::retention::Limits::default()).await?;
            println!(
                "retention as of {}: {} chats scanned, {} messages expired, {} rejected submissions expired, {} events redacted{}",
                now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                r.chats_scanned,
                r.messages_expired,
                r.operations_expired,
                r.events_redacted,
                if r.limit_reached {
                    " (limit reached: run again)"
                } else {
                    ""
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Token { user, roles, hours } => {
            let roles = roles
                .iter()
                .map(|r| Role::parse(r).with_context(|| format!("unknown role {r:?}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if settings.jwt_secret_is_dev {
                eprintln!("note: signing with the development secret (AUTH_JWT_SECRET unset)");
            }
            let token = api::auth::issue(
                &settings.jwt_secret,
                &user,
                &roles,
                chrono::Duration::hours(hours),
            )?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

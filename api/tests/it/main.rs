//! The `fafcab` binary's integration tests (subcommands, the relay, GraphQL scale-out), linked
//! into one binary. `common` holds their helpers (a fresh database, a run of the binary).

mod audit_cli;
mod cli;
mod common;
mod graphql_scale_out;
mod relay;
mod retention_cli;

//! Every integration test of the whole backend, linked into one binary (one link instead of one
//! per file: build time on 2 cores). Each module is one former test file; run one with
//! `cargo nextest run -p fafcab-tests -E 'test(/^chat_http::/)'`.

mod audit_http;
mod budget_http;
mod chat_http;
mod chat_live;
mod chat_moderation;
mod chat_retention;
mod eventstore_conformance;
mod fundraising_http;
mod graphql;
mod graphql_budget;
mod graphql_subscriptions;
mod graphql_ws;
mod http_limits;
mod live_hub;
mod outage;
mod projections;
mod security;
mod sharing_http;
mod sinks;
mod tea_http;

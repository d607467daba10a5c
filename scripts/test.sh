#!/usr/bin/env bash
# Runs every test of the workspace against real PostgreSQL and the embedded SQLite backend.
# Works on a fresh machine of this project's kind: starts PostgreSQL (and RabbitMQ) when they
# are not running, cleans up databases left by earlier runs, builds, and runs the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

log() { printf '==> %s\n' "$*"; }

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  log "starting PostgreSQL"
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
fi
for _ in $(seq 1 60); do
  pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && break
  sleep 1
done
pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }

# RabbitMQ: the relay test (api/tests/it/relay.rs, which stops and restarts it), the sinks test and
# the GraphQL scale-out test use the broker (TEST_AMQP_URL), so it is started when missing and
# waited for like PostgreSQL.
if command -v rabbitmqctl >/dev/null; then
  if ! rabbitmqctl -q status >/dev/null 2>&1; then
    log "starting RabbitMQ"
    rabbitmq-server -detached >/dev/null 2>&1 || true
  fi
  log "waiting for RabbitMQ"
  # `await_startup` returns once the app is running (or fails at once when the node is down).
  for _ in $(seq 1 60); do
    rabbitmqctl -q await_startup >/dev/null 2>&1 && break
    sleep 1
  done
  rabbitmqctl -q await_startup >/dev/null 2>&1 || { echo "RabbitMQ did not start" >&2; exit 1; }
fi

if command -v rabbitmqctl >/dev/null && rabbitmqctl -q status >/dev/null 2>&1; then
  log "deleting RabbitMQ queues left by earlier test runs"
  # (grep finds nothing on a clean broker: not an error)
  { rabbitmqctl -q list_queues name 2>/dev/null | grep -E '^fafcab-(test|bench)-' || true; } | while read -r q; do
    rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true
  done
fi

log "dropping databases left by earlier test runs"
psql "$TEST_DATABASE_URL" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'fafcab\_t\_%' OR datname LIKE 'fafcab\_bench\_%'" \
  | while read -r db; do psql "$TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null; done
rm -rf "${TMPDIR:-/tmp}/fafcab-tests"

log "checking format"
cargo fmt --all --check

log "linting"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "building"
cargo build --workspace --all-targets --locked

log "testing"
if cargo nextest --version >/dev/null 2>&1; then
  # The workspace has no doc tests; nextest's summary is the run's closing line. Test groups
  # (the broker-stopping relay test runs alone) are in .config/nextest.toml.
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

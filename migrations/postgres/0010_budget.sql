-- Budgeting read models, built by the `budget` projection from the `budget_ledger` streams.
-- Amounts of single rows are decimal strings; `budget_lines` keeps integer cents (every amount
-- has at most two decimals) so both backends sum them exactly.
CREATE TABLE budget_transactions (
    id              text        PRIMARY KEY,
    kind            text        NOT NULL,
    amount          text        NOT NULL,
    currency        text        NOT NULL,
    category        text        NOT NULL,
    description     text,
    occurred_at     timestamptz NOT NULL,
    reference       text,
    recorded_by     text        NOT NULL,
    recorded_at     timestamptz NOT NULL,
    reversal_of     text,
    reversal_reason text,
    reversed_by     text,
    seq             bigint      NOT NULL
);
CREATE INDEX budget_transactions_seq_idx ON budget_transactions (seq);

CREATE TABLE budget_debts (
    id          text        PRIMARY KEY,
    user_id     text        NOT NULL,
    amount      text        NOT NULL,
    amount_paid text        NOT NULL,
    currency    text        NOT NULL,
    reason      text        NOT NULL,
    source_ref  text,
    status      text        NOT NULL,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    seq         bigint      NOT NULL
);
CREATE INDEX budget_debts_seq_idx ON budget_debts (seq);
CREATE INDEX budget_debts_user_idx ON budget_debts (user_id, seq);

CREATE TABLE budget_lines (
    position     bigint      NOT NULL,
    line_no      integer     NOT NULL,
    entry_id     text        NOT NULL,
    currency     text        NOT NULL,
    account      text        NOT NULL,
    account_type text        NOT NULL,
    category     text,
    debit_cents  bigint      NOT NULL,
    credit_cents bigint      NOT NULL,
    occurred_at  timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL,
    PRIMARY KEY (position, line_no)
);
CREATE INDEX budget_lines_occurred_idx ON budget_lines (currency, occurred_at);

CREATE TABLE budget_settings (
    currency              text        PRIMARY KEY,
    low_balance_threshold text        NOT NULL,
    updated_by            text        NOT NULL,
    updated_at            timestamptz NOT NULL
);

-- Budgeting read models, built by the `budget` projection from the `budget_ledger` streams.
-- Amounts of single rows are decimal strings; `budget_lines` keeps INTEGER cents (every amount
-- has at most two decimals) so both backends sum them exactly.
CREATE TABLE budget_transactions (
    id              TEXT        PRIMARY KEY,
    kind            TEXT        NOT NULL,
    amount          TEXT        NOT NULL,
    currency        TEXT        NOT NULL,
    category        TEXT        NOT NULL,
    description     TEXT,
    occurred_at     TEXT        NOT NULL,
    reference       TEXT,
    recorded_by     TEXT        NOT NULL,
    recorded_at     TEXT        NOT NULL,
    reversal_of     TEXT,
    reversal_reason TEXT,
    reversed_by     TEXT,
    seq             INTEGER     NOT NULL
);
CREATE INDEX budget_transactions_seq_idx ON budget_transactions (seq);

CREATE TABLE budget_debts (
    id          TEXT        PRIMARY KEY,
    user_id     TEXT        NOT NULL,
    amount      TEXT        NOT NULL,
    amount_paid TEXT        NOT NULL,
    currency    TEXT        NOT NULL,
    reason      TEXT        NOT NULL,
    source_ref  TEXT,
    status      TEXT        NOT NULL,
    created_by  TEXT        NOT NULL,
    created_at  TEXT        NOT NULL,
    updated_at  TEXT        NOT NULL,
    seq         INTEGER     NOT NULL
);
CREATE INDEX budget_debts_seq_idx ON budget_debts (seq);
CREATE INDEX budget_debts_user_idx ON budget_debts (user_id, seq);

CREATE TABLE budget_lines (
    position     INTEGER     NOT NULL,
    line_no      INTEGER     NOT NULL,
    entry_id     TEXT        NOT NULL,
    currency     TEXT        NOT NULL,
    account      TEXT        NOT NULL,
    account_type TEXT        NOT NULL,
    category     TEXT,
    debit_cents  INTEGER     NOT NULL,
    credit_cents INTEGER     NOT NULL,
    occurred_at  TEXT        NOT NULL,
    recorded_at  TEXT        NOT NULL,
    PRIMARY KEY (position, line_no)
);
CREATE INDEX budget_lines_occurred_idx ON budget_lines (currency, occurred_at);

CREATE TABLE budget_settings (
    currency              TEXT        PRIMARY KEY,
    low_balance_threshold TEXT        NOT NULL,
    updated_by            TEXT        NOT NULL,
    updated_at            TEXT        NOT NULL
);

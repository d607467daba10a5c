-- Fund Raising and Sharing read models, built by the `fundraising` projection from the `campaign`
-- streams and by the `sharing` projection from the `asset` streams. Amounts are decimal strings
-- (two decimals at most), as in the budget's single rows.
CREATE TABLE fundraising_campaigns (
    id               TEXT        PRIMARY KEY,
    title            TEXT        NOT NULL,
    description      TEXT,
    goal_amount      TEXT        NOT NULL,
    currency         TEXT        NOT NULL,
    ends_at          TEXT        NOT NULL,
    purpose          TEXT,
    status           TEXT        NOT NULL,
    raised           TEXT        NOT NULL,
    spent            TEXT        NOT NULL,
    donors_count     INTEGER     NOT NULL,
    budget_available TEXT,
    budget_shortfall TEXT,
    created_by       TEXT        NOT NULL,
    created_at       TEXT        NOT NULL,
    updated_at       TEXT        NOT NULL,
    started_at       TEXT,
    completed_at     TEXT,
    closed_at        TEXT,
    cancelled_at     TEXT,
    cancel_reason    TEXT,
    seq              INTEGER     NOT NULL
);
CREATE INDEX fundraising_campaigns_seq_idx ON fundraising_campaigns (seq);
CREATE INDEX fundraising_campaigns_status_idx ON fundraising_campaigns (status, seq);

CREATE TABLE fundraising_donations (
    id          TEXT        PRIMARY KEY,
    campaign_id TEXT        NOT NULL,
    donor_id    TEXT        NOT NULL,
    amount      TEXT        NOT NULL,
    currency    TEXT        NOT NULL,
    anonymous   INTEGER     NOT NULL,
    message     TEXT,
    received_at TEXT        NOT NULL,
    seq         INTEGER     NOT NULL
);
CREATE INDEX fundraising_donations_campaign_idx ON fundraising_donations (campaign_id, seq);

CREATE TABLE fundraising_purchases (
    id          TEXT        PRIMARY KEY,
    campaign_id TEXT        NOT NULL,
    amount      TEXT        NOT NULL,
    currency    TEXT        NOT NULL,
    description TEXT        NOT NULL,
    receipt_ref TEXT,
    recorded_by TEXT        NOT NULL,
    recorded_at TEXT        NOT NULL,
    seq         INTEGER     NOT NULL
);
CREATE INDEX fundraising_purchases_campaign_idx ON fundraising_purchases (campaign_id, seq);

CREATE TABLE sharing_assets (
    id               TEXT        PRIMARY KEY,
    name             TEXT        NOT NULL,
    category         TEXT        NOT NULL,
    owner_id         TEXT        NOT NULL,
    replacement_cost TEXT        NOT NULL,
    currency         TEXT        NOT NULL,
    notes            TEXT,
    registered_by    TEXT        NOT NULL,
    created_at       TEXT        NOT NULL,
    updated_at       TEXT        NOT NULL,
    holder_id        TEXT,
    loan_id          TEXT,
    seq              INTEGER     NOT NULL
);
CREATE INDEX sharing_assets_seq_idx ON sharing_assets (seq);

CREATE TABLE sharing_loans (
    id           TEXT        PRIMARY KEY,
    asset_id     TEXT        NOT NULL,
    user_id      TEXT        NOT NULL,
    taken_at     TEXT        NOT NULL,
    due_at       TEXT        NOT NULL,
    returned_at  TEXT,
    returned_by  TEXT,
    condition    TEXT,
    return_notes TEXT,
    seq          INTEGER     NOT NULL
);
CREATE INDEX sharing_loans_seq_idx ON sharing_loans (seq);
CREATE INDEX sharing_loans_asset_idx ON sharing_loans (asset_id, seq);
CREATE INDEX sharing_loans_open_idx ON sharing_loans (returned_at, due_at);

CREATE TABLE sharing_damages (
    id          TEXT        PRIMARY KEY,
    asset_id    TEXT        NOT NULL,
    user_id     TEXT        NOT NULL,
    description TEXT        NOT NULL,
    cost        TEXT        NOT NULL,
    currency    TEXT        NOT NULL,
    reported_by TEXT        NOT NULL,
    reported_at TEXT        NOT NULL,
    seq         INTEGER     NOT NULL
);
CREATE INDEX sharing_damages_asset_idx ON sharing_damages (asset_id, seq);

-- Fund Raising and Sharing read models, built by the `fundraising` projection from the `campaign`
-- streams and by the `sharing` projection from the `asset` streams. Amounts are decimal strings
-- (two decimals at most), as in the budget's single rows.
CREATE TABLE fundraising_campaigns (
    id               text        PRIMARY KEY,
    title            text        NOT NULL,
    description      text,
    goal_amount      text        NOT NULL,
    currency         text        NOT NULL,
    ends_at          timestamptz NOT NULL,
    purpose          text,
    status           text        NOT NULL,
    raised           text        NOT NULL,
    spent            text        NOT NULL,
    donors_count     bigint      NOT NULL,
    budget_available text,
    budget_shortfall text,
    created_by       text        NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    started_at       timestamptz,
    completed_at     timestamptz,
    closed_at        timestamptz,
    cancelled_at     timestamptz,
    cancel_reason    text,
    seq              bigint      NOT NULL
);
CREATE INDEX fundraising_campaigns_seq_idx ON fundraising_campaigns (seq);
CREATE INDEX fundraising_campaigns_status_idx ON fundraising_campaigns (status, seq);

CREATE TABLE fundraising_donations (
    id          text        PRIMARY KEY,
    campaign_id text        NOT NULL,
    donor_id    text        NOT NULL,
    amount      text        NOT NULL,
    currency    text        NOT NULL,
    anonymous   boolean     NOT NULL,
    message     text,
    received_at timestamptz NOT NULL,
    seq         bigint      NOT NULL
);
CREATE INDEX fundraising_donations_campaign_idx ON fundraising_donations (campaign_id, seq);

CREATE TABLE fundraising_purchases (
    id          text        PRIMARY KEY,
    campaign_id text        NOT NULL,
    amount      text        NOT NULL,
    currency    text        NOT NULL,
    description text        NOT NULL,
    receipt_ref text,
    recorded_by text        NOT NULL,
    recorded_at timestamptz NOT NULL,
    seq         bigint      NOT NULL
);
CREATE INDEX fundraising_purchases_campaign_idx ON fundraising_purchases (campaign_id, seq);

CREATE TABLE sharing_assets (
    id               text        PRIMARY KEY,
    name             text        NOT NULL,
    category         text        NOT NULL,
    owner_id         text        NOT NULL,
    replacement_cost text        NOT NULL,
    currency         text        NOT NULL,
    notes            text,
    registered_by    text        NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    holder_id        text,
    loan_id          text,
    seq              bigint      NOT NULL
);
CREATE INDEX sharing_assets_seq_idx ON sharing_assets (seq);

CREATE TABLE sharing_loans (
    id           text        PRIMARY KEY,
    asset_id     text        NOT NULL,
    user_id      text        NOT NULL,
    taken_at     timestamptz NOT NULL,
    due_at       timestamptz NOT NULL,
    returned_at  timestamptz,
    returned_by  text,
    condition    text,
    return_notes text,
    seq          bigint      NOT NULL
);
CREATE INDEX sharing_loans_seq_idx ON sharing_loans (seq);
CREATE INDEX sharing_loans_asset_idx ON sharing_loans (asset_id, seq);
CREATE INDEX sharing_loans_open_idx ON sharing_loans (returned_at, due_at);

CREATE TABLE sharing_damages (
    id          text        PRIMARY KEY,
    asset_id    text        NOT NULL,
    user_id     text        NOT NULL,
    description text        NOT NULL,
    cost        text        NOT NULL,
    currency    text        NOT NULL,
    reported_by text        NOT NULL,
    reported_at timestamptz NOT NULL,
    seq         bigint      NOT NULL
);
CREATE INDEX sharing_damages_asset_idx ON sharing_damages (asset_id, seq);

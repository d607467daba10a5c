-- Tea Management read models, built by the `tea` projection from the log.
CREATE TABLE tea_items (
    id            TEXT        PRIMARY KEY,
    name          TEXT        NOT NULL,
    unit          TEXT        NOT NULL,
    category      TEXT        NOT NULL,
    sku           TEXT,
    active        INTEGER     NOT NULL,
    track_expiry  INTEGER     NOT NULL,
    min_stock_qty INTEGER     NOT NULL,
    tags          TEXT        NOT NULL,
    stock_qty     INTEGER     NOT NULL,
    threshold_qty INTEGER     NOT NULL,
    created_at    TEXT        NOT NULL,
    updated_at    TEXT        NOT NULL,
    seq           INTEGER     NOT NULL
);
CREATE INDEX tea_items_seq_idx ON tea_items (seq);
CREATE INDEX tea_items_category_idx ON tea_items (category, seq);

CREATE TABLE tea_batches (
    id            TEXT        PRIMARY KEY,
    item_id       TEXT        NOT NULL,
    batch_code    TEXT        NOT NULL,
    supplier_ref  TEXT,
    expiry_date   TEXT,
    qty_received  INTEGER     NOT NULL,
    qty_remaining INTEGER     NOT NULL,
    currency      TEXT        NOT NULL,
    cost_total    TEXT        NOT NULL,
    received_at   TEXT        NOT NULL,
    seq           INTEGER     NOT NULL
);
CREATE INDEX tea_batches_item_idx ON tea_batches (item_id, seq);
CREATE INDEX tea_batches_expiry_idx ON tea_batches (expiry_date) WHERE qty_remaining > 0;

CREATE TABLE tea_consumptions (
    id          TEXT        PRIMARY KEY,
    item_id     TEXT        NOT NULL,
    batch_id    TEXT        NOT NULL,
    allocations TEXT        NOT NULL,
    qty         INTEGER     NOT NULL,
    user_id     TEXT        NOT NULL,
    source      TEXT        NOT NULL,
    notes       TEXT,
    consumed_at TEXT        NOT NULL,
    created_at  TEXT        NOT NULL,
    seq         INTEGER     NOT NULL
);
CREATE INDEX tea_consumptions_seq_idx ON tea_consumptions (seq);
CREATE INDEX tea_consumptions_item_idx ON tea_consumptions (item_id, consumed_at);
CREATE INDEX tea_consumptions_user_idx ON tea_consumptions (user_id, consumed_at);

CREATE TABLE tea_thresholds (
    id            TEXT        PRIMARY KEY,
    item_id       TEXT        NOT NULL UNIQUE,
    min_qty       INTEGER     NOT NULL,
    notify_config TEXT        NOT NULL,
    created_at    TEXT        NOT NULL,
    updated_at    TEXT        NOT NULL,
    seq           INTEGER     NOT NULL
);

CREATE TABLE tea_announcements (
    id             TEXT        PRIMARY KEY,
    title          TEXT        NOT NULL,
    body           TEXT        NOT NULL,
    published_by   TEXT        NOT NULL,
    effective_from TEXT        NOT NULL,
    created_at     TEXT        NOT NULL,
    item_ids       TEXT        NOT NULL,
    seq            INTEGER     NOT NULL
);
CREATE INDEX tea_announcements_seq_idx ON tea_announcements (seq);

-- Tea Management read models, built by the `tea` projection from the log.
CREATE TABLE tea_items (
    id            text        PRIMARY KEY,
    name          text        NOT NULL,
    unit          text        NOT NULL,
    category      text        NOT NULL,
    sku           text,
    active        boolean     NOT NULL,
    track_expiry  boolean     NOT NULL,
    min_stock_qty bigint      NOT NULL,
    tags          text        NOT NULL,
    stock_qty     bigint      NOT NULL,
    threshold_qty bigint      NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    seq           bigint      NOT NULL
);
CREATE INDEX tea_items_seq_idx ON tea_items (seq);
CREATE INDEX tea_items_category_idx ON tea_items (category, seq);

CREATE TABLE tea_batches (
    id            text        PRIMARY KEY,
    item_id       text        NOT NULL,
    batch_code    text        NOT NULL,
    supplier_ref  text,
    expiry_date   date,
    qty_received  bigint      NOT NULL,
    qty_remaining bigint      NOT NULL,
    currency      text        NOT NULL,
    cost_total    text        NOT NULL,
    received_at   timestamptz NOT NULL,
    seq           bigint      NOT NULL
);
CREATE INDEX tea_batches_item_idx ON tea_batches (item_id, seq);
CREATE INDEX tea_batches_expiry_idx ON tea_batches (expiry_date) WHERE qty_remaining > 0;

CREATE TABLE tea_consumptions (
    id          text        PRIMARY KEY,
    item_id     text        NOT NULL,
    batch_id    text        NOT NULL,
    allocations text        NOT NULL,
    qty         bigint      NOT NULL,
    user_id     text        NOT NULL,
    source      text        NOT NULL,
    notes       text,
    consumed_at timestamptz NOT NULL,
    created_at  timestamptz NOT NULL,
    seq         bigint      NOT NULL
);
CREATE INDEX tea_consumptions_seq_idx ON tea_consumptions (seq);
CREATE INDEX tea_consumptions_item_idx ON tea_consumptions (item_id, consumed_at);
CREATE INDEX tea_consumptions_user_idx ON tea_consumptions (user_id, consumed_at);

CREATE TABLE tea_thresholds (
    id            text        PRIMARY KEY,
    item_id       text        NOT NULL UNIQUE,
    min_qty       bigint      NOT NULL,
    notify_config text        NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    seq           bigint      NOT NULL
);

CREATE TABLE tea_announcements (
    id             text        PRIMARY KEY,
    title          text        NOT NULL,
    body           text        NOT NULL,
    published_by   text        NOT NULL,
    effective_from timestamptz NOT NULL,
    created_at     timestamptz NOT NULL,
    item_ids       text        NOT NULL,
    seq            bigint      NOT NULL
);
CREATE INDEX tea_announcements_seq_idx ON tea_announcements (seq);

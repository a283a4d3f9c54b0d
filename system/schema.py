"""The PostgreSQL schema of the reference system, applied idempotently at start.

PostgreSQL is the source of truth: an order is stored before any job exists.
Each effect table has a named unique constraint that makes its effect happen
at most once (one billing entry per order, one inventory movement per order
line and kind, one notification per order, one archive row per queue and job
id). The constraint names are part of the seams: a test can drop one to show
what the suite finds without it.

`deliveries` is written outside every effect's transaction, once per processor
invocation, so duplicate deliveries stay countable even when the effect was
skipped or rolled back.
"""

from __future__ import annotations

CONSTRAINTS: dict[str, str] = {
    "inventory_movements": "inventory_movements_once",
    "billing_entries": "billing_entries_once",
    "notifications": "notifications_once",
    "job_archive": "job_archive_once",
    "batch_reports": "batch_reports_once",
}

# Every table the system writes; `reset` empties all of them.
TABLES: tuple[str, ...] = (
    "orders",
    "order_lines",
    "inventory_movements",
    "billing_entries",
    "notifications",
    "job_archive",
    "deliveries",
    "record_emits",
    "batch_reports",
)

# SKU -> (unit price in cents, stock on hand after a reset).
CATALOGUE: dict[str, tuple[int, int]] = {
    "SKU-APPLE": (120, 1_000_000),
    "SKU-BREAD": (250, 1_000_000),
    "SKU-CHEESE": (899, 1_000_000),
    "SKU-DATES": (475, 1_000_000),
    "SKU-EGGS": (330, 1_000_000),
    "SKU-FIGS": (610, 1_000_000),
    "SKU-SCARCE": (9_999, 5),
}

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS stock (
    sku text PRIMARY KEY,
    price_cents bigint NOT NULL CHECK (price_cents >= 0),
    on_hand bigint NOT NULL,
    initial_on_hand bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS orders (
    order_id text PRIMARY KEY,
    customer_id text NOT NULL,
    payment_method text NOT NULL,
    priority text NOT NULL CHECK (priority IN ('critical', 'general')),
    workflow text NOT NULL CHECK (workflow IN ('flow', 'saga')),
    total_cents bigint NOT NULL,
    trace_id text NOT NULL,
    fingerprint text NOT NULL,
    state text NOT NULL
        CHECK (state IN ('accepted', 'processing', 'completed', 'failed')),
    failure_reason text,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS orders_unfinished
    ON orders (created_at) WHERE state IN ('accepted', 'processing');

CREATE TABLE IF NOT EXISTS order_lines (
    order_id text NOT NULL,
    line_no integer NOT NULL,
    sku text NOT NULL,
    quantity integer NOT NULL CHECK (quantity > 0),
    unit_price_cents bigint NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

CREATE TABLE IF NOT EXISTS inventory_movements (
    id bigserial PRIMARY KEY,
    order_id text NOT NULL,
    line_no integer NOT NULL,
    sku text NOT NULL,
    delta integer NOT NULL,
    kind text NOT NULL CHECK (kind IN ('reserve', 'compensate')),
    job_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT inventory_movements_once UNIQUE (order_id, line_no, kind)
);

CREATE TABLE IF NOT EXISTS billing_entries (
    id bigserial PRIMARY KEY,
    order_id text NOT NULL,
    amount_cents bigint NOT NULL,
    job_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT billing_entries_once UNIQUE (order_id)
);

CREATE TABLE IF NOT EXISTS notifications (
    id bigserial PRIMARY KEY,
    order_id text NOT NULL,
    trace_id text NOT NULL,
    channel text NOT NULL,
    job_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT notifications_once UNIQUE (order_id)
);

CREATE TABLE IF NOT EXISTS job_archive (
    id bigserial PRIMARY KEY,
    queue text NOT NULL,
    job_id text NOT NULL,
    name text,
    state text NOT NULL CHECK (state IN ('completed', 'failed')),
    data text,
    return_value text,
    failed_reason text,
    attempts_made integer,
    finished_on bigint,
    archived_by text NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT job_archive_once UNIQUE (queue, job_id)
);

CREATE TABLE IF NOT EXISTS deliveries (
    id bigserial PRIMARY KEY,
    queue text NOT NULL,
    job_id text NOT NULL,
    job_name text NOT NULL,
    attempt integer NOT NULL,
    worker text NOT NULL,
    pid integer NOT NULL,
    delivered_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE IF NOT EXISTS record_emits (
    id bigserial PRIMARY KEY,
    resource_id text NOT NULL,
    job_id text NOT NULL,
    emitted_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE IF NOT EXISTS batch_reports (
    id bigserial PRIMARY KEY,
    report_id text NOT NULL,
    job_id text NOT NULL,
    rows_scanned integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT batch_reports_once UNIQUE (report_id)
);
"""

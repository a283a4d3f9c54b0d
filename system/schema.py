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

# The SQL functions that store orders and run the effects, one statement each.
FUNCTIONS: tuple[str, ...] = (
    "bp_place_order",
    "bp_reserve_inventory",
    "bp_record_billing",
    "bp_send_notification",
    "bp_compensate_inventory",
)

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

-- Each effect is one function, so that it runs as one statement: one round
-- trip, and row locks (the hot stock rows above all) held for microseconds
-- instead of for several round trips.

CREATE OR REPLACE FUNCTION bp_place_order(
    p_order text, p_customer text, p_payment text, p_priority text,
    p_workflow text, p_trace text, p_fingerprint text,
    p_skus text[], p_quantities integer[]
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_unknown text;
    v_state text;
    v_fingerprint text;
    v_total bigint;
BEGIN
    SELECT string_agg(DISTINCT l.sku, ', ' ORDER BY l.sku) INTO v_unknown
    FROM unnest(p_skus) AS l(sku)
    WHERE NOT EXISTS (SELECT 1 FROM stock s WHERE s.sku = l.sku);
    IF v_unknown IS NOT NULL THEN RETURN 'unknown-sku:' || v_unknown; END IF;
    SELECT sum(s.price_cents * l.quantity) INTO v_total
    FROM unnest(p_skus, p_quantities) AS l(sku, quantity) JOIN stock s USING (sku);
    INSERT INTO orders (order_id, customer_id, payment_method, priority, workflow,
                        total_cents, trace_id, fingerprint, state)
    VALUES (p_order, p_customer, p_payment, p_priority, p_workflow,
            v_total, p_trace, p_fingerprint, 'accepted')
    ON CONFLICT (order_id) DO NOTHING;
    IF NOT FOUND THEN
        SELECT state, fingerprint INTO v_state, v_fingerprint
        FROM orders WHERE order_id = p_order;
        IF v_fingerprint <> p_fingerprint THEN RETURN 'conflict'; END IF;
        RETURN 'existing:' || v_state;
    END IF;
    INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price_cents)
    SELECT p_order, l.n - 1, l.sku, l.quantity, s.price_cents
    FROM unnest(p_skus, p_quantities) WITH ORDINALITY AS l(sku, quantity, n)
    JOIN stock s USING (sku);
    RETURN 'created';
END $$;

CREATE OR REPLACE FUNCTION bp_reserve_inventory(p_order text, p_job text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_state text;
    v_moved integer := 0;
    r record;
BEGIN
    SELECT state INTO v_state FROM orders WHERE order_id = p_order FOR UPDATE;
    IF NOT FOUND THEN RETURN 'missing'; END IF;
    IF v_state = 'completed' THEN RETURN 'duplicate'; END IF;
    IF v_state = 'failed' THEN RETURN 'skipped'; END IF;
    FOR r IN
        WITH moved AS (
            INSERT INTO inventory_movements
                (order_id, line_no, sku, delta, kind, job_id)
            SELECT order_id, line_no, sku, -quantity, 'reserve', p_job
            FROM order_lines WHERE order_id = p_order ORDER BY line_no
            ON CONFLICT DO NOTHING RETURNING sku, delta
        )
        SELECT sku, sum(delta)::bigint AS delta FROM moved GROUP BY sku ORDER BY sku
    LOOP
        v_moved := v_moved + 1;
        UPDATE stock SET on_hand = on_hand + r.delta
        WHERE sku = r.sku AND on_hand + r.delta >= 0;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'insufficient stock: order %, % short of %',
                p_order, r.sku, -r.delta;
        END IF;
    END LOOP;
    IF v_moved = 0 THEN RETURN 'duplicate'; END IF;
    UPDATE orders SET state = 'processing', updated_at = clock_timestamp()
    WHERE order_id = p_order AND state = 'accepted';
    RETURN 'applied';
END $$;

CREATE OR REPLACE FUNCTION bp_record_billing(
    p_order text, p_job text, p_attempt integer, p_declined text, p_flaky text
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_state text;
    v_total bigint;
    v_payment text;
    v_rows integer;
BEGIN
    SELECT state, total_cents, payment_method INTO v_state, v_total, v_payment
    FROM orders WHERE order_id = p_order FOR UPDATE;
    IF NOT FOUND THEN RETURN 'missing'; END IF;
    IF v_state = 'completed' THEN RETURN 'duplicate'; END IF;
    IF v_state = 'failed' THEN RETURN 'skipped'; END IF;
    IF v_payment = p_declined OR (v_payment = p_flaky AND p_attempt <= 1) THEN
        RETURN 'declined';
    END IF;
    INSERT INTO billing_entries (order_id, amount_cents, job_id)
    VALUES (p_order, v_total, p_job) ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF v_rows = 0 THEN RETURN 'duplicate'; END IF;
    UPDATE orders SET state = 'processing', updated_at = clock_timestamp()
    WHERE order_id = p_order AND state = 'accepted';
    RETURN 'applied';
END $$;

CREATE OR REPLACE FUNCTION bp_send_notification(
    p_order text, p_job text, p_channel text
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_state text;
    v_trace text;
    v_rows integer;
BEGIN
    SELECT state, trace_id INTO v_state, v_trace
    FROM orders WHERE order_id = p_order FOR UPDATE;
    IF NOT FOUND THEN RETURN 'missing'; END IF;
    IF v_state = 'completed' THEN RETURN 'duplicate'; END IF;
    IF v_state = 'failed' THEN RETURN 'skipped'; END IF;
    INSERT INTO notifications (order_id, trace_id, channel, job_id)
    VALUES (p_order, v_trace, p_channel, p_job) ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF v_rows = 0 THEN RETURN 'duplicate'; END IF;
    UPDATE orders SET state = 'completed', updated_at = clock_timestamp()
    WHERE order_id = p_order;
    RETURN 'applied';
END $$;

CREATE OR REPLACE FUNCTION bp_compensate_inventory(
    p_order text, p_job text, p_reason text
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_state text;
    v_moved integer := 0;
    v_failed integer;
    r record;
BEGIN
    SELECT state INTO v_state FROM orders WHERE order_id = p_order FOR UPDATE;
    IF NOT FOUND THEN RETURN 'missing'; END IF;
    IF v_state = 'completed' THEN RETURN 'duplicate'; END IF;
    FOR r IN
        WITH moved AS (
            INSERT INTO inventory_movements
                (order_id, line_no, sku, delta, kind, job_id)
            SELECT order_id, line_no, sku, -delta, 'compensate', p_job
            FROM inventory_movements
            WHERE order_id = p_order AND kind = 'reserve' ORDER BY line_no
            ON CONFLICT DO NOTHING RETURNING sku, delta
        )
        SELECT sku, sum(delta)::bigint AS delta FROM moved GROUP BY sku ORDER BY sku
    LOOP
        v_moved := v_moved + 1;
        UPDATE stock SET on_hand = on_hand + r.delta WHERE sku = r.sku;
    END LOOP;
    UPDATE orders SET state = 'failed', failure_reason = left(p_reason, 500),
        updated_at = clock_timestamp()
    WHERE order_id = p_order AND state IN ('accepted', 'processing');
    GET DIAGNOSTICS v_failed = ROW_COUNT;
    IF v_moved = 0 AND v_failed = 0 THEN RETURN 'duplicate'; END IF;
    RETURN 'applied';
END $$;
"""

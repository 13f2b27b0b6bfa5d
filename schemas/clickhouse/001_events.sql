-- Raw event tables: one per event type of schemas/events.py (SPEC §6).
--
-- Runs unchanged on chDB (embedded) and on a ClickHouse server. consumers/migrate.py splits
-- this file on a `;` that ends a line, so every statement ends with one and no `;` appears
-- anywhere else. Every statement is idempotent (IF NOT EXISTS).
--
-- Shared decisions:
-- * Columns are the model's fields (minus `type`, which the table implies); enums are
--   LowCardinality(String) so a new enum value never needs a migration; fields the model
--   allows to be None are Nullable; `ts` is DateTime64(3, 'UTC').
-- * `_topic`, `_partition`, `_offset` record where the row was consumed from, so a consumer
--   that restarts can skip what is already stored (EventStore.max_offsets).
-- * ReplacingMergeTree with `event_id` last in the sorting key: an event delivered twice
--   (at-least-once transport) collapses to one row on merge; read with FINAL (or
--   count(DISTINCT event_id)) where exactness matters before merges happen.
-- * non_replicated_deduplication_window: a retried insert carrying the same
--   insert_deduplication_token is dropped at insert time (the rollups of 002 likewise),
--   which is what makes consumer retries exactly-once.
-- * PARTITION BY month; TTL drops raw rows after 90 days (config changes are an audit
--   trail: 2 years). ttl_only_drop_parts makes expiry a cheap whole-part drop.
-- * Sorting keys lead with what dashboards filter on (category, endpoint, source), then ts.
-- * event_id is String rather than UUID: the model does not restrict it, and one malformed id
--   must not make a whole batch insert fail.

CREATE DATABASE IF NOT EXISTS apicat;

CREATE TABLE IF NOT EXISTS apicat.requests
(
    event_id String,
    ts DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    schema_version UInt16,
    request_id String,
    trace_id String,
    instance LowCardinality(String),
    category LowCardinality(String),
    endpoint LowCardinality(String),
    path String,
    status UInt16,
    cache_status LowCardinality(String),
    source_name LowCardinality(Nullable(String)),
    fallback_depth Nullable(UInt16),
    latency_ms Float64,
    client_ip String,
    error_code LowCardinality(Nullable(String)),
    _topic LowCardinality(String),
    _partition UInt32,
    _offset UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (category, endpoint, ts, event_id)
TTL toDateTime(ts) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS apicat.upstream_attempts
(
    event_id String,
    ts DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    schema_version UInt16,
    request_id String,
    trace_id String,
    instance LowCardinality(String),
    category LowCardinality(String),
    endpoint LowCardinality(String),
    source_name LowCardinality(String),
    role LowCardinality(String),
    depth UInt16,
    retry UInt16,
    url String,
    status_code Nullable(UInt16),
    latency_ms Float64,
    outcome LowCardinality(String),
    confidence Nullable(Float64),
    bytes UInt64,
    detail String,
    _topic LowCardinality(String),
    _partition UInt32,
    _offset UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (category, endpoint, source_name, ts, event_id)
TTL toDateTime(ts) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

-- One row per rejected upstream answer; its failed rules are parallel arrays (Nested), so the
-- row count equals the event count and `ARRAY JOIN failures` gives one row per failed field.
CREATE TABLE IF NOT EXISTS apicat.validation_failures
(
    event_id String,
    ts DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    schema_version UInt16,
    request_id String,
    trace_id String,
    instance LowCardinality(String),
    category LowCardinality(String),
    endpoint LowCardinality(String),
    source_name LowCardinality(String),
    role LowCardinality(String),
    depth UInt16,
    url String,
    failures Nested
    (
        path String,
        rule LowCardinality(String),
        detail String
    ),
    _topic LowCardinality(String),
    _partition UInt32,
    _offset UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (category, endpoint, source_name, ts, event_id)
TTL toDateTime(ts) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS apicat.health_probes
(
    event_id String,
    ts DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    schema_version UInt16,
    request_id String,
    trace_id String,
    instance LowCardinality(String),
    upstream_url String,
    category LowCardinality(String),
    endpoint LowCardinality(String),
    source_name LowCardinality(String),
    status LowCardinality(String),
    status_code Nullable(UInt16),
    latency_ms Float64,
    detail String,
    _topic LowCardinality(String),
    _partition UInt32,
    _offset UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (category, endpoint, source_name, upstream_url, ts, event_id)
TTL toDateTime(ts) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS apicat.circuit_changes
(
    event_id String,
    ts DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    schema_version UInt16,
    request_id String,
    trace_id String,
    instance LowCardinality(String),
    upstream_url String,
    from_state LowCardinality(String),
    to_state LowCardinality(String),
    consecutive_failures UInt32,
    _topic LowCardinality(String),
    _partition UInt32,
    _offset UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (upstream_url, ts, event_id)
TTL toDateTime(ts) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

-- Low volume, read as "latest changes first": time-ordered, kept two years as an audit trail.
CREATE TABLE IF NOT EXISTS apicat.config_changes
(
    event_id String,
    ts DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    schema_version UInt16,
    request_id String,
    trace_id String,
    instance LowCardinality(String),
    actor LowCardinality(String),
    action LowCardinality(String),
    target String,
    before String,
    after String,
    _topic LowCardinality(String),
    _partition UInt32,
    _offset UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, event_id)
TTL toDateTime(ts) + INTERVAL 730 DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

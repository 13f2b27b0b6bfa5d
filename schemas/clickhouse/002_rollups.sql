-- Per-minute rollups for the dashboards and the admin stats pages, filled by materialized
-- views as raw rows are inserted (same splitting and idempotency rules as 001_events.sql).
--
-- * Counters and sums are SimpleAggregateFunction(sum, ...): read them with sum().
-- * Latency quantiles are t-digest states (small, mergeable across minutes): read them with
--   quantilesTDigestMerge(0.5, 0.9, 0.99)(latency_ms_quantiles) -> [p50, p90, p99].
-- * The rollup tables keep a deduplication log too (non_replicated_deduplication_window): a
--   retried insert that the raw table drops by its insert_deduplication_token is dropped here
--   as well (ClickHouse derives each view's block token from the source token); without it
--   the retry would be counted twice. An event stored twice under *different* tokens is
--   counted twice here (the raw tables collapse it on merge), which is why the consumer
--   skips offsets and event ids already stored.
-- * Kept 400 days, so a year-over-year panel still has data after the 90-day raw TTL.
--
-- Example (attempt outcomes per source in the last hour):
--   SELECT source_name, outcome, sum(attempts) AS attempts,
--          sum(latency_ms_sum) / sum(attempts) AS avg_latency_ms,
--          quantilesTDigestMerge(0.5, 0.9, 0.99)(latency_ms_quantiles) AS latency_ms_p50_p90_p99
--   FROM apicat.attempts_per_minute
--   WHERE category = 'anime' AND minute >= now() - INTERVAL 1 HOUR
--   GROUP BY source_name, outcome

CREATE TABLE IF NOT EXISTS apicat.attempts_per_minute
(
    minute DateTime('UTC'),
    category LowCardinality(String),
    endpoint LowCardinality(String),
    source_name LowCardinality(String),
    role LowCardinality(String),
    outcome LowCardinality(String),
    attempts SimpleAggregateFunction(sum, UInt64),
    latency_ms_sum SimpleAggregateFunction(sum, Float64),
    bytes_sum SimpleAggregateFunction(sum, UInt64),
    latency_ms_quantiles AggregateFunction(quantilesTDigest(0.5, 0.9, 0.99), Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (category, endpoint, minute, source_name, role, outcome)
TTL minute + INTERVAL 400 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS apicat.attempts_per_minute_mv
TO apicat.attempts_per_minute
AS SELECT
    toStartOfMinute(toDateTime(ts, 'UTC')) AS minute,
    category,
    endpoint,
    source_name,
    role,
    outcome,
    count() AS attempts,
    sum(latency_ms) AS latency_ms_sum,
    sum(bytes) AS bytes_sum,
    quantilesTDigestState(0.5, 0.9, 0.99)(latency_ms) AS latency_ms_quantiles
FROM apicat.upstream_attempts
GROUP BY minute, category, endpoint, source_name, role, outcome;

-- Request rate, cache ratio (cache_status), error rate (status), fallback rate (fallbacks /
-- requests: answers served by a fallback link, depth > 0) and latency.
CREATE TABLE IF NOT EXISTS apicat.requests_per_minute
(
    minute DateTime('UTC'),
    category LowCardinality(String),
    endpoint LowCardinality(String),
    cache_status LowCardinality(String),
    status UInt16,
    requests SimpleAggregateFunction(sum, UInt64),
    fallbacks SimpleAggregateFunction(sum, UInt64),
    latency_ms_sum SimpleAggregateFunction(sum, Float64),
    latency_ms_quantiles AggregateFunction(quantilesTDigest(0.5, 0.9, 0.99), Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (category, endpoint, minute, cache_status, status)
TTL minute + INTERVAL 400 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS apicat.requests_per_minute_mv
TO apicat.requests_per_minute
AS SELECT
    toStartOfMinute(toDateTime(ts, 'UTC')) AS minute,
    category,
    endpoint,
    cache_status,
    status,
    count() AS requests,
    countIf(ifNull(fallback_depth, 0) > 0) AS fallbacks,
    sum(latency_ms) AS latency_ms_sum,
    quantilesTDigestState(0.5, 0.9, 0.99)(latency_ms) AS latency_ms_quantiles
FROM apicat.requests
GROUP BY minute, category, endpoint, cache_status, status;

-- Which rules reject which sources: one row per failed field (ARRAY JOIN), summed per minute.
CREATE TABLE IF NOT EXISTS apicat.validation_failures_per_minute
(
    minute DateTime('UTC'),
    category LowCardinality(String),
    endpoint LowCardinality(String),
    source_name LowCardinality(String),
    rule LowCardinality(String),
    failed_fields UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (category, endpoint, minute, source_name, rule)
TTL minute + INTERVAL 400 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS apicat.validation_failures_per_minute_mv
TO apicat.validation_failures_per_minute
AS SELECT
    toStartOfMinute(toDateTime(ts, 'UTC')) AS minute,
    category,
    endpoint,
    source_name,
    failures.rule AS rule,
    count() AS failed_fields
FROM apicat.validation_failures
ARRAY JOIN failures
GROUP BY minute, category, endpoint, source_name, rule;

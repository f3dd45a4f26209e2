//! Metric names, in one place (documented in docs/consumers.md, "Metrics"). Recorded with the `metrics`
//! facade: install any recorder (e.g. `metrics-exporter-prometheus`) to export them.

/// Counter: events finished, by `outcome` (`applied`, `duplicate`, `dead_lettered`) and `topic`.
pub const EVENTS: &str = "outboxd_consumer_events_total";
/// Counter: redeliveries the idempotency store absorbed (event id already recorded), by `store`.
pub const DUPLICATES: &str = "outboxd_consumer_duplicates_skipped_total";
/// Counter: dead letters written, by `reason`.
pub const DEAD_LETTERS: &str = "outboxd_consumer_dead_letters_total";
/// Counter: handler attempts that failed and were retried.
pub const RETRIES: &str = "outboxd_consumer_handler_retries_total";
/// Histogram: handler latency in seconds (one attempt, the store's transaction included).
pub const HANDLER_SECONDS: &str = "outboxd_consumer_handler_seconds";
/// Gauge: consumer lag in records (high watermark minus committed offset), by `topic` and `partition`.
pub const LAG: &str = "outboxd_consumer_lag";
/// Counter: store or registry failures that held an event back (retried, not counted as handler attempts).
pub const STALLS: &str = "outboxd_consumer_stalls_total";
/// Gauge: partitions assigned to this instance.
pub const ASSIGNED_PARTITIONS: &str = "outboxd_consumer_assigned_partitions";

//! The header names the consumer reads are the ones outboxd writes (`outboxd_record::headers::RESERVED`).

use outboxd_consumer::event::*;

#[test]
fn every_header_the_consumer_reads_is_one_outboxd_sets() {
    for name in [
        HEADER_ID,
        HEADER_EVENT_TYPE,
        HEADER_AGGREGATE_TYPE,
        HEADER_SCHEMA_ID,
        HEADER_SCHEMA_VERSION,
        HEADER_COMMIT_TIME,
        HEADER_OUTBOX_LSN,
        HEADER_TRACEPARENT,
        HEADER_TRACESTATE,
    ] {
        assert!(
            outboxd_record::headers::RESERVED.contains(&name),
            "outboxd no longer sets the header {name:?}: update crates/consumer/src/event.rs"
        );
    }
}

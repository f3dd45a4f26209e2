//! The span each handler call runs in, continued from the event's W3C `traceparent`: the trace id and the
//! writer's span id are recorded on it (`trace_id`, `parent_span_id`), so logs join the producing request's
//! trace; an OpenTelemetry layer can take them as the remote parent.

use crate::event::EventMeta;

/// The span of one event's handling.
pub(crate) fn span(meta: &EventMeta) -> tracing::Span {
    let (trace_id, parent) = meta.trace_ids().unwrap_or(("", ""));
    tracing::info_span!(
        "outboxd_consumer.handle",
        event_id = %meta.event_id,
        event_type = meta.event_type.as_deref().unwrap_or(""),
        topic = %meta.topic,
        partition = meta.partition,
        offset = meta.offset,
        trace_id = trace_id,
        parent_span_id = parent,
    )
}

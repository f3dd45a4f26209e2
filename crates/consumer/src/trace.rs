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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, SubscriberExt};
    use tracing_subscriber::Layer;

    /// Records the fields of every new span.
    #[derive(Clone, Default)]
    struct Fields(Arc<Mutex<Vec<(String, String)>>>);

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let v = format!("{value:?}").trim_matches('"').to_string();
            self.0.lock().unwrap().push((field.name().to_string(), v));
        }
    }

    impl<S: tracing::Subscriber> Layer<S> for Fields {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: Context<'_, S>,
        ) {
            attrs.record(&mut self.clone());
        }
    }

    #[test]
    fn the_span_carries_the_writers_trace_context() {
        let fields = Fields::default();
        let subscriber = tracing_subscriber::registry().with(fields.clone());
        let meta = EventMeta {
            event_id: "e-1".into(),
            event_type: Some("OrderCreated".into()),
            aggregate_id: None,
            aggregate_type: None,
            schema_id: 1,
            schema_version: None,
            commit_time: None,
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            tracestate: None,
            topic: "t".into(),
            partition: 2,
            offset: 9,
            headers: Vec::new(),
        };
        tracing::subscriber::with_default(subscriber, || drop(span(&meta)));
        let got = fields.0.lock().unwrap().clone();
        let get = |k: &str| got.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("trace_id"), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(get("parent_span_id"), Some("00f067aa0ba902b7"));
        assert_eq!((get("event_id"), get("offset")), (Some("e-1"), Some("9")));
    }
}

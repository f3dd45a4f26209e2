//! Pure routing: an event's topic (template, fixed, or its topic column).

use outboxd_core::OutboxEvent;
use outboxd_kafka::topic_name::{check_template, check_topic_name, parse_template, TemplatePart};
use outboxd_kafka::{DlqReason, RouteMode, RoutingConfig, TopicName};
use std::sync::{Arc, Mutex, PoisonError};

/// Why an event has no destination topic: it goes to the dead-letter topic with this reason and detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteRejection {
    /// [`DlqReason::MissingFields`] or [`DlqReason::InvalidTopic`].
    pub reason: DlqReason,
    /// What exactly was wrong.
    pub detail: String,
}

/// Picks each event's topic according to a [`RoutingConfig`].
#[derive(Debug)]
pub struct Router {
    mode: RouteMode,
    template: Vec<TemplatePart>,
    fixed: Option<TopicName>,
    /// The last topic a template or topic column gave: events of one topic mostly come in runs, and one
    /// that goes where the last went costs no allocation and no second name check.
    last: Mutex<LastTopic>,
}

/// The text of the topic being routed (a buffer kept between events) and the last topic routed.
#[derive(Debug, Default)]
struct LastTopic {
    text: String,
    topic: Option<TopicName>,
}

impl Router {
    /// Compiles the routing configuration; the error says which setting is wrong.
    pub fn new(config: &RoutingConfig) -> Result<Router, String> {
        check_template(&config.topic_template)?;
        if config.mode == RouteMode::Fixed && config.fixed_topic.is_none() {
            return Err("routing mode \"fixed\" needs fixed_topic".into());
        }
        Ok(Router {
            mode: config.mode,
            template: parse_template(&config.topic_template)?,
            fixed: config.fixed_topic.as_deref().map(TopicName::from),
            last: Mutex::default(),
        })
    }

    /// The topic this event goes to, or why it cannot go anywhere but the dead-letter topic.
    pub fn topic_for(&self, event: &OutboxEvent) -> Result<TopicName, RouteRejection> {
        if let (RouteMode::Fixed, Some(fixed)) = (self.mode, &self.fixed) {
            return Ok(Arc::clone(fixed));
        }
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let LastTopic { text, topic } = &mut *last;
        text.clear();
        match (self.mode, &event.topic) {
            (RouteMode::Column, Some(column)) => text.push_str(column),
            _ => self.expand(event, text)?,
        }
        if let Some(same) = topic.as_ref().filter(|t| ***t == **text) {
            return Ok(Arc::clone(same));
        }
        check_topic_name(text).map_err(|detail| RouteRejection {
            reason: DlqReason::InvalidTopic,
            detail,
        })?;
        let routed = TopicName::from(text.as_str());
        *topic = Some(Arc::clone(&routed));
        Ok(routed)
    }

    /// Appends the template's topic to `out`, when the event carries what the template needs.
    fn expand<'a>(&self, event: &'a OutboxEvent, out: &mut String) -> Result<(), RouteRejection> {
        let missing = |field: &str| RouteRejection {
            reason: DlqReason::MissingFields,
            detail: format!("{field} is null or empty; the topic template needs it"),
        };
        let present = |v: &'a Option<String>, field| match v.as_deref() {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(missing(field)),
        };
        for part in &self.template {
            match part {
                TemplatePart::Lit(lit) => out.push_str(lit),
                TemplatePart::AggregateType => {
                    out.push_str(present(&event.aggregate_type, "aggregate_type")?)
                }
                TemplatePart::EventType => out.push_str(present(&event.event_type, "event_type")?),
                TemplatePart::EventTypeParts { from, to } => {
                    let name = present(&event.event_type, "event_type")?;
                    let count = name.split('.').count();
                    let end = to.unwrap_or(count);
                    if end > count || *from >= end {
                        let needs = match to {
                            Some(to) => format!("parts {from} to {}", to - 1),
                            None => format!("parts {from} to the last (at least {} parts)", from + 1),
                        };
                        return Err(RouteRejection {
                            reason: DlqReason::MissingFields,
                            detail: format!(
                                "event type {name:?} has {count} dot-separated part(s); the topic template needs \
                                 {needs}"
                            ),
                        });
                    }
                    for (i, part) in name.split('.').enumerate().take(end).skip(*from) {
                        if i > *from {
                            out.push('.');
                        }
                        out.push_str(part);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(aggregate_type: Option<&str>, event_type: Option<&str>, topic: Option<&str>) -> OutboxEvent {
        OutboxEvent {
            aggregate_type: aggregate_type.map(Into::into),
            event_type: event_type.map(Into::into),
            topic: topic.map(Into::into),
            ..Default::default()
        }
    }

    fn router(mode: RouteMode, template: &str, fixed: Option<&str>) -> Router {
        Router::new(&RoutingConfig {
            mode,
            topic_template: template.into(),
            fixed_topic: fixed.map(Into::into),
            event_name_rule: None,
        })
        .unwrap()
    }

    #[test]
    fn default_template_is_debezium_style() {
        let r = Router::new(&RoutingConfig::default()).unwrap();
        assert_eq!(
            r.topic_for(&event(Some("order"), Some("OrderCreated"), None)),
            Ok("outbox.event.order".into())
        );
    }

    #[test]
    fn template_expands_both_placeholders() {
        let r = router(RouteMode::Template, "{aggregate_type}-{event_type}.v1", None);
        assert_eq!(
            r.topic_for(&event(Some("order"), Some("Created"), Some("x"))),
            Ok("order-Created.v1".into())
        );
    }

    #[test]
    fn template_needs_its_fields() {
        let r = router(RouteMode::Template, "t.{event_type}", None);
        let err = r.topic_for(&event(Some("order"), None, None)).unwrap_err();
        assert_eq!(err.reason, DlqReason::MissingFields);
        assert!(err.detail.contains("event_type"), "{}", err.detail);
        assert!(r.topic_for(&event(Some("order"), Some(""), None)).is_err());
    }

    #[test]
    fn illegal_characters_are_rejected_as_invalid_topic() {
        let r = Router::new(&RoutingConfig::default()).unwrap();
        let err = r
            .topic_for(&event(Some("order item"), Some("E"), None))
            .unwrap_err();
        assert_eq!(err.reason, DlqReason::InvalidTopic);
        assert!(err.detail.contains("' '"), "{}", err.detail);
        let long = "a".repeat(300);
        assert_eq!(
            r.topic_for(&event(Some(&long), Some("E"), None))
                .unwrap_err()
                .reason,
            DlqReason::InvalidTopic
        );
    }

    #[test]
    fn dotted_event_types_route_by_their_parts() {
        let r = router(RouteMode::Template, "outbox.{event_type.0}", None);
        assert_eq!(
            r.topic_for(&event(None, Some("Order.PaymentProcessed"), None)),
            Ok("outbox.Order".into()),
            "no aggregate type needed"
        );
        let r = router(RouteMode::Template, "t.{event_type.0..2}.v1", None);
        assert_eq!(
            r.topic_for(&event(None, Some("Billing.Invoice.Paid"), None)),
            Ok("t.Billing.Invoice.v1".into())
        );
        let err = r.topic_for(&event(None, Some("Paid"), None)).unwrap_err();
        assert_eq!(err.reason, DlqReason::MissingFields);
        assert!(err.detail.contains("1 dot-separated part"), "{}", err.detail);
        let r = router(RouteMode::Template, "t.{event_type.1..}", None);
        assert_eq!(
            r.topic_for(&event(None, Some("Billing.Invoice.Paid"), None)),
            Ok("t.Invoice.Paid".into())
        );
        // Parts from past the last one: no topic (not "t.", and no panic for parts[2..1]).
        for (template, event_type) in [("t.{event_type.1..}", "Paid"), ("t.{event_type.2..}", "Paid")] {
            let r = router(RouteMode::Template, template, None);
            let err = r.topic_for(&event(None, Some(event_type), None)).unwrap_err();
            assert_eq!(err.reason, DlqReason::MissingFields, "{template}");
            assert!(err.detail.contains("to the last"), "{}", err.detail);
        }
    }

    #[test]
    fn a_run_of_events_to_one_topic_shares_it() {
        let r = Router::new(&RoutingConfig::default()).unwrap();
        let order = |t: Option<&str>| r.topic_for(&event(t, Some("E"), None));
        let (a, b) = (order(Some("order")).unwrap(), order(Some("order")).unwrap());
        assert!(Arc::ptr_eq(&a, &b), "the second is the first one's");
        assert_eq!(&*order(Some("payment")).unwrap(), "outbox.event.payment");
        assert_eq!(
            order(Some("bad topic")).unwrap_err().reason,
            DlqReason::InvalidTopic
        );
        assert_eq!(order(None).unwrap_err().reason, DlqReason::MissingFields);
        let c = order(Some("order")).unwrap();
        assert_eq!(&*c, "outbox.event.order");
        assert!(!Arc::ptr_eq(&a, &c), "payment came in between");
    }

    #[test]
    fn fixed_ignores_the_event() {
        let r = router(RouteMode::Fixed, "x.{aggregate_type}", Some("all.events"));
        assert_eq!(
            r.topic_for(&event(None, None, Some("other"))),
            Ok("all.events".into())
        );
    }

    #[test]
    fn column_wins_and_falls_back_to_the_template() {
        let r = router(RouteMode::Column, "outbox.event.{aggregate_type}", None);
        assert_eq!(
            r.topic_for(&event(Some("order"), None, Some("custom.topic"))),
            Ok("custom.topic".into())
        );
        assert_eq!(
            r.topic_for(&event(Some("order"), None, None)),
            Ok("outbox.event.order".into())
        );
        assert_eq!(
            r.topic_for(&event(Some("order"), None, Some("bad/topic")))
                .unwrap_err()
                .reason,
            DlqReason::InvalidTopic
        );
    }
}

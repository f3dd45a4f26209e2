//! Pure routing: an event's topic (template, fixed, or its topic column).

use outboxd_core::OutboxEvent;
use outboxd_kafka::topic_name::{check_template, check_topic_name, parse_template, TemplatePart};
use outboxd_kafka::{DlqReason, RouteMode, RoutingConfig};

/// Why an event has no destination topic: it goes to the dead-letter topic with this reason and detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteRejection {
    /// [`DlqReason::MissingFields`] or [`DlqReason::InvalidTopic`].
    pub reason: DlqReason,
    /// What exactly was wrong.
    pub detail: String,
}

/// Picks each event's topic according to a [`RoutingConfig`].
#[derive(Clone, Debug)]
pub struct Router {
    mode: RouteMode,
    template: Vec<TemplatePart>,
    fixed: Option<String>,
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
            fixed: config.fixed_topic.clone(),
        })
    }

    /// The topic this event goes to, or why it cannot go anywhere but the dead-letter topic.
    pub fn topic_for(&self, event: &OutboxEvent) -> Result<String, RouteRejection> {
        let topic = match (self.mode, &self.fixed, &event.topic) {
            (RouteMode::Fixed, Some(fixed), _) => return Ok(fixed.clone()),
            (RouteMode::Column, _, Some(column)) => column.clone(),
            _ => self.expand(event)?,
        };
        check_topic_name(&topic).map_err(|detail| RouteRejection {
            reason: DlqReason::InvalidTopic,
            detail,
        })?;
        Ok(topic)
    }

    /// The template's topic, when the event carries what the template needs (for the DLQ's intended topic).
    fn expand(&self, event: &OutboxEvent) -> Result<String, RouteRejection> {
        let missing = |field: &str| RouteRejection {
            reason: DlqReason::MissingFields,
            detail: format!("{field} is null or empty; the topic template needs it"),
        };
        let present = |v: &Option<String>, field| match v.as_deref() {
            Some(v) if !v.is_empty() => Ok(v.to_string()),
            _ => Err(missing(field)),
        };
        let mut out = String::new();
        for part in &self.template {
            match part {
                TemplatePart::Lit(lit) => out.push_str(lit),
                TemplatePart::AggregateType => {
                    out.push_str(&present(&event.aggregate_type, "aggregate_type")?)
                }
                TemplatePart::EventType => out.push_str(&present(&event.event_type, "event_type")?),
                TemplatePart::EventTypeParts { from, to } => {
                    let name = present(&event.event_type, "event_type")?;
                    let parts: Vec<&str> = name.split('.').collect();
                    let end = to.unwrap_or(parts.len());
                    if end > parts.len() {
                        return Err(RouteRejection {
                            reason: DlqReason::MissingFields,
                            detail: format!(
                                "event type {name:?} has {} dot-separated part(s); the topic template needs \
                                 parts {from} to {}",
                                parts.len(),
                                end - 1
                            ),
                        });
                    }
                    out.push_str(&parts[*from..end].join("."));
                }
            }
        }
        Ok(out)
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

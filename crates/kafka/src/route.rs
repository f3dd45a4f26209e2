//! Pure routing: an event's topic (template, fixed, or its topic column) and Kafka-legal topic names.

use crate::config::{RouteMode, RoutingConfig};
use crate::DlqReason;
use outboxd_core::OutboxEvent;

/// The longest topic name Kafka accepts.
const MAX_TOPIC_LEN: usize = 249;

/// Checks a topic name the way the broker does: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the topic name is empty".into());
    }
    if name.len() > MAX_TOPIC_LEN {
        return Err(format!(
            "topic name of {} characters exceeds Kafka's limit of {MAX_TOPIC_LEN}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a legal topic name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic {name:?} contains {c:?}: Kafka topic names allow only [a-zA-Z0-9._-]"
        ));
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Lit(String),
    AggregateType,
    EventType,
}

fn parse_template(template: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Lit(rest[..open].to_string()));
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in {template:?}"))?;
        parts.push(match &after[..close] {
            "aggregate_type" => Part::AggregateType,
            "event_type" => Part::EventType,
            other => {
                return Err(format!(
                "unknown placeholder {{{other}}} in {template:?}: use {{aggregate_type}} or {{event_type}}"
            ))
            }
        });
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("unmatched '}}' in {template:?}"));
    }
    if !rest.is_empty() {
        parts.push(Part::Lit(rest.to_string()));
    }
    if parts.is_empty() {
        return Err("the topic template is empty".into());
    }
    Ok(parts)
}

/// Checks a topic template: known placeholders only, and legal characters in its literal parts.
pub fn check_template(template: &str) -> Result<(), String> {
    for part in parse_template(template)? {
        if let Part::Lit(lit) = part {
            if let Some(c) = lit
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            {
                return Err(format!(
                    "{template:?} contains {c:?}: Kafka topic names allow only [a-zA-Z0-9._-]"
                ));
            }
        }
    }
    Ok(())
}

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
    template: Vec<Part>,
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
        let mut out = String::new();
        for part in &self.template {
            let (value, field) = match part {
                Part::Lit(lit) => {
                    out.push_str(lit);
                    continue;
                }
                Part::AggregateType => (&event.aggregate_type, "aggregate_type"),
                Part::EventType => (&event.event_type, "event_type"),
            };
            match value.as_deref() {
                Some(v) if !v.is_empty() => out.push_str(v),
                _ => {
                    return Err(RouteRejection {
                        reason: DlqReason::MissingFields,
                        detail: format!("{field} is null or empty; the topic template needs it"),
                    })
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

    #[test]
    fn templates_are_checked() {
        assert!(check_template("outbox.{aggregate_type}").is_ok());
        assert!(check_template("outbox.{aggregate}")
            .unwrap_err()
            .contains("unknown placeholder"));
        assert!(check_template("outbox.{aggregate_type")
            .unwrap_err()
            .contains("unclosed"));
        assert!(check_template("outbox}").unwrap_err().contains("unmatched"));
        assert!(check_template("out box.{event_type}").is_err());
        assert!(check_template("").is_err());
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(check_topic_name("a.b_c-D9").is_ok());
        assert!(check_topic_name("").is_err());
        assert!(check_topic_name("..").is_err());
        assert!(check_topic_name("é").is_err());
        assert!(check_topic_name(&"x".repeat(249)).is_ok());
        assert!(check_topic_name(&"x".repeat(250)).is_err());
    }
}

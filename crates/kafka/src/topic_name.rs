//! Kafka-legal topic names and topic templates (checked at start-up; expanded per event by the router in
//! `outboxd-record`).

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
    legal_chars(name).map_err(|c| format!("topic {name:?} {c}"))
}

/// `Err` names the first character Kafka does not allow in a topic name.
fn legal_chars(text: &str) -> Result<(), String> {
    match text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(c) => Err(format!(
            "contains {c:?}: Kafka topic names allow only [a-zA-Z0-9._-]"
        )),
        None => Ok(()),
    }
}

/// One piece of a parsed topic template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplatePart {
    /// Literal text.
    Lit(String),
    /// `{aggregate_type}`.
    AggregateType,
    /// `{event_type}`.
    EventType,
    /// `{event_type.N}` (the N-th dot-separated part, from 0) or `{event_type.N..M}` (parts N to M-1, joined
    /// by dots; `{event_type.N..}` to the end): `Order.PaymentProcessed` gives `Order` for `{event_type.0}`.
    EventTypeParts {
        /// The first part.
        from: usize,
        /// One past the last part; `None` for the end.
        to: Option<usize>,
    },
}

/// Parses `N`, `N..M` or `N..` after `event_type.`.
fn parse_parts(spec: &str) -> Option<TemplatePart> {
    let (from, to) = match spec.split_once("..") {
        None => {
            let n: usize = spec.parse().ok()?;
            (n, Some(n + 1))
        }
        Some((a, "")) => (a.parse().ok()?, None),
        Some((a, b)) => (a.parse().ok()?, Some(b.parse().ok()?)),
    };
    (to.is_none_or(|t| t > from)).then_some(TemplatePart::EventTypeParts { from, to })
}

/// Parses a topic template (`outbox.event.{aggregate_type}`) into its parts; the error names what is wrong.
pub fn parse_template(template: &str) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(TemplatePart::Lit(rest[..open].to_string()));
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in {template:?}"))?;
        parts.push(match &after[..close] {
            "aggregate_type" => TemplatePart::AggregateType,
            "event_type" => TemplatePart::EventType,
            other => match other.strip_prefix("event_type.").and_then(parse_parts) {
                Some(part) => part,
                None => {
                    return Err(format!(
                        "unknown placeholder {{{other}}} in {template:?}: use {{aggregate_type}}, {{event_type}}, \
                         {{event_type.N}} (its N-th dot-separated part, from 0) or {{event_type.N..M}}"
                    ))
                }
            },
        });
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("unmatched '}}' in {template:?}"));
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Lit(rest.to_string()));
    }
    if parts.is_empty() {
        return Err("the topic template is empty".into());
    }
    Ok(parts)
}

/// Checks a topic template: known placeholders only, and legal characters in its literal parts.
pub fn check_template(template: &str) -> Result<(), String> {
    for part in parse_template(template)? {
        if let TemplatePart::Lit(lit) = part {
            legal_chars(&lit).map_err(|c| format!("{template:?} {c}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_parts_parse() {
        let parts = parse_template("t.{event_type.0}.{event_type.1..3}.{event_type.2..}").unwrap();
        assert_eq!(
            parts[1..],
            [
                TemplatePart::EventTypeParts { from: 0, to: Some(1) },
                TemplatePart::Lit(".".into()),
                TemplatePart::EventTypeParts { from: 1, to: Some(3) },
                TemplatePart::Lit(".".into()),
                TemplatePart::EventTypeParts { from: 2, to: None },
            ]
        );
        for bad in [
            "{event_type.}",
            "{event_type.x}",
            "{event_type.2..1}",
            "{event_type.1..1}",
            "{event_type.-1}",
        ] {
            assert!(
                parse_template(bad).unwrap_err().contains("unknown placeholder"),
                "{bad}"
            );
        }
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

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

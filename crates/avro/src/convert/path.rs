//! Conversion errors that name the JSON path and what the schema expected there.
//!
//! The path is collected while the error unwinds (innermost segment first), so a successful conversion pays
//! nothing for it.

use std::fmt;

/// One step of a JSON path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    /// An object member (record field or map key).
    Key(String),
    /// An array element.
    Index(usize),
}

/// A payload that does not fit its schema: `$.items[2].qty: expected int, got "three"`.
///
/// One pointer wide, so that the converters' `Result<(), ConvertError>` stays in a register on the path where
/// nothing fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvertError(Box<Detail>);

/// What a [`ConvertError`] holds.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Detail {
    /// Innermost segment first.
    reversed_path: Vec<Segment>,
    message: String,
}

impl ConvertError {
    /// An error at the current position.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ConvertError(Box::new(Detail {
            reversed_path: Vec::new(),
            message: message.into(),
        }))
    }

    /// `expected <what>, got <json>`.
    pub(crate) fn expected(what: impl fmt::Display, got: &serde_json::Value) -> Self {
        ConvertError::new(format!("expected {what}, got {}", describe_json(got)))
    }

    /// Prefixes the path with an object member.
    pub(crate) fn in_key(mut self, key: &str) -> Self {
        self.0.reversed_path.push(Segment::Key(key.to_string()));
        self
    }

    /// Prefixes the path with an array index.
    pub(crate) fn at_index(mut self, index: usize) -> Self {
        self.0.reversed_path.push(Segment::Index(index));
        self
    }

    /// The JSON path, `$` for the root.
    pub fn path(&self) -> String {
        let mut out = String::from("$");
        for seg in self.0.reversed_path.iter().rev() {
            match seg {
                Segment::Index(i) => out.push_str(&format!("[{i}]")),
                Segment::Key(k) if is_identifier(k) => {
                    out.push('.');
                    out.push_str(k);
                }
                Segment::Key(k) => out.push_str(&format!("[{}]", serde_json::Value::String(k.clone()))),
            }
        }
        out
    }

    /// What was wrong at that path.
    pub fn message(&self) -> &str {
        &self.0.message
    }
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path(), self.0.message)
    }
}

impl std::error::Error for ConvertError {}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A short rendering of a JSON value for error messages: scalars as JSON (long strings cut), containers by
/// kind.
pub(crate) fn describe_json(v: &serde_json::Value) -> String {
    const MAX: usize = 40;
    match v {
        serde_json::Value::Object(_) => "an object".into(),
        serde_json::Value::Array(_) => "an array".into(),
        serde_json::Value::String(s) if s.chars().count() > MAX => {
            let cut: String = s.chars().take(MAX).collect();
            format!("{}...", serde_json::Value::String(cut))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_render_like_jsonpath() {
        let e = ConvertError::expected("int", &json!("three"))
            .in_key("qty")
            .at_index(2)
            .in_key("items");
        assert_eq!(e.to_string(), r#"$.items[2].qty: expected int, got "three""#);
        let e = ConvertError::new("bad").in_key("a key").in_key("attrs");
        assert_eq!(e.path(), r#"$.attrs["a key"]"#);
        assert_eq!(ConvertError::new("x").path(), "$");
    }

    #[test]
    fn json_is_described_briefly() {
        assert_eq!(describe_json(&json!({"a": 1})), "an object");
        assert_eq!(describe_json(&json!([1])), "an array");
        assert_eq!(describe_json(&json!(null)), "null");
        assert_eq!(describe_json(&json!(1.5)), "1.5");
        let long = "x".repeat(100);
        assert_eq!(describe_json(&json!(long)), format!("\"{}\"...", "x".repeat(40)));
    }
}

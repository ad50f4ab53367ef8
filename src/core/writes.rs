//! The extra columns a `fail` or a `requeue` sets (`[writes.fail]`, `[writes.requeue]`), so
//! that jobwarden writes a row in the shape its queue library reads back: Celery's exception
//! description in `result`, pg-boss's `output` as `{"message": ...}`, graphile-worker's unlock
//! (`locked_at = NULL, locked_by = NULL`).
//!
//! A value is parsed once, at config load, into a [`WriteValue`] whose strings are
//! [`Template`]s (their placeholders found and checked then); a write fills them with the
//! job's own [`Fill`]. What SQL a value becomes (a bound parameter, its cast, the database's
//! "now") is the store's business: here there are only values.

use std::fmt;

use super::vocabulary::Action;

/// The placeholders a write value may hold.
pub const PLACEHOLDERS: [&str; 4] = ["reason", "rule", "job_id", "now"];

/// A string value with its placeholders (`{reason}`, `{rule}`, `{job_id}`, `{now}`) found;
/// `{{` and `}}` stand for a brace.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// As the file wrote it (after `${VAR}` expansion).
    source: String,
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Reason,
    Rule,
    JobId,
    Now,
}

/// What a column is set to.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteValue {
    /// A TOML string, placeholders filled.
    Text(Template),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    /// `{ json = ... }`: written as JSON text, placeholders filled inside its strings.
    Json(Json),
    /// `{ null = true }`: SQL `NULL`.
    Null,
}

/// A JSON value whose strings are templates.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Integer(i64),
    Float(f64),
    Text(Template),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// One column of `[writes.fail]` or `[writes.requeue]` and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct SetColumn {
    /// The column, a plain identifier (quoted when written).
    pub column: String,
    pub value: WriteValue,
    /// `writes.fail.<column>`: the key errors name.
    pub key: String,
}

/// `[writes]`: the extra columns of each writing action.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Writes {
    pub fail: Vec<SetColumn>,
    pub requeue: Vec<SetColumn>,
}

/// What the placeholders of one write stand for.
#[derive(Debug, Clone, Copy)]
pub struct Fill<'a> {
    pub reason: &'a str,
    pub rule: &'a str,
    pub job_id: &'a str,
    /// The database's clock at the scan, as Unix seconds; `{now}` is its RFC 3339 form
    /// (or, alone in a time column, the database's own "now": the store decides).
    pub now: f64,
}

/// A value filled for one write.
#[derive(Debug, Clone, PartialEq)]
pub enum Filled {
    /// SQL `NULL`.
    Null,
    /// `{now}` alone: the database's "now" when the column holds a time, else `text`.
    Now { text: String },
    /// A value of this shape, as text (a boolean as `true`/`false`, JSON as its text).
    Value { text: String, shape: Shape },
}

/// The shape a value had in the file, which decides its cast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Text,
    Integer,
    Float,
    Boolean,
    Json,
}

impl Template {
    /// Finds the placeholders of `source`; an unknown `{name}` or an unclosed `{` is an error
    /// naming it and the placeholders there are.
    pub fn parse(source: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = source.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|&(_, n)| n) == Some('{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek().map(|&(_, n)| n) == Some('}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let rest = &source[at + 1..];
                    let Some(end) = rest.find('}') else {
                        return Err(format!(
                            "`{{` at character {} opens no placeholder: the placeholders are {}; write `{{{{` for a brace",
                            source[..at].chars().count() + 1,
                            known()
                        ));
                    };
                    let name = &rest[..end];
                    let piece = match name {
                        "reason" => Piece::Reason,
                        "rule" => Piece::Rule,
                        "job_id" => Piece::JobId,
                        "now" => Piece::Now,
                        _ => {
                            return Err(format!(
                                "unknown placeholder `{{{name}}}`: the placeholders are {}; write `{{{{` for a brace",
                                known()
                            ))
                        }
                    };
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(piece);
                    for _ in 0..=name.chars().count() {
                        chars.next();
                    }
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template {
            source: source.to_string(),
            pieces,
        })
    }

    /// The text as the file wrote it.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template is `{now}` and nothing else.
    pub fn is_now(&self) -> bool {
        self.pieces == [Piece::Now]
    }

    /// The text with its placeholders filled.
    pub fn fill(&self, fill: &Fill<'_>) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Reason => out.push_str(fill.reason),
                Piece::Rule => out.push_str(fill.rule),
                Piece::JobId => out.push_str(fill.job_id),
                Piece::Now => out.push_str(&super::job::rfc3339(fill.now)),
            }
        }
        out
    }
}

fn known() -> String {
    PLACEHOLDERS
        .iter()
        .map(|p| format!("{{{p}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Json {
    /// The JSON value with its strings filled.
    pub fn fill(&self, fill: &Fill<'_>) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Integer(i) => Value::from(*i),
            Json::Float(f) => Value::from(*f),
            Json::Text(t) => Value::String(t.fill(fill)),
            Json::Array(items) => Value::Array(items.iter().map(|i| i.fill(fill)).collect()),
            Json::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.fill(fill)))
                    .collect(),
            ),
        }
    }

    /// The value as the file wrote it (placeholders unfilled), for `validate --print`.
    pub fn source(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Json::Text(t) => Value::String(t.source().to_string()),
            Json::Array(items) => Value::Array(items.iter().map(Json::source).collect()),
            Json::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.source()))
                    .collect(),
            ),
            other => other.fill(&Fill {
                reason: "",
                rule: "",
                job_id: "",
                now: 0.0,
            }),
        }
    }
}

impl WriteValue {
    /// The value for one write.
    pub fn fill(&self, fill: &Fill<'_>) -> Filled {
        let value = |text: String, shape| Filled::Value { text, shape };
        match self {
            WriteValue::Null => Filled::Null,
            WriteValue::Text(t) if t.is_now() => Filled::Now { text: t.fill(fill) },
            WriteValue::Text(t) => value(t.fill(fill), Shape::Text),
            WriteValue::Integer(i) => value(i.to_string(), Shape::Integer),
            WriteValue::Float(f) => value(f.to_string(), Shape::Float),
            WriteValue::Boolean(b) => value(b.to_string(), Shape::Boolean),
            WriteValue::Json(j) => value(j.fill(fill).to_string(), Shape::Json),
        }
    }

    /// The value as the file wrote it, for `validate --print`: a string, a number, a
    /// boolean, `{"json": ...}` or `{"null": true}`.
    pub fn source(&self) -> serde_json::Value {
        match self {
            WriteValue::Text(t) => serde_json::Value::String(t.source().to_string()),
            WriteValue::Integer(i) => (*i).into(),
            WriteValue::Float(f) => (*f).into(),
            WriteValue::Boolean(b) => (*b).into(),
            WriteValue::Json(j) => serde_json::json!({ "json": j.source() }),
            WriteValue::Null => serde_json::json!({ "null": true }),
        }
    }
}

impl Writes {
    /// The extra columns of an action (none for `alert`).
    pub fn of(&self, action: Action) -> &[SetColumn] {
        match action {
            Action::Fail => &self.fail,
            Action::Requeue => &self.requeue,
            Action::Alert => &[],
        }
    }
}

impl fmt::Display for Filled {
    /// The value as a dry run shows it: `NULL`, `now`, a JSON-quoted string, a number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filled::Null => f.write_str("NULL"),
            Filled::Now { .. } => f.write_str("now"),
            Filled::Value {
                text,
                shape: Shape::Text | Shape::Json,
            } => write!(f, "{text:?}"),
            Filled::Value { text, .. } => f.write_str(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill() -> Fill<'static> {
        Fill {
            reason: "jobwarden: hb: no heartbeat for 31m",
            rule: "hb",
            job_id: "42",
            now: 1_767_225_600.0,
        }
    }

    #[test]
    fn placeholders_are_filled_and_braces_escaped() {
        let t = Template::parse("{rule} failed job {job_id} at {now}: {reason} {{ok}}").unwrap();
        assert_eq!(
            t.fill(&fill()),
            "hb failed job 42 at 2026-01-01T00:00:00Z: jobwarden: hb: no heartbeat for 31m {ok}"
        );
        assert!(Template::parse("{now}").unwrap().is_now());
        assert!(!Template::parse("at {now}").unwrap().is_now());
        assert_eq!(Template::parse("plain").unwrap().fill(&fill()), "plain");
    }

    #[test]
    fn unknown_and_unclosed_placeholders_are_named() {
        let err = Template::parse("died: {resaon}").unwrap_err();
        assert!(
            err.contains("unknown placeholder `{resaon}`") && err.contains("{reason}, {rule}"),
            "{err}"
        );
        let err = Template::parse("a { b").unwrap_err();
        assert!(err.contains("character 3"), "{err}");
    }

    #[test]
    fn json_is_filled_inside_its_strings() {
        let json = Json::Object(vec![
            (
                "exc_message".into(),
                Json::Array(vec![Json::Text(Template::parse("{reason}").unwrap())]),
            ),
            (
                "exc_type".into(),
                Json::Text(Template::parse("WorkerLostError").unwrap()),
            ),
        ]);
        let value = WriteValue::Json(json);
        assert_eq!(
            value.fill(&fill()),
            Filled::Value {
                text: r#"{"exc_message":["jobwarden: hb: no heartbeat for 31m"],"exc_type":"WorkerLostError"}"#
                    .into(),
                shape: Shape::Json
            }
        );
        assert_eq!(
            value.source(),
            serde_json::json!({"json": {"exc_message": ["{reason}"], "exc_type": "WorkerLostError"}})
        );
        assert_eq!(WriteValue::Null.fill(&fill()), Filled::Null);
        assert_eq!(WriteValue::Null.fill(&fill()).to_string(), "NULL");
    }
}

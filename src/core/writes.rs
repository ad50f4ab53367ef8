//! The extra columns a `fail` or a `requeue` sets (`[writes.fail]`, `[writes.requeue]`), so
//! that jobwarden writes a row in the shape its queue library reads back: Celery's exception
//! description in `result`, pg-boss's `output` as `{"message": ...}`, graphile-worker's unlock
//! (`locked_at = NULL, locked_by = NULL`), Celery's pickled exception description in a
//! binary `result` (before Celery 5.7, whose SQLAlchemy model pickled it).
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
    /// `{ pickle = ... }`: written as the bytes of a Python pickle (protocol 2) of the value
    /// as plain data (dict, list, str, int, float, bool, None), placeholders filled inside
    /// its strings.
    Pickle(Json),
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
    /// Bytes for a binary column (a pickle), and how a dry run shows them
    /// (`pickle {"exc_type":...}`).
    Bytes { bytes: Vec<u8>, shown: String },
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
            WriteValue::Pickle(j) => {
                let data = j.fill(fill);
                Filled::Bytes {
                    bytes: pickle(&data),
                    shown: format!("pickle {data}"),
                }
            }
        }
    }

    /// The value as the file wrote it, for `validate --print`: a string, a number, a
    /// boolean, `{"json": ...}`, `{"pickle": ...}` or `{"null": true}`.
    pub fn source(&self) -> serde_json::Value {
        match self {
            WriteValue::Text(t) => serde_json::Value::String(t.source().to_string()),
            WriteValue::Integer(i) => (*i).into(),
            WriteValue::Float(f) => (*f).into(),
            WriteValue::Boolean(b) => (*b).into(),
            WriteValue::Json(j) => serde_json::json!({ "json": j.source() }),
            WriteValue::Null => serde_json::json!({ "null": true }),
            WriteValue::Pickle(j) => serde_json::json!({ "pickle": j.source() }),
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
            Filled::Bytes { shown, .. } => f.write_str(shown),
        }
    }
}

/// The bytes of a Python pickle, protocol 2, of `value` as plain data: an object is a
/// `dict`, an array a `list`, a string a `str`, a number an `int` or a `float`, null `None`.
/// Byte for byte what `pickletools.optimize(pickle.dumps(value, 2))` gives (Python's own
/// opcodes and batches of 1,000, without the memo, which nothing here refers back to).
pub fn pickle(value: &serde_json::Value) -> Vec<u8> {
    let mut out = vec![0x80, 2]; // PROTO 2
    pickle_value(value, &mut out);
    out.push(b'.'); // STOP
    out
}

fn pickle_value(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Null => out.push(b'N'),
        Value::Bool(true) => out.push(0x88),  // NEWTRUE
        Value::Bool(false) => out.push(0x89), // NEWFALSE
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => pickle_int(i.into(), out),
            (None, Some(u), _) => pickle_int(u.into(), out),
            (_, _, f) => {
                out.push(b'G'); // BINFLOAT: a big-endian double
                out.extend_from_slice(&f.unwrap_or(0.0).to_be_bytes());
            }
        },
        Value::String(s) => pickle_str(s, out),
        Value::Array(items) => {
            out.push(b']'); // EMPTY_LIST
            let items: Vec<&Value> = items.iter().collect();
            batches(&items, b'a', b'e', out, pickle_value);
        }
        Value::Object(entries) => {
            out.push(b'}'); // EMPTY_DICT
            let entries: Vec<(&String, &Value)> = entries.iter().collect();
            batches(&entries, b's', b'u', out, |(k, v), out| {
                pickle_str(k, out);
                pickle_value(v, out);
            });
        }
    }
}

/// Items added to the list or dict just pushed, as Python's pickler batches them: 1,000 at a
/// time, a batch of one with `one` (APPEND, SETITEM), more between MARK and `many` (APPENDS,
/// SETITEMS).
fn batches<T: Copy>(
    items: &[T],
    one: u8,
    many: u8,
    out: &mut Vec<u8>,
    each: impl Fn(T, &mut Vec<u8>),
) {
    for batch in items.chunks(1000) {
        if let [item] = batch {
            each(*item, out);
            out.push(one);
        } else {
            out.push(b'('); // MARK
            for item in batch {
                each(*item, out);
            }
            out.push(many);
        }
    }
}

fn pickle_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'X'); // BINUNICODE: a 4-byte little-endian length, then UTF-8
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn pickle_int(i: i128, out: &mut Vec<u8>) {
    if let Ok(b) = u8::try_from(i) {
        out.extend_from_slice(&[b'K', b]); // BININT1
    } else if let Ok(b) = u16::try_from(i) {
        out.push(b'M'); // BININT2
        out.extend_from_slice(&b.to_le_bytes());
    } else if let Ok(b) = i32::try_from(i) {
        out.push(b'J'); // BININT
        out.extend_from_slice(&b.to_le_bytes());
    } else {
        // LONG1: the shortest little-endian two's complement that keeps the sign.
        let bytes = i.to_le_bytes();
        let mut n = bytes.len();
        while n > 1 {
            let (last, next) = (bytes[n - 1], bytes[n - 2]);
            let redundant = (last == 0 && next & 0x80 == 0) || (last == 0xff && next & 0x80 != 0);
            if !redundant {
                break;
            }
            n -= 1;
        }
        out.extend_from_slice(&[0x8a, n as u8]);
        out.extend_from_slice(&bytes[..n]);
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

    /// Celery's exception description: the reason in `exc_message`, a `WorkerLostError`, and
    /// `more` text entries (in key order).
    fn exception(more: &[(&str, &str)]) -> Json {
        let text = |s: &str| Json::Text(Template::parse(s).unwrap());
        let mut entries = vec![
            ("exc_message".into(), Json::Array(vec![text("{reason}")])),
            ("exc_type".into(), text("WorkerLostError")),
        ];
        entries.extend(more.iter().map(|(k, v)| (k.to_string(), text(v))));
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Json::Object(entries)
    }

    #[test]
    fn json_is_filled_inside_its_strings() {
        let value = WriteValue::Json(exception(&[]));
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

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The expected bytes are `pickletools.optimize(pickle.dumps(value, 2)).hex()` of
    /// CPython 3.11.
    #[test]
    fn pickles_are_pythons_own_bytes() {
        use serde_json::json;
        for (value, python) in [
            (json!(1), "80024b012e"),
            (json!({}), "80027d2e"),
            (json!(["x"]), "80025d580100000078612e"),
            (json!({"a": []}), "80027d5801000000615d732e"),
            (
                json!([1, 255, 256, 65536, -1, 2_147_483_648_i64, -1_099_511_627_776_i64, 0.5, true, false, null, "é"]),
                "80025d284b014bff4d00014a000001004affffffff8a0500000080008a060000000000ff473fe000000000000088894e5802000000c3a9652e",
            ),
        ] {
            assert_eq!(hex(&pickle(&value)), python, "{value}");
        }
    }

    #[test]
    fn a_pickle_is_filled_and_shown_readably() {
        let value = WriteValue::Pickle(exception(&[("exc_module", "billiard.exceptions")]));
        let Filled::Bytes { bytes, shown } = value.fill(&fill()) else {
            panic!("not bytes");
        };
        assert_eq!(
            hex(&bytes),
            "80027d28580b0000006578635f6d6573736167655d58230000006a6f6277617264656e3a2068623a206e6f2068656172746265617420666f722033316d61580a0000006578635f6d6f64756c65581300000062696c6c696172642e657863657074696f6e7358080000006578635f74797065580f000000576f726b65724c6f73744572726f72752e"
        );
        assert_eq!(
            shown,
            r#"pickle {"exc_message":["jobwarden: hb: no heartbeat for 31m"],"exc_module":"billiard.exceptions","exc_type":"WorkerLostError"}"#
        );
        assert_eq!(value.fill(&fill()).to_string(), shown);
        assert_eq!(
            value.source(),
            serde_json::json!({"pickle": {"exc_message": ["{reason}"], "exc_module": "billiard.exceptions", "exc_type": "WorkerLostError"}})
        );
    }
}

//! `[writes.fail]` and `[writes.requeue]` resolved: each column an identifier that no other
//! write already sets, each value one of the shapes [`WriteValue`] knows, its placeholders
//! checked. Every error names the key (`writes.fail.result`) and its line.

use super::*;
use crate::core::writes::{Json, SetColumn, Template, WriteValue, Writes};

/// The value shapes, as an error lists them.
const SHAPES: &str =
    "a string (placeholders {reason} {rule} {job_id} {now}), an integer, a float, \
                      a boolean, `{ json = <any TOML value> }`, `{ pickle = <any TOML value> }` \
                      or `{ null = true }`";

pub(super) fn resolve_writes(
    ctx: &Ctx<'_>,
    raw: Option<&RawWrites>,
    jobs: &Jobs,
) -> Result<Writes, Located> {
    let Some(raw) = raw else {
        return Ok(Writes::default());
    };
    Ok(Writes {
        fail: columns(ctx, &raw.fail, "fail", jobs)?,
        requeue: columns(ctx, &raw.requeue, "requeue", jobs)?,
    })
}

fn columns(
    ctx: &Ctx<'_>,
    raw: &BTreeMap<String, Spanned<toml::Value>>,
    action: &str,
    jobs: &Jobs,
) -> Result<Vec<SetColumn>, Located> {
    // The columns every write already sets (or guards by): a second value would contradict it.
    let mut taken: Vec<(&str, &str)> = vec![
        ("jobs.id", &jobs.id.column),
        ("jobs.status", &jobs.status.column),
    ];
    for (key, field) in [
        ("jobs.finished_at", &jobs.finished_at),
        ("jobs.error", &jobs.error),
        ("jobs.attempts", &jobs.attempts),
    ] {
        if let Some(f) = field {
            taken.push((key, &f.column));
        }
    }
    let mut out = Vec::new();
    for (column, value) in raw {
        let key = format!("writes.{action}.{column}");
        ctx.places
            .borrow_mut()
            .entry(key.clone())
            .or_insert_with(|| line_column(ctx.text, value.span().start).0);
        let field = sql::parse_field(column)
            .map_err(|m| ctx.at(value, &key, format!("`{column}` is not a column name: {m}")))?;
        if !field.is_plain() {
            return Err(ctx.at(
                value,
                &key,
                format!("`{column}` is a JSON path; a write sets whole columns, so name a plain column (and write it with `{{ json = ... }}`)"),
            ));
        }
        if let Some((other, _)) = taken
            .iter()
            .find(|(_, c)| c.eq_ignore_ascii_case(&field.column))
        {
            return Err(ctx.at(
                value,
                &key,
                format!(
                    "`{column}` is also `{other}`, which jobwarden sets itself: leave it to `{other}` \
                     (or name another column)"
                ),
            ));
        }
        let value = write_value(ctx, value, &key)?;
        out.push(SetColumn {
            column: field.column,
            value,
            key,
        });
    }
    Ok(out)
}

fn write_value(
    ctx: &Ctx<'_>,
    raw: &Spanned<toml::Value>,
    key: &str,
) -> Result<WriteValue, Located> {
    let template = |s: &str| -> Result<Template, Located> {
        let expanded = expand(s, ctx.lookup).map_err(|m| ctx.at(raw, key, m))?;
        Template::parse(&expanded).map_err(|m| ctx.at(raw, key, m))
    };
    match raw.get_ref() {
        toml::Value::String(s) => Ok(WriteValue::Text(template(s)?)),
        toml::Value::Integer(i) => Ok(WriteValue::Integer(*i)),
        toml::Value::Float(f) if f.is_finite() => Ok(WriteValue::Float(*f)),
        toml::Value::Float(f) => Err(ctx.at(
            raw,
            key,
            format!("{f} is not a number a database column can hold"),
        )),
        toml::Value::Boolean(b) => Ok(WriteValue::Boolean(*b)),
        // A TOML date or time is written as its text; the column's type reads it.
        toml::Value::Datetime(d) => Ok(WriteValue::Text(template(&d.to_string())?)),
        toml::Value::Table(t) if t.len() == 1 && t.contains_key("json") => {
            Ok(WriteValue::Json(json(&t["json"], &template)?))
        }
        toml::Value::Table(t) if t.len() == 1 && t.contains_key("pickle") => {
            Ok(WriteValue::Pickle(json(&t["pickle"], &template)?))
        }
        toml::Value::Table(t) if t.len() == 1 && t.contains_key("null") => {
            match t["null"] {
                toml::Value::Boolean(true) => Ok(WriteValue::Null),
                _ => Err(ctx.at(
                    raw,
                    key,
                    "`{ null = true }` is how a column is set to NULL; leave the column out to leave it alone".into(),
                )),
            }
        }
        toml::Value::Table(t) => Err(ctx.at(
            raw,
            key,
            format!(
                "a table with {} is not a value jobwarden knows: a value is {SHAPES}",
                describe_keys(t)
            ),
        )),
        toml::Value::Array(_) => Err(ctx.at(
            raw,
            key,
            format!("an array is not a column value: write it as JSON with `{{ json = [...] }}`; a value is {SHAPES}"),
        )),
    }
}

fn describe_keys(t: &toml::Table) -> String {
    if t.is_empty() {
        return "no key".into();
    }
    format!(
        "the key{} {}",
        if t.len() == 1 { "" } else { "s" },
        t.keys()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn json(
    value: &toml::Value,
    template: &dyn Fn(&str) -> Result<Template, Located>,
) -> Result<Json, Located> {
    Ok(match value {
        toml::Value::String(s) => Json::Text(template(s)?),
        toml::Value::Integer(i) => Json::Integer(*i),
        toml::Value::Float(f) if f.is_finite() => Json::Float(*f),
        // JSON has no NaN or infinity: the nearest is null.
        toml::Value::Float(_) => Json::Null,
        toml::Value::Boolean(b) => Json::Bool(*b),
        toml::Value::Datetime(d) => Json::Text(template(&d.to_string())?),
        toml::Value::Array(items) => Json::Array(
            items
                .iter()
                .map(|i| json(i, template))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(t) => Json::Object(
            t.iter()
                .map(|(k, v)| Ok((k.clone(), json(v, template)?)))
                .collect::<Result<_, Located>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::writes::{Fill, Filled, Shape};

    const BASE: &str = r#"[database]
url = "postgres://db/app"

[jobs]
table = "jobs"
heartbeat_at = "updated_at"
finished_at = "completed_at"
error = "error"
[jobs.statuses]
pending = ["queued"]
running = ["running"]
failed = ["failed"]
"#;

    fn load(writes: &str) -> Result<Config, String> {
        let lookup = |name: &str| (name == "WORKER_ERROR").then(|| "WorkerLostError".to_string());
        parse(
            &format!("{BASE}\n{writes}\n"),
            Path::new("w.toml"),
            None,
            &lookup,
        )
        .map_err(|e| e.to_string())
    }

    /// The line `writes` starts on in the file [`load`] makes.
    const FIRST: usize = 14;

    #[test]
    fn every_value_shape_is_read() {
        let c = load(
            r#"[writes.fail]
result = { json = { exc_type = "${WORKER_ERROR}", exc_message = ["{reason}"], retries = 0 } }
note = "{rule}: {job_id}"
tries = 7
score = 0.5
flagged = false
"Owner" = { null = true }
legacy = { pickle = { exc_type = "WorkerLostError", exc_message = ["{reason}"] } }
[writes.requeue]
locked_at = { null = true }"#,
        )
        .unwrap();
        let fail = &c.jobs.writes.fail;
        let columns: Vec<&str> = fail.iter().map(|c| c.column.as_str()).collect();
        assert_eq!(
            columns,
            ["Owner", "flagged", "legacy", "note", "result", "score", "tries"]
        );
        assert_eq!(fail[0].key, "writes.fail.Owner");
        let fill = Fill {
            reason: "stuck",
            rule: "hb",
            job_id: "42",
            now: 0.0,
        };
        let filled: Vec<Filled> = fail.iter().map(|c| c.value.fill(&fill)).collect();
        let value = |text: &str, shape| Filled::Value {
            text: text.into(),
            shape,
        };
        assert_eq!(
            filled,
            [
                Filled::Null,
                value("false", Shape::Boolean),
                Filled::Bytes {
                    bytes: crate::core::writes::pickle(
                        &serde_json::json!({"exc_message": ["stuck"], "exc_type": "WorkerLostError"})
                    ),
                    shown: r#"pickle {"exc_message":["stuck"],"exc_type":"WorkerLostError"}"#
                        .into(),
                },
                value("hb: 42", Shape::Text),
                value(
                    r#"{"exc_message":["stuck"],"exc_type":"WorkerLostError","retries":0}"#,
                    Shape::Json
                ),
                value("0.5", Shape::Float),
                value("7", Shape::Integer),
            ]
        );
        assert_eq!(c.jobs.writes.requeue[0].value.fill(&fill), Filled::Null);
        assert_eq!(c.places.line("writes.requeue.locked_at"), Some(FIRST + 9));
        // `validate --print` shows them as written.
        let printed = redacted_json(&c);
        assert_eq!(
            printed["writes"]["fail"]["result"],
            serde_json::json!({"json": {"exc_message": ["{reason}"], "exc_type": "WorkerLostError", "retries": 0}})
        );
        assert_eq!(
            printed["writes"]["fail"]["legacy"],
            serde_json::json!({"pickle": {"exc_message": ["{reason}"], "exc_type": "WorkerLostError"}})
        );
        assert_eq!(
            printed["writes"]["requeue"],
            serde_json::json!({"locked_at": {"null": true}})
        );
    }

    #[test]
    fn bad_values_name_their_key_and_place() {
        for (writes, expected) in [
            (
                "[writes.fail]\nresult = { json = { exc_message = [\"{resaon}\"] } }",
                format!("w.toml:{}:10: `writes.fail.result`: unknown placeholder `{{resaon}}`", FIRST + 1),
            ),
            (
                "[writes.fail]\nnote = \"a {b\"",
                format!("w.toml:{}:8: `writes.fail.note`: `{{` at character 3 opens no placeholder", FIRST + 1),
            ),
            (
                "[writes.requeue]\nstatus = \"queued\"",
                format!("w.toml:{}:10: `writes.requeue.status`: `status` is also `jobs.status`", FIRST + 1),
            ),
            (
                "[writes.fail]\ncompleted_at = \"{now}\"",
                "`writes.fail.completed_at`: `completed_at` is also `jobs.finished_at`".into(),
            ),
            (
                "[writes.fail]\nERROR = \"x\"",
                "`writes.fail.ERROR`: `ERROR` is also `jobs.error`".into(),
            ),
            (
                "[writes.fail]\nid = 1",
                "`writes.fail.id`: `id` is also `jobs.id`".into(),
            ),
            (
                "[writes.fail]\n\"locked by\" = 1",
                "`writes.fail.locked by`: `locked by` is not a column name: `locked by` is not a plain identifier".into(),
            ),
            (
                "[writes.fail]\n\"meta.x\" = 1",
                "`writes.fail.meta.x`: `meta.x` is a JSON path".into(),
            ),
            (
                "[writes.fail]\nresult = { jsn = 1 }",
                "`writes.fail.result`: a table with the key `jsn` is not a value jobwarden knows: a value is a string".into(),
            ),
            (
                "[writes.fail]\nresult = { pickle = \"{resaon}\" }",
                format!("w.toml:{}:10: `writes.fail.result`: unknown placeholder `{{resaon}}`", FIRST + 1),
            ),
            (
                "[writes.fail]\nresult = { pickle = 1, json = 2 }",
                "`writes.fail.result`: a table with the keys `json`, `pickle` is not a value jobwarden knows".into(),
            ),
            (
                "[writes.fail]\nresult = [1, 2]",
                "`writes.fail.result`: an array is not a column value: write it as JSON with `{ json = [...] }`".into(),
            ),
            (
                "[writes.requeue]\nlocked_at = { null = false }",
                "`writes.requeue.locked_at`: `{ null = true }` is how a column is set to NULL".into(),
            ),
            (
                "[writes.fail]\nnote = \"${UNSET_VARIABLE}\"",
                "`writes.fail.note`: ".into(),
            ),
            (
                "[writes.cancel]\nnote = \"x\"",
                "unknown field `cancel`, expected `fail` or `requeue`".into(),
            ),
        ] {
            let err = load(writes).unwrap_err();
            assert!(err.contains(&expected), "{writes}\n=> {err}\nexpected: {expected}");
        }
    }
}

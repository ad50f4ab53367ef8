//! What the catalogue says about the table: the configured columns' types, whether the
//! status column is indexed, the zone an application's session gets, and from those how
//! each timestamp column is read and whether writes must be refused (`time_info`, pure);
//! the words an enum or `CHECK` allows (`check_values`, pure).

use std::collections::HashMap;

use super::*;
use crate::core::writes::WriteValue;

/// What the catalogue says about the configured columns.
#[derive(Debug, Clone, Default)]
pub struct TableInfo {
    /// Column name to its SQL type, as the catalogue spells it.
    pub columns: HashMap<String, String>,
    /// Whether an index starts with the status column (or a partial index names it).
    pub status_indexed: bool,
    /// With `parent_id`: whether an index can serve the children read (one starting with the
    /// parent column, or on its JSON path's expression). Without one, a scan reads children
    /// only on the terminal-counts schedule.
    pub parent_indexed: bool,
    /// Whether an index serves the candidate read: `(status, <heartbeat>)` (see
    /// `Queries::candidate_index`).
    pub candidate_indexed: bool,
    /// How the timestamps are read.
    pub time: TimeInfo,
}

/// The zone an application's session gets from the database, as the database reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseZone {
    /// As the database spells it, with where it comes from (`America/New_York (database
    /// default)`).
    pub described: String,
    /// The zone, when jobwarden can follow it; `None`: unknown (it is then never trusted).
    pub zone: Option<Zone>,
}

impl Default for DatabaseZone {
    fn default() -> Self {
        DatabaseZone {
            described: "UTC".into(),
            zone: Some(Zone::Utc),
        }
    }
}

/// One configured timestamp column and how it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeColumn {
    /// The config key (`jobs.heartbeat_at`).
    pub key: &'static str,
    /// The field as configured (`updated_at`, `metadata.heartbeat_at`).
    pub field: String,
    /// The SQL type, or `json` for a JSON path.
    pub sql_type: String,
    /// A wall-clock reading with no zone (`timestamp`, `DATETIME`, `date`).
    pub naive: bool,
    /// How its values are read, in words.
    pub read_as: String,
}

/// How the table's timestamps are read, as learned at connect.
#[derive(Debug, Clone, Default)]
pub struct TimeInfo {
    pub database_zone: DatabaseZone,
    /// The zone naive values are read in.
    pub read_zone: Zone,
    pub columns: Vec<TimeColumn>,
    /// Why no write may be made: a naive column, a database zone that is not UTC (or cannot
    /// be known) and no `[database] timezone` to say which convention the table follows.
    pub refusal: Option<String>,
    /// How each timestamp field is read.
    pub readings: Readings,
}

/// How each timestamp field's values are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readings {
    pub created: Reading,
    pub heartbeat: Reading,
    pub status_since: Reading,
    pub finished: Reading,
    /// `[workers] heartbeat_at`, in the workers' table.
    pub worker: Reading,
}

/// How `[workers] heartbeat_at` (of type `types` gives, in the workers' table) is read: as
/// the jobs' own timestamps are, by the same zone. Added to `time`'s columns and readings.
pub fn worker_time(
    config: &Config,
    time: &mut TimeInfo,
    field: &crate::core::sql::Field,
    types: &HashMap<String, String>,
) {
    let dialect = config.database.dialect;
    let explicit = config.database.timezone.is_some();
    let text_zone = if explicit { time.read_zone } else { Zone::Utc };
    let sql_type = if field.is_plain() {
        types.get(&field.column).cloned().unwrap_or_default()
    } else {
        "json".to_string()
    };
    let kind = TimeKind::from_sql_type(&sql_type);
    let native = field.is_plain() && kind == TimeKind::Native;
    let naive = native && dialect.is_naive(&sql_type);
    time.readings.worker = Reading {
        native_zone: naive.then_some(time.read_zone),
        text_zone,
    };
    let read_as = if naive {
        format!("naive, read in {}", time.read_zone)
    } else if !field.is_plain() || kind == TimeKind::Text {
        format!("text; values without an offset read in {text_zone}")
    } else if native {
        "an instant (has a zone)".to_string()
    } else {
        "a number of Unix seconds (or milliseconds)".to_string()
    };
    time.columns.push(TimeColumn {
        key: "workers.heartbeat_at",
        field: field.to_string(),
        sql_type,
        naive,
        read_as,
    });
}

/// A zone known only by its offset now: followed as a fixed offset (daylight-saving changes
/// are not), or unknown without one.
pub(super) fn fixed_zone(described: String, offset: Option<f64>) -> DatabaseZone {
    match offset.filter(|o| o.is_finite() && o.abs() < 86_400.0) {
        Some(o) => DatabaseZone {
            described: format!("{described}, now {}", Zone::fixed(o as i32)),
            zone: Some(Zone::fixed(o as i32)),
        },
        None => DatabaseZone {
            described: format!("{described}, which jobwarden cannot follow"),
            zone: None,
        },
    }
}

/// How each configured timestamp column is read, and whether writes must be refused. Pure.
pub fn time_info(config: &Config, types: &HashMap<String, String>, db: DatabaseZone) -> TimeInfo {
    let dialect = config.database.dialect;
    let (read_zone, explicit) = match config.database.timezone {
        Some(Setting::Zone(z)) => (z, true),
        Some(Setting::Database) => (db.zone.unwrap_or(Zone::Utc), true),
        None => (Zone::Utc, false),
    };
    let text_zone = if explicit { read_zone } else { Zone::Utc };
    let j = &config.jobs;
    let fields = [
        ("jobs.created_at", Some(&j.created_at)),
        ("jobs.heartbeat_at", j.heartbeat_at.as_ref()),
        ("jobs.status_since", j.status_since.as_ref()),
        ("jobs.finished_at", j.finished_at.as_ref()),
    ];
    let mut columns = Vec::new();
    let mut readings = [Reading::default(); 4];
    for (slot, (key, field)) in fields.into_iter().enumerate() {
        let Some(field) = field else { continue };
        let sql_type = if field.is_plain() {
            types.get(&field.column).cloned().unwrap_or_default()
        } else {
            "json".to_string()
        };
        let native = field.is_plain() && TimeKind::from_sql_type(&sql_type) == TimeKind::Native;
        let naive = native && dialect.is_naive(&sql_type);
        let text = !field.is_plain() || TimeKind::from_sql_type(&sql_type) == TimeKind::Text;
        readings[slot] = Reading {
            native_zone: naive.then_some(read_zone),
            text_zone,
        };
        let read_as = if naive {
            format!("naive, read in {read_zone}")
        } else if text {
            format!("text; values without an offset read in {text_zone}")
        } else if native {
            "an instant (has a zone)".to_string()
        } else {
            "a number of Unix seconds (or milliseconds)".to_string()
        };
        columns.push(TimeColumn {
            key,
            field: field.to_string(),
            sql_type,
            naive,
            read_as,
        });
    }
    let mut naive: Vec<String> = columns
        .iter()
        .filter(|c| c.naive)
        .map(|c| {
            format!(
                "{} (`{}`, {})",
                config.places.name(c.key),
                c.field,
                c.sql_type
            )
        })
        .collect();
    // A `[writes]` column given `{now}` is written like `finished_at`: naive, it needs the zone.
    for c in j.writes.fail.iter().chain(&j.writes.requeue) {
        let sql_type = types.get(&c.column).map_or("", String::as_str);
        let now = matches!(&c.value, WriteValue::Text(t) if t.is_now());
        if now
            && TimeKind::from_sql_type(sql_type) == TimeKind::Native
            && dialect.is_naive(sql_type)
        {
            naive.push(format!(
                "{} (`{}`, {sql_type})",
                config.places.name(&c.key),
                c.column
            ));
        }
    }
    let refusal = (!naive.is_empty()).then(|| {
        let what = if naive.len() == 1 {
            format!("{} has no time zone", naive[0])
        } else {
            format!("{} have no time zone", naive.join(", "))
        };
        match (config.database.timezone, db.zone) {
            (None, Some(z)) if z.is_utc() => None,
            (None, _) => Some(format!(
                "{what} and the database's zone is {}, not UTC: set `[database] timezone = \"UTC\"` \
                 if the application writes UTC into it (most ORMs: Prisma, Rails, SQLAlchemy with utcnow), \
                 or `timezone = \"database\"` if the database fills it (`DEFAULT now()`, `NOW()`); \
                 until then it is read as UTC and nothing is written",
                db.described
            )),
            (Some(Setting::Database), None) => Some(format!(
                "{what}, `[database] timezone = \"database\"` asks for the database's zone, and that \
                 is {}: set `timezone` to the zone by name; until then it is read as UTC and nothing is written",
                db.described
            )),
            _ => None,
        }
    }).flatten();
    TimeInfo {
        database_zone: db,
        read_zone,
        columns,
        refusal,
        readings: Readings {
            created: readings[0],
            heartbeat: readings[1],
            status_since: readings[2],
            finished: readings[3],
            worker: Reading::default(),
        },
    }
}

/// The values a status column may hold, from one catalogue row: PostgreSQL enum labels (one
/// per line), MySQL's `enum('a','b')`, or a `CHECK` constraint of the form
/// `status IN ('a', 'b')` / `status = ANY (ARRAY['a'::text, ...])` on this column. `None` when
/// the text says nothing readable about the column.
pub fn check_values(what: &str, text: &str, column: &str) -> Option<Vec<String>> {
    if what.starts_with("enum ") {
        return Some(text.lines().map(str::to_string).collect());
    }
    let quoted = |t: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut chars = t.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '\'' {
                continue;
            }
            let mut value = String::new();
            while let Some(c) = chars.next() {
                if c == '\'' {
                    if chars.peek() == Some(&'\'') {
                        chars.next();
                        value.push('\'');
                        continue;
                    }
                    break;
                }
                value.push(c);
            }
            out.push(value);
        }
        out
    };
    if what.starts_with("ENUM") {
        return Some(quoted(text));
    }
    // A CHECK: find `<column> IN (` or `<column> = ANY (ARRAY[`, right after the column name
    // (bare, or quoted with ", ` or []), and read the literals up to the closing bracket.
    let lower = text.to_ascii_lowercase();
    let col = column.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].find(&col) {
        let start = from + found;
        let end = start + col.len();
        from = end;
        let before = lower[..start].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = lower[end..].trim_start_matches(['"', '`', ']', ')', ' ']);
        let rest = rest
            .strip_prefix("::text")
            .unwrap_or(rest)
            .trim_start_matches([')', ' ']);
        let (open, close) = if let Some(r) = rest.strip_prefix("in") {
            if !r.trim_start().starts_with('(') {
                continue;
            }
            ('(', ')')
        } else if rest.starts_with('=') && rest[1..].trim_start().starts_with("any") {
            ('[', ']')
        } else {
            continue;
        };
        let offset = text.len() - rest.len();
        let body = &text[offset..];
        let Some(o) = body.find(open) else { continue };
        let Some(c) = body[o..].find(close) else {
            continue;
        };
        let values = quoted(&body[o..o + c]);
        if !values.is_empty() {
            return Some(values);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_into_a_naive_write_column_needs_the_zone() {
        let text = |writes: &str| {
            format!(
                "[database]\nurl = \"postgres://db/app\"\n[jobs]\ntable = \"jobs\"\n\
                 [jobs.statuses]\nrunning = [\"running\"]\nfailed = [\"failed\"]\n{writes}\n"
            )
        };
        let types: HashMap<String, String> = [
            ("done_at", "timestamp without time zone"),
            ("seen_at", "timestamp with time zone"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let new_york = DatabaseZone {
            described: "America/New_York (database default)".into(),
            zone: None,
        };
        let config = |writes: &str| {
            crate::config::parse(&text(writes), std::path::Path::new("z.toml"), None, &|_| {
                None
            })
            .unwrap()
        };
        let refused = time_info(
            &config("[writes.fail]\ndone_at = \"{now}\""),
            &types,
            new_york.clone(),
        );
        let why = refused.refusal.expect("refused");
        assert!(
            why.starts_with("`writes.fail.done_at` (line 9) (`done_at`, timestamp without time zone) has no time zone"),
            "{why}"
        );
        // An instant, or text that is not `{now}`, needs no zone.
        for writes in [
            "[writes.fail]\nseen_at = \"{now}\"",
            "[writes.fail]\ndone_at = \"2026-01-01 00:00:00\"",
        ] {
            assert_eq!(
                time_info(&config(writes), &types, new_york.clone()).refusal,
                None
            );
        }
    }
}

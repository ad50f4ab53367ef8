//! What the catalogue says about the table: the configured columns' types, whether the
//! status column is indexed, the zone an application's session gets, and from those how
//! each timestamp column is read and whether writes must be refused (`time_info`, pure);
//! the words an enum or `CHECK` allows (`check_values`, pure).

use std::collections::HashMap;

use super::*;
use crate::core::sql::TableName;
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
    /// MySQL/MariaDB: the name of that index, which the light read names (see
    /// `Queries::with_light_index`).
    pub light_index: Option<String>,
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

/// What `[jobs] table` is, as the catalogue says: a table, or a view (which no index can be
/// made on, and which the database writes only when it maps onto one table's columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relation {
    Table,
    View(ViewInfo),
}

/// A view named as `[jobs] table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewInfo {
    /// A PostgreSQL materialized view: indexable, never written, as fresh as its last
    /// `REFRESH`.
    pub materialized: bool,
    /// The table behind the asked columns, when each is a plain column of one table (found
    /// on PostgreSQL only); else why it cannot be told.
    pub base: Result<Base, String>,
    /// Whether the view can be written.
    pub writable: Writable,
}

/// The one table behind a view's asked columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    pub table: TableName,
    /// The base column behind each asked view column, in the asked order.
    pub columns: Vec<String>,
    /// Whether an index on the base table starts with the column behind the status column.
    pub status_indexed: bool,
    /// Whether one starts with the columns behind the status and the candidate time column
    /// (when that was asked).
    pub candidate_indexed: bool,
}

/// Whether a view can be written, as the database judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writable {
    Yes,
    /// Not at all.
    No,
    /// The view can be, but not these columns of it (derived: `CASE`, a cast, a join's).
    NotColumns(Vec<String>),
}

impl Store {
    /// What `[jobs] table` is. For a view: the base table's columns behind `columns` (the
    /// status column first, then the candidate time column) and the indexes on them, and
    /// whether the view can be written. Catalogue reads only; `validate --connect` asks.
    pub async fn relation(&self, columns: &[&str]) -> Result<Relation, StoreError> {
        let d = self.database.dialect;
        let kind = self
            .fetch(
                "reading what kind of relation the table is",
                &self.queries.relation_kind(),
                |row| row.text(0, "relation kind"),
            )
            .await?
            .into_iter()
            .flatten()
            .next()
            .unwrap_or_default();
        let materialized = kind == "m";
        if !(materialized || kind == "v" || kind.eq_ignore_ascii_case("view")) {
            return Ok(Relation::Table);
        }
        let rows = self
            .fetch(
                "reading whether the view can be written",
                &self.queries.view_updatable(),
                |row| {
                    Ok((
                        row.text(0, "view column")?,
                        row.text(1, "view updatable")?,
                        row.text(2, "column updatable")?,
                    ))
                },
            )
            .await?;
        let yes = |v: &Option<String>| {
            v.as_deref()
                .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "yes" | "true" | "t"))
        };
        let writable = if materialized || !rows.iter().any(|(_, view, _)| yes(view)) {
            Writable::No
        } else {
            let fixed: Vec<String> = rows
                .iter()
                .filter(|(_, _, column)| !yes(column))
                .filter_map(|(c, _, _)| c.clone())
                .collect();
            if fixed.is_empty() {
                Writable::Yes
            } else {
                Writable::NotColumns(fixed)
            }
        };
        let base = match self.queries.view_plan(columns) {
            _ if materialized => Err("a materialized view holds its own rows".into()),
            None => Err(match d {
                crate::core::sql::Dialect::MySql => {
                    "MySQL/MariaDB does not say which table's column each view column is".into()
                }
                _ => "SQLite does not say which table's column each view column is".into(),
            }),
            Some(sql) => {
                let lines: Vec<String> = self
                    .fetch("reading how the view is planned", &sql, |row| {
                        row.text(0, "plan line")
                    })
                    .await?
                    .into_iter()
                    .flatten()
                    .collect();
                match plan_columns(&lines, columns.len()) {
                    Some((table, base_columns)) => {
                        let status_indexed = self
                            .has_index(Some(super::queries::base_index(
                                d,
                                &table,
                                &base_columns[..1],
                            )))
                            .await?;
                        let candidate_indexed = base_columns.len() > 1
                            && self
                                .has_index(Some(super::queries::base_index(
                                    d,
                                    &table,
                                    &base_columns[..2],
                                )))
                                .await?;
                        Ok(Base {
                            table,
                            columns: base_columns,
                            status_indexed,
                            candidate_indexed,
                        })
                    }
                    None => Err(
                        "its columns are not plain columns of one table (a join's, or computed)"
                            .into(),
                    ),
                }
            }
        };
        Ok(Relation::View(ViewInfo {
            materialized,
            base,
            writable,
        }))
    }
}

/// From PostgreSQL's `EXPLAIN (VERBOSE, COSTS OFF)` of `SELECT <n columns> FROM <view>`:
/// the table and its column behind each, when the top node outputs each as a plain
/// `alias.column` and every alias is the same scan of one table. Pure.
pub(super) fn plan_columns(plan: &[String], n: usize) -> Option<(TableName, Vec<String>)> {
    let output = plan
        .iter()
        .find_map(|l| l.trim_start().strip_prefix("Output: "))?;
    let items = split_top(output);
    if items.len() != n {
        return None;
    }
    let mut alias = None;
    let mut columns = Vec::new();
    for item in items {
        let (names, rest) = idents(item.trim());
        let [a, c] = names.as_slice() else {
            return None;
        };
        if !rest.is_empty() || alias.as_ref().is_some_and(|x| x != a) {
            return None;
        }
        alias = Some(a.clone());
        columns.push(c.clone());
    }
    let alias = alias?;
    const SCANS: [&str; 13] = [
        "Seq Scan",
        "Parallel Seq Scan",
        "Index Scan",
        "Index Scan Backward",
        "Parallel Index Scan",
        "Index Only Scan",
        "Index Only Scan Backward",
        "Parallel Index Only Scan",
        "Bitmap Heap Scan",
        "Parallel Bitmap Heap Scan",
        "Tid Scan",
        "Tid Range Scan",
        "Sample Scan",
    ];
    for line in plan {
        let line = line.trim_start();
        let line = line.strip_prefix("->").unwrap_or(line).trim_start();
        let Some((node, rest)) = line.split_once(" on ").or_else(|| {
            // `Index Scan using <index> on <table>`
            let (node, after) = line.split_once(" using ")?;
            let (_, rest) = after.split_once(" on ")?;
            Some((node, rest))
        }) else {
            continue;
        };
        let node = node.split(" using ").next().unwrap_or(node);
        if !SCANS.contains(&node) {
            continue;
        }
        let (names, rest) = idents(rest);
        let table = match names.as_slice() {
            [schema, name] => TableName {
                schema: Some(schema.clone()),
                name: name.clone(),
            },
            [name] => TableName {
                schema: None,
                name: name.clone(),
            },
            _ => continue,
        };
        let (scan_alias, _) = idents(rest.trim_start());
        let scan_alias = scan_alias
            .first()
            .cloned()
            .unwrap_or_else(|| table.name.clone());
        if scan_alias == alias {
            return Some((table, columns));
        }
    }
    None
}

/// `a, f(b, c), "x, y"` as its top-level items.
fn split_top(text: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, None, 0);
    for (i, c) in text.char_indices() {
        match (quoted, c) {
            (Some(q), c) if c == q => quoted = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quoted = Some(c),
            (None, '(' | '[') => depth += 1,
            (None, ')' | ']') => depth -= 1,
            (None, ',') if depth == 0 => {
                items.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&text[start..]);
    items
}

/// The dotted identifiers at the start of `text` (`public.jobs`, `"My Table".x`), unquoted,
/// and what follows them.
fn idents(text: &str) -> (Vec<String>, &str) {
    let mut names = Vec::new();
    let mut rest = text;
    loop {
        let mut name = String::new();
        if let Some(r) = rest.strip_prefix('"') {
            let mut chars = r.char_indices().peekable();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '"' {
                    if chars.peek().map(|(_, c)| *c) == Some('"') {
                        chars.next();
                        name.push('"');
                        continue;
                    }
                    end = Some(i + 1);
                    break;
                }
                name.push(c);
            }
            let Some(end) = end else {
                return (names, text);
            };
            rest = &r[end..];
        } else {
            let len = rest
                .char_indices()
                .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == '$'))
                .map_or(rest.len(), |(i, _)| i);
            if len == 0 || rest.starts_with(|c: char| c.is_ascii_digit() || c == '$') {
                return (names, rest);
            }
            name.push_str(&rest[..len]);
            rest = &rest[len..];
        }
        names.push(name);
        match rest.strip_prefix('.') {
            Some(r) => rest = r,
            None => return (names, rest),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_plan_names_the_table_behind_plain_columns_only() {
        let plan = |text: &str| text.lines().map(str::to_string).collect::<Vec<_>>();
        let table = |schema: &str, name: &str| TableName {
            schema: Some(schema.into()),
            name: name.into(),
        };
        let cols = |c: &[&str]| c.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        // One table, an alias, a renamed column.
        assert_eq!(
            plan_columns(
                &plan("Seq Scan on public.jobs_base j\n  Output: j.state, j.updated_at\n  Filter: (j.archived = 0)"),
                2
            ),
            Some((table("public", "jobs_base"), cols(&["state", "updated_at"])))
        );
        // Quoted names, an index scan, no alias.
        assert_eq!(
            plan_columns(
                &plan(
                    "Index Scan using \"Jobs_idx\" on app.\"Jobs\"\n  Output: \"Jobs\".\"State\""
                ),
                1
            ),
            Some((table("app", "Jobs"), cols(&["State"])))
        );
        // A join: both columns from the jobs side.
        let join = "Hash Join\n  Output: j.status, j.updated_at\n  Hash Cond: (j.worker = w.id)\n  ->  Seq Scan on public.jobs j\n        Output: j.id, j.status, j.updated_at, j.worker\n  ->  Hash\n        Output: w.id\n        ->  Seq Scan on public.workers w\n              Output: w.id";
        assert_eq!(
            plan_columns(&plan(join), 2),
            Some((table("public", "jobs"), cols(&["status", "updated_at"])))
        );
        // Computed, or from two tables: cannot tell.
        for (text, n) in [
            ("Seq Scan on public.jobs j\n  Output: CASE WHEN (j.locked_at IS NOT NULL) THEN 'running'::text ELSE 'queued'::text END, j.run_at", 2),
            ("Hash Join\n  Output: j.status, w.last_beat\n  ->  Seq Scan on public.jobs j\n  ->  Hash\n        ->  Seq Scan on public.workers w", 2),
            ("Subquery Scan on v\n  Output: v.status\n  ->  HashAggregate", 1),
            ("Seq Scan on public.jobs j\n  Output: (j.status)::text", 1),
        ] {
            assert_eq!(plan_columns(&plan(text), n), None, "{text}");
        }
    }

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

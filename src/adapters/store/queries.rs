//! The SQL text of every statement: built once from the config and the column types, pure,
//! so the exact text is tested per dialect without a server.

use std::collections::HashMap;

use super::*;
use crate::core::job::WorkerSeen;
use crate::core::vocabulary::Workers;
use crate::core::writes::{Filled, Shape};

/// The SQL of every statement jobwarden runs, built once from the config and the column
/// types. Pure, so the exact text is tested without a server.
#[derive(Debug, Clone)]
pub struct Queries {
    pub(super) dialect: Dialect,
    pub(super) jobs: Jobs,
    pub(super) finished_kind: TimeKind,
    /// Column name to SQL type.
    pub(super) types: HashMap<String, String>,
    /// How `finished_at` is read, and so written.
    pub(super) finished: Reading,
    /// The zone naive timestamps are written in: `{now}` alone in a naive `[writes]` column.
    pub(super) naive_zone: Zone,
    /// `SELECT` of the active rows.
    pub scan: String,
    /// The two-tier scan's first read (see `core::candidates`): the scan's columns, but
    /// `created_at` (the memory keeps it), `phase` and `attempts` as NULL, the progress value
    /// as a digest where the dialect has one, and each time's text only where its number is
    /// NULL (a text column, a JSON path, a value the database cannot convert), so that its
    /// times read exactly as the scan's. With the heartbeat alone besides id and status, an
    /// index on `(status, <heartbeat>)` holds every column it reads.
    pub light: String,
    /// MySQL/MariaDB: the light read naming the advised index (see
    /// [`Queries::with_light_index`]), when the catalogue found it.
    pub light_forced: Option<String>,
    /// The light read's column expressions.
    pub(super) light_columns: Vec<String>,
    /// Where each of the scan's columns is in the light read's row (`None`: not read, NULL).
    pub(super) light_at: [Option<usize>; col::COUNT],
    /// Each column expression of the scan, with the config key it comes from.
    pub(super) scan_columns: Vec<(&'static str, String)>,
    /// `SELECT` of every `[workers]` row: id, heartbeat (number, text), host, pid.
    pub workers: Option<String>,
    /// What the summary read is made of (see [`Queries::summary_read`]). `None` where a
    /// summary scan cannot stand for the light read.
    pub(super) summary: Option<SummarySql>,
}

/// The parts of the summary read (see [`Queries::summary_read`]).
#[derive(Debug, Clone)]
pub(super) struct SummarySql {
    /// The sum of the hashes of each row's id (and `status_since`, pid, host and worker
    /// where configured), per group of rows, as text.
    hash: String,
    /// The heartbeat: its column expression, its kind, and the conditions that keep its
    /// finite values, seconds and (for a number) milliseconds apart (empty: every value is
    /// finite).
    heartbeat: Option<(String, TimeKind, [Option<String>; 2])>,
}

/// The summary read's first columns, before the light read's: the part a row belongs to
/// (see [`part`]), the database clock, a group's count and hash sum, and the heartbeat's
/// newest and oldest readings (seconds, then milliseconds, each).
pub(super) const SUMMARY_PREFIX: usize = 8;

/// What a row of the summary read is: its first column.
pub(super) mod part {
    /// The database clock, once.
    pub const CLOCK: i64 = 0;
    /// One configured status word's count, hash sum and heartbeat extremes.
    pub const GROUP: i64 = 1;
    /// An active row that could be a candidate by its heartbeat, read lightly.
    pub const SUSPECT: i64 = 2;
}

/// Where the summary read's rows due by heartbeat start (see [`Queries::summary_read`]):
/// seconds after the database clock, in the heartbeat column's own reading.
pub(super) struct Due<'a> {
    /// Past which a row is ahead of the clock.
    pub ahead: f64,
    /// Per group of status words, at or before which a row is due.
    pub groups: &'a [(Vec<&'a str>, f64)],
}

/// Whether a PostgreSQL column type is an integer's.
fn integer_type(spelled: &str) -> bool {
    matches!(
        spelled.to_ascii_lowercase().as_str(),
        "smallint" | "integer" | "bigint"
    )
}

/// Heartbeat numbers at or above this are milliseconds (as `core::job` reads them).
const MILLIS: &str = "1e11";

/// How a statement carries its values: as bound parameters, or inline as escaped literals
/// (for `EXPLAIN`, which not every database prepares with parameters).
pub(super) enum Values {
    Bound(Vec<Option<String>>),
    Inline,
}

impl Values {
    /// The SQL text standing for one more value.
    pub(super) fn add(&mut self, d: Dialect, value: Option<String>) -> String {
        match self {
            Values::Bound(params) => {
                params.push(value);
                d.param(params.len())
            }
            Values::Inline => value.map_or_else(|| "NULL".to_string(), |v| d.literal(&v)),
        }
    }

    pub(super) fn into_params(self) -> Vec<Option<String>> {
        match self {
            Values::Bound(params) => params,
            Values::Inline => Vec::new(),
        }
    }
}

/// What values a table's id column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IdKind {
    Uuid,
    Number,
    Text,
}

impl Queries {
    /// Builds every statement for a table whose column types are `types` (name to SQL type).
    pub fn new(dialect: Dialect, jobs: &Jobs, types: &HashMap<String, String>) -> Queries {
        let kind = |f: &Field| -> TimeKind {
            if !f.is_plain() {
                return TimeKind::Text;
            }
            types
                .get(&f.column)
                .map_or(TimeKind::Text, |t| TimeKind::from_sql_type(t))
        };
        let d = dialect;
        let text_or_null = |f: &Option<Field>| match f {
            Some(f) => d.value_text(f),
            None => d.null_text().to_string(),
        };
        let stamp = |f: &Option<Field>| match f {
            Some(f) => (d.epoch(f, kind(f)), d.value_text(f)),
            None => (d.null_double().to_string(), d.null_text().to_string()),
        };
        let (hb_num, hb_txt) = stamp(&jobs.heartbeat_at);
        let (since_num, since_txt) = stamp(&jobs.status_since);
        let scan_columns = vec![
            ("jobs.id", d.value_text(&jobs.id)),
            ("jobs.status", d.value_text(&jobs.status)),
            (
                "jobs.created_at",
                d.epoch(&jobs.created_at, kind(&jobs.created_at)),
            ),
            ("jobs.created_at", d.value_text(&jobs.created_at)),
            ("jobs.heartbeat_at", hb_num),
            ("jobs.heartbeat_at", hb_txt),
            ("jobs.progress", text_or_null(&jobs.progress)),
            ("jobs.phase", text_or_null(&jobs.phase)),
            ("jobs.parent_id", text_or_null(&jobs.parent_id)),
            ("jobs.pid", text_or_null(&jobs.pid)),
            ("jobs.host", text_or_null(&jobs.host)),
            ("jobs.attempts", text_or_null(&jobs.attempts)),
            ("jobs.status_since", since_num),
            ("jobs.status_since", since_txt),
            ("jobs.worker", text_or_null(&jobs.worker)),
        ];
        let full: Vec<String> = scan_columns.iter().map(|(_, c)| c.clone()).collect();
        let scan = Self::active_select(d, jobs, &full, "");
        let (light_exprs, light_at) = Self::light_columns(d, jobs, &full);
        let light = Self::active_select(d, jobs, &light_exprs, "");
        let light_columns = light_exprs;
        let heartbeat_kind = jobs.heartbeat_at.as_ref().map(kind);
        let summary = Self::summary_sql(d, jobs, types, &full, heartbeat_kind);
        Queries {
            dialect,
            jobs: jobs.clone(),
            finished_kind: jobs.finished_at.as_ref().map_or(TimeKind::Native, kind),
            types: types.clone(),
            finished: Reading::default(),
            naive_zone: Zone::Utc,
            scan,
            light,
            light_forced: None,
            light_columns,
            light_at,
            scan_columns,
            workers: None,
            summary,
        }
    }

    /// What the summary read is made of, where a summary can stand for the light read: on
    /// PostgreSQL and MariaDB (SQLite has no hash function), without progress, `[workers]` or
    /// a parent column (what they add to the candidates is not in the summary), and with a
    /// heartbeat that is a plain column of a native time or a number, or none (a text or
    /// JSON heartbeat is parsed by jobwarden, so neither its extremes nor its bounds are the
    /// database's to take).
    fn summary_sql(
        d: Dialect,
        jobs: &Jobs,
        types: &HashMap<String, String>,
        full: &[String],
        heartbeat: Option<TimeKind>,
    ) -> Option<SummarySql> {
        let plain = jobs.heartbeat_at.as_ref().is_none_or(Field::is_plain);
        let time = matches!(heartbeat, None | Some(TimeKind::Native | TimeKind::Number));
        if d == Dialect::Sqlite
            || jobs.progress.is_some()
            || jobs.workers.is_some()
            || jobs.parent_id.is_some()
            || !plain
            || !time
        {
            return None;
        }
        // Each row's values joined by a unit separator, NULL as a record separator (neither
        // is in a job's id, status word, time, pid or host).
        // On MariaDB as literals: `CHAR(31 USING utf8mb4)` is evaluated per row, and with a
        // `CAST` of each value it cost as much again as the count.
        let (unit, null) = match d {
            Dialect::Postgres => ("chr(31)", "chr(30)"),
            _ => ("_utf8mb4 0x1F", "_utf8mb4 0x1E"),
        };
        // The id as a number where it is an integer (cheaper to hash than its text), and the
        // status word on MariaDB, whose grouping folds case.
        let integer_id =
            d == Dialect::Postgres && types.get(&jobs.id.column).is_some_and(|t| integer_type(t));
        // MariaDB's CONCAT takes the id and status word as they are.
        let mut parts = match d {
            Dialect::MySql => vec![d.value(&jobs.id), d.value(&jobs.status)],
            _ => vec![full[col::ID].clone()],
        };
        for (field, c) in [
            (&jobs.status_since, col::STATUS_SINCE_TXT),
            (&jobs.pid, col::PID),
            (&jobs.host, col::HOST),
            (&jobs.worker, col::WORKER),
        ] {
            if field.is_some() {
                parts.push(format!("COALESCE({}, {null})", full[c]));
            }
        }
        let hash = match d {
            Dialect::Postgres if integer_id && parts.len() == 1 => format!(
                "CAST(COALESCE(SUM(hashint8extended(CAST({} AS bigint), 0)), 0) AS text)",
                d.value(&jobs.id)
            ),
            Dialect::Postgres => format!(
                "CAST(COALESCE(SUM(hashtextextended({}, 0)), 0) AS text)",
                parts.join(&format!(" || {unit} || "))
            ),
            _ => {
                let key = format!("CONCAT({})", parts.join(&format!(", {unit}, ")));
                // A second CRC32 would double the cost; the lengths' sum is nearly free.
                format!(
                    "CONCAT(COALESCE(SUM(CRC32({key})), 0), ':', COALESCE(SUM(LENGTH({key})), 0))"
                )
            }
        };
        let heartbeat = match (&jobs.heartbeat_at, heartbeat) {
            (Some(field), Some(kind)) => {
                let c = d.value(field);
                // The finite values of the column, seconds and milliseconds apart for a number.
                let finite = match (d, kind) {
                    (_, TimeKind::Number) => [
                        Some(format!("{c} > -1e300 AND {c} < {MILLIS}")),
                        Some(format!("{c} >= {MILLIS} AND {c} < 1e300")),
                    ],
                    (Dialect::Postgres, _) => [
                        Some(format!("{c} > '-infinity' AND {c} < 'infinity'")),
                        None,
                    ],
                    // Every value of a MariaDB time is finite. No condition at all: one
                    // (even `IS NOT NULL`) keeps MariaDB from reading MIN and MAX off the
                    // index's ends.
                    _ => [Some(String::new()), None],
                };
                Some((c, kind, finite))
            }
            _ => None,
        };
        Some(SummarySql { hash, heartbeat })
    }

    /// The summary read: one statement (one round trip) whose rows are the database clock
    /// ([`part::CLOCK`]); per configured active status word its count, hash sum and the
    /// heartbeat's newest and oldest finite readings ([`part::GROUP`]); and, with `due`, the
    /// light read of the active rows that could be candidates by their heartbeat
    /// ([`part::SUSPECT`]). Columns: the [`SUMMARY_PREFIX`], then the light read's. `None`
    /// where no summary stands for the light read.
    ///
    /// Each word is a part of its own, one index range, rather than a `GROUP BY` over the
    /// active words: grouping compared every row's status word with its group's, which cost
    /// PostgreSQL a third of the read.
    ///
    /// The extremes are taken of the column itself and converted once (converting every
    /// row's value costs PostgreSQL about seven times the index scan: its `extract` is
    /// numeric). With `endpoints` (an index on `(status, <heartbeat>)` is there) each is read
    /// from the index's end (the oldest for running words only), a probe where an aggregate
    /// would read every row's value; without, they are aggregates of the word's rows.
    ///
    /// The suspects are read in branches that an index on `(status, <heartbeat>)` serves each
    /// as a range (an `OR` of them it would not): a NULL heartbeat, one that is not finite,
    /// one ahead of the clock, and per group of status words in `due` one at or before the
    /// group's bound; a row can come in two. `due`: the seconds after the database clock
    /// past which a row is ahead of it, then per group of status words the seconds after it
    /// at or before which a row is due, in the column's own reading (see
    /// `Store::summary_read`). They are written into the text: they stay the same from scan
    /// to scan, so the statement is prepared and planned once (as bound parameters,
    /// PostgreSQL planned it anew at every scan, in about as long as it ran).
    pub(super) fn summary_read(&self, due: Option<Due<'_>>, endpoints: bool) -> Option<String> {
        let sql = self.summary.as_ref()?;
        let d = self.dialect;
        let j = &self.jobs;
        let table = d.table(&j.table);
        let scope = Self::scope(d, j);
        let status = d.quote(&j.status.column);
        let light = self.light_columns.len();
        let status_at = self.light_at[col::STATUS].unwrap_or(0);
        let (null_int, null_float, null_text) = match d {
            Dialect::Postgres => ("NULL::bigint", "NULL::float8", "NULL::text"),
            _ => ("NULL", "NULL", "NULL"),
        };
        // The prefix's columns of one part.
        let prefix = |part: i64, values: [&str; 7]| -> String {
            std::iter::once(part.to_string())
                .chain(values.iter().map(|v| v.to_string()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // Each light column's NULL, of its type (PostgreSQL matches the types of a union's
        // parts two by two: an untyped NULL would be text by the second).
        let numbers = [col::CREATED_NUM, col::HEARTBEAT_NUM, col::STATUS_SINCE_NUM];
        let mut light_nulls = vec![null_text; light];
        for c in numbers {
            if let Some(place) = self.light_at[c] {
                light_nulls[place] = null_float;
            }
        }
        // The light columns of a row that is not a job's: NULL but the status word.
        let row = |part: i64, values: [&str; 7], word: Option<&str>| -> String {
            let light = (0..light).map(|i| match word {
                Some(w) if i == status_at => w.to_string(),
                _ => light_nulls[i].to_string(),
            });
            std::iter::once(prefix(part, values))
                .chain(light)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let now = d.now_expr();
        let clock = format!(
            "SELECT {}",
            row(
                part::CLOCK,
                [now, null_int, null_text, null_float, null_float, null_float, null_float],
                None
            )
        );
        let mut parts = vec![clock];
        for word in j.statuses.active() {
            // The word alone (with `where`): one index range per word, where a `GROUP BY` of
            // the `IN` list compared every row's status with its group's (a third of the
            // read on PostgreSQL), and a condition on the status column beside the equality
            // keeps MariaDB from reading the index's end.
            let mut of_word = format!("{status} = {}", d.literal(word));
            if let Some(w) = &j.where_sql {
                of_word.push_str(&format!(" AND ({w})"));
            }
            let running = j.statuses.class_of(word) == Some(StatusClass::Running);
            // The heartbeat's newest (or, of a running word, oldest) finite value among the
            // word's rows: with `endpoints` a probe of the index's end, else an aggregate.
            let extreme = |agg: &str, p: &Option<String>| -> String {
                let (Some((c, kind, _)), Some(p)) = (&sql.heartbeat, p.as_deref()) else {
                    return null_float.to_string();
                };
                if agg == "MIN" && !running {
                    return null_float.to_string();
                }
                let value = match (endpoints, p) {
                    (true, "") => format!("(SELECT {agg}({c}) FROM {table} WHERE {of_word})"),
                    (true, p) => {
                        format!("(SELECT {agg}({c}) FROM {table} WHERE {of_word} AND {p})")
                    }
                    (false, "") => format!("{agg}({c})"),
                    (false, p) => format!("{agg}(CASE WHEN {p} THEN {c} END)"),
                };
                d.epoch_of(&value, *kind)
            };
            let finite = match &sql.heartbeat {
                Some((_, _, finite)) => finite.clone(),
                None => [None, None],
            };
            let e = [
                extreme("MAX", &finite[0]),
                extreme("MAX", &finite[1]),
                extreme("MIN", &finite[0]),
                extreme("MIN", &finite[1]),
            ];
            parts.push(format!(
                "SELECT {} FROM {table} WHERE {of_word}",
                row(
                    part::GROUP,
                    [null_float, "COUNT(*)", &sql.hash, &e[0], &e[1], &e[2], &e[3]],
                    Some(&d.literal(word))
                )
            ));
        }
        if let (Some(Due { ahead, groups: due }), Some(field)) = (due, &j.heartbeat_at) {
            let (c, kind, _) = sql.heartbeat.as_ref()?;
            let spelled = self.types.get(&field.column).map(String::as_str);
            let integer = spelled.is_some_and(integer_type);
            // The database clock plus `seconds`, as a value of the column's type (floored
            // for an integer column: `c <= x` is `c <= floor(x)` there, and `c > x` is
            // `c > floor(x)`), times `scale` for a number.
            let at = |seconds: f64, scale: &str| -> String {
                let epoch = format!("({now} + ({seconds:.6}))");
                match (d, kind) {
                    (Dialect::Postgres, TimeKind::Native) => format!(
                        "CAST(to_timestamp({epoch}) AS {})",
                        spelled.unwrap_or("timestamptz")
                    ),
                    (_, TimeKind::Native) => format!("FROM_UNIXTIME({epoch})"),
                    (Dialect::Postgres, _) if integer => format!(
                        "CAST(floor({epoch}{scale}) AS {})",
                        spelled.unwrap_or("bigint")
                    ),
                    _ => format!("{epoch}{scale}"),
                }
            };
            let mut conditions = vec![format!("{c} IS NULL")];
            let number = *kind == TimeKind::Number;
            match (d, number) {
                (Dialect::Postgres, false) => conditions.push(format!("{c} = '-infinity'")),
                (Dialect::Postgres, true) if integer => {}
                (_, true) => conditions.push(format!("{c} <= -1e300")),
                _ => {}
            }
            if number {
                conditions.push(format!("{c} > {} AND {c} < {MILLIS}", at(ahead, "")));
                conditions.push(format!("{c} > {}", at(ahead, " * 1000")));
            } else {
                conditions.push(format!("{c} > {}", at(ahead, "")));
            }
            for (words, bound) in due {
                let words = format!("{status} IN ({})", d.literal_list(words.iter().copied()));
                conditions.push(format!("{words} AND {c} <= {}", at(*bound, "")));
                if number {
                    conditions.push(format!(
                        "{words} AND {c} >= {MILLIS} AND {c} <= {}",
                        at(*bound, " * 1000")
                    ));
                }
            }
            let select = format!(
                "SELECT {}, {} FROM {table} WHERE {scope}",
                prefix(
                    part::SUSPECT,
                    [
                        null_float, null_int, null_text, null_float, null_float, null_float,
                        null_float
                    ],
                ),
                self.light_columns.join(", ")
            );
            parts.extend(
                conditions
                    .iter()
                    .map(|cond| format!("{select} AND ({cond})")),
            );
        }
        Some(parts.join(" UNION ALL "))
    }

    /// The statements, with the read of `[workers]` (whose table's column types are `types`).
    pub fn with_workers(mut self, types: &HashMap<String, String>) -> Queries {
        let d = self.dialect;
        self.workers = self.jobs.workers.as_ref().map(|w| {
            let kind = if w.heartbeat_at.is_plain() {
                types
                    .get(&w.heartbeat_at.column)
                    .map_or(TimeKind::Text, |t| TimeKind::from_sql_type(t))
            } else {
                TimeKind::Text
            };
            let text_or_null = |f: &Option<Field>| match f {
                Some(f) => d.value_text(f),
                None => d.null_text().to_string(),
            };
            format!(
                "SELECT {}, {}, {}, {}, {} FROM {}",
                d.value_text(&w.id),
                d.epoch(&w.heartbeat_at, kind),
                d.value_text(&w.heartbeat_at),
                text_or_null(&w.host),
                text_or_null(&w.pid),
                d.table(&w.table)
            )
        });
        self
    }

    /// The light read's column expressions, and where each of the scan's columns is among
    /// them: only what the config names, never `created_at`, `phase` or `attempts`.
    fn light_columns(
        d: Dialect,
        jobs: &Jobs,
        full: &[String],
    ) -> (Vec<String>, [Option<usize>; col::COUNT]) {
        let mut read: Vec<(usize, String)> = vec![
            (col::ID, full[col::ID].clone()),
            (col::STATUS, full[col::STATUS].clone()),
        ];
        for (field, num, txt) in [
            (&jobs.heartbeat_at, col::HEARTBEAT_NUM, col::HEARTBEAT_TXT),
            (
                &jobs.status_since,
                col::STATUS_SINCE_NUM,
                col::STATUS_SINCE_TXT,
            ),
        ] {
            if field.is_some() {
                read.push((num, full[num].clone()));
                let text = format!("CASE WHEN {} IS NULL THEN {} END", full[num], full[txt]);
                read.push((txt, text));
            }
        }
        if jobs.progress.is_some() {
            let digest = match d {
                Dialect::Postgres => format!("md5({})", full[col::PROGRESS]),
                Dialect::MySql => format!("MD5({})", full[col::PROGRESS]),
                Dialect::Sqlite => full[col::PROGRESS].clone(),
            };
            read.push((col::PROGRESS, digest));
        }
        for (field, c) in [
            (&jobs.parent_id, col::PARENT),
            (&jobs.pid, col::PID),
            (&jobs.host, col::HOST),
            (&jobs.worker, col::WORKER),
        ] {
            if field.is_some() {
                read.push((c, full[c].clone()));
            }
        }
        let mut at = [None; col::COUNT];
        for (place, (c, _)) in read.iter().enumerate() {
            at[*c] = Some(place);
        }
        (read.into_iter().map(|(_, e)| e).collect(), at)
    }

    /// The scan's columns of the active rows among `ids`, the second read of a two-tier
    /// scan. `None` without ids.
    pub fn active_by_ids(&self, ids: &[&str]) -> Option<String> {
        if ids.is_empty() {
            return None;
        }
        let d = self.dialect;
        let condition = format!(
            "{} IN ({}) AND {} IN ({})",
            d.quote(&self.jobs.id.column),
            d.literal_list(ids.iter().copied()),
            d.quote(&self.jobs.status.column),
            d.literal_list(self.jobs.statuses.active())
        );
        Some(self.rows_where(&[], &condition))
    }

    /// The statements that find which part of a rejected scan is at fault, in order, each with
    /// the config key it tests: the table alone, then the status words (one by one), then
    /// `where`, then each column expression. `None` as the key: the table itself.
    pub fn probes(&self) -> Vec<(Option<String>, String)> {
        let d = self.dialect;
        let j = &self.jobs;
        let table = d.table(&j.table);
        let status = d.quote(&j.status.column);
        let mut out = vec![(None, format!("SELECT 1 FROM {table} LIMIT 1"))];
        for class in [StatusClass::Pending, StatusClass::Running] {
            for word in j.statuses.words(class) {
                out.push((
                    Some(format!("jobs.statuses.{}", class.as_str())),
                    format!(
                        "SELECT 1 FROM {table} WHERE {status} = {} LIMIT 1",
                        d.literal(word)
                    ),
                ));
            }
        }
        let active = format!("{status} IN ({})", d.literal_list(j.statuses.active()));
        if let Some(w) = &j.where_sql {
            out.push((
                Some("jobs.where".into()),
                format!("SELECT 1 FROM {table} WHERE {active} AND ({w}) LIMIT 1"),
            ));
        }
        let scope = Self::scope(d, j);
        for (key, expr) in &self.scan_columns {
            out.push((
                Some((*key).to_string()),
                format!("SELECT {expr} FROM {table} WHERE {scope}"),
            ));
        }
        out
    }

    /// The scan's columns for one row by id, whatever its status (within `where`): the fresh
    /// read a manual action checks the row against.
    pub fn one(&self, id: &str) -> String {
        self.one_with(id, &[])
    }

    /// [`Queries::one`] with `extra` column expressions after the scan's.
    pub(super) fn one_with(&self, id: &str, extra: &[String]) -> String {
        let d = self.dialect;
        let condition = format!("{} = {}", d.quote(&self.jobs.id.column), d.literal(id));
        self.rows_where(extra, &condition)
    }

    /// `SELECT` of the scan's columns (and `extra` after them) of the rows that meet
    /// `condition` within `[jobs] where`: the pages' reads, decoded as the scan's rows are.
    pub(super) fn rows_where(&self, extra: &[String], condition: &str) -> String {
        let j = &self.jobs;
        let mut sql = format!(
            "SELECT {} FROM {} WHERE {condition}",
            self.scan_columns
                .iter()
                .map(|(_, c)| c.as_str())
                .chain(extra.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(", "),
            self.dialect.table(&j.table),
        );
        if let Some(w) = &j.where_sql {
            sql.push_str(&format!(" AND ({w})"));
        }
        sql
    }

    /// The scan's `SELECT`, limited to `n` rows (`validate --connect`).
    pub fn scan_limited(&self, n: usize) -> String {
        format!("{} LIMIT {n}", self.scan)
    }

    /// The same statements, with `finished_at` read (and written) as `finished` says.
    pub fn with_finished(mut self, finished: Reading) -> Queries {
        self.finished = finished;
        self
    }

    /// The statements, writing `{now}` into a naive `[writes]` column as a reading in `zone`.
    pub fn with_naive_zone(mut self, zone: Zone) -> Queries {
        self.naive_zone = zone;
        self
    }

    /// `SELECT <columns> FROM <table> <hint> WHERE <scope>`: the active rows.
    fn active_select(d: Dialect, jobs: &Jobs, columns: &[String], hint: &str) -> String {
        format!(
            "SELECT {} FROM {}{hint} WHERE {}",
            columns.join(", "),
            d.table(&jobs.table),
            Self::scope(d, jobs)
        )
    }

    /// On MySQL/MariaDB, a light read that names the advised index (`FORCE INDEX`), found
    /// in the catalogue as `index`. Beside an index on `status` alone, MariaDB may take that
    /// one for the prepared light read although `EXPLAIN` shows the advised one, and then
    /// fetch every active row from the table: 700 ms instead of 7 at 1,000,000 rows
    /// (BENCHMARKS.md, "Issue 23's matrix"). PostgreSQL and SQLite choose well and take no
    /// hint; neither does a view (the catalogue lists no index of a view, so none is named).
    pub fn with_light_index(mut self, index: Option<&str>) -> Self {
        let d = self.dialect;
        self.light_forced = match index {
            Some(name) if d == Dialect::MySql => Some(Self::active_select(
                d,
                &self.jobs,
                &self.light_columns,
                &format!(" FORCE INDEX ({})", d.quote(name)),
            )),
            _ => None,
        };
        self
    }

    /// `status IN (<active words>) AND (<where>)`.
    pub(super) fn scope(d: Dialect, jobs: &Jobs) -> String {
        let mut scope = format!(
            "{} IN ({})",
            d.quote(&jobs.status.column),
            d.literal_list(jobs.statuses.active())
        );
        if let Some(w) = &jobs.where_sql {
            scope.push_str(&format!(" AND ({w})"));
        }
        scope
    }

    /// The parents of active rows, read by primary key (`id IN (...)`, the distinct parent
    /// ids that are not active rows themselves); `None` without `parent_id` or parents.
    pub fn parents(&self, parent_ids: &[&str]) -> Option<String> {
        let parent = self.jobs.parent_id.as_ref()?;
        if parent_ids.is_empty() {
            return None;
        }
        let d = self.dialect;
        Some(format!(
            "SELECT {}, {}, {} FROM {} WHERE {} IN ({})",
            d.value_text(&self.jobs.id),
            d.value_text(&self.jobs.status),
            d.value_text(parent),
            d.table(&self.jobs.table),
            d.quote(&self.jobs.id.column),
            d.literal_list(parent_ids.iter().copied())
        ))
    }

    /// The children of the active rows that are not active rows themselves: the rows whose
    /// parent column holds the id of an active row, found through the parent column (`parent
    /// IN (SELECT id ... active)`), which an index on it serves: one look-up per active row,
    /// not a read of the table. Children are read whatever `where` says of them, as parents
    /// are; a child outside the active rows (another status, or outside `where`) is a
    /// relative. `None` without `parent_id`.
    ///
    /// With the index on PostgreSQL the active ids are gathered first (`= ANY (ARRAY(SELECT
    /// ...))`): the planner then looks each up in the index, where for `IN (SELECT ...)` it
    /// may merge-join the whole index (a fourfold cost at 300k rows, BENCHMARKS.md). Without
    /// the index, `IN (SELECT ...)` is a hash join over one pass of the table, where `= ANY`
    /// would test the array on every row.
    pub fn children(&self, indexed: bool) -> Option<String> {
        let parent = self.jobs.parent_id.as_ref()?;
        let d = self.dialect;
        let j = &self.jobs;
        let table = d.table(&j.table);
        let scope = Self::scope(d, j);
        let active = format!("SELECT {} FROM {table} WHERE {scope}", self.id_as_parent());
        let among = match d {
            Dialect::Postgres if indexed => format!("= ANY (ARRAY({active}))"),
            _ => format!("IN ({active})"),
        };
        Some(format!(
            "SELECT {}, {}, {} FROM {table} WHERE {} {among} AND NOT COALESCE(({scope}), FALSE)",
            d.value_text(&j.id),
            d.value_text(&j.status),
            d.value_text(parent),
            d.value(parent),
        ))
    }

    /// The id column as the parent column's values, for `parent IN (SELECT <this> ...)`.
    /// PostgreSQL compares only like types: an id of another type than a plain parent column
    /// is cast to it through its text (as a literal id would be), and a JSON path's text is
    /// compared with the id's text. The parent side stays bare, so its index serves.
    fn id_as_parent(&self) -> String {
        let d = self.dialect;
        let id = d.quote(&self.jobs.id.column);
        let Some(parent) = &self.jobs.parent_id else {
            return id;
        };
        if d != Dialect::Postgres {
            return id;
        }
        if !parent.is_plain() {
            return format!("({id})::text");
        }
        match (
            self.types.get(&parent.column),
            self.types.get(&self.jobs.id.column),
        ) {
            (Some(p), Some(i)) if !p.eq_ignore_ascii_case(i) => format!("({id})::text::{p}"),
            _ => id,
        }
    }

    /// The `CREATE INDEX` an index-served children read wants: on the parent column, or on
    /// the JSON path's expression where the dialect indexes expressions (PostgreSQL,
    /// SQLite). `None` on MySQL/MariaDB for a JSON path: there, only a generated column can
    /// be indexed.
    pub fn parent_index_advice(&self) -> Option<String> {
        let parent = self.jobs.parent_id.as_ref()?;
        let d = self.dialect;
        if !parent.is_plain() && d == Dialect::MySql {
            return None;
        }
        let mut parts = vec![self.jobs.table.name.clone(), parent.column.clone()];
        parts.extend(parent.path.iter().cloned());
        Some(create_index(
            d,
            &self.jobs.table,
            &parts.join("_"),
            &[d.value(parent)],
        ))
    }

    /// Rows per status word over the whole table (within `where`), every word the column
    /// holds: the terminal counts, and the words no class lists. MySQL's usual collations
    /// are case-insensitive, so there the words are grouped by their bytes, read as hex
    /// (`Running` and `running` are two words to jobwarden).
    pub fn status_counts(&self) -> String {
        let d = self.dialect;
        let (word, group) = match d {
            Dialect::MySql => (
                format!("HEX({})", d.value(&self.jobs.status)),
                "1".to_string(),
            ),
            _ => (
                d.value_text(&self.jobs.status),
                d.quote(&self.jobs.status.column),
            ),
        };
        let mut sql = format!("SELECT {word}, COUNT(*) FROM {}", d.table(&self.jobs.table));
        if let Some(w) = &self.jobs.where_sql {
            sql.push_str(&format!(" WHERE ({w})"));
        }
        sql.push_str(&format!(" GROUP BY {group}"));
        sql
    }

    /// The creation times of the newest `limit` rows holding one status word.
    pub fn newest_created(&self, word: &str, limit: usize) -> String {
        let d = self.dialect;
        let j = &self.jobs;
        let mut sql = format!(
            "SELECT {}, {} FROM {} WHERE {} = {}",
            d.epoch(&j.created_at, self.time_kind(&j.created_at)),
            d.value_text(&j.created_at),
            d.table(&j.table),
            d.value_text(&j.status),
            d.literal(word)
        );
        if let Some(w) = &j.where_sql {
            sql.push_str(&format!(" AND ({w})"));
        }
        sql.push_str(&format!(
            " ORDER BY {} DESC LIMIT {limit}",
            d.value(&j.created_at)
        ));
        sql
    }

    /// The status of each of these ids that the table has (artifact ids with no active row).
    pub fn lookup(&self, ids: &[&str]) -> Option<String> {
        if ids.is_empty() {
            return None;
        }
        let d = self.dialect;
        Some(format!(
            "SELECT {}, {} FROM {} WHERE {} IN ({})",
            d.value_text(&self.jobs.id),
            d.value_text(&self.jobs.status),
            d.table(&self.jobs.table),
            d.quote(&self.jobs.id.column),
            d.literal_list(ids.iter().copied())
        ))
    }

    /// Succeeded jobs that finished (or, without `finished_at`, were created) within the last
    /// `within`: id, status, and the time as epoch and text. Native and numeric columns are
    /// bounded in SQL (an index on the column makes this cheap); text columns are bounded by
    /// jobwarden after reading.
    pub fn recent_succeeded(&self, within: Duration) -> Option<String> {
        let d = self.dialect;
        let j = &self.jobs;
        if j.statuses.succeeded.is_empty() {
            return None;
        }
        let field = j.finished_at.as_ref().unwrap_or(&j.created_at);
        let kind = if field.is_plain() {
            self.time_kind(field)
        } else {
            TimeKind::Text
        };
        let col = d.value(field);
        // A naive column read in another zone than the session's is bounded a day wider in
        // SQL (no zone is more than 14 hours from UTC); the exact bound is applied after.
        let widen = match self.finished.native_zone {
            Some(z) if !z.is_utc() => 86_400,
            _ => 0,
        };
        let secs = within.as_secs() + widen;
        let bound = match (d, kind) {
            (Dialect::Postgres, TimeKind::Native) => {
                format!(" AND {col} >= now() - interval '{secs} seconds'")
            }
            (Dialect::MySql, TimeKind::Native) => {
                format!(" AND {col} >= NOW() - INTERVAL {secs} SECOND")
            }
            (Dialect::Postgres, TimeKind::Number) => {
                format!(" AND {col} >= extract(epoch from now()) - {secs}")
            }
            (Dialect::MySql, TimeKind::Number) => {
                format!(" AND {col} >= UNIX_TIMESTAMP() - {secs}")
            }
            _ => String::new(),
        };
        let mut sql = format!(
            "SELECT {}, {}, {}, {} FROM {} WHERE {} IN ({}){bound}",
            d.value_text(&j.id),
            d.value_text(&j.status),
            d.epoch(field, kind),
            d.value_text(field),
            d.table(&j.table),
            d.quote(&j.status.column),
            d.literal_list(j.statuses.succeeded.iter().map(String::as_str)),
        );
        if let Some(w) = &j.where_sql {
            sql.push_str(&format!(" AND ({w})"));
        }
        Some(sql)
    }

    pub(super) fn time_kind(&self, field: &Field) -> TimeKind {
        self.types
            .get(&field.column)
            .map_or(TimeKind::Text, |t| TimeKind::from_sql_type(t))
    }

    /// The guarded UPDATE and its bound parameters, in order. `now` (the database clock) picks
    /// the zone offset of a naive `finished_at`.
    pub fn write(&self, w: &Write, now: f64) -> (String, Vec<Option<String>>) {
        let mut values = Values::Bound(Vec::new());
        let sql = self.write_with(w, now, &mut values);
        (sql, values.into_params())
    }

    /// The guarded UPDATE with its values inline, for `EXPLAIN`.
    pub fn write_inline(&self, w: &Write, now: f64) -> String {
        self.write_with(w, now, &mut Values::Inline)
    }

    /// The guarded UPDATE with its values inline, setting only `column` (how `validate
    /// --connect` finds which value a rejected statement is about).
    pub fn write_inline_setting(&self, w: &Write, now: f64, column: &str) -> String {
        self.write_only(w, now, &mut Values::Inline, Some(column))
    }

    pub(super) fn write_with(&self, w: &Write, now: f64, params: &mut Values) -> String {
        self.write_only(w, now, params, None)
    }

    fn write_only(&self, w: &Write, now: f64, params: &mut Values, only: Option<&str>) -> String {
        let d = self.dialect;
        let j = &self.jobs;
        let next = |value: Option<String>, params: &mut Values| params.add(d, value);
        let set = |column: &str| only.is_none_or(|o| o == column);
        let mut sets = Vec::new();
        if set(&j.status.column) {
            sets.push(format!(
                "{} = {}",
                d.quote(&j.status.column),
                d.literal(&w.status_after)
            ));
        }
        if let (true, Some(a)) = (w.bump_attempts, &j.attempts) {
            if set(&a.column) {
                let a = d.quote(&a.column);
                sets.push(format!("{a} = COALESCE({a}, 0) + 1"));
            }
        }
        if w.action == Action::Fail {
            if let Some(f) = j.finished_at.as_ref().filter(|f| set(&f.column)) {
                let value = match self.finished.native_zone {
                    Some(zone) if self.finished_kind == TimeKind::Native => {
                        d.now_naive(zone.offset_at(now))
                    }
                    _ => d.now_value(self.finished_kind).to_string(),
                };
                sets.push(format!("{} = {value}", d.quote(&f.column)));
            }
            if let Some(e) = j.error.as_ref().filter(|e| set(&e.column)) {
                let reason = Filled::Value {
                    text: w.reason.clone(),
                    shape: Shape::Text,
                };
                let value = self.set_value(&e.column, reason, now, params);
                sets.push(format!("{} = {value}", d.quote(&e.column)));
            }
        }
        let fill = w.fill(now);
        for c in j.writes.of(w.action).iter().filter(|c| set(&c.column)) {
            let value = self.set_value(&c.column, c.value.fill(&fill), now, params);
            sets.push(format!("{} = {value}", d.quote(&c.column)));
        }
        let mut conds = vec![
            format!("{} = {}", d.quote(&j.id.column), d.literal(&w.job_id)),
            format!(
                "{} = {}",
                d.quote(&j.status.column),
                d.literal(&w.status_before)
            ),
        ];
        if let Some(w_sql) = &j.where_sql {
            conds.push(format!("({w_sql})"));
        }
        for (field, value) in [
            (&j.heartbeat_at, &w.guard.heartbeat),
            (&j.progress, &w.guard.progress),
            (&j.attempts, &w.guard.attempts),
            (&j.worker, &w.guard.worker),
        ] {
            if let Some(f) = field {
                let p = next(value.clone(), params);
                conds.push(d.null_safe_eq(&d.value_text(f), &p));
            }
        }
        if let (Some(workers), Some(seen)) = (&j.workers, &w.guard.worker_row) {
            conds.push(self.worker_as_read(workers, seen, params));
        }
        format!(
            "UPDATE {} SET {} WHERE {}",
            d.table(&j.table),
            sets.join(", "),
            conds.join(" AND ")
        )
    }

    /// The guarded write's condition on the job's worker (`[workers]`): its row still has the
    /// heartbeat the judgement read (compared as text, NULL-safely, as the job's own), or it
    /// is still gone. The ids compare as text, as the scan's read of the workers keys them.
    fn worker_as_read(&self, workers: &Workers, seen: &WorkerSeen, params: &mut Values) -> String {
        let d = self.dialect;
        let (id, heartbeat) = match seen {
            WorkerSeen::Gone { id } => (id, None),
            WorkerSeen::Beat { id, heartbeat } => (id, Some(heartbeat)),
        };
        let p = params.add(d, Some(id.clone()));
        let row = format!(
            "SELECT 1 FROM {} WHERE {} = {p}",
            d.table(&workers.table),
            d.value_text(&workers.id)
        );
        match heartbeat {
            None => format!("NOT EXISTS ({row})"),
            Some(text) => {
                let p = params.add(d, text.clone());
                format!(
                    "EXISTS ({row} AND {})",
                    d.null_safe_eq(&d.value_text(&workers.heartbeat_at), &p)
                )
            }
        }
    }

    /// The SQL standing for one value a write sets in `column`, its text a bound parameter
    /// (or an escaped literal for `EXPLAIN`) with the cast the column's type needs: a
    /// PostgreSQL column of any type but text gets `CAST(... AS <its type>)`; numbers are
    /// cast to numbers on MySQL and SQLite; a string (the reason) written into a JSON column
    /// is written as a JSON string. `{now}` alone is the database's now in the column's own
    /// kind (a native time, Unix seconds, or text), as `finished_at` gets it. Bytes (a
    /// pickle), and any value written into a binary column, are bound as hex text that the
    /// database decodes (`decode($1, 'hex')`, `UNHEX(?)`, `unhex(?)`).
    pub(super) fn set_value(
        &self,
        column: &str,
        value: Filled,
        now: f64,
        params: &mut Values,
    ) -> String {
        let d = self.dialect;
        // As the catalogue spells it (a quoted enum's name keeps its case), and lowercased.
        let spelled = self.types.get(column).map_or("", String::as_str);
        let sql_type = spelled.to_ascii_lowercase();
        let json_column = match d {
            Dialect::Postgres => sql_type == "json" || sql_type == "jsonb",
            Dialect::MySql => sql_type == "json",
            Dialect::Sqlite => false,
        };
        // Bytes, and any value written into a binary column (its text's UTF-8, as Celery
        // 5.7 keeps JSON in `result`), travel as hex text that the database decodes.
        let bytes = |bytes: &[u8], params: &mut Values| {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            d.from_hex(&params.add(d, Some(hex)))
        };
        let (text, shape) = match value {
            Filled::Null => return "NULL".into(),
            Filled::Bytes { bytes: b, .. } => return bytes(&b, params),
            Filled::Value { text, .. } if d.is_binary(&sql_type) => {
                return bytes(text.as_bytes(), params)
            }
            // Unknown type (no catalogue read) or JSON: the scan's time as RFC 3339 text.
            Filled::Now { text } if sql_type.is_empty() || json_column => (text, Shape::Text),
            Filled::Now { .. } => match TimeKind::from_sql_type(&sql_type) {
                TimeKind::Native if d.is_naive(&sql_type) => {
                    return d.now_naive(self.naive_zone.offset_at(now))
                }
                kind => return d.now_value(kind).to_string(),
            },
            Filled::Value { text, shape } => (text, shape),
        };
        let text = match shape {
            Shape::Text if json_column => serde_json::Value::String(text).to_string(),
            Shape::Boolean if d != Dialect::Postgres => {
                if text == "true" { "1" } else { "0" }.to_string()
            }
            _ => text,
        };
        let p = params.add(d, Some(text));
        match d {
            Dialect::Postgres => {
                let text_like = sql_type.is_empty()
                    || sql_type == "text"
                    || sql_type.starts_with("character")
                    || sql_type == "citext";
                if text_like {
                    p
                } else {
                    // The catalogue's own spelling of the type (`format_type`), quoted as needed.
                    format!("CAST({p} AS {spelled})")
                }
            }
            _ => match shape {
                Shape::Integer | Shape::Boolean => d.integer(&p),
                Shape::Float => match d {
                    Dialect::MySql => format!("CAST({p} AS DOUBLE)"),
                    _ => format!("CAST({p} AS REAL)"),
                },
                _ => p,
            },
        }
    }

    /// Whether `action` sets `[writes]` columns, whose values differ per job.
    pub fn sets_more(&self, action: Action) -> bool {
        !self.jobs.writes.of(action).is_empty()
    }

    /// Every column the guarded UPDATE of `action` sets, with the key that sets it.
    pub fn written(&self, action: Action) -> Vec<(String, String)> {
        let j = &self.jobs;
        let mut out = vec![("jobs.status".to_string(), j.status.column.clone())];
        if action == Action::Fail {
            for (key, field) in [
                ("jobs.finished_at", &j.finished_at),
                ("jobs.error", &j.error),
            ] {
                if let Some(f) = field {
                    out.push((key.to_string(), f.column.clone()));
                }
            }
        }
        if let (Action::Requeue, Some(a)) = (action, &j.attempts) {
            out.push(("jobs.attempts".to_string(), a.column.clone()));
        }
        for c in j.writes.of(action) {
            out.push((c.key.clone(), c.column.clone()));
        }
        out
    }

    /// The keys a database's rejection of the guarded UPDATE of `action` is about: the
    /// columns its message names (`column "output"`, `` for column `n` ``, `jobs.x`), or,
    /// when it names none, every column the statement sets.
    pub fn blame(&self, action: Action, message: &str) -> Vec<String> {
        let written = self.written(action);
        let named: Vec<String> = written
            .iter()
            .filter(|(_, column)| names_column(message, column))
            .map(|(key, _)| key.clone())
            .collect();
        if named.is_empty() {
            written.into_iter().map(|(key, _)| key).collect()
        } else {
            named
        }
    }

    /// The INSERT of an audit row into `[audit] table`, and its parameters.
    pub fn audit_insert(
        &self,
        table: &crate::core::sql::TableName,
        e: &crate::adapters::audit::Entry,
    ) -> (String, Vec<Option<String>>) {
        let mut values = Values::Bound(Vec::new());
        let sql = self.audit_insert_with(table, e, &mut values);
        (sql, values.into_params())
    }

    /// The audit INSERT with its values inline, for `EXPLAIN`.
    pub fn audit_insert_inline(
        &self,
        table: &crate::core::sql::TableName,
        e: &crate::adapters::audit::Entry,
    ) -> String {
        self.audit_insert_with(table, e, &mut Values::Inline)
    }

    pub(super) fn audit_insert_with(
        &self,
        table: &crate::core::sql::TableName,
        e: &crate::adapters::audit::Entry,
        bound: &mut Values,
    ) -> String {
        let d = self.dialect;
        let values: Vec<Option<String>> = vec![
            e.environment.clone(),
            Some(e.job_id.clone()),
            Some(e.status_before.clone()),
            Some(e.status_after.clone()),
            Some(e.action.as_str().to_string()),
            Some(e.kind.as_str().to_string()),
            Some(e.rule.clone()),
            Some(e.age_seconds.to_string()),
            Some(e.threshold_seconds.to_string()),
            Some(e.outcome.as_str().to_string()),
            Some(e.replica.clone()),
        ];
        let columns = [
            "environment",
            "job_id",
            "status_before",
            "status_after",
            "action",
            "kind",
            "rule",
            "age_seconds",
            "threshold_seconds",
            "outcome",
            "replica",
        ];
        let now = match d {
            Dialect::Sqlite => d.now_value(TimeKind::Text),
            _ => d.now_value(TimeKind::Native),
        };
        // The two counts go in as integers, whatever the text parameter's type.
        let params: Vec<String> = values
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let p = bound.add(d, v);
                if i == 7 || i == 8 {
                    d.integer(&p)
                } else {
                    p
                }
            })
            .collect();
        format!(
            "INSERT INTO {} ({}, {}) VALUES ({now}, {})",
            d.table(table),
            d.quote("at"),
            columns
                .iter()
                .map(|c| d.quote(c))
                .collect::<Vec<_>>()
                .join(", "),
            params.join(", ")
        )
    }

    /// A one-line account of a write, for dry runs and logs: every column it sets, with the
    /// values filled in for this job (`now` is the scan's database clock).
    pub fn describe(&self, w: &Write, now: f64) -> String {
        let j = &self.jobs;
        let mut parts = vec![format!("{} = '{}'", j.status.column, w.status_after)];
        if w.action == Action::Fail {
            if let Some(f) = &j.finished_at {
                parts.push(format!("{} = now", f.column));
            }
            if let Some(e) = &j.error {
                parts.push(format!("{} = {:?}", e.column, w.reason));
            }
        }
        if let (true, Some(a)) = (w.bump_attempts, &j.attempts) {
            parts.push(format!("{0} = {0} + 1", a.column));
        }
        let fill = w.fill(now);
        for c in j.writes.of(w.action) {
            parts.push(format!("{} = {}", c.column, c.value.fill(&fill)));
        }
        let mut still = vec![w.status_before.clone()];
        if let Some(f) = &j.worker {
            still.push(format!("{f} {}", shown(w.guard.worker.as_deref())));
        }
        if let (Some(workers), Some(seen)) = (&j.workers, &w.guard.worker_row) {
            still.push(match seen {
                WorkerSeen::Gone { id } => format!("worker {id} not in {}", workers.table),
                WorkerSeen::Beat { id, heartbeat } => format!(
                    "worker {id}'s {}.{} {}",
                    workers.table,
                    workers.heartbeat_at,
                    shown(heartbeat.as_deref())
                ),
            });
        }
        format!(
            "UPDATE {} SET {} WHERE {} = '{}' AND still {}",
            j.table,
            parts.join(", "),
            j.id.column,
            w.job_id,
            still.join(", ")
        )
    }

    /// The catalogue query listing the table's columns and their types.
    pub(super) fn columns(&self) -> String {
        self.columns_of(&self.jobs.table)
    }

    /// The catalogue query listing the columns of table `t` and their types.
    pub(super) fn columns_of(&self, t: &crate::core::sql::TableName) -> String {
        let d = self.dialect;
        match d {
            Dialect::Postgres => format!(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)::text FROM pg_attribute a \
                 WHERE a.attrelid = to_regclass({}) AND a.attnum > 0 AND NOT a.attisdropped",
                d.literal(&d.table(t))
            ),
            Dialect::MySql => format!(
                "SELECT CAST(COLUMN_NAME AS CHAR), CAST(DATA_TYPE AS CHAR) FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {}",
                mysql_schema(d, t),
                d.literal(&t.name)
            ),
            Dialect::Sqlite => format!(
                "SELECT name, type FROM pragma_table_info({}, {})",
                d.literal(&t.name),
                sqlite_schema(d, t)
            ),
        }
    }

    /// MariaDB's `JSON` columns, which its catalogue calls `longtext`: the
    /// `CHECK (json_valid(`c`))` it gives each, as (clause) rows. MySQL's own `JSON` type is
    /// `json` in the catalogue already (and its `CHECK_CONSTRAINTS` has no `TABLE_NAME`, so
    /// this fails there, harmlessly); other dialects: none.
    pub(super) fn json_checks(&self) -> Option<String> {
        let d = self.dialect;
        let t = &self.jobs.table;
        (d == Dialect::MySql).then(|| {
            format!(
                "SELECT CAST(CHECK_CLAUSE AS CHAR) FROM information_schema.CHECK_CONSTRAINTS \
                 WHERE CONSTRAINT_SCHEMA = {} AND TABLE_NAME = {}",
                mysql_schema(d, t),
                d.literal(&t.name)
            )
        })
    }

    /// The catalogue queries that tell which values the status column can hold: enum labels
    /// (PostgreSQL `pg_enum`, MySQL `ENUM(...)` in `COLUMN_TYPE`) and `CHECK` constraints
    /// (their text, parsed by [`check_values`]). Each returns (what, text) rows.
    pub(super) fn status_domain(&self) -> Vec<String> {
        let d = self.dialect;
        let t = &self.jobs.table;
        let status = d.literal(&self.jobs.status.column);
        let schema = mysql_schema(d, t);
        match d {
            Dialect::Postgres => vec![
                format!(
                    "SELECT 'enum ' || format_type(a.atttypid, NULL), string_agg(e.enumlabel::text, chr(10) ORDER BY e.enumsortorder) \
                     FROM pg_attribute a JOIN pg_enum e ON e.enumtypid = a.atttypid \
                     WHERE a.attrelid = to_regclass({}) AND a.attname = {status} GROUP BY a.atttypid",
                    d.literal(&d.table(t))
                ),
                format!(
                    "SELECT 'CHECK constraint ' || conname::text, pg_get_constraintdef(oid) FROM pg_constraint \
                     WHERE conrelid = to_regclass({}) AND contype = 'c'",
                    d.literal(&d.table(t))
                ),
            ],
            Dialect::MySql => vec![
                format!(
                    "SELECT 'ENUM column', CAST(COLUMN_TYPE AS CHAR) FROM information_schema.COLUMNS \
                     WHERE TABLE_SCHEMA = {schema} AND TABLE_NAME = {} AND COLUMN_NAME = {status} \
                     AND DATA_TYPE = 'enum'",
                    d.literal(&t.name)
                ),
                format!(
                    "SELECT CONCAT('CHECK constraint ', CONSTRAINT_NAME), CAST(CHECK_CLAUSE AS CHAR) \
                     FROM information_schema.CHECK_CONSTRAINTS \
                     WHERE CONSTRAINT_SCHEMA = {schema} AND TABLE_NAME = {}",
                    d.literal(&t.name)
                ),
            ],
            Dialect::Sqlite => vec![format!(
                "SELECT 'CHECK constraint', sql FROM {}sqlite_master WHERE type = 'table' AND name = {}",
                sqlite_prefix(d, t),
                d.literal(&t.name)
            )],
        }
    }

    /// The catalogue query counting indexes that can serve `WHERE status IN (...)`.
    pub(super) fn status_index(&self) -> String {
        let d = self.dialect;
        let t = &self.jobs.table;
        let status = d.literal(&self.jobs.status.column);
        match d {
            Dialect::Postgres => format!(
                "SELECT count(*)::bigint FROM pg_index i JOIN pg_attribute a \
                 ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
                 WHERE i.indrelid = to_regclass({}) AND (a.attname = {status} \
                 OR coalesce(pg_get_expr(i.indpred, i.indrelid), '') LIKE {})",
                d.literal(&d.table(t)),
                d.literal(&format!("%{}%", self.jobs.status.column))
            ),
            Dialect::MySql => format!(
                "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = {} \
                 AND TABLE_NAME = {} AND COLUMN_NAME = {status} AND SEQ_IN_INDEX = 1",
                mysql_schema(d, t),
                d.literal(&t.name)
            ),
            Dialect::Sqlite => format!(
                "SELECT COUNT(*) FROM pragma_index_list({}, {}) il, pragma_index_info(il.name) ii \
                 WHERE ii.seqno = 0 AND ii.name = {status}",
                d.literal(&t.name),
                sqlite_schema(d, t)
            ),
        }
    }

    /// The catalogue query counting indexes that can serve the children read (`parent IN
    /// (...)`): one that starts with the parent column, or, for a JSON path, an expression
    /// index on it (PostgreSQL, SQLite). `None` without `parent_id`, or where no index can
    /// serve it (a JSON path on MySQL/MariaDB).
    pub(super) fn parent_index(&self) -> Option<String> {
        let parent = self.jobs.parent_id.as_ref()?;
        let d = self.dialect;
        let t = &self.jobs.table;
        let column = d.literal(&parent.column);
        // A LIKE pattern that finds the column, then `op`, then the path's keys in an
        // index's text.
        let path_like = |op: &str, sep: &str| {
            let like = |k: &str| k.replace('%', "").replace('_', "\\_");
            let keys = parent
                .path
                .iter()
                .map(|k| like(k))
                .collect::<Vec<_>>()
                .join(sep);
            format!("%{}%{op}%{keys}%", like(&parent.column))
        };
        Some(match (d, parent.is_plain()) {
            (Dialect::Postgres, true) => format!(
                "SELECT count(*)::bigint FROM pg_index i JOIN pg_attribute a \
                 ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
                 WHERE i.indrelid = to_regclass({}) AND a.attname = {column} AND i.indpred IS NULL",
                d.literal(&d.table(t))
            ),
            (Dialect::Postgres, false) => format!(
                "SELECT count(*)::bigint FROM pg_index i WHERE i.indrelid = to_regclass({}) \
                 AND i.indkey[0] = 0 AND i.indpred IS NULL \
                 AND pg_get_indexdef(i.indexrelid, 1, true) LIKE {}",
                d.literal(&d.table(t)),
                d.literal(&path_like("#>>", ","))
            ),
            (Dialect::MySql, true) => format!(
                "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = {} \
                 AND TABLE_NAME = {} AND COLUMN_NAME = {column} AND SEQ_IN_INDEX = 1",
                mysql_schema(d, t),
                d.literal(&t.name)
            ),
            (Dialect::MySql, false) => return None,
            (Dialect::Sqlite, true) => format!(
                "SELECT COUNT(*) FROM pragma_index_list({}, {}) il, pragma_index_info(il.name) ii \
                 WHERE ii.seqno = 0 AND ii.name = {column} AND il.partial = 0",
                d.literal(&t.name),
                sqlite_schema(d, t)
            ),
            (Dialect::Sqlite, false) => format!(
                "SELECT COUNT(*) FROM {}sqlite_master WHERE type = 'index' AND tbl_name = {} \
                 AND sql NOT LIKE '% WHERE %' AND sql LIKE {} ESCAPE '\\'",
                sqlite_prefix(d, t),
                d.literal(&t.name),
                d.literal(&format!("%json_extract({}", path_like("", ".")))
            ),
        })
    }

    /// The time column the read of stuck-job candidates filters on: the heartbeat, else
    /// `status_since`; with its config key. `None`: neither is configured (time in status is
    /// then jobwarden's own memory, which no index holds).
    pub fn candidate_column(&self) -> Option<(&'static str, &Field)> {
        match (&self.jobs.heartbeat_at, &self.jobs.status_since) {
            (Some(hb), _) => Some(("jobs.heartbeat_at", hb)),
            (None, Some(since)) => Some(("jobs.status_since", since)),
            (None, None) => None,
        }
    }

    /// The `CREATE INDEX` the scan's light read wants: `(status, <heartbeat>)` (the JSON
    /// path's expression on PostgreSQL and SQLite), holding the other plain columns the light
    /// read takes (the id, `status_since`, `parent_id`, `pid`, `host`): `INCLUDE`d on
    /// PostgreSQL, trailing key columns elsewhere (InnoDB keeps the primary key in every
    /// index). With it the database answers the light read from the index alone. `None`
    /// without a time column, or for a JSON path on MySQL/MariaDB (which indexes no
    /// expression).
    pub fn candidate_index_advice(&self) -> Option<String> {
        let (_, field) = self.candidate_column()?;
        let d = self.dialect;
        let j = &self.jobs;
        if !field.is_plain() && d == Dialect::MySql {
            return None;
        }
        let mut parts = vec![
            j.table.name.clone(),
            j.status.column.clone(),
            field.column.clone(),
        ];
        parts.extend(field.path.iter().cloned());
        let mut keys = vec![d.quote(&j.status.column), d.value(field)];
        let mut held: Vec<&str> = Vec::new();
        if d != Dialect::MySql {
            held.push(&j.id.column);
        }
        for f in [&j.status_since, &j.parent_id, &j.pid, &j.host]
            .into_iter()
            .flatten()
        {
            let key = field.is_plain() && f.column == field.column;
            if f.is_plain() && !key && !held.contains(&f.column.as_str()) {
                held.push(&f.column);
            }
        }
        let mut sql = match d {
            Dialect::Postgres => create_index(d, &j.table, &parts.join("_"), &keys),
            _ => {
                keys.extend(held.iter().map(|c| d.quote(c)));
                held.clear();
                create_index(d, &j.table, &parts.join("_"), &keys)
            }
        };
        if !held.is_empty() {
            let held: Vec<String> = held.iter().map(|c| d.quote(c)).collect();
            sql.push_str(&format!(" INCLUDE ({})", held.join(", ")));
        }
        Some(sql)
    }

    /// The catalogue query counting indexes that serve the candidate read: the status column
    /// then the time column (or its JSON path's expression), or, on PostgreSQL, an index on
    /// the time column alone whose predicate names the status column (a partial index on
    /// the active words). `None` where no index can serve it.
    pub(super) fn candidate_index(&self) -> Option<String> {
        let (_, field) = self.candidate_column()?;
        let d = self.dialect;
        let t = &self.jobs.table;
        let status = d.literal(&self.jobs.status.column);
        let column = d.literal(&field.column);
        let like = |k: &str| k.replace('%', "").replace('_', "\\_");
        let keys = |sep: &str| {
            field
                .path
                .iter()
                .map(|k| like(k))
                .collect::<Vec<_>>()
                .join(sep)
        };
        let regclass = d.literal(&d.table(t));
        Some(match (d, field.is_plain()) {
            (Dialect::Postgres, true) => format!(
                "SELECT count(*)::bigint FROM pg_index i \
                 JOIN pg_attribute s ON s.attrelid = i.indrelid AND s.attname = {status} \
                 JOIN pg_attribute h ON h.attrelid = i.indrelid AND h.attname = {column} \
                 WHERE i.indrelid = to_regclass({regclass}) AND ((i.indkey[0] = s.attnum \
                 AND i.indkey[1] = h.attnum AND i.indpred IS NULL) OR (i.indkey[0] = h.attnum \
                 AND coalesce(pg_get_expr(i.indpred, i.indrelid), '') LIKE {}))",
                d.literal(&format!("%{}%", like(&self.jobs.status.column)))
            ),
            (Dialect::Postgres, false) => format!(
                "SELECT count(*)::bigint FROM pg_index i \
                 JOIN pg_attribute s ON s.attrelid = i.indrelid AND s.attname = {status} \
                 WHERE i.indrelid = to_regclass({regclass}) AND i.indkey[0] = s.attnum \
                 AND i.indkey[1] = 0 AND i.indpred IS NULL \
                 AND pg_get_indexdef(i.indexrelid, 2, true) LIKE {}",
                d.literal(&format!("%{}%#>>%{}%", like(&field.column), keys(",")))
            ),
            // With the index's name, for the light read's hint (`with_light_index`).
            (Dialect::MySql, true) => format!(
                "SELECT COUNT(*), MIN(a.INDEX_NAME) FROM information_schema.STATISTICS a \
                 JOIN information_schema.STATISTICS b ON b.TABLE_SCHEMA = a.TABLE_SCHEMA \
                 AND b.TABLE_NAME = a.TABLE_NAME AND b.INDEX_NAME = a.INDEX_NAME \
                 WHERE a.TABLE_SCHEMA = {} AND a.TABLE_NAME = {} AND a.COLUMN_NAME = {status} \
                 AND a.SEQ_IN_INDEX = 1 AND b.COLUMN_NAME = {column} AND b.SEQ_IN_INDEX = 2",
                mysql_schema(d, t),
                d.literal(&t.name)
            ),
            (Dialect::MySql, false) => return None,
            (Dialect::Sqlite, true) => format!(
                "SELECT COUNT(*) FROM pragma_index_list({name}, {schema}) il, \
                 pragma_index_info(il.name) a, pragma_index_info(il.name) b \
                 WHERE il.partial = 0 AND a.seqno = 0 AND a.name = {status} \
                 AND b.seqno = 1 AND b.name = {column}",
                name = d.literal(&t.name),
                schema = sqlite_schema(d, t)
            ),
            (Dialect::Sqlite, false) => format!(
                "SELECT COUNT(*) FROM {}sqlite_master WHERE type = 'index' AND tbl_name = {} \
                 AND sql NOT LIKE '% WHERE %' AND sql LIKE {} ESCAPE '\\'",
                sqlite_prefix(d, t),
                d.literal(&t.name),
                d.literal(&format!(
                    "%(%{}%,%json_extract(%{}%{}%",
                    like(&self.jobs.status.column),
                    like(&field.column),
                    keys(".")
                ))
            ),
        })
    }
}

/// The catalogue queries about a view named as `[jobs] table` (see `Store::relation`).
impl Queries {
    /// The kind of relation the table is, as one text row: PostgreSQL's `relkind` (`r`, `p`,
    /// `v`, `m`, `f`), MySQL's `TABLE_TYPE` (`BASE TABLE`, `VIEW`), SQLite's `type`
    /// (`table`, `view`).
    pub(super) fn relation_kind(&self) -> String {
        let d = self.dialect;
        let t = &self.jobs.table;
        match d {
            Dialect::Postgres => format!(
                "SELECT relkind::text FROM pg_class WHERE oid = to_regclass({})",
                d.literal(&d.table(t))
            ),
            Dialect::MySql => format!(
                "SELECT CAST(TABLE_TYPE AS CHAR) FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {}",
                mysql_schema(d, t),
                d.literal(&t.name)
            ),
            Dialect::Sqlite => format!(
                "SELECT type FROM {}sqlite_master WHERE name = {} AND type IN ('table', 'view')",
                sqlite_prefix(d, t),
                d.literal(&t.name)
            ),
        }
    }

    /// Whether the view can be written, as (column, view, column) text rows: on PostgreSQL
    /// one row per column, the view's and the column's updatability as the database's own
    /// `information_schema` judges them (`pg_relation_is_updatable`, `pg_column_is_updatable`,
    /// `INSTEAD OF` triggers and rules included); on MySQL one row, `VIEWS.IS_UPDATABLE`; on
    /// SQLite one row, whether an `INSTEAD OF UPDATE` trigger is on the view (SQLite writes
    /// a view through nothing else).
    pub(super) fn view_updatable(&self) -> String {
        let d = self.dialect;
        let t = &self.jobs.table;
        match d {
            // 4 is `1 << CMD_UPDATE`, the bit `information_schema.views` reads.
            Dialect::Postgres => format!(
                "SELECT a.attname::text, (pg_relation_is_updatable(c.oid, true) & 4 = 4)::text, \
                 pg_column_is_updatable(c.oid, a.attnum, true)::text \
                 FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid \
                 AND a.attnum > 0 AND NOT a.attisdropped WHERE c.oid = to_regclass({})",
                d.literal(&d.table(t))
            ),
            Dialect::MySql => format!(
                "SELECT CAST(NULL AS CHAR), CAST(IS_UPDATABLE AS CHAR), CAST(IS_UPDATABLE AS CHAR) \
                 FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {}",
                mysql_schema(d, t),
                d.literal(&t.name)
            ),
            Dialect::Sqlite => format!(
                "SELECT NULL, v, v FROM (SELECT CASE WHEN COUNT(*) > 0 THEN 'YES' ELSE 'NO' END AS v \
                 FROM {}sqlite_master WHERE type = 'trigger' AND tbl_name = {} \
                 AND upper(sql) LIKE '%INSTEAD OF UPDATE%')",
                sqlite_prefix(d, t),
                d.literal(&t.name)
            ),
        }
    }

    /// PostgreSQL's plan of reading `columns` from the view, with the output of each node
    /// (`EXPLAIN (VERBOSE, COSTS OFF)`, one text row a line): it shows which base table's
    /// column each view column is, once the planner has expanded the view. `None` elsewhere.
    pub(super) fn view_plan(&self, columns: &[&str]) -> Option<String> {
        let d = self.dialect;
        (d == Dialect::Postgres && !columns.is_empty()).then(|| {
            format!(
                "EXPLAIN (VERBOSE, COSTS OFF) SELECT {} FROM {}",
                columns
                    .iter()
                    .map(|c| d.quote(c))
                    .collect::<Vec<_>>()
                    .join(", "),
                d.table(&self.jobs.table)
            )
        })
    }
}

/// The PostgreSQL catalogue query counting the indexes of `table` that start with `columns`
/// (the first, then the second if given), without a predicate: whether a base table
/// already has the index a view over it needs.
pub(super) fn base_index(
    d: Dialect,
    table: &crate::core::sql::TableName,
    columns: &[String],
) -> String {
    let mut sql = format!(
        "SELECT count(*)::bigint FROM pg_index i \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
         WHERE i.indrelid = to_regclass({}) AND i.indpred IS NULL AND a.attname = {}",
        d.literal(&d.table(table)),
        d.literal(columns.first().map_or("", String::as_str))
    );
    if let Some(second) = columns.get(1) {
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM pg_attribute b WHERE b.attrelid = i.indrelid \
             AND b.attnum = i.indkey[1] AND b.attname = {})",
            d.literal(second)
        ));
    }
    sql
}

/// `CREATE INDEX "<name>_idx" ON <table> (<expressions>)`, the name cut to fit every
/// dialect's identifier limit (63 bytes on PostgreSQL, 64 on MySQL).
pub fn create_index(
    d: Dialect,
    table: &crate::core::sql::TableName,
    name: &str,
    expressions: &[String],
) -> String {
    let mut name: String = name.chars().take(59).collect();
    name.push_str("_idx");
    format!(
        "CREATE INDEX {} ON {} ({})",
        d.quote(&name),
        d.table(table),
        expressions.join(", ")
    )
}

/// The schema of `t` as SQLite's pragmas name it (`main` unless one is configured), as a
/// literal.
fn sqlite_schema(d: Dialect, t: &crate::core::sql::TableName) -> String {
    d.literal(t.schema.as_deref().unwrap_or("main"))
}

/// The prefix that puts a SQLite catalogue table in `t`'s schema: `"aux".`, or nothing.
fn sqlite_prefix(d: Dialect, t: &crate::core::sql::TableName) -> String {
    t.schema
        .as_deref()
        .map_or(String::new(), |s| format!("{}.", d.quote(s)))
}

/// The schema of `t` as MySQL's catalogue names it: the configured one, else the session's
/// own database.
fn mysql_schema(d: Dialect, t: &crate::core::sql::TableName) -> String {
    t.schema
        .as_deref()
        .map_or("DATABASE()".to_string(), |s| d.literal(s))
}

/// Every configured column with the key that names it.
pub fn configured_columns(jobs: &Jobs) -> Vec<(&'static str, &Field)> {
    let mut out = vec![
        ("jobs.id", &jobs.id),
        ("jobs.status", &jobs.status),
        ("jobs.created_at", &jobs.created_at),
    ];
    for (key, field) in [
        ("jobs.heartbeat_at", &jobs.heartbeat_at),
        ("jobs.status_since", &jobs.status_since),
        ("jobs.progress", &jobs.progress),
        ("jobs.finished_at", &jobs.finished_at),
        ("jobs.error", &jobs.error),
        ("jobs.payload", &jobs.payload),
        ("jobs.parent_id", &jobs.parent_id),
        ("jobs.phase", &jobs.phase),
        ("jobs.pid", &jobs.pid),
        ("jobs.host", &jobs.host),
        ("jobs.worker", &jobs.worker),
        ("jobs.attempts", &jobs.attempts),
    ] {
        if let Some(f) = field {
            out.push((key, f));
        }
    }
    out
}

/// Whether a database's message names `column`: quoted as PostgreSQL (`column "x"`), MySQL
/// (`` column 'x' ``, `` `x` ``) or after a table (`jobs.x`, SQLite's `NOT NULL constraint
/// failed: jobs.x`, MariaDB's `` CONSTRAINT `jobs.x` ``).
/// A value as a write's account shows what it must still be: `'text'` or `NULL`.
fn shown(value: Option<&str>) -> String {
    value.map_or_else(|| "NULL".to_string(), |v| format!("'{v}'"))
}

fn names_column(message: &str, column: &str) -> bool {
    ["\"", "'", "`"]
        .iter()
        .any(|q| message.contains(&format!("{q}{column}{q}")))
        || message.match_indices(&format!(".{column}")).any(|(at, m)| {
            message[at + m.len()..]
                .chars()
                .next()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
        })
}

/// The column a MariaDB `json_valid(`c`)` check is about.
pub(super) fn json_valid_column(clause: &str) -> Option<String> {
    let inner = clause
        .trim()
        .strip_prefix("json_valid(`")?
        .strip_suffix("`)")?;
    Some(inner.replace("``", "`"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Statuses;
    use crate::core::sql::parse_field;
    use crate::core::writes::{SetColumn, Template, WriteValue};

    fn jobs() -> Jobs {
        let mut jobs = Jobs::with_statuses(Statuses {
            pending: vec!["queued".into()],
            running: vec!["running".into()],
            failed: vec!["failed".into()],
            ..Statuses::default()
        });
        jobs.error = Some(parse_field("output").unwrap());
        let set = |column: &str, value| SetColumn {
            column: column.into(),
            value,
            key: format!("writes.fail.{column}"),
        };
        jobs.writes.fail = vec![
            set(
                "done_at",
                WriteValue::Text(Template::parse("{now}").unwrap()),
            ),
            set("kind", WriteValue::Text(Template::parse("{rule}").unwrap())),
            set("tries", WriteValue::Integer(7)),
            set("locked_by", WriteValue::Null),
        ];
        jobs
    }

    fn types(d: Dialect) -> HashMap<String, String> {
        let pairs: &[(&str, &str)] = match d {
            Dialect::Postgres => &[
                ("output", "jsonb"),
                ("done_at", "timestamp with time zone"),
                ("kind", "\"JobKind\""),
                ("tries", "integer"),
                ("locked_by", "text"),
            ],
            Dialect::MySql => &[
                ("output", "json"),
                ("done_at", "datetime"),
                ("kind", "varchar"),
                ("tries", "int"),
                ("locked_by", "varchar"),
            ],
            Dialect::Sqlite => &[
                ("output", "TEXT"),
                ("done_at", "TEXT"),
                ("kind", "TEXT"),
                ("tries", "INTEGER"),
                ("locked_by", "TEXT"),
            ],
        };
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn write() -> Write {
        Write {
            job_id: "42".into(),
            action: Action::Fail,
            status_before: "running".into(),
            status_after: "failed".into(),
            guard: Guard::default(),
            reason: "it's stuck".into(),
            rule: "hb".into(),
            bump_attempts: false,
        }
    }

    #[test]
    fn write_values_are_bound_with_their_columns_cast() {
        let sets = |d: Dialect| {
            let (sql, params) = Queries::new(d, &jobs(), &types(d)).write(&write(), 0.0);
            let sets = sql
                .split_once(" SET ")
                .and_then(|(_, rest)| rest.split_once(" WHERE "))
                .map(|(sets, _)| sets.to_string())
                .unwrap();
            (sets, params)
        };
        let (pg, params) = sets(Dialect::Postgres);
        assert_eq!(
            pg,
            "\"status\" = 'failed', \"output\" = CAST($1 AS jsonb), \"done_at\" = now(), \
             \"kind\" = CAST($2 AS \"JobKind\"), \"tries\" = CAST($3 AS integer), \"locked_by\" = NULL"
        );
        // The reason into a JSON column is a JSON string; values travel bound, never spliced.
        assert_eq!(
            params,
            [
                Some("\"it's stuck\"".to_string()),
                Some("hb".to_string()),
                Some("7".to_string())
            ]
        );
        let (my, params) = sets(Dialect::MySql);
        assert_eq!(
            my,
            "`status` = 'failed', `output` = ?, `done_at` = UTC_TIMESTAMP(6), `kind` = ?, \
             `tries` = CAST(? AS SIGNED), `locked_by` = NULL"
        );
        assert_eq!(params[0].as_deref(), Some("\"it's stuck\""));
        let (lite, params) = sets(Dialect::Sqlite);
        assert_eq!(
            lite,
            "\"status\" = 'failed', \"output\" = ?, \"done_at\" = strftime('%Y-%m-%d %H:%M:%S', 'now'), \
             \"kind\" = ?, \"tries\" = CAST(? AS INTEGER), \"locked_by\" = NULL"
        );
        assert_eq!(params[0].as_deref(), Some("it's stuck"), "TEXT: as it is");
    }

    #[test]
    fn bytes_travel_as_hex_and_are_decoded_by_the_database() {
        use crate::core::writes::Json;
        let mut jobs = jobs();
        let text = |s: &str| Json::Text(Template::parse(s).unwrap());
        let set = |column: &str, value| SetColumn {
            column: column.into(),
            value,
            key: format!("writes.fail.{column}"),
        };
        jobs.writes.fail = vec![
            set("legacy", WriteValue::Pickle(text("{rule}"))),
            set(
                "result",
                WriteValue::Json(Json::Object(vec![("exc_type".into(), text("E"))])),
            ),
        ];
        for (d, binary, sets) in [
            (
                Dialect::Postgres,
                "bytea",
                "\"legacy\" = decode($2, 'hex'), \"result\" = decode($3, 'hex')",
            ),
            (
                Dialect::MySql,
                "longblob",
                "`legacy` = UNHEX(?), `result` = UNHEX(?)",
            ),
            (
                Dialect::Sqlite,
                "BLOB",
                "\"legacy\" = unhex(?), \"result\" = unhex(?)",
            ),
        ] {
            let mut types = types(d);
            for column in ["legacy", "result"] {
                types.insert(column.into(), binary.into());
            }
            let q = Queries::new(d, &jobs, &types);
            let (sql, params) = q.write(&write(), 0.0);
            assert!(sql.contains(sets), "{sql}");
            // The pickle of "hb", and the JSON text's UTF-8: `{"exc_type":"E"}`.
            assert_eq!(params[1].as_deref(), Some("8002580200000068622e"), "{d:?}");
            assert_eq!(
                params[2].as_deref(),
                Some("7b226578635f74797065223a2245227d"),
                "{d:?}"
            );
            // EXPLAIN gets them inline, still as hex text decoded by the database.
            assert!(
                q.write_inline(&write(), 0.0)
                    .contains(&d.from_hex("'7b226578635f74797065223a2245227d'")),
                "{d:?}"
            );
            // The dry run shows the pickle's value, not its bytes.
            assert!(
                q.describe(&write(), 0.0)
                    .contains(r#"legacy = pickle "hb", result = "{\"exc_type\":\"E\"}""#),
                "{}",
                q.describe(&write(), 0.0)
            );
        }
    }

    #[test]
    fn a_rejection_is_pinned_on_the_column_it_names() {
        let q = Queries::new(Dialect::Postgres, &jobs(), &types(Dialect::Postgres));
        for (message, keys) in [
            (
                "null value in column \"locked_by\" of relation \"jobs\" violates not-null constraint",
                vec!["writes.fail.locked_by"],
            ),
            (
                "Incorrect integer value: 'x' for column `db`.`jobs`.`tries` at row 1",
                vec!["writes.fail.tries"],
            ),
            ("NOT NULL constraint failed: jobs.kind", vec!["writes.fail.kind"]),
            (
                "CONSTRAINT `jobs.output` failed for `db`.`jobs`",
                vec!["jobs.error"],
            ),
            (
                "invalid input syntax for type integer: \"x\"",
                vec![
                    "jobs.status",
                    "jobs.error",
                    "writes.fail.done_at",
                    "writes.fail.kind",
                    "writes.fail.tries",
                    "writes.fail.locked_by",
                ],
            ),
        ] {
            assert_eq!(q.blame(Action::Fail, message), keys, "{message}");
        }
        // `jobs.x` names `x`, not `xy`.
        assert!(!names_column(
            "NOT NULL constraint failed: jobs.kinds",
            "kind"
        ));
        assert_eq!(
            json_valid_column("json_valid(`out``put`)").as_deref(),
            Some("out`put")
        );
        assert_eq!(json_valid_column("`n` > 0"), None);
    }
}

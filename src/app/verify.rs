//! `validate --connect`: the proof that a config works on its database, without writing.
//!
//! It runs what a scan runs (the scan's own `SELECT`, limited, and the look-ups a scan
//! makes), checks every configured status word against what the status column can hold
//! (enum labels, `ENUM(...)` members, a `CHECK (status IN ...)`), and `EXPLAIN`s the guarded
//! `UPDATE` of each action the rules use and the audit table's `INSERT`, so syntax, types and
//! privileges are proven before the first write. Every problem is one line naming the config
//! key and its line.

use crate::adapters::store::{create_index, Relation, Store, StoreError, ViewInfo, Writable};
use crate::app::scan::Scanner;
use crate::config::{Action, Config, StatusClass};
use crate::core::detect::zone_advice;
use crate::core::job::{Guard, WorkerSeen};
use crate::core::plan::Write;
use crate::core::sql::Dialect;
use crate::core::writes::WriteValue;

/// How many active rows the proof reads.
const PROBE_ROWS: usize = 1000;

/// What `validate --connect` found.
#[derive(Debug, Default)]
pub struct Verified {
    /// Problems that make `validate --connect` exit 2.
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// Facts worth printing: the privileges needed, how timestamps are read.
    pub notes: Vec<String>,
    /// With a view as `[jobs] table`: what it is over and whether it can be written.
    pub view: Vec<String>,
}

/// Checks the config against the open database. An `Err` is a database that could not be
/// read at all (exit 3); everything the config is to blame for is in `errors`.
pub async fn verify(store: &Store, config: &Config) -> Result<Verified, StoreError> {
    let mut out = Verified::default();
    let places = &config.places;
    let info = store.info();
    let d = config.database.dialect;
    let jobs = &config.jobs;

    // A view: no index can be made on it, and only an updatable one can be written.
    let status = jobs.status.column.as_str();
    let mut asked = vec![status];
    if let Some((_, f)) = store.queries().candidate_column() {
        if f.is_plain() && f.column != status {
            asked.push(f.column.as_str());
        }
    }
    let view = match store.relation(&asked).await {
        Ok(Relation::View(v)) => Some(v),
        Ok(Relation::Table) => None,
        Err(e) => {
            out.warnings.push(format!(
                "could not tell whether {} is a view: {e}",
                jobs.table
            ));
            None
        }
    };
    if let Some(v) = &view {
        let what = if v.materialized {
            "a materialized view: its rows are as old as its last REFRESH, so a heartbeat read through it is too".to_string()
        } else {
            match &v.base {
                Ok(b) => format!(
                    "a view over {} ({})",
                    d.table(&b.table),
                    asked
                        .iter()
                        .zip(&b.columns)
                        .map(|(a, c)| format!("`{a}` is its `{c}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Err(why) => {
                    format!("a view; which table's columns are behind it cannot be told: {why}")
                }
            }
        };
        out.view.push(format!(
            "{}: {} is {what}",
            places.name("jobs.table"),
            jobs.table
        ));
    }

    // The status words against the column's own vocabulary.
    if let Some((what, allowed)) = store.status_domain().await? {
        for class in StatusClass::ALL {
            for word in jobs.statuses.words(class) {
                if !allowed.iter().any(|a| a == word) {
                    out.errors.push(format!(
                        "{}: `{word}` ({}) is not a value the column `{}` can hold ({what}: {})",
                        places.name(&format!("jobs.statuses.{}", class.as_str())),
                        class.as_str(),
                        jobs.status.column,
                        allowed.join(", ")
                    ));
                }
            }
        }
    }

    // Every status word the table holds: one no class lists is never watched.
    unlisted_words(store, config, &mut out).await?;

    // What a scan runs, limited, and the look-ups the artifact roots make.
    let within = config.required_within();
    if !config.artifacts.is_empty() {
        if let Err(e) = store.lookup(&[store.placeholder_id()]).await {
            rejected(&mut out, e)?;
        }
    }
    if let Some(within) = within {
        if let Err(e) = store.recent_succeeded(within, 0.0).await {
            rejected(&mut out, e)?;
        }
    }
    if let Err(e) = store.probe_children().await {
        rejected(&mut out, e)?;
    }
    match store.probe(PROBE_ROWS).await {
        Ok(snapshot) => {
            let mut scanner = Scanner::new(store.clone());
            let scanned = scanner.judge(config, snapshot).await;
            match scanned {
                Ok(report) => {
                    let advice = report.newest_signal_age.and_then(zone_advice);
                    let timezone = places.name("database.timezone");
                    match (&report.suspicion, advice) {
                        // The daemon would hold every write: the config is not usable as is.
                        (Some(s), _) if report.suspicion_holds => {
                            out.errors.push(format!("{timezone}: {s}"));
                        }
                        // Not every row is stuck, but the newest signal's age looks like an
                        // offset: say it, a zone that does not fit is cheap to rule out.
                        (_, Some(advice)) => out.warnings.push(format!("{timezone}: {advice}")),
                        _ => {}
                    }
                    out.warnings.extend(
                        report
                            .warnings
                            .into_iter()
                            .filter(|w| {
                                w.job_id.is_none()
                                    && !w.message.starts_with("no job will")
                                    && !(report.suspicion_holds
                                        && report.suspicion.as_ref() == Some(&w.message))
                            })
                            .map(|w| w.message),
                    );
                }
                Err(e) => rejected(&mut out, e)?,
            }
        }
        Err(e) => rejected(&mut out, e)?,
    }

    // The guarded writes of the actions in use, and the audit row.
    let writes = !config.dry_run
        && (config
            .rules
            .iter()
            .any(|r| matches!(r.action, Action::Fail | Action::Requeue))
            || !jobs.writes.fail.is_empty()
            || !jobs.writes.requeue.is_empty());
    let table = jobs.table.to_string();
    out.notes.push(format!("needs SELECT on {table}"));
    if writes {
        let mut written = vec![jobs.status.column.clone()];
        let fails = config.rules.iter().any(|r| r.action == Action::Fail)
            || (jobs.attempts.is_some()
                && config.rules.iter().any(|r| r.action == Action::Requeue));
        if fails {
            written.extend(jobs.finished_at.iter().map(|f| f.column.clone()));
            written.extend(jobs.error.iter().map(|f| f.column.clone()));
        }
        written.extend(jobs.attempts.iter().map(|f| f.column.clone()));
        for c in jobs.writes.fail.iter().chain(&jobs.writes.requeue) {
            if !written.contains(&c.column) {
                written.push(c.column.clone());
            }
        }
        out.notes.push(format!(
            "needs UPDATE ({}) on {table}, since rules fail or re-queue jobs",
            written.join(", ")
        ));
        // A pickle is bytes: a text column would keep them as text, or refuse them.
        for c in jobs.writes.fail.iter().chain(&jobs.writes.requeue) {
            let sql_type = info.columns.get(&c.column).map_or("", String::as_str);
            if matches!(c.value, WriteValue::Pickle(_)) && !d.is_binary(sql_type) {
                out.errors.push(format!(
                    "{}: `{{ pickle = ... }}` writes bytes, and `{}` is {sql_type}, not a binary \
                     column (bytea, BLOB): name the binary column the library unpickles, or write \
                     text or `{{ json = ... }}`",
                    places.name(&c.key),
                    c.column
                ));
            }
        }
        let unwritable = view
            .as_ref()
            .and_then(|v| unwritable(v, d, &table, &written));
        if let Some(why) = &unwritable {
            out.errors.push(format!(
                "{}: fail/requeue need an updatable view: {why}; make it one (or give it an INSTEAD OF UPDATE trigger), point `jobs.table` at the table itself, or use only `alert` rules",
                places.name("jobs.table")
            ));
        }
        // The database would only refuse each UPDATE on the view again.
        let actions = if unwritable.is_some() {
            Vec::new()
        } else {
            vec![
                (Action::Fail, jobs.statuses.failed.first()),
                (Action::Requeue, jobs.statuses.pending.first()),
            ]
        };
        for (action, target) in actions {
            let used = config.rules.iter().any(|r| r.action == action)
                || (action == Action::Fail && fails)
                || !jobs.writes.of(action).is_empty();
            let (Some(target), Some(before), true) = (target, jobs.statuses.running.first(), used)
            else {
                continue;
            };
            let write = Write {
                job_id: store.placeholder_id().to_string(),
                action,
                status_before: before.clone(),
                status_after: target.clone(),
                // With `[workers]`, the write's look-up of the job's worker is planned too.
                guard: Guard {
                    worker_row: jobs.workers.as_ref().map(|_| WorkerSeen::Beat {
                        id: store.placeholder_id().to_string(),
                        heartbeat: None,
                    }),
                    ..Guard::default()
                },
                reason: "jobwarden validate".into(),
                rule: config
                    .rules
                    .iter()
                    .find(|r| r.action == action)
                    .map_or_else(|| "validate".into(), |r| r.name.clone()),
                bump_attempts: action == Action::Requeue && jobs.attempts.is_some(),
            };
            let sql = store.queries().write_inline(&write, 0.0);
            match store.explain("checking the guarded UPDATE", &sql).await {
                Ok(()) => {}
                Err(StoreError::Rejected { message, .. }) if !denied(&message) => {
                    out.errors.push(
                        blame_write(store, places, &write, message)
                            .await?
                            .to_string(),
                    );
                }
                Err(e) => out.errors.push(denied_or(
                    e,
                    format!("the guarded UPDATE of `{}`", action.as_str()),
                    format!("UPDATE ({}) ON {table}", written.join(", ")),
                )?),
            }
        }
        if let Some(audit) = &config.audit_table {
            out.notes
                .push(format!("needs INSERT on {audit} (the audit table)"));
            let entry = crate::adapters::audit::Entry {
                id: String::new(),
                stage: crate::adapters::audit::Stage::Outcome,
                recovered: false,
                time: String::new(),
                environment: config.environment.clone(),
                job_id: store.placeholder_id().into(),
                status_before: String::new(),
                status_after: String::new(),
                // Any values: EXPLAIN only plans the INSERT.
                action: Action::Fail,
                kind: crate::core::detect::Kind::Stalled,
                rule: String::new(),
                age_seconds: 0,
                threshold_seconds: 0,
                outcome: crate::adapters::audit::Recorded::Applied,
                replica: String::new(),
                forced: false,
                requested_by: None,
                batch: None,
                reason: None,
                statement: None,
            };
            let sql = store.queries().audit_insert_inline(audit, &entry);
            if let Err(e) = store.explain("checking the audit INSERT", &sql).await {
                out.errors.push(denied_or(
                    e,
                    format!("{} (the audit table's INSERT)", places.name("audit.table")),
                    format!("INSERT ON {audit}"),
                )?);
            }
        }
    }

    if !writes {
        if let Some(why) = view.as_ref().and_then(|v| unwritable(v, d, &table, &[])) {
            out.view
                .push(format!("{why}: fine while no rule fails or re-queues jobs"));
        }
    }
    if let Some(v) = view.as_ref().filter(|v| !v.materialized) {
        view_index_advice(&mut out, config, v, &asked);
        return Ok(out);
    }
    if !info.status_indexed {
        let status = &jobs.status.column;
        out.warnings.push(format!(
            "no index on {}({status}): every scan reads the whole table. Create one: {}",
            jobs.table,
            create_index(
                d,
                &jobs.table,
                &format!("{}_{status}", jobs.table.name),
                &[d.quote(status)]
            )
        ));
    }
    if let (Some((key, field)), false) =
        (store.queries().candidate_column(), info.candidate_indexed)
    {
        let status = &jobs.status.column;
        match store.queries().candidate_index_advice() {
            Some(advice) => out.warnings.push(format!(
                "no index on {}({status}, {field}): each scan reads every active row from the table to find the jobs whose {} is old enough to be stuck; an index holding what that read takes answers it alone. Create one: {advice}",
                jobs.table,
                places.name(key),
            )),
            None => out.warnings.push(format!(
                "{}: MySQL/MariaDB cannot index the JSON path `{field}`: each scan reads every active row from the table to find the jobs whose {key} is old enough to be stuck. \
                 A plain (or generated) column with an index on ({status}, <column>) can be read alone",
                places.name(key),
            )),
        }
    }
    if let (Some(parent), false) = (&jobs.parent_id, info.parent_indexed) {
        let every = config
            .terminal_counts_every
            .unwrap_or(crate::app::scan::CHILDREN_EVERY);
        let slower = format!(
            "so the children of active jobs (for `orphaned_child`) are read only every {} \
             (terminal_counts_every), not every scan",
            humantime::format_duration(every)
        );
        match store.queries().parent_index_advice() {
            Some(advice) => out.warnings.push(format!(
                "no index on {}({parent}) ({}): finding a job's children reads the whole table, {slower}. Create one: {advice}",
                jobs.table,
                places.name("jobs.parent_id"),
            )),
            None => out.warnings.push(format!(
                "{}: MySQL/MariaDB cannot index the JSON path `{parent}`: finding a job's children reads the whole table, {slower}. \
                 A plain (or generated) column with an index on it makes it one look-up per job",
                places.name("jobs.parent_id"),
            )),
        }
    }
    Ok(out)
}

/// Why the view cannot take the guarded UPDATE of `written`, in words; `None`: it can. With
/// no columns given, whether it can be written at all.
fn unwritable(v: &ViewInfo, d: Dialect, table: &str, written: &[String]) -> Option<String> {
    use crate::core::sql::Dialect as D;
    match &v.writable {
        Writable::Yes => None,
        Writable::No if v.materialized => Some(format!(
            "{table} is a materialized view, which is never written"
        )),
        Writable::No => Some(format!(
            "{table} is a view the database cannot write ({})",
            match d {
                D::Postgres => "PostgreSQL writes a view only when it reads one table without DISTINCT, GROUP BY, aggregates, set operations or LIMIT, or through an INSTEAD OF UPDATE trigger",
                D::MySql => "information_schema.VIEWS.IS_UPDATABLE is NO: a join it cannot merge, aggregates, DISTINCT, UNION, a subquery in the select list, or ALGORITHM = TEMPTABLE",
                D::Sqlite => "SQLite writes a view only through an INSTEAD OF UPDATE trigger",
            }
        )),
        Writable::NotColumns(columns) => {
            let hit: Vec<String> = columns
                .iter()
                .filter(|c| written.is_empty() || written.contains(c))
                .map(|c| format!("`{c}`"))
                .collect();
            (!hit.is_empty()).then(|| {
                format!(
                    "the column{} {} of the view {table} {} computed, not a table's column, so the database cannot write {}",
                    if hit.len() == 1 { "" } else { "s" },
                    hit.join(", "),
                    if hit.len() == 1 { "is" } else { "are" },
                    if hit.len() == 1 { "it" } else { "them" },
                )
            })
        }
    }
}

/// The index advice for a (plain) view, on which no index can be made: the `CREATE INDEX` on
/// the table behind it when the catalogue tells which that is and it lacks one, else the
/// columns to index by hand.
fn view_index_advice(out: &mut Verified, config: &Config, v: &ViewInfo, asked: &[&str]) {
    let d = config.database.dialect;
    let jobs = &config.jobs;
    let places = &config.places;
    let table = &jobs.table;
    match &v.base {
        Ok(b) => {
            let base = d.table(&b.table);
            let index = |columns: &[String]| {
                let mut name = vec![b.table.name.clone()];
                name.extend(columns.iter().cloned());
                create_index(
                    d,
                    &b.table,
                    &name.join("_"),
                    &columns.iter().map(|c| d.quote(c)).collect::<Vec<_>>(),
                )
            };
            if !b.status_indexed {
                out.warnings.push(format!(
                    "no index on {base}({}), the table behind the view {table} (whose `{}` it is): every scan reads the whole table. No index can be made on a view; create it on the table: {}",
                    b.columns[0],
                    asked[0],
                    index(&b.columns[..1])
                ));
            }
            if let (Some(key), false) = (
                config_candidate_key(config).filter(|_| b.columns.len() > 1),
                b.candidate_indexed,
            ) {
                out.warnings.push(format!(
                    "no index on {base}({}, {}) behind the view's ({}, {}) ({}): each scan reads every active row to find the jobs old enough to be stuck. Create it on the table: {}",
                    b.columns[0],
                    b.columns[1],
                    asked[0],
                    asked[1],
                    places.name(key),
                    index(&b.columns[..2])
                ));
            }
            if let Some(parent) = &jobs.parent_id {
                out.warnings.push(format!(
                    "{}: finding a job's children reads through the view {table}; index by hand, on {base}, the column behind `{parent}`",
                    places.name("jobs.parent_id")
                ));
            }
        }
        Err(why) => {
            let mut by_hand = vec![format!("`{}` ({})", asked[0], places.name("jobs.status"))];
            if let (Some(key), Some(c)) = (config_candidate_key(config), asked.get(1)) {
                by_hand.push(format!("`{c}` ({})", places.name(key)));
            }
            if let Some(parent) = &jobs.parent_id {
                by_hand.push(format!(
                    "`{parent}` ({}), alone",
                    places.name("jobs.parent_id")
                ));
            }
            out.warnings.push(format!(
                "{}: {table} is a view, and no index can be made on a view; jobwarden cannot tell which table's columns are behind it ({why}). Index by hand, on the table behind it, the columns behind {}",
                places.name("jobs.table"),
                by_hand.join(", then ")
            ));
        }
    }
}

/// The config key of the time column the candidate read filters on, if any.
fn config_candidate_key(config: &Config) -> Option<&'static str> {
    match (&config.jobs.heartbeat_at, &config.jobs.status_since) {
        (Some(_), _) => Some("jobs.heartbeat_at"),
        (None, Some(_)) => Some("jobs.status_since"),
        (None, None) => None,
    }
}

/// Files a rejected query as a config problem, or passes on a database that is gone.
fn rejected(out: &mut Verified, e: StoreError) -> Result<(), StoreError> {
    match e {
        StoreError::Config { .. } | StoreError::Rejected { .. } => {
            out.errors.push(e.to_string());
            Ok(())
        }
        other => Err(other),
    }
}

/// A rejected guarded UPDATE as the config keys it is about: the columns the database's
/// message names, or else the ones whose value alone is rejected (each column set on its
/// own, `EXPLAIN`ed), or else every column it sets.
async fn blame_write(
    store: &Store,
    places: &crate::config::Places,
    write: &Write,
    message: String,
) -> Result<StoreError, StoreError> {
    let queries = store.queries();
    let keys = queries.blame(write.action, &message);
    if keys.len() > 1 {
        let mut alone = Vec::new();
        for (key, column) in queries.written(write.action) {
            let sql = queries.write_inline_setting(write, 0.0, &column);
            match store
                .explain("checking one column of the guarded UPDATE", &sql)
                .await
            {
                Ok(()) => {}
                Err(StoreError::Rejected { message, .. }) => alone.push((key, message)),
                Err(e) => return Err(e),
            }
        }
        if !alone.is_empty() {
            let place = alone
                .iter()
                .map(|(k, _)| places.name(k))
                .collect::<Vec<_>>()
                .join(", ");
            return Ok(StoreError::Config {
                place,
                message: format!(
                    "the guarded UPDATE of `{}` was rejected by the database: {}",
                    write.action.as_str(),
                    alone[0].1
                ),
            });
        }
    }
    Ok(store.write_rejected(
        write.action,
        StoreError::Rejected {
            what: "checking the guarded UPDATE",
            message,
        },
    ))
}

/// Whether a database's message says a privilege is missing.
fn denied(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("permission denied") || lower.contains("command denied")
}

/// A refused `EXPLAIN` as one sentence: a missing privilege says which to grant.
fn denied_or(e: StoreError, what: String, grant: String) -> Result<String, StoreError> {
    let message = match e {
        StoreError::Rejected { message, .. } | StoreError::Config { message, .. } => message,
        // The database went away: not a problem of the config.
        StoreError::Query { .. } | StoreError::Timeout { .. } => return Err(e),
        other => return Ok(format!("{what}: {other}")),
    };
    let lower = message.to_ascii_lowercase();
    if lower.contains("permission denied") || lower.contains("command denied") {
        Ok(format!(
            "{what}: this database user may not make it ({message}): GRANT {grant} TO the user jobwarden connects as, or use only `alert` rules"
        ))
    } else {
        Ok(format!("{what} is rejected: {message}"))
    }
}

/// An unlisted word on more rows than this, created within [`RECENT`], is in use.
const RECENT_ROWS: usize = 3;
const RECENT: std::time::Duration = std::time::Duration::from_secs(86_400);
/// How many unlisted words are looked at one by one; the rest are only counted.
const WORDS_EXAMINED: usize = 20;

/// Counts rows per status word over the whole table. A word that differs from a listed active
/// word only by case or spaces, or any unlisted word on more than [`RECENT_ROWS`] rows created
/// in the last day, is an error naming the key; other unlisted words are a warning.
async fn unlisted_words(
    store: &Store,
    config: &Config,
    out: &mut Verified,
) -> Result<(), StoreError> {
    let counts = match store.status_counts().await {
        Ok(c) => c,
        Err(e) if e.is_config() => return rejected(out, e),
        Err(e) => {
            out.warnings
                .push(format!("counting rows per status failed: {e}"));
            return Ok(());
        }
    };
    let unlisted = config.jobs.statuses.unlisted(&counts);
    if unlisted.is_empty() {
        return Ok(());
    }
    let now = store.clock().await?;
    let mut quiet = Vec::new();
    for (i, word) in unlisted.into_iter().enumerate() {
        let key = match &word.variant_of {
            Some((class, _)) if class.is_active() => {
                Some(format!("jobs.statuses.{}", class.as_str()))
            }
            _ if i < WORDS_EXAMINED
                && store
                    .created_within(&word.word, RECENT_ROWS + 1, RECENT, now)
                    .await?
                    > RECENT_ROWS =>
            {
                Some("jobs.statuses".to_string())
            }
            _ => None,
        };
        match key {
            Some(key) => out.errors.push(format!(
                "{}: the status column holds {}, which no class lists: those rows are never watched; add the word to the class it means",
                config.places.name(&key),
                word.describe()
            )),
            None => quiet.push(word),
        }
    }
    if let Some(w) = crate::core::vocabulary::unlisted_warning(&quiet, WORDS_EXAMINED) {
        out.warnings.push(w);
    }
    Ok(())
}

//! The one-shot commands: `check`, `recover` and `validate`. Each returns the exit code the
//! spec gives it, or an [`Error`] that knows its own.

use std::io::Write;

pub use crate::app::report::Format;
use std::time::Duration;

use crate::adapters::api::{Answer, Target};
use crate::adapters::artifacts;
use crate::adapters::store::{Store, StoreError};
use crate::app::actions;
use crate::app::report;
use crate::app::scan::{Report, Scanner};
use crate::config::{self, Config, ConfigError, Http};
use crate::core::detect::OlderThan;

/// Nothing found, or the config is valid.
pub const EXIT_OK: u8 = 0;
/// Findings exist.
pub const EXIT_FINDINGS: u8 = 1;
/// A usage or config error (including a config that names a column the table lacks).
pub const EXIT_USAGE: u8 = 2;
/// The database (or a watched folder) could not be read.
pub const EXIT_UNAVAILABLE: u8 = 3;

/// Why a command could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Artifacts(String),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    #[error(transparent)]
    Api(#[from] crate::adapters::api::ApiError),
}

impl Error {
    /// The documented exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::Usage(_) => EXIT_USAGE,
            Error::Store(e) if e.is_config() => EXIT_USAGE,
            Error::Api(e) if e.is_usage() => EXIT_USAGE,
            Error::Store(_) | Error::Output(_) | Error::Artifacts(_) | Error::Api(_) => {
                EXIT_UNAVAILABLE
            }
        }
    }
}

/// Options of `recover`.
#[derive(Debug, Clone, Default)]
pub struct RecoverOptions {
    /// Print the writes instead of making them.
    pub dry_run: bool,
    /// Treat every active job older than this in its status as overdue.
    pub older_than: Option<Duration>,
    /// Lift the stuck-fraction guard and the per-scan cap for this run (never `min_age`).
    pub force: bool,
    /// Write only these job ids.
    pub only: Option<Vec<String>>,
    /// Never write these job ids.
    pub exclude: Vec<String>,
    /// Write only the jobs of this incident (its id in `check --json`).
    pub incident: Option<String>,
}

/// Parses `--older-than`.
pub fn parse_older_than(text: &str) -> Result<Duration, String> {
    let d = config::parse_duration(text)?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

fn exit_for(report: &Report) -> u8 {
    if report.findings.is_empty() {
        EXIT_OK
    } else {
        EXIT_FINDINGS
    }
}

/// Walks every artifact root once. A root that does not exist is a warning, or with
/// `Strict` an error (exit 3).
pub fn artifact_indexes(
    config: &Config,
    strictness: Strictness,
) -> Result<Vec<artifacts::Shared>, Error> {
    let mut out = Vec::new();
    for spec in &config.artifacts {
        let mut index = artifacts::Index::new(spec);
        index.reconcile();
        if strictness == Strictness::Strict && !index.root_present {
            let given = spec
                .root_relative
                .as_ref()
                .map(|r| format!(", given as \"{r}\", relative to the config file's folder"))
                .unwrap_or_default();
            return Err(Error::Artifacts(format!(
                "artifact root {} ({}{given}) does not exist",
                spec.root.display(),
                spec.name
            )));
        }
        out.push(std::sync::Arc::new(std::sync::Mutex::new(index)));
    }
    Ok(out)
}

/// `check --strict`: whether a missing artifact root is an error (exit 3) or a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    Lenient,
    Strict,
}

impl Strictness {
    pub fn from_flag(strict: bool) -> Strictness {
        if strict {
            Strictness::Strict
        } else {
            Strictness::Lenient
        }
    }
}

/// How many words no class lists `check` and `validate` name before "and N more".
const UNLISTED_NAMED: usize = 10;

/// `check`: one read-only scan, printed (and, unless `terminal_counts_every = "0s"`, the
/// status words of the whole table that no class lists).
pub async fn check(
    config: &Config,
    strictness: Strictness,
    format: Format,
    out: &mut dyn Write,
) -> Result<u8, Error> {
    let indexes = artifact_indexes(config, strictness)?;
    let mut scanner =
        Scanner::for_config(Store::connect(config).await?, config).with_artifacts(indexes);
    let result = scanner.scan(config, None).await;
    let unlisted = match (&result, config.terminal_counts_every) {
        (Ok(_), Some(_)) => Some(scanner.store().status_counts().await),
        _ => None,
    };
    scanner.store().close().await;
    let mut report = result?;
    scanner.incidents(&mut report, None);
    let _ = scanner.save_memory(config); // logged; the next run starts afresh
    let warning = match unlisted {
        Some(Ok(counts)) => crate::core::vocabulary::unlisted_warning(
            &config.jobs.statuses.unlisted(&counts),
            UNLISTED_NAMED,
        ),
        Some(Err(e)) => Some(format!("counting rows per status failed: {e}")),
        None => None,
    };
    if let Some(message) = warning {
        report.warnings.push(crate::core::detect::Warning {
            job_id: None,
            message,
        });
    }
    if format == Format::Json {
        report::write_json(out, &report)?;
    } else {
        report::write_human(out, &report, false)?;
    }
    Ok(exit_for(&report))
}

/// `recover`: one scan, then every finding's action, at once.
pub async fn recover(
    config: &Config,
    options: RecoverOptions,
    format: Format,
    out: &mut dyn Write,
) -> Result<u8, Error> {
    let indexes = artifact_indexes(config, Strictness::Lenient)?;
    // SIGTERM/SIGINT stop new writes at once; the one in flight finishes and is recorded.
    let stop = actions::Stop::default();
    let listener = stop_on_signals(stop.clone());
    let store = Store::connect(config).await?;
    actions::resolve_pending(&store, &config.state_dir, config.audit_max_size).await;
    let mut scanner = Scanner::for_config(store, config).with_artifacts(indexes);
    let older_than = options.older_than.map(|after| OlderThan {
        after,
        force: options.force,
    });
    let result = scanner.scan(config, older_than).await;
    let mut report = match result {
        Ok(r) => r,
        Err(e) => {
            scanner.store().close().await;
            return Err(e.into());
        }
    };
    let only = match &options.incident {
        None => options.only.clone(),
        Some(id) => match incident_jobs(&mut scanner, &mut report, id) {
            Some(jobs) => Some(jobs),
            None => {
                scanner.store().close().await;
                return Err(Error::Usage(format!(
                    "no incident {id:?} in this scan: `jobwarden check --json` lists them"
                )));
            }
        },
    };
    let executed = actions::execute(
        scanner.store(),
        config,
        &mut report,
        actions::Execute {
            dry_run: options.dry_run || config.dry_run,
            force: options.force,
            only: only.as_deref(),
            exclude: &options.exclude,
            stop: Some(&stop),
            ..actions::Execute::default()
        },
    )
    .await;
    listener.abort();
    scanner.store().close().await;
    scanner.record(&executed);
    scanner.incidents(&mut report, Some(&executed));
    let _ = scanner.save_memory(config); // logged; the next run starts afresh
    if format == Format::Json {
        report::write_json(out, &report)?;
    } else {
        report::write_human(out, &report, true)?;
        report::write_applied(out, &executed.applied)?;
        report::write_held(out, &executed.limited)?;
        if executed.interrupted > 0 {
            writeln!(
                out,
                "stopped by a signal: {} write{} not made",
                executed.interrupted,
                if executed.interrupted == 1 { "" } else { "s" }
            )?;
        }
    }
    if format == Format::Human {
        writeln!(
            out,
            "\n{}",
            report::recover_summary(&report, &executed.applied, executed.limited.len())
        )?;
    }
    if executed.audit_error.is_some() {
        // Writes were held back because their record could not be kept.
        return Ok(EXIT_UNAVAILABLE);
    }
    if executed.any_error() {
        // Found, and could not fix: a script must be able to tell this from "fixed".
        return Ok(EXIT_UNAVAILABLE);
    }
    // 0 when nothing is left for a person: every finding written or found alive again.
    Ok(if report::left_for_a_person(&report) {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    })
}

/// The jobs of incident `id` in this scan (the findings grouped first, as the daemon does),
/// or `None` when the scan knows no such incident.
fn incident_jobs(scanner: &mut Scanner, report: &mut Report, id: &str) -> Option<Vec<String>> {
    scanner.incidents(report, None);
    if !report.incidents.iter().any(|i| i.id == id) {
        return None;
    }
    let mut jobs: Vec<String> = report
        .findings
        .iter()
        .filter(|f| f.incident.as_deref() == Some(id) && !f.job_id.is_empty())
        .map(|f| f.job_id.clone())
        .collect();
    jobs.sort_unstable();
    jobs.dedup();
    Some(jobs)
}

/// Sets `stop` on the first SIGTERM or SIGINT (instead of dying mid-write).
fn stop_on_signals(stop: actions::Stop) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (term, int) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("stopping: the write in flight finishes, no other starts");
        stop.set();
    })
}

/// `audit`: the latest entries of the audit trail.
/// Needs only the state directory, never the database.
pub fn audit(
    state_dir: &std::path::Path,
    last: usize,
    format: Format,
    out: &mut dyn Write,
) -> Result<u8, Error> {
    use crate::adapters::audit::{self, HoldKind, Line};
    // One timeline of writes and of people's pauses and snoozes, the latest `last`, oldest
    // first, in the order the trail kept them.
    let lines = audit::last_lines(state_dir, last)?;
    for line in &lines {
        match (format, line) {
            (Format::Json, Line::Write(e)) => writeln!(out, "{}", json_line(e)?)?,
            (Format::Json, Line::Hold(h)) => writeln!(out, "{}", json_line(h)?)?,
            (Format::Human, Line::Write(e)) => writeln!(
                out,
                "{}  {}  job {}: {} -> {} ({} {}, rule {}, age {}s, {}){}{}{}{}",
                e.time,
                e.replica,
                e.job_id,
                e.status_before,
                e.status_after,
                e.action.as_str(),
                e.kind.as_str(),
                e.rule,
                e.age_seconds,
                e.outcome.as_str(),
                if e.forced { " forced" } else { "" },
                e.batch
                    .as_deref()
                    .map(|b| format!(" batch {b}"))
                    .unwrap_or_default(),
                e.requested_by
                    .as_deref()
                    .map(|by| format!(" asked by {by}"))
                    .unwrap_or_default(),
                e.reason
                    .as_deref()
                    .map(|why| format!(": {why}"))
                    .unwrap_or_default()
            )?,
            (Format::Human, Line::Hold(h)) => {
                let what = match (h.hold, &h.job_id) {
                    (HoldKind::Pause | HoldKind::Resume, _) => "every write".to_string(),
                    (_, Some(job)) => format!("job {job}"),
                    (_, None) => "a job".to_string(),
                };
                writeln!(
                    out,
                    "{}  {} {}{} by {}{}",
                    h.time,
                    h.hold.as_str(),
                    what,
                    h.until
                        .as_deref()
                        .map(|u| format!(" until {u}"))
                        .unwrap_or_default(),
                    if h.by.is_empty() { "?" } else { &h.by },
                    if h.reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", h.reason)
                    }
                )?
            }
        }
    }
    if lines.is_empty() && format == Format::Human {
        writeln!(out, "no entries in {}", audit::path(state_dir).display())?;
    }
    Ok(EXIT_OK)
}

/// One JSON line of the audit trail, as `audit --json` prints it.
fn json_line<T: serde::Serialize>(value: &T) -> std::io::Result<String> {
    serde_json::to_string(value).map_err(std::io::Error::other)
}

/// Whether `validate` prints the resolved config (`--print`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Print {
    VerdictOnly,
    Config,
}

/// What `validate` says about the file itself, before any database: each artifact root
/// given as a relative path (resolved against the config file's folder, so it moves with the
/// file) named as resolved, and whether it exists.
pub fn config_warnings(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for (i, a) in config.artifacts.iter().enumerate() {
        let key = config.places.name(&format!("artifacts[{i}].root"));
        if let Some(given) = &a.root_relative {
            out.push(format!(
                "{key} \"{given}\" is relative to the config file's folder: it is read as {}; \
                 give an absolute path, so the root does not change when the file is copied \
                 elsewhere (and matches ReadOnlyPaths= in the systemd unit)",
                a.root.display()
            ));
        }
        if !a.root.exists() {
            out.push(format!(
                "{key}: the folder {} does not exist (yet); `check --strict` exits 3 on it",
                a.root.display()
            ));
        }
    }
    out
}

/// `validate`: prints its verdict first (valid or not, then each error and warning); with
/// `connect`, also checks the table, its columns, the index a scan needs and how its
/// timestamps are read, and runs one read-only scan; with [`Print::Config`], prints the
/// resolved config (secrets redacted) last. Exits 2 when the timestamps cannot be read with
/// certainty.
pub async fn validate(
    config: &Config,
    connect: bool,
    print: Print,
    format: Format,
    out: &mut dyn Write,
) -> Result<u8, Error> {
    let mut warnings = config_warnings(config);
    let mut errors = Vec::new();
    let mut table = serde_json::Value::Null;
    let mut time_lines = Vec::new();
    let mut notes = Vec::new();
    let mut view = Vec::new();
    if connect {
        let store = Store::connect(config).await?;
        let info = store.info().clone();
        let verified = crate::app::verify::verify(&store, config).await;
        store.close().await;
        let verified = verified?;
        warnings.extend(verified.warnings);
        errors.extend(verified.errors);
        notes = verified.notes;
        view = verified.view;
        let time = &info.time;
        time_lines.push(format!(
            "the database's zone: {}; naive timestamps are read in {}{}",
            time.database_zone.described,
            time.read_zone,
            match config.database.timezone {
                Some(setting) => format!(" ([database] timezone = \"{setting}\")"),
                None => " ([database] timezone is not set)".to_string(),
            }
        ));
        for c in &time.columns {
            time_lines.push(format!(
                "{} ({}, {}): {}",
                c.key,
                c.field,
                if c.sql_type.is_empty() {
                    "?"
                } else {
                    &c.sql_type
                },
                c.read_as
            ));
        }
        if let Some(why) = &time.refusal {
            errors.push(why.clone());
        }
        let mut columns: Vec<_> = info.columns.iter().collect();
        columns.sort();
        table = serde_json::json!({
            "name": config.jobs.table.to_string(),
            "columns": columns.into_iter().map(|(c, t)| serde_json::json!({"name": c, "type": t})).collect::<Vec<_>>(),
            "status_indexed": info.status_indexed,
            "parent_indexed": config.jobs.parent_id.as_ref().map(|_| info.parent_indexed),
            "candidate_indexed": info.candidate_indexed,
            "privileges": notes,
            "view": view,
            "timestamps": {
                "database_zone": time.database_zone.described,
                "read_zone": time.read_zone.to_string(),
                "columns": time.columns.iter().map(|c| serde_json::json!({
                    "key": c.key, "field": c.field, "type": c.sql_type, "naive": c.naive, "read_as": c.read_as,
                })).collect::<Vec<_>>(),
            },
        });
    }
    // The listener's certificate and key are read as `run` will read them.
    if let Some(files) = &config.http.tls {
        if let Err(e) = crate::adapters::tls::load_tls(files) {
            errors.push(e.to_string());
        }
    }
    if format == Format::Json {
        // The human output prints them; beside JSON a person still sees them on stderr.
        for w in &warnings {
            tracing::warn!("{w}");
        }
    }
    let resolved = (print == Print::Config).then(|| config::redacted_json(config));
    let valid = errors.is_empty();
    if format == Format::Json {
        let mut object = serde_json::json!({
            "valid": valid, "table": table, "warnings": warnings, "errors": errors,
        });
        if let Some(resolved) = resolved {
            object["config"] = resolved;
        }
        writeln!(out, "{object}")?;
    } else {
        if valid {
            writeln!(out, "{}: valid", config.path.display())?;
        } else {
            writeln!(
                out,
                "{}: not valid on this database ({} problem{})",
                config.path.display(),
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            )?;
        }
        for e in &errors {
            writeln!(out, "error: {e}")?;
        }
        for w in &warnings {
            writeln!(out, "warning: {w}")?;
        }
        if connect {
            writeln!(out)?;
            writeln!(
                out,
                "connected to {}: table {} has every configured column",
                config.redacted_url(),
                config.jobs.table
            )?;
            if !view.is_empty() {
                writeln!(out, "view:")?;
                for line in &view {
                    writeln!(out, "  {line}")?;
                }
            }
            writeln!(out, "timestamps:")?;
            for line in &time_lines {
                writeln!(out, "  {line}")?;
            }
            writeln!(out, "privileges:")?;
            for line in &notes {
                writeln!(out, "  {line}")?;
            }
        }
        if let Some(resolved) = resolved {
            let pretty = serde_json::to_string_pretty(&resolved).map_err(std::io::Error::other)?;
            writeln!(out, "\nthe resolved config (secrets redacted):\n{pretty}")?;
        }
    }
    Ok(if valid { EXIT_OK } else { EXIT_USAGE })
}

/// `jobwarden man`: the man page of `command` (roff) on `out`; with `dir`, one page per
/// command written there (`jobwarden.1`, `jobwarden-check.1`, `jobwarden-alert-test.1`, ...),
/// each file named on `out`.
pub fn man_pages(
    command: clap::Command,
    dir: Option<&std::path::Path>,
    out: &mut dyn Write,
) -> Result<u8, Error> {
    let Some(dir) = dir else {
        clap_mangen::Man::new(command).render(out)?;
        return Ok(EXIT_OK);
    };
    std::fs::create_dir_all(dir)?;
    let version = command.get_version().unwrap_or_default().to_string();
    let mut pending = vec![(command.get_name().to_string(), command)];
    while let Some((name, mut command)) = pending.pop() {
        command.build();
        for sub in command.get_subcommands() {
            if sub.get_name() != "help" {
                let sub = sub.clone().version(version.clone());
                pending.push((format!("{name}-{}", sub.get_name()), sub));
            }
        }
        let path = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        clap_mangen::Man::new(command.name(name.clone())).render(&mut page)?;
        std::fs::write(&path, page)?;
        writeln!(out, "{}", path.display())?;
    }
    Ok(EXIT_OK)
}

/// `jobwarden alert test`: exit 0 when every receiver accepted both samples, 2 with no sinks
/// configured, else 3.
pub async fn alert_test(config: &Config, out: &mut dyn Write) -> Result<u8, Error> {
    use crate::adapters::alerts::{test_sinks, Tested};
    Ok(match test_sinks(config, out).await? {
        Tested::AllAccepted => EXIT_OK,
        Tested::NoSinks => EXIT_USAGE,
        Tested::SomeFailed => EXIT_UNAVAILABLE,
    })
}

/// `jobwarden pause --for 30m`: asks the running daemon to hold every write for that long
/// (`0s` ends a pause). Exit 0 only when jobwarden's own answer confirms it; 2 for a request
/// it cannot take; 3 when it could not be reached, refused, or the answer confirms nothing.
pub async fn pause(
    http: &Http,
    target: &Target,
    duration: &str,
    reason: Option<&str>,
    format: Format,
    out: &mut dyn Write,
) -> Result<u8, Error> {
    let mut body = serde_json::json!({});
    if let Some(reason) = reason {
        body["reason"] = reason.into();
    }
    let (answer, ending) = hold(http, target, "/api/v1/pause", duration, body).await?;
    let until = answer.hold_until("paused_until", ending, &[])?;
    match (format, until) {
        (Format::Json, _) => writeln!(out, "{}", serde_json::Value::Object(answer.json))?,
        (Format::Human, Some(until)) => writeln!(out, "writes paused until {until}; alerts go on")?,
        (Format::Human, None) => writeln!(out, "writes are not paused")?,
    }
    Ok(EXIT_OK)
}

/// `jobwarden snooze JOB --for 2h`: asks the running daemon to send no alert and make no
/// write for that job for that long (`0s` ends a snooze). Exit codes as [`pause`]; a job
/// that is not active is refused (3).
pub async fn snooze(
    http: &Http,
    target: &Target,
    job_id: &str,
    duration: &str,
    reason: Option<&str>,
    format: Format,
    out: &mut dyn Write,
) -> Result<u8, Error> {
    let mut body = serde_json::json!({});
    if let Some(reason) = reason {
        body["reason"] = reason.into();
    }
    let path = crate::core::job::job_link("/api/v1/jobs/", job_id, "/snooze");
    let (answer, ending) = hold(http, target, &path, duration, body).await?;
    let until = answer.hold_until(
        "snoozed_until",
        ending,
        &[("action", "snooze"), ("outcome", "applied")],
    )?;
    match (format, until) {
        (Format::Json, _) => writeln!(out, "{}", serde_json::Value::Object(answer.json))?,
        (Format::Human, Some(until)) => writeln!(
            out,
            "job {job_id} snoozed until {until}: no alerts and no writes for it"
        )?,
        (Format::Human, None) => writeln!(out, "job {job_id} is not snoozed")?,
    }
    Ok(EXIT_OK)
}

/// How `pause` and `snooze` reach the daemon: with `--url` and a token given and no
/// `--config`, from those alone (no file is read); otherwise from the config's `[http]`
/// table, read without the database settings (see [`config::load_operator`]). `config` is
/// `--config` when given.
pub fn operator_http(
    config: Option<&std::path::Path>,
    target: &Target,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Http, Error> {
    if config.is_none() && target.url.is_some() && target.token.is_some() {
        return Ok(Http::default());
    }
    let part = config::OperatorPart::Http {
        token: target.token.is_none(),
    };
    match operator_config(
        config,
        part,
        lookup,
        "--url URL and --token (or JOBWARDEN_TOKEN)",
    )? {
        config::Operator::Http(http) => Ok(*http),
        config::Operator::State(_) => Err(Error::Usage("no [http] table read".into())),
    }
}

/// Where `audit` reads the trail: `--state-dir`, else the config's `[state] dir` (read without
/// the database settings), else the default state directory.
pub fn operator_state_dir(
    config: Option<&std::path::Path>,
    state_dir: Option<&std::path::Path>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<std::path::PathBuf, Error> {
    if let Some(dir) = state_dir {
        return Ok(dir.to_path_buf());
    }
    let instead = "--state-dir DIR (/var/lib/jobwarden under systemd)";
    match operator_config(config, config::OperatorPart::State, lookup, instead)? {
        config::Operator::State(dir) => Ok(dir),
        config::Operator::Http(_) => Err(Error::Usage("no [state] table read".into())),
    }
}

/// The operator's part of the config file; a file that is not there (or may not be read)
/// says which options make it unneeded.
fn operator_config(
    config: Option<&std::path::Path>,
    part: config::OperatorPart,
    lookup: &dyn Fn(&str) -> Option<String>,
    instead: &str,
) -> Result<config::Operator, Error> {
    let path = config.unwrap_or(std::path::Path::new(config::DEFAULT_PATH));
    config::load_operator(path, part, lookup).map_err(|e| match e {
        ConfigError::Read { path, source } => Error::Usage(format!(
            "{path}: cannot read the config file: {source}; give it with -c PATH, or give {instead} \
             instead (the database settings are never needed here)"
        )),
        e => Error::Config(e),
    })
}

/// What `pause` and `snooze` share: `--for` checked here first (a usage error), then `body`
/// with its `for` posted to the running daemon at `path`; the daemon's answer, and whether
/// the request ends the hold (`--for 0s`).
async fn hold(
    http: &Http,
    target: &Target,
    path: &str,
    duration: &str,
    mut body: serde_json::Value,
) -> Result<(Answer, bool), Error> {
    let span = config::parse_hold(duration).map_err(|e| Error::Usage(format!("--for: {e}")))?;
    body["for"] = duration.into();
    let answer = crate::adapters::api::post(http, target, path, &body).await?;
    Ok((answer, span.is_zero()))
}

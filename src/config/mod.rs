//! The config file: parsed once, checked once, then passed around as plain values.
//!
//! Parsing happens in two steps. serde reads the TOML into `Raw*` structs that keep every
//! string with its span (`toml::Spanned`), with `deny_unknown_fields` everywhere; then
//! [`resolve`] expands `${VAR}`, parses durations, identifiers and per-environment tables, and
//! checks the rules against the statuses. Every error carries the file, line, column and key it
//! is about, so an operator can fix it without guessing. Nothing here touches the database.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::core::sql::{self, Dialect, Field, TableName};
// The vocabulary lives in the core; the config is where it is read from a file.
pub use crate::core::vocabulary::{
    Action, Jobs, Rule, Safety, Severity, Signal, StatusClass, Statuses,
};

/// Default scan period of `run`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// Default period of the whole-table count of terminal statuses.
pub const DEFAULT_TERMINAL_COUNTS_EVERY: Duration = Duration::from_secs(300);
/// Default pool size: one connection scans, one writes.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 2;
/// Default limit on any one query.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Default HTTP listen address: loopback only, on a port of our own.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9847";

fn default_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 9847))
}

/// A config that could not be loaded: what is wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the config file: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", .0)]
    Invalid(Located),
}

/// An error message with the place in the file it is about.
#[derive(Debug)]
pub struct Located {
    pub path: String,
    /// 1-based line and column, when the error has a place.
    pub position: Option<(usize, usize)>,
    /// The key the error is about (`rules[2].after`), when known.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path)?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "`{key}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// The loaded, checked config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// `environment`, or `--env`; picks the per-environment `after` values.
    pub environment: Option<String>,
    /// Scan period of `run`. Default 15s.
    pub interval: Duration,
    /// Never write to the database. Default false.
    pub dry_run: bool,
    /// Period of the terminal-status count; `None` when set to 0. Default 5m.
    pub terminal_counts_every: Option<Duration>,
    pub database: Database,
    pub jobs: Jobs,
    pub rules: Vec<Rule>,
    pub artifacts: Vec<Artifacts>,
    pub http: Http,
    pub alerts: Vec<AlertSink>,
    /// `[state] dir`: where the alert state and the audit trail live.
    pub state_dir: PathBuf,
    pub safety: Safety,
    /// `[audit] table`: also INSERT each write there, in the same transaction as the UPDATE.
    pub audit_table: Option<TableName>,
    /// The line each key was given on, for errors found later (a `where` the database
    /// rejects names its line).
    pub places: Places,
}

/// Key (`jobs.where`, `jobs.statuses.running`) to the 1-based line of its value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Places(BTreeMap<String, usize>);

impl Places {
    /// The line of a key's value, if the file set it.
    pub fn line(&self, key: &str) -> Option<usize> {
        self.0.get(key).copied()
    }

    /// `` `jobs.where` (line 14) ``, or just the key when the file did not set it.
    pub fn name(&self, key: &str) -> String {
        match self.line(key) {
            Some(line) => format!("`{key}` (line {line})"),
            None => format!("`{key}`"),
        }
    }
}

/// `[database]`.
#[derive(Debug, Clone)]
pub struct Database {
    pub url: String,
    pub dialect: Dialect,
    /// Default 2.
    pub max_connections: u32,
    /// Default 5s.
    pub query_timeout: Duration,
    /// `timezone`: the zone naive timestamps are written in. `None`: not said, so naive
    /// columns are read as UTC and, when the database's own zone is not UTC, never written.
    pub timezone: Option<crate::core::zone::Setting>,
}

/// One `[[artifacts]]` entry.
#[derive(Debug, Clone)]
pub struct Artifacts {
    pub name: String,
    /// Absolute, resolved against the config file's folder.
    pub root: PathBuf,
    pub pattern: String,
    pub partial: Vec<String>,
    pub settle: Duration,
    pub required: Vec<String>,
    /// `pattern`, `partial` and `required`, compiled once at load.
    pub compiled: CompiledArtifacts,
    /// `auto` (notify events, with a full reconcile every `reconcile_every`) or `poll` (a
    /// full walk every scan, for network filesystems). Default `auto`.
    pub watch: WatchMode,
    /// Period of the full re-walk that repairs anything events missed. Default 10m.
    pub reconcile_every: Duration,
    /// How far back succeeded jobs are checked for `required` files. Default 24h.
    pub required_within: Duration,
}

/// The patterns of one `[[artifacts]]` entry, compiled at load: nothing later can fail on them.
#[derive(Debug, Clone)]
pub struct CompiledArtifacts {
    pub pattern: crate::core::pattern::Pattern,
    pub partial: Vec<crate::core::pattern::Glob>,
    pub required: Vec<crate::core::pattern::Glob>,
}

/// How an artifact root is kept current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchMode {
    Auto,
    Poll,
}

/// Default settle time of artifacts.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(120);
/// Default period of the full artifact reconcile.
pub const DEFAULT_RECONCILE_EVERY: Duration = Duration::from_secs(600);
/// Default look-back for `missing_artifact`.
pub const DEFAULT_REQUIRED_WITHIN: Duration = Duration::from_secs(86_400);

/// `[http]`.
#[derive(Debug, Clone)]
pub struct Http {
    /// Parsed at load, so a bad address is a config error with its line, not a failed bind.
    pub listen: std::net::SocketAddr,
    pub token: Option<String>,
    /// Host names accepted besides the listen address and `localhost` (`*`: any, allowed
    /// only when the listener is bound beyond loopback).
    pub allowed_hosts: Vec<String>,
    /// `tls_cert` and `tls_key`: the listener speaks HTTPS (read at start and on SIGHUP).
    pub tls: Option<TlsFiles>,
}

/// The PEM files of the HTTPS listener, resolved against the config file's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Http {
    /// Whether a request's `Host` header is one this listener answers: the listen address,
    /// `localhost` (with or without the port), or an entry of `allowed_hosts`. Anything else
    /// is what a DNS-rebinding page in a local browser would send.
    pub fn host_allowed(&self, host: Option<&str>) -> bool {
        let Some(host) = host.map(str::trim).filter(|h| !h.is_empty()) else {
            return false;
        };
        if self.allowed_hosts.iter().any(|a| a == "*") && !self.listen.ip().is_loopback() {
            return true;
        }
        let port = self.listen.port().to_string();
        let name = match host.rsplit_once(':') {
            Some((name, p)) if p == port && !name.ends_with(':') => name,
            _ if host.starts_with('[') && host.ends_with(']') => host,
            Some((_, p)) if p.chars().all(|c| c.is_ascii_digit()) => return false,
            _ => host,
        };
        let name = name.to_ascii_lowercase();
        let ip = self.listen.ip().to_string();
        name == "localhost"
            || name == ip
            || name == format!("[{ip}]")
            || (self.listen.ip().is_loopback() && (name == "127.0.0.1" || name == "[::1]"))
            || self
                .allowed_hosts
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&name) || a.eq_ignore_ascii_case(host))
    }
}

/// One `[[alerts]]` entry.
#[derive(Debug, Clone)]
pub struct AlertSink {
    /// Unique; the `sink` label of the alert metrics. Default `<kind>` (`<kind>-2`, ... when a
    /// kind repeats).
    pub name: String,
    pub kind: AlertKind,
    /// The receiver: a webhook or Slack incoming-webhook URL, or Alertmanager's base URL.
    pub url: String,
    /// Default `warning` (everything).
    pub min_severity: Severity,
    /// Extra request headers (webhook only), e.g. `Authorization`.
    pub headers: Vec<(String, String)>,
    /// Signs each webhook body: `X-Jobwarden-Signature: sha256=<hex HMAC-SHA256>`.
    pub hmac_secret: Option<String>,
    /// Announce a still-firing finding again at this period. Default off.
    pub repeat_every: Option<Duration>,
    /// Per-request timeout. Default 10s.
    pub timeout: Duration,
    /// Messages waiting for a receiver that is down; past this the oldest are dropped
    /// (counted and logged). Default 1000.
    pub queue: usize,
}

/// Default per-request timeout of an alert sink.
pub const DEFAULT_ALERT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound of an alert sink's queue.
pub const DEFAULT_ALERT_QUEUE: usize = 1000;

/// The alert receivers jobwarden speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertKind {
    Webhook,
    Slack,
    Alertmanager,
}

impl Config {
    /// The longest `required_within` of the artifact roots that require files, if any does:
    /// how far back succeeded jobs are read.
    pub fn required_within(&self) -> Option<Duration> {
        self.artifacts
            .iter()
            .filter(|a| !a.required.is_empty())
            .map(|a| a.required_within)
            .max()
    }

    /// The database URL with any password replaced by `***`.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.database.url)
    }

    /// Every secret in this config, for scrubbing error messages that might echo one.
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets: Vec<String> = url_password(&self.database.url).into_iter().collect();
        secrets.extend(self.http.token.clone());
        for sink in &self.alerts {
            secrets.extend(sink.hmac_secret.clone());
            secrets.extend(sink.headers.iter().map(|(_, v)| v.clone()));
            secrets.extend(url_password(&sink.url));
            // The secret part of a sink URL: a Slack path, a query string.
            let shown = redact_alert_url(sink.kind, &sink.url);
            if let Some(hidden) = hidden_part(&sink.url, &shown) {
                secrets.push(hidden);
            }
        }
        secrets.retain(|s| s.len() >= 3);
        secrets
    }

    /// Replaces every secret of this config in `text` with `***`: the one redaction for logs,
    /// errors, outputs and pages.
    pub fn redact(&self, text: &str) -> String {
        scrub(text, &self.secrets())
    }
}

/// What `shown` hides of `url`: the tail after their common start, when `shown` ends in `***`.
fn hidden_part(url: &str, shown: &str) -> Option<String> {
    let kept = shown.strip_suffix("***")?;
    let common = url
        .char_indices()
        .zip(kept.chars())
        .take_while(|((_, a), b)| a == b)
        .last()
        .map_or(0, |((i, c), _)| i + c.len_utf8());
    Some(url[common..].to_string()).filter(|h| !h.is_empty())
}

/// Replaces every secret in a message with `***` (secrets shorter than three characters are
/// left alone: they would mangle every message).
pub fn scrub(message: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= 3)
        .fold(message.to_string(), |m, s| m.replace(s.as_str(), "***"))
}

/// Replaces the password of a `scheme://user:password@host/...` URL (and a `password=` query
/// parameter) with `***`. Anything else is returned unchanged.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(password) = url_password(url) {
        if !password.is_empty() {
            out = out.replacen(&format!(":{password}@"), ":***@", 1);
        }
    }
    if let Some((head, query)) = out.split_once('?') {
        let query = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&");
        out = format!("{head}?{query}");
    }
    out
}

/// The password part of a URL's user info, if any.
fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    Some(userinfo.split_once(':')?.1.to_string())
}

/// Where `${VAR}` is looked up: the process environment, then a systemd credential of that
/// name (`LoadCredential=DATABASE_URL:...` puts it in `$CREDENTIALS_DIRECTORY/DATABASE_URL`),
/// with one trailing newline removed.
pub fn env_lookup(name: &str) -> Option<String> {
    if let Ok(value) = std::env::var(name) {
        return Some(value);
    }
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
    let mut value = std::fs::read_to_string(Path::new(&dir).join(name)).ok()?;
    if value.ends_with('\n') {
        value.pop();
    }
    Some(value)
}

/// Reads and resolves a config file. `env_override` is `--env`; `lookup` reads `${VAR}`s.
pub fn load(
    path: &Path,
    env_override: Option<&str>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let text = read_config_file(path)?;
    parse(&text, path, env_override, lookup)
}

/// The largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// How long reading the config file may take (a file on a hung network mount, say).
const CONFIG_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads the config file: a regular file of at most [`MAX_CONFIG_BYTES`], within
/// [`CONFIG_READ_TIMEOUT`]. A FIFO, a device such as `/dev/zero` or a directory is refused
/// at once instead of blocking or filling memory.
fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    let shown = path.display().to_string();
    let invalid = |message: String| {
        ConfigError::Invalid(Located {
            path: shown.clone(),
            position: None,
            key: None,
            message,
        })
    };
    let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    if !meta.is_file() {
        return Err(invalid(
            "is not a regular file (a FIFO, a device or a directory); give the path of the TOML file".into(),
        ));
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(invalid(format!(
            "is {} bytes; a config file is at most {MAX_CONFIG_BYTES} bytes",
            meta.len()
        )));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let owned = path.to_path_buf();
    std::thread::spawn(move || {
        use std::io::Read;
        let result = std::fs::File::open(&owned).and_then(|f| {
            let mut text = String::new();
            f.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text)?;
            Ok(text)
        });
        let _ = tx.send(result);
    });
    match rx.recv_timeout(CONFIG_READ_TIMEOUT) {
        Ok(Ok(text)) if text.len() as u64 > MAX_CONFIG_BYTES => Err(invalid(format!(
            "grew past {MAX_CONFIG_BYTES} bytes while it was read"
        ))),
        Ok(Ok(text)) => Ok(text),
        Ok(Err(source)) => Err(ConfigError::Read {
            path: shown,
            source,
        }),
        Err(_) => Err(invalid(format!(
            "could not be read within {}",
            humantime::format_duration(CONFIG_READ_TIMEOUT)
        ))),
    }
}

/// Parses and resolves config text as if read from `path`.
pub fn parse(
    text: &str,
    path: &Path,
    env_override: Option<&str>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let ctx = Ctx {
        text,
        path: path.display().to_string(),
        lookup,
        places: Default::default(),
    };
    let raw: RawConfig = toml::from_str(text)
        .map_err(|e| ctx.error(e.span(), None, e.message().trim_end().replace('\n', "; ")))?;
    resolve(&ctx, raw, path, env_override).map_err(ConfigError::Invalid)
}

// ---------------------------------------------------------------------------------------------
// Raw, as written in the file.

type Text = Spanned<String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    environment: Option<Text>,
    interval: Option<Text>,
    dry_run: Option<bool>,
    terminal_counts_every: Option<Text>,
    database: RawDatabase,
    jobs: RawJobs,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    artifacts: Vec<RawArtifacts>,
    http: Option<RawHttp>,
    #[serde(default)]
    alerts: Vec<RawAlert>,
    state: Option<RawState>,
    safety: Option<RawSafety>,
    audit: Option<RawAudit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    table: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSafety {
    max_actions_per_scan: Option<Spanned<i64>>,
    max_stuck_fraction: Option<Spanned<f64>>,
    min_active: Option<Spanned<i64>>,
    min_age: Option<Text>,
    startup_grace: Option<Text>,
    confirm_scans: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    dir: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: Text,
    max_connections: Option<Spanned<i64>>,
    query_timeout: Option<Text>,
    timezone: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJobs {
    table: Text,
    id: Option<Text>,
    status: Option<Text>,
    created_at: Option<Text>,
    heartbeat_at: Option<Text>,
    status_since: Option<Text>,
    progress: Option<Text>,
    finished_at: Option<Text>,
    error: Option<Text>,
    parent_id: Option<Text>,
    phase: Option<Text>,
    pid: Option<Text>,
    attempts: Option<Text>,
    max_attempts: Option<Spanned<i64>>,
    host: Option<Text>,
    #[serde(rename = "where")]
    where_sql: Option<Text>,
    statuses: RawStatuses,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatuses {
    #[serde(default)]
    pending: Vec<Text>,
    #[serde(default)]
    running: Vec<Text>,
    #[serde(default)]
    succeeded: Vec<Text>,
    #[serde(default)]
    failed: Vec<Text>,
    #[serde(default)]
    cancelled: Vec<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Text,
    statuses: Spanned<Vec<Text>>,
    signal: Spanned<Signal>,
    after: Spanned<toml::Value>,
    phases: Option<Vec<Text>>,
    action: Option<Spanned<Action>>,
    severity: Option<Severity>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArtifacts {
    name: Text,
    root: Text,
    pattern: Text,
    #[serde(default)]
    partial: Vec<Text>,
    settle: Option<Text>,
    #[serde(default)]
    required: Vec<Text>,
    watch: Option<WatchMode>,
    reconcile_every: Option<Text>,
    required_within: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<Text>,
    token: Option<Text>,
    #[serde(default)]
    allowed_hosts: Vec<Text>,
    tls_cert: Option<Text>,
    tls_key: Option<Text>,
    allow_plaintext: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlert {
    name: Option<Text>,
    kind: Spanned<AlertKind>,
    url: Text,
    min_severity: Option<Severity>,
    #[serde(default)]
    headers: BTreeMap<String, Text>,
    hmac_secret: Option<Text>,
    repeat_every: Option<Text>,
    timeout: Option<Text>,
    queue: Option<Spanned<i64>>,
}

// ---------------------------------------------------------------------------------------------
// Resolution.

struct Ctx<'a> {
    text: &'a str,
    path: String,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    /// Lines of the keys read so far.
    places: std::cell::RefCell<BTreeMap<String, usize>>,
}

impl Ctx<'_> {
    fn error(&self, span: Option<Range<usize>>, key: Option<&str>, message: String) -> ConfigError {
        ConfigError::Invalid(self.located(span, key, message))
    }

    fn located(&self, span: Option<Range<usize>>, key: Option<&str>, message: String) -> Located {
        Located {
            path: self.path.clone(),
            position: span.map(|s| line_column(self.text, s.start)),
            key: key.map(str::to_string),
            message,
        }
    }

    fn at<T>(&self, spanned: &Spanned<T>, key: &str, message: String) -> Located {
        self.located(Some(spanned.span()), Some(key), message)
    }

    /// A string with `${VAR}` expanded. Records the key's line.
    fn text(&self, value: &Text, key: &str) -> Result<String, Located> {
        self.places
            .borrow_mut()
            .entry(key.to_string())
            .or_insert_with(|| line_column(self.text, value.span().start).0);
        expand(value.get_ref(), self.lookup).map_err(|m| self.at(value, key, m))
    }

    fn duration(&self, value: &Text, key: &str) -> Result<Duration, Located> {
        let text = self.text(value, key)?;
        parse_duration(&text).map_err(|m| self.at(value, key, m))
    }

    fn field(&self, value: &Text, key: &str) -> Result<Field, Located> {
        let text = self.text(value, key)?;
        sql::parse_field(&text).map_err(|m| self.at(value, key, m))
    }

    fn opt_field(&self, value: &Option<Text>, key: &str) -> Result<Option<Field>, Located> {
        value.as_ref().map(|v| self.field(v, key)).transpose()
    }

    fn plain_field(&self, value: &Option<Text>, key: &str) -> Result<Option<Field>, Located> {
        let field = self.opt_field(value, key)?;
        if let (Some(f), Some(v)) = (&field, value) {
            if !f.is_plain() {
                return Err(self.at(v, key, format!(
                    "`{f}` is a JSON path, but jobwarden writes this column, so it must be a plain column"
                )));
            }
        }
        Ok(field)
    }

    fn texts(&self, values: &[Text], key: &str) -> Result<Vec<String>, Located> {
        values.iter().map(|v| self.text(v, key)).collect()
    }
}

/// Where a `;` outside quotes and comments ends a statement in `sql`, if one does: `where`
/// is spliced into every query, so it must stay one expression.
fn statement_end(sql: &str) -> Option<usize> {
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            q @ ('\'' | '"' | '`') => {
                i += 1;
                while i < chars.len() && chars[i] != q {
                    if chars[i] == '\\' && q == '\'' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                    i += 1;
                }
                i += 1;
            }
            ';' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Expands `${VAR}` from `lookup`; `$$` is a literal `$`. An unset variable is an error.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}').ok_or_else(|| {
                format!("`${{` without a closing `}}` in \"{}\"", redact_url(text))
            })?;
            let name = &inner[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "`${{{name}}}` is not a valid environment variable name"
                ));
            }
            let value =
                lookup(name).ok_or_else(|| format!("environment variable `{name}` is not set"))?;
            out.push_str(&value);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A humantime duration (`90s`, `5m`, `1h 30m`), or `0`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(trimmed).map_err(|e| {
        format!("`{text}` is not a duration ({e}); write it like \"90s\", \"5m\" or \"1h 30m\"")
    })
}

fn resolve(
    ctx: &Ctx<'_>,
    raw: RawConfig,
    path: &Path,
    env_override: Option<&str>,
) -> Result<Config, Located> {
    let environment = match env_override {
        Some(e) => Some(e.to_string()),
        None => raw
            .environment
            .as_ref()
            .map(|e| ctx.text(e, "environment"))
            .transpose()?,
    };
    if environment.as_deref() == Some("") {
        return Err(ctx.located(None, Some("environment"), "must not be empty".into()));
    }
    let interval = match &raw.interval {
        Some(v) => ctx.duration(v, "interval")?,
        None => DEFAULT_INTERVAL,
    };
    if interval.is_zero() {
        let span = raw.interval.as_ref().map(|v| v.span());
        return Err(ctx.located(span, Some("interval"), "must be longer than zero".into()));
    }
    let terminal_counts_every = match &raw.terminal_counts_every {
        Some(v) => Some(ctx.duration(v, "terminal_counts_every")?).filter(|d| !d.is_zero()),
        None => Some(DEFAULT_TERMINAL_COUNTS_EVERY),
    };
    let database = resolve_database(ctx, &raw.database)?;
    let jobs = resolve_jobs(ctx, &raw.jobs)?;
    let rules = raw
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| resolve_rule(ctx, r, i, environment.as_deref(), &jobs))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, rule) in rules.iter().enumerate() {
        if rules[..i].iter().any(|r| r.name == rule.name) {
            return Err(ctx.at(
                &raw.rules[i].name,
                &format!("rules[{i}].name"),
                format!(
                    "rule name `{}` is used twice; names key alerts, so they must be unique",
                    rule.name
                ),
            ));
        }
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let artifacts = raw
        .artifacts
        .iter()
        .enumerate()
        .map(|(i, a)| resolve_artifacts(ctx, a, i, base))
        .collect::<Result<Vec<_>, _>>()?;
    let http = match &raw.http {
        Some(h) => resolve_http(ctx, h, base)?,
        None => Http {
            listen: default_listen(),
            token: None,
            allowed_hosts: Vec::new(),
            tls: None,
        },
    };
    let alerts = resolve_alerts(ctx, &raw.alerts)?;
    let safety = resolve_safety(ctx, raw.safety.as_ref(), interval)?;
    let audit_table = match raw.audit.as_ref().and_then(|a| a.table.as_ref()) {
        Some(t) => {
            let text = ctx.text(t, "audit.table")?;
            Some(sql::parse_table(&text).map_err(|m| ctx.at(t, "audit.table", m))?)
        }
        None => None,
    };
    let state_dir = match raw.state.as_ref().and_then(|s| s.dir.as_ref()) {
        Some(dir) => {
            let dir = PathBuf::from(ctx.text(dir, "state.dir")?);
            if dir.is_absolute() {
                dir
            } else {
                base.join(dir)
            }
        }
        None => default_state_dir(ctx.lookup, base),
    };
    Ok(Config {
        path: path.to_path_buf(),
        environment,
        interval,
        dry_run: raw.dry_run.unwrap_or(false),
        terminal_counts_every,
        database,
        jobs,
        rules,
        artifacts,
        http,
        alerts,
        state_dir,
        safety,
        audit_table,
        places: Places(ctx.places.take()),
    })
}

fn resolve_safety(
    ctx: &Ctx<'_>,
    raw: Option<&RawSafety>,
    interval: Duration,
) -> Result<Safety, Located> {
    let count =
        |v: &Option<Spanned<i64>>, key: &str, default: i64, min: i64| -> Result<i64, Located> {
            match v {
                Some(n) if *n.get_ref() < min => {
                    Err(ctx.at(n, key, format!("must be at least {min}")))
                }
                Some(n) => Ok(*n.get_ref()),
                None => Ok(default),
            }
        };
    let Some(raw) = raw else {
        return Ok(Safety::defaults(interval));
    };
    let fraction = match &raw.max_stuck_fraction {
        Some(f) if !(0.0..=1.0).contains(f.get_ref()) => {
            return Err(ctx.at(
                f,
                "safety.max_stuck_fraction",
                "must be between 0.0 and 1.0".into(),
            ))
        }
        Some(f) => *f.get_ref(),
        None => Safety::DEFAULT_MAX_STUCK_FRACTION,
    };
    Ok(Safety {
        max_actions_per_scan: count(
            &raw.max_actions_per_scan,
            "safety.max_actions_per_scan",
            Safety::DEFAULT_MAX_ACTIONS_PER_SCAN as i64,
            0,
        )? as usize,
        max_stuck_fraction: fraction,
        min_active: count(
            &raw.min_active,
            "safety.min_active",
            Safety::DEFAULT_MIN_ACTIVE as i64,
            0,
        )? as usize,
        min_age: match &raw.min_age {
            Some(t) => ctx.duration(t, "safety.min_age")?,
            None => Safety::DEFAULT_MIN_AGE,
        },
        startup_grace: match &raw.startup_grace {
            Some(t) => ctx.duration(t, "safety.startup_grace")?,
            None => interval,
        },
        confirm_scans: count(
            &raw.confirm_scans,
            "safety.confirm_scans",
            i64::from(Safety::DEFAULT_CONFIRM_SCANS),
            1,
        )? as u32,
    })
}

/// `[http]`: the address, the token, the Host names, TLS; and the rule that a token never
/// crosses a network in the clear unless the operator says so.
fn resolve_http(ctx: &Ctx, h: &RawHttp, base: &Path) -> Result<Http, Located> {
    let listen = match &h.listen {
        Some(l) => {
            let text = ctx.text(l, "http.listen")?;
            text.trim().parse().map_err(|_| {
                ctx.at(
                    l,
                    "http.listen",
                    format!("`{text}` is not an address and port such as \"127.0.0.1:9847\" or \"[::1]:9847\""),
                )
            })?
        }
        None => default_listen(),
    };
    let token = h
        .token
        .as_ref()
        .map(|t| ctx.text(t, "http.token"))
        .transpose()?
        .filter(|t| !t.is_empty());
    let file = |value: &Text, key: &str| -> Result<PathBuf, Located> {
        let path = PathBuf::from(ctx.text(value, key)?);
        Ok(if path.is_absolute() {
            path
        } else {
            base.join(path)
        })
    };
    let tls = match (&h.tls_cert, &h.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: file(cert, "http.tls_cert")?,
            key: file(key, "http.tls_key")?,
        }),
        (None, None) => None,
        (Some(cert), None) => {
            return Err(ctx.at(
                cert,
                "http.tls_cert",
                "`tls_cert` needs `tls_key` beside it".into(),
            ))
        }
        (None, Some(key)) => {
            return Err(ctx.at(
                key,
                "http.tls_key",
                "`tls_key` needs `tls_cert` beside it".into(),
            ))
        }
    };
    if tls.is_none()
        && token.is_some()
        && !listen.ip().is_loopback()
        && h.allow_plaintext != Some(true)
    {
        let message = format!(
            "the listener {listen} is reachable beyond this machine and has a token, but no TLS: \
             the token would cross the network in the clear. Set tls_cert and tls_key, bind \
             127.0.0.1, or set allow_plaintext = true if a proxy in front terminates TLS"
        );
        return Err(match &h.listen {
            Some(l) => ctx.at(l, "http.listen", message),
            None => ctx.located(None, Some("http.listen"), message),
        });
    }
    Ok(Http {
        listen,
        token,
        allowed_hosts: ctx.texts(&h.allowed_hosts, "http.allowed_hosts")?,
        tls,
    })
}

/// `$STATE_DIRECTORY` (systemd's `StateDirectory=`), else `$XDG_STATE_HOME/jobwarden`, else
/// `$HOME/.local/state/jobwarden`, else `.jobwarden-state` beside the config file.
fn default_state_dir(lookup: &dyn Fn(&str) -> Option<String>, base: &Path) -> PathBuf {
    let nonempty = |name: &str| lookup(name).filter(|v| !v.is_empty());
    if let Some(dir) = nonempty("STATE_DIRECTORY") {
        // systemd may list several, separated by colons; ours is the first.
        return PathBuf::from(dir.split(':').next().unwrap_or(&dir));
    }
    if let Some(xdg) = nonempty("XDG_STATE_HOME") {
        return PathBuf::from(xdg).join("jobwarden");
    }
    if let Some(home) = nonempty("HOME") {
        return PathBuf::from(home).join(".local/state/jobwarden");
    }
    base.join(".jobwarden-state")
}

fn resolve_alerts(ctx: &Ctx<'_>, raw: &[RawAlert]) -> Result<Vec<AlertSink>, Located> {
    let mut sinks: Vec<AlertSink> = Vec::new();
    for (i, a) in raw.iter().enumerate() {
        let key = |k: &str| format!("alerts[{i}].{k}");
        let kind = *a.kind.get_ref();
        let url = ctx.text(&a.url, &key("url"))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ctx.at(
                &a.url,
                &key("url"),
                "must be an http:// or https:// URL".into(),
            ));
        }
        let name = match &a.name {
            Some(n) => ctx.text(n, &key("name"))?,
            None => {
                let same = sinks.iter().filter(|s| s.kind == kind).count();
                let base = kind_name(kind);
                if same == 0 {
                    base.to_string()
                } else {
                    format!("{base}-{}", same + 1)
                }
            }
        };
        if sinks.iter().any(|s| s.name == name) {
            return Err(ctx.at(
                &a.kind,
                &key("name"),
                format!("two alert sinks are named `{name}`; give each a unique `name`"),
            ));
        }
        if kind != AlertKind::Webhook && (!a.headers.is_empty() || a.hmac_secret.is_some()) {
            return Err(ctx.at(
                &a.kind,
                &key("headers"),
                format!(
                    "`headers` and `hmac_secret` are for webhook sinks, not {}",
                    kind_name(kind)
                ),
            ));
        }
        let headers = a
            .headers
            .iter()
            .map(|(k, v)| Ok((k.clone(), ctx.text(v, &key(&format!("headers.{k}")))?)))
            .collect::<Result<Vec<_>, Located>>()?;
        let queue = match &a.queue {
            Some(q) if !(1..=1_000_000).contains(q.get_ref()) => {
                return Err(ctx.at(
                    q,
                    &key("queue"),
                    format!("{} is out of range (1 to 1000000)", q.get_ref()),
                ))
            }
            Some(q) => *q.get_ref() as usize,
            None => DEFAULT_ALERT_QUEUE,
        };
        sinks.push(AlertSink {
            name,
            kind,
            url,
            min_severity: a.min_severity.unwrap_or(Severity::Warning),
            headers,
            hmac_secret: a
                .hmac_secret
                .as_ref()
                .map(|h| ctx.text(h, &key("hmac_secret")))
                .transpose()?,
            repeat_every: a
                .repeat_every
                .as_ref()
                .map(|r| ctx.duration(r, &key("repeat_every")))
                .transpose()?
                .filter(|d| !d.is_zero()),
            timeout: match &a.timeout {
                Some(t) => ctx.duration(t, &key("timeout"))?,
                None => DEFAULT_ALERT_TIMEOUT,
            },
            queue,
        });
    }
    Ok(sinks)
}

/// The config's word for an alert kind.
pub fn kind_name(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::Webhook => "webhook",
        AlertKind::Slack => "slack",
        AlertKind::Alertmanager => "alertmanager",
    }
}

fn resolve_database(ctx: &Ctx<'_>, raw: &RawDatabase) -> Result<Database, Located> {
    let url = ctx.text(&raw.url, "database.url")?;
    let dialect = Dialect::from_url(&url).ok_or_else(|| {
        ctx.at(
            &raw.url,
            "database.url",
            format!(
                "`{}` is not a postgres://, mysql:// or sqlite:// URL",
                redact_url(&url)
            ),
        )
    })?;
    // sqlx knows MariaDB by the mysql:// scheme.
    let url = match url.strip_prefix("mariadb:") {
        Some(rest) => format!("mysql:{rest}"),
        None => url,
    };
    let max_connections = match &raw.max_connections {
        Some(m) if !(1..=100).contains(m.get_ref()) => {
            return Err(ctx.at(
                m,
                "database.max_connections",
                format!("{} is out of range (1 to 100)", m.get_ref()),
            ))
        }
        Some(m) => *m.get_ref() as u32,
        None => DEFAULT_MAX_CONNECTIONS,
    };
    let query_timeout = match &raw.query_timeout {
        Some(v) => ctx.duration(v, "database.query_timeout")?,
        None => DEFAULT_QUERY_TIMEOUT,
    };
    if query_timeout.is_zero() {
        return Err(ctx.located(
            raw.query_timeout.as_ref().map(|v| v.span()),
            Some("database.query_timeout"),
            "must be longer than zero".into(),
        ));
    }
    let timezone = match &raw.timezone {
        Some(t) => {
            let text = ctx.text(t, "database.timezone")?;
            Some(
                crate::core::zone::Setting::parse(&text)
                    .map_err(|m| ctx.at(t, "database.timezone", m))?,
            )
        }
        None => None,
    };
    Ok(Database {
        url,
        dialect,
        max_connections,
        query_timeout,
        timezone,
    })
}

fn resolve_jobs(ctx: &Ctx<'_>, raw: &RawJobs) -> Result<Jobs, Located> {
    let table_text = ctx.text(&raw.table, "jobs.table")?;
    let table = sql::parse_table(&table_text).map_err(|m| ctx.at(&raw.table, "jobs.table", m))?;
    let named = |value: &Option<Text>, key: &str, default: &str| -> Result<Field, Located> {
        match value {
            Some(v) => ctx.field(v, key),
            None => Ok(Field {
                column: default.to_string(),
                path: vec![],
            }),
        }
    };
    let id = named(&raw.id, "jobs.id", "id")?;
    let status = named(&raw.status, "jobs.status", "status")?;
    for (field, value, key) in [
        (&id, &raw.id, "jobs.id"),
        (&status, &raw.status, "jobs.status"),
    ] {
        if !field.is_plain() {
            return Err(ctx.located(
                value.as_ref().map(|v| v.span()),
                Some(key),
                format!("`{field}` is a JSON path; the id and status must be plain columns"),
            ));
        }
    }
    let statuses = resolve_statuses(ctx, &raw.statuses)?;
    let pid = ctx.opt_field(&raw.pid, "jobs.pid")?;
    let host = ctx.opt_field(&raw.host, "jobs.host")?;
    if pid.is_some() != host.is_some() {
        let (value, key) = if pid.is_some() {
            (&raw.pid, "jobs.pid")
        } else {
            (&raw.host, "jobs.host")
        };
        return Err(ctx.located(
            value.as_ref().map(|v| v.span()),
            Some(key),
            "`pid` and `host` go together: a pid means nothing without the host it runs on".into(),
        ));
    }
    Ok(Jobs {
        table,
        id,
        status,
        created_at: named(&raw.created_at, "jobs.created_at", "created_at")?,
        heartbeat_at: ctx.opt_field(&raw.heartbeat_at, "jobs.heartbeat_at")?,
        status_since: ctx.opt_field(&raw.status_since, "jobs.status_since")?,
        progress: ctx.opt_field(&raw.progress, "jobs.progress")?,
        finished_at: ctx.plain_field(&raw.finished_at, "jobs.finished_at")?,
        error: ctx.plain_field(&raw.error, "jobs.error")?,
        parent_id: ctx.opt_field(&raw.parent_id, "jobs.parent_id")?,
        phase: ctx.opt_field(&raw.phase, "jobs.phase")?,
        pid,
        host,
        attempts: ctx.plain_field(&raw.attempts, "jobs.attempts")?,
        max_attempts: match &raw.max_attempts {
            Some(m) if !(1..=1000).contains(m.get_ref()) => {
                return Err(ctx.at(
                    m,
                    "jobs.max_attempts",
                    format!("{} is out of range (1 to 1000)", m.get_ref()),
                ))
            }
            Some(m) => *m.get_ref() as u32,
            None => Jobs::DEFAULT_MAX_ATTEMPTS,
        },
        where_sql: match &raw.where_sql {
            Some(w) => {
                let text = ctx.text(w, "jobs.where")?;
                if let Some(at) = statement_end(&text) {
                    return Err(ctx.at(
                        w,
                        "jobs.where",
                        format!(
                            "must be one SQL expression, but `;` at character {} ends a statement: `{}`",
                            at + 1,
                            text.trim()
                        ),
                    ));
                }
                Some(text).filter(|w| !w.trim().is_empty())
            }
            None => None,
        },
        statuses,
    })
}

fn resolve_statuses(ctx: &Ctx<'_>, raw: &RawStatuses) -> Result<Statuses, Located> {
    let statuses = Statuses {
        pending: ctx.texts(&raw.pending, "jobs.statuses.pending")?,
        running: ctx.texts(&raw.running, "jobs.statuses.running")?,
        succeeded: ctx.texts(&raw.succeeded, "jobs.statuses.succeeded")?,
        failed: ctx.texts(&raw.failed, "jobs.statuses.failed")?,
        cancelled: ctx.texts(&raw.cancelled, "jobs.statuses.cancelled")?,
    };
    let mut seen: BTreeMap<&str, StatusClass> = BTreeMap::new();
    for class in StatusClass::ALL {
        for (i, word) in statuses.words(class).iter().enumerate() {
            let spanned = match class {
                StatusClass::Pending => &raw.pending[i],
                StatusClass::Running => &raw.running[i],
                StatusClass::Succeeded => &raw.succeeded[i],
                StatusClass::Failed => &raw.failed[i],
                StatusClass::Cancelled => &raw.cancelled[i],
            };
            let key = format!("jobs.statuses.{}", class.as_str());
            if word.is_empty() {
                return Err(ctx.at(spanned, &key, "a status word must not be empty".into()));
            }
            if let Some(other) = seen.insert(word, class) {
                return Err(ctx.at(
                    spanned,
                    &key,
                    format!(
                        "status `{word}` is already listed under `{}`",
                        other.as_str()
                    ),
                ));
            }
        }
    }
    if statuses.active().next().is_none() {
        return Err(ctx.located(
            None,
            Some("jobs.statuses"),
            "list at least one `pending` or `running` status word: those are the jobs jobwarden watches".into(),
        ));
    }
    Ok(statuses)
}

fn resolve_rule(
    ctx: &Ctx<'_>,
    raw: &RawRule,
    i: usize,
    environment: Option<&str>,
    jobs: &Jobs,
) -> Result<Rule, Located> {
    let key = |k: &str| format!("rules[{i}].{k}");
    let name = ctx.text(&raw.name, &key("name"))?;
    if name.trim().is_empty() {
        return Err(ctx.at(&raw.name, &key("name"), "a rule needs a name".into()));
    }
    let statuses = raw
        .statuses
        .get_ref()
        .iter()
        .map(|s| {
            let word = ctx.text(s, &key("statuses"))?;
            match jobs.statuses.class_of(&word) {
                Some(c) if c.is_active() => Ok(word),
                Some(c) => Err(ctx.at(s, &key("statuses"), format!(
                    "rule `{name}` watches `{word}`, a `{}` status; rules watch pending and running statuses only",
                    c.as_str()
                ))),
                None => Err(ctx.at(s, &key("statuses"), format!(
                    "rule `{name}` watches `{word}`, which [jobs.statuses] does not list as pending or running"
                ))),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    if statuses.is_empty() {
        return Err(ctx.at(
            &raw.statuses,
            &key("statuses"),
            format!("rule `{name}` watches no status"),
        ));
    }
    let signal = *raw.signal.get_ref();
    let needs = match signal {
        Signal::Heartbeat => jobs.heartbeat_at.is_none().then_some("heartbeat_at"),
        Signal::Progress => jobs.progress.is_none().then_some("progress"),
        Signal::Created => None,
    };
    if let Some(column) = needs {
        return Err(ctx.at(
            &raw.signal,
            &key("signal"),
            format!(
                "rule `{name}` uses signal `{}`, but [jobs] sets no `{column}` column",
                signal.as_str()
            ),
        ));
    }
    let after = resolve_after(ctx, &raw.after, &key("after"), &name, environment)?;
    let phases = match &raw.phases {
        Some(p) if jobs.phase.is_none() => {
            let first = p.first().map(|t| t.span());
            return Err(ctx.located(
                first,
                Some(&key("phases")),
                format!("rule `{name}` selects by phase, but [jobs] sets no `phase` column"),
            ));
        }
        Some(p) => Some(ctx.texts(p, &key("phases"))?),
        None => None,
    };
    let action = raw.action.as_ref().map_or(Action::Alert, |a| *a.get_ref());
    let missing_class = match action {
        Action::Fail if jobs.statuses.failed.is_empty() => Some("failed"),
        Action::Requeue if jobs.statuses.pending.is_empty() => Some("pending"),
        _ => None,
    };
    if let (Some(class), Some(a)) = (missing_class, &raw.action) {
        return Err(ctx.at(a, &key("action"), format!(
            "rule `{name}` would write a `{class}` status, but [jobs.statuses] lists no `{class}` word"
        )));
    }
    Ok(Rule {
        name,
        statuses,
        signal,
        after,
        phases,
        action,
        severity: raw.severity.unwrap_or(Severity::Warning),
    })
}

/// `after = "30m"`, or `after = { development = "5m", production = "30m" }` resolved for the
/// environment in use.
fn resolve_after(
    ctx: &Ctx<'_>,
    raw: &Spanned<toml::Value>,
    key: &str,
    rule: &str,
    environment: Option<&str>,
) -> Result<Duration, Located> {
    let duration = |text: &str, key: &str| -> Result<Duration, Located> {
        let expanded = expand(text, ctx.lookup).map_err(|m| ctx.at(raw, key, m))?;
        let d = parse_duration(&expanded).map_err(|m| ctx.at(raw, key, m))?;
        if d.is_zero() {
            return Err(ctx.at(raw, key, "must be longer than zero".into()));
        }
        Ok(d)
    };
    match raw.get_ref() {
        toml::Value::String(s) => duration(s, key),
        toml::Value::Table(table) => {
            let Some(env) = environment else {
                return Err(ctx.at(raw, key, format!(
                    "rule `{rule}` gives `after` per environment, but no environment is set: set `environment` in the file or pass --env"
                )));
            };
            match table.get(env) {
                Some(toml::Value::String(s)) => duration(s, &format!("{key}.{env}")),
                Some(_) => Err(ctx.at(
                    raw,
                    &format!("{key}.{env}"),
                    "must be a duration string like \"30m\"".into(),
                )),
                None => Err(ctx.at(
                    raw,
                    key,
                    format!(
                        "rule `{rule}` has no `after` for environment `{env}` (it has: {})",
                        table.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                )),
            }
        }
        _ => Err(ctx.at(
            raw,
            key,
            "must be a duration string (\"30m\") or a table of them per environment".into(),
        )),
    }
}

fn resolve_artifacts(
    ctx: &Ctx<'_>,
    raw: &RawArtifacts,
    i: usize,
    base: &Path,
) -> Result<Artifacts, Located> {
    let key = |k: &str| format!("artifacts[{i}].{k}");
    let pattern = ctx.text(&raw.pattern, &key("pattern"))?;
    let compiled_pattern = crate::core::pattern::Pattern::new(&pattern)
        .map_err(|m| ctx.at(&raw.pattern, &key("pattern"), m))?;
    let globs = |list: &[Text], name: &str| -> Result<Vec<crate::core::pattern::Glob>, Located> {
        list.iter()
            .map(|g| {
                let text = ctx.text(g, &key(name))?;
                crate::core::pattern::Glob::new(&text).map_err(|m| ctx.at(g, &key(name), m))
            })
            .collect()
    };
    let compiled = CompiledArtifacts {
        pattern: compiled_pattern,
        partial: globs(&raw.partial, "partial")?,
        required: globs(&raw.required, "required")?,
    };
    if pattern.matches("{job_id}").count() != 1 {
        return Err(ctx.at(
            &raw.pattern,
            &key("pattern"),
            format!(
            "`{pattern}` must contain `{{job_id}}` exactly once: it is how a path names its job"
        ),
        ));
    }
    let root = PathBuf::from(ctx.text(&raw.root, &key("root"))?);
    Ok(Artifacts {
        name: ctx.text(&raw.name, &key("name"))?,
        root: if root.is_absolute() {
            root
        } else {
            base.join(root)
        },
        pattern,
        partial: ctx.texts(&raw.partial, &key("partial"))?,
        settle: match &raw.settle {
            Some(s) => ctx.duration(s, &key("settle"))?,
            None => DEFAULT_SETTLE,
        },
        watch: raw.watch.unwrap_or(WatchMode::Auto),
        reconcile_every: match &raw.reconcile_every {
            Some(s) => ctx
                .duration(s, &key("reconcile_every"))?
                .max(Duration::from_secs(1)),
            None => DEFAULT_RECONCILE_EVERY,
        },
        required_within: match &raw.required_within {
            Some(s) => ctx.duration(s, &key("required_within"))?,
            None => DEFAULT_REQUIRED_WITHIN,
        },
        required: ctx.texts(&raw.required, &key("required"))?,
        compiled,
    })
}

// ---------------------------------------------------------------------------------------------
// Printing the resolved config (`validate`).

/// The resolved config as a JSON value, with secrets redacted.
pub fn redacted_json(config: &Config) -> serde_json::Value {
    let field = |f: &Option<Field>| f.as_ref().map(|f| f.to_string());
    let rules: Vec<_> = config
        .rules
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name, "statuses": r.statuses, "signal": r.signal,
                "after": humantime::format_duration(r.after).to_string(),
                "phases": r.phases, "action": r.action, "severity": r.severity,
            })
        })
        .collect();
    let artifacts: Vec<_> = config
        .artifacts
        .iter()
        .map(|a| {
            serde_json::json!({
                "name": a.name, "root": a.root, "pattern": a.pattern, "partial": a.partial,
                "settle": humantime::format_duration(a.settle).to_string(), "required": a.required,
                "watch": a.watch, "reconcile_every": humantime::format_duration(a.reconcile_every).to_string(),
                "required_within": humantime::format_duration(a.required_within).to_string(),
            })
        })
        .collect();
    let alerts: Vec<_> = config
        .alerts
        .iter()
        .map(|a| serde_json::json!({
            "name": a.name, "kind": a.kind, "url": redact_alert_url(a.kind, &a.url),
            "min_severity": a.min_severity,
            "headers": a.headers.iter().map(|(k, _)| (k.clone(), "***")).collect::<BTreeMap<_, _>>(),
            "hmac_secret": a.hmac_secret.as_ref().map(|_| "***"),
            "repeat_every": a.repeat_every.map(|d| humantime::format_duration(d).to_string()),
            "timeout": humantime::format_duration(a.timeout).to_string(),
            "queue": a.queue,
        }))
        .collect();
    let j = &config.jobs;
    serde_json::json!({
        "environment": config.environment,
        "interval": humantime::format_duration(config.interval).to_string(),
        "dry_run": config.dry_run,
        "terminal_counts_every": config.terminal_counts_every
            .map_or("0".to_string(), |d| humantime::format_duration(d).to_string()),
        "database": {
            "url": config.redacted_url(),
            "dialect": config.database.dialect,
            "max_connections": config.database.max_connections,
            "query_timeout": humantime::format_duration(config.database.query_timeout).to_string(),
            "timezone": config.database.timezone.map(|t| t.to_string()),
        },
        "jobs": {
            "table": j.table.to_string(), "id": j.id.to_string(), "status": j.status.to_string(),
            "created_at": j.created_at.to_string(), "heartbeat_at": field(&j.heartbeat_at),
            "status_since": field(&j.status_since),
            "progress": field(&j.progress), "finished_at": field(&j.finished_at),
            "error": field(&j.error), "parent_id": field(&j.parent_id), "phase": field(&j.phase),
            "pid": field(&j.pid), "host": field(&j.host), "where": j.where_sql,
            "attempts": field(&j.attempts), "max_attempts": j.max_attempts,
            "statuses": StatusClass::ALL.iter()
                .map(|&c| (c.as_str(), j.statuses.words(c).to_vec()))
                .collect::<BTreeMap<_, _>>(),
        },
        "rules": rules,
        "artifacts": artifacts,
        "http": {"listen": config.http.listen.to_string(), "token": config.http.token.as_ref().map(|_| "***"),
            "allowed_hosts": config.http.allowed_hosts,
            "tls_cert": config.http.tls.as_ref().map(|t| t.cert.display().to_string()),
            "tls_key": config.http.tls.as_ref().map(|t| t.key.display().to_string())},
        "alerts": alerts,
        "state": {"dir": config.state_dir},
        "audit": {"table": config.audit_table.as_ref().map(|t| t.to_string())},
        "safety": {
            "max_actions_per_scan": config.safety.max_actions_per_scan,
            "max_stuck_fraction": config.safety.max_stuck_fraction,
            "min_active": config.safety.min_active,
            "min_age": humantime::format_duration(config.safety.min_age).to_string(),
            "startup_grace": humantime::format_duration(config.safety.startup_grace).to_string(),
            "confirm_scans": config.safety.confirm_scans,
        },
    })
}

/// A Slack incoming-webhook URL is itself the secret (its path); other URLs only hide a
/// password.
/// A sink URL as jobwarden shows it anywhere: a Slack URL keeps its host and first path
/// segment (`https://hooks.slack.com/services/***`, the rest is the secret); any URL loses
/// its password and query string.
pub fn redact_alert_url(kind: AlertKind, url: &str) -> String {
    let url = redact_url(url);
    let url = match url.split_once('?') {
        Some((base, _)) => format!("{base}?***"),
        None => url,
    };
    match (kind, url.split_once("://")) {
        (AlertKind::Slack, Some((scheme, rest))) => {
            let mut parts = rest.split('/');
            let host = parts.next().unwrap_or_default();
            match parts.next().filter(|p| !p.is_empty()) {
                Some(first) => format!("{scheme}://{host}/{first}/***"),
                None => format!("{scheme}://{host}/***"),
            }
        }
        _ => url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[database]
url = "sqlite://jobs.db"

[jobs]
table = "jobs"
heartbeat_at = "updated_at"
[jobs.statuses]
running = ["running"]
failed = ["failed"]
"#;

    fn env(name: &str) -> Option<String> {
        match name {
            "DATABASE_URL" => Some("postgres://app:s3cret@db:5432/app".into()),
            "TOKEN" => Some("t0k3n".into()),
            _ => None,
        }
    }

    #[test]
    fn hosts_a_listener_answers() {
        let http = |listen: &str, allowed: &[&str]| Http {
            listen: listen.parse().unwrap(),
            token: None,
            allowed_hosts: allowed.iter().map(|s| s.to_string()).collect(),
            tls: None,
        };
        let local = http("127.0.0.1:9847", &["jobs.internal"]);
        for ok in [
            "127.0.0.1:9847",
            "localhost:9847",
            "localhost",
            "LOCALHOST",
            "jobs.internal",
            "jobs.internal:9847",
            "[::1]:9847",
        ] {
            assert!(local.host_allowed(Some(ok)), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9847",
            "127.0.0.1:80",
            "localhost:1234",
            "",
        ] {
            assert!(!local.host_allowed(Some(bad)), "{bad}");
        }
        assert!(!local.host_allowed(None));
        assert!(
            !http("127.0.0.1:9847", &["*"]).host_allowed(Some("evil.example")),
            "* needs a public listener"
        );
        assert!(http("0.0.0.0:9847", &["*"]).host_allowed(Some("evil.example")));
    }

    #[test]
    fn sink_urls_show_no_secret() {
        assert_eq!(
            redact_alert_url(
                AlertKind::Slack,
                "https://hooks.slack.com/services/T0/B0/SECRETPART"
            ),
            "https://hooks.slack.com/services/***"
        );
        assert_eq!(
            redact_alert_url(AlertKind::Webhook, "https://u:pw@hooks.example/x?token=abc"),
            "https://u:***@hooks.example/x?***"
        );
        assert_eq!(
            hidden_part(
                "https://hooks.slack.com/services/T0/B0/SECRETPART",
                "https://hooks.slack.com/services/***"
            )
            .as_deref(),
            Some("T0/B0/SECRETPART")
        );
        let text = MINIMAL.to_string()
            + "\n[[alerts]]\nkind = \"slack\"\nurl = \"https://hooks.slack.com/services/T0/B0/SECRETPART\"\n";
        let c = load_str(&text, None).unwrap();
        assert_eq!(
            c.redact(
                "error sending request for url (https://hooks.slack.com/services/T0/B0/SECRETPART)"
            ),
            "error sending request for url (https://hooks.slack.com/services/***)"
        );
    }

    #[test]
    fn an_unclosed_variable_does_not_print_the_password() {
        let err = load_str(
            &MINIMAL.replace("sqlite://jobs.db", "postgres://u:SECRETPW@h/db${OOPS"),
            None,
        )
        .unwrap_err();
        assert!(
            !err.contains("SECRETPW") && err.contains("without a closing"),
            "{err}"
        );
    }

    #[test]
    fn where_is_one_expression() {
        assert_eq!(statement_end("archived = false"), None);
        assert_eq!(
            statement_end("note <> 'a;b' AND \"x;y\" IS NOT NULL -- ; comment"),
            None
        );
        assert_eq!(statement_end("a = 1 /* ; */ AND b = 'it''s; fine'"), None);
        assert_eq!(statement_end("1=1); DROP TABLE jobs; --"), Some(4));
        let err = load_str(
            &MINIMAL.replace(
                "[jobs]\n",
                "[jobs]\nwhere = \"1=1); DROP TABLE jobs; --\"\n",
            ),
            None,
        )
        .unwrap_err();
        assert!(
            err.contains("`jobs.where`") && err.contains("must be one SQL expression"),
            "{err}"
        );
    }

    fn load_str(text: &str, env_override: Option<&str>) -> Result<Config, String> {
        parse(
            text,
            Path::new("/etc/jobwarden/jw.toml"),
            env_override,
            &env,
        )
        .map_err(|e| e.to_string())
    }

    fn with_rule(rule: &str) -> String {
        format!("{MINIMAL}\n[[rules]]\n{rule}\n")
    }

    #[test]
    fn defaults_apply() {
        let c = load_str(MINIMAL, None).unwrap();
        assert_eq!(c.interval, DEFAULT_INTERVAL);
        assert_eq!(c.database.max_connections, 2);
        assert_eq!(c.database.query_timeout, Duration::from_secs(5));
        assert_eq!(c.terminal_counts_every, Some(Duration::from_secs(300)));
        assert_eq!(c.jobs.id.column, "id");
        assert_eq!(c.jobs.created_at.column, "created_at");
        assert_eq!(c.http.listen.to_string(), DEFAULT_LISTEN);
        assert!(!c.dry_run);
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let text = MINIMAL.replace("table = \"jobs\"", "table = \"jobs\"\ntabel = \"x\"");
        let err = load_str(&text, None).unwrap_err();
        assert!(err.starts_with("/etc/jobwarden/jw.toml:7:1: "), "{err}");
        assert!(err.contains("unknown field `tabel`"), "{err}");
    }

    #[test]
    fn unknown_status_class_is_rejected() {
        let text = MINIMAL.replace("failed = [\"failed\"]", "broken = [\"x\"]");
        let err = load_str(&text, None).unwrap_err();
        assert!(
            err.contains(":10:1:") && err.contains("unknown field `broken`"),
            "{err}"
        );
    }

    #[test]
    fn env_vars_expand_and_unset_ones_are_named() {
        let text = MINIMAL.replace("sqlite://jobs.db", "${DATABASE_URL}");
        let c = load_str(&text, None).unwrap();
        assert_eq!(c.database.url, "postgres://app:s3cret@db:5432/app");
        assert_eq!(c.redacted_url(), "postgres://app:***@db:5432/app");
        assert_eq!(c.database.dialect, Dialect::Postgres);
        let err = load_str(&MINIMAL.replace("sqlite://jobs.db", "${NOPE}"), None).unwrap_err();
        assert!(
            err.contains(":3:7:")
                && err.contains("`database.url`")
                && err.contains("`NOPE` is not set"),
            "{err}"
        );
    }

    #[test]
    fn every_duration_unit_parses() {
        let s = Duration::from_secs;
        for (text, expected) in [
            ("90s", s(90)),
            ("5m", s(300)),
            ("1h 30m", s(5400)),
            ("2h", s(7200)),
            ("1d", s(86400)),
            ("500ms", Duration::from_millis(500)),
        ] {
            let c = load_str(&format!("interval = \"{text}\"\n{MINIMAL}"), None);
            match c {
                Ok(c) => assert_eq!(c.interval, expected, "{text}"),
                Err(e) => panic!("{text}: {e}"),
            }
        }
    }

    #[test]
    fn bad_duration_names_the_key() {
        let err = load_str(&format!("interval = \"soon\"\n{MINIMAL}"), None).unwrap_err();
        assert!(
            err.contains(":1:12:") && err.contains("`interval`") && err.contains("not a duration"),
            "{err}"
        );
    }

    #[test]
    fn per_environment_after_is_resolved() {
        let rule = with_rule(
            "name = \"hb\"\nstatuses = [\"running\"]\nsignal = \"heartbeat\"\nafter = { development = \"5m\", production = \"30m\" }",
        );
        let prod = load_str(&format!("environment = \"production\"\n{rule}"), None).unwrap();
        assert_eq!(prod.rules[0].after, Duration::from_secs(1800));
        let dev = load_str(
            &format!("environment = \"production\"\n{rule}"),
            Some("development"),
        )
        .unwrap();
        assert_eq!(dev.rules[0].after, Duration::from_secs(300));
        let err = load_str(&rule, Some("staging")).unwrap_err();
        assert!(
            err.contains("no `after` for environment `staging`")
                && err.contains("development, production"),
            "{err}"
        );
        let err = load_str(&rule, None).unwrap_err();
        assert!(err.contains("no environment is set"), "{err}");
    }

    #[test]
    fn rule_defaults_and_checks() {
        let c = load_str(
            &with_rule(
                "name = \"r\"\nstatuses = [\"running\"]\nsignal = \"created\"\nafter = \"1h\"",
            ),
            None,
        )
        .unwrap();
        assert_eq!(c.rules[0].action, Action::Alert);
        assert_eq!(c.rules[0].severity, Severity::Warning);

        let cases = [
            ("name = \"r\"\nstatuses = [\"done\"]\nsignal = \"created\"\nafter = \"1h\"", "does not list as pending or running"),
            ("name = \"r\"\nstatuses = [\"failed\"]\nsignal = \"created\"\nafter = \"1h\"", "a `failed` status"),
            ("name = \"r\"\nstatuses = [\"running\"]\nsignal = \"progress\"\nafter = \"1h\"", "no `progress` column"),
            ("name = \"r\"\nstatuses = [\"running\"]\nsignal = \"smoke\"\nafter = \"1h\"", "unknown variant `smoke`"),
            ("name = \"r\"\nstatuses = [\"running\"]\nsignal = \"created\"\nafter = \"1h\"\naction = \"requeue\"", "no `pending` word"),
            ("name = \"r\"\nstatuses = [\"running\"]\nsignal = \"created\"\nafter = \"1h\"\nphases = [\"a\"]", "no `phase` column"),
            ("name = \"r\"\nstatuses = [\"running\"]\nsignal = \"created\"\nafter = 5", "must be a duration string"),
            ("name = \"r\"\nstatuses = [\"running\"]\nsignal = \"created\"\nafter = \"0s\"", "longer than zero"),
        ];
        for (rule, expected) in cases {
            let err = load_str(&with_rule(rule), None).unwrap_err();
            assert!(err.contains(expected), "{rule}\n=> {err}");
            assert!(
                err.contains("rules[0]") || err.contains("unknown variant"),
                "{err}"
            );
        }
        let twice = format!(
            "{}\n[[rules]]\nname = \"r\"\nstatuses = [\"running\"]\nsignal = \"created\"\nafter = \"2h\"",
            with_rule("name = \"r\"\nstatuses = [\"running\"]\nsignal = \"created\"\nafter = \"1h\"")
        );
        assert!(load_str(&twice, None).unwrap_err().contains("used twice"));
    }

    #[test]
    fn identifiers_are_checked_where_they_are_written() {
        let err = load_str(
            &MINIMAL.replace("\"updated_at\"", "\"updated at; drop\""),
            None,
        )
        .unwrap_err();
        assert!(
            err.contains(":7:16:")
                && err.contains("`jobs.heartbeat_at`")
                && err.contains("not a plain identifier"),
            "{err}"
        );
        let c = load_str(&MINIMAL.replace("\"updated_at\"", "'\"updatedAt\"'"), None).unwrap();
        assert_eq!(c.jobs.heartbeat_at.unwrap().column, "updatedAt");
        let err = load_str(
            &MINIMAL.replace("heartbeat_at = \"updated_at\"", "error = \"meta.err\""),
            None,
        )
        .unwrap_err();
        assert!(err.contains("must be a plain column"), "{err}");
    }

    #[test]
    fn status_words_are_unique_and_active_ones_exist() {
        let err = load_str(
            &MINIMAL.replace("failed = [\"failed\"]", "failed = [\"running\"]"),
            None,
        )
        .unwrap_err();
        assert!(err.contains("already listed under `running`"), "{err}");
        let err = load_str(&MINIMAL.replace("running = [\"running\"]", ""), None).unwrap_err();
        assert!(err.contains("at least one `pending` or `running`"), "{err}");
    }

    #[test]
    fn pid_needs_host() {
        let err = load_str(
            &MINIMAL.replace("table = \"jobs\"", "table = \"jobs\"\npid = \"pid\""),
            None,
        )
        .unwrap_err();
        assert!(
            err.contains("`jobs.pid`") && err.contains("go together"),
            "{err}"
        );
    }

    #[test]
    fn redaction_hides_passwords_and_tokens() {
        assert_eq!(
            redact_url("postgres://u:p%40ss@h/db?sslmode=require"),
            "postgres://u:***@h/db?sslmode=require"
        );
        assert_eq!(redact_url("mysql://root@h/db"), "mysql://root@h/db");
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=x"),
            "postgres://h/db?user=u&password=***"
        );
        let text = format!("{MINIMAL}\n[http]\ntoken = \"${{TOKEN}}\"\n[[alerts]]\nkind = \"slack\"\nurl = \"https://hooks.slack.com/services/T0/B0/XYZ\"\n")
            .replace("sqlite://jobs.db", "${DATABASE_URL}");
        let c = load_str(&text, None).unwrap();
        let printed = redacted_json(&c).to_string();
        for secret in ["s3cret", "t0k3n", "XYZ"] {
            assert!(!printed.contains(secret), "{secret} leaked: {printed}");
        }
        assert_eq!(
            c.secrets(),
            vec![
                "s3cret".to_string(),
                "t0k3n".to_string(),
                "T0/B0/XYZ".to_string()
            ],
            "the Slack path is a secret too"
        );
    }

    #[test]
    fn artifacts_root_is_relative_to_the_config() {
        let c = load_str(&format!("{MINIMAL}\n[[artifacts]]\nname = \"reports\"\nroot = \"volumes/logs\"\npattern = \"{{job_id}}/**\"\n"), None).unwrap();
        assert_eq!(
            c.artifacts[0].root,
            PathBuf::from("/etc/jobwarden/volumes/logs")
        );
        let err = load_str(
            &format!("{MINIMAL}\n[[artifacts]]\nname = \"r\"\nroot = \"x\"\npattern = \"*.pdf\"\n"),
            None,
        )
        .unwrap_err();
        assert!(err.contains("{job_id}"), "{err}");
    }

    #[test]
    fn expand_handles_dollars() {
        assert_eq!(expand("a$$b", &env).unwrap(), "a$b");
        assert_eq!(expand("cost $5", &env).unwrap(), "cost $5");
        assert!(expand("${", &env).is_err());
        assert!(expand("${A-B}", &env).unwrap_err().contains("not a valid"));
    }
}

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
mod expand;
mod raw;
mod redact;
mod resolve;
mod suggest;
mod writes;

pub use expand::{expand, format_size, parse_duration, parse_hold, parse_size, MAX_HOLD};
use raw::*;
use redact::{hidden_part, url_password};
pub use redact::{redact_alert_url, redact_url, redacted_json, scrub};
pub use resolve::kind_name;
use resolve::*;

pub use crate::core::vocabulary::{
    Action, Jobs, Rule, Safety, Severity, Signal, StatusClass, Statuses, Workers,
};

/// The config file when neither `--config` nor `JOBWARDEN_CONFIG` names one.
pub const DEFAULT_PATH: &str = "jobwarden.toml";
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
/// `[audit] max_size`'s default: 64 MiB.
pub const DEFAULT_AUDIT_MAX_SIZE: u64 = 64 * 1024 * 1024;
/// The smallest `[audit] max_size`: a few entries.
pub const MIN_AUDIT_MAX_SIZE: u64 = 1024;

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
    /// `[audit] max_size`, in bytes: `audit.jsonl` rotates before an append would take it
    /// past this. Default [`DEFAULT_AUDIT_MAX_SIZE`].
    pub audit_max_size: u64,
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
    /// `root` as the file wrote it, when that was a relative path (`validate` warns: the
    /// root then depends on where the file lies).
    pub root_relative: Option<String>,
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
    /// `base_path`: every route under it (`/jobwarden`), or `""` for the root.
    pub base_path: String,
    /// `job_url`: the application's own page of a job, with `{job_id}` in it.
    pub job_url: Option<String>,
    /// `external_url`: where people reach the daemon (base path included, no trailing `/`),
    /// for the links in alerts; default none (Alertmanager's links then use `listen`).
    pub external_url: Option<String>,
    /// `user_header` (`X-Forwarded-User`): names the person behind a request in the audit,
    /// believed only from `trusted_proxies` (addresses or CIDR ranges).
    pub user_header: Option<String>,
    pub trusted_proxies: Vec<Cidr>,
}

/// An address range of `trusted_proxies`: `10.0.0.0/8`, or one address (`127.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub net: std::net::IpAddr,
    pub bits: u8,
}

impl Cidr {
    /// `a.b.c.d`, `a.b.c.d/n`, an IPv6 address, or one with `/n`.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (ip, bits) = match text.trim().split_once('/') {
            Some((ip, bits)) => (ip, Some(bits.parse::<u8>().ok()?)),
            None => (text.trim(), None),
        };
        let net: std::net::IpAddr = ip.parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(Cidr { net, bits })
    }

    /// Whether `ip` lies in the range (an IPv4-mapped IPv6 address as its IPv4 one).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        let keep = |len: u32| -> u128 {
            if self.bits == 0 {
                0
            } else {
                u128::MAX << (len - u32::from(self.bits))
            }
        };
        match (self.net, ip) {
            (std::net::IpAddr::V4(n), std::net::IpAddr::V4(i)) => {
                let mask = keep(32) as u32;
                u32::from(n) & mask == u32::from(i) & mask
            }
            (std::net::IpAddr::V6(n), std::net::IpAddr::V6(i)) => {
                let mask = keep(128);
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod cidr_tests {
    use super::Cidr;

    #[test]
    fn ranges_and_single_addresses() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let lan = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(lan.contains(ip("10.20.30.40")) && !lan.contains(ip("11.0.0.1")));
        let one = Cidr::parse("127.0.0.1").unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        assert!(one.contains(ip("::ffff:127.0.0.1")), "IPv4-mapped");
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "proxy.internal", "10.0.0/8", "::1/129", ""] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }
}

/// The PEM files of the HTTPS listener, resolved against the config file's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for Http {
    /// No `[http]` table: loopback on the default port, no token, no TLS, no base path.
    fn default() -> Http {
        Http {
            listen: default_listen(),
            token: None,
            allowed_hosts: Vec::new(),
            tls: None,
            base_path: String::new(),
            job_url: None,
            external_url: None,
            user_header: None,
            trusted_proxies: Vec::new(),
        }
    }
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

/// What an operator command (`pause`, `snooze`, `audit`) reads of the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorPart {
    /// `[http]`: how to reach the daemon; `token: false` leaves `[http] token` unread (the
    /// command was given one, and the file's may name a variable this shell lacks).
    Http { token: bool },
    /// `[state] dir`.
    State,
}

/// What an operator command needs of the config: the part it asked for, nothing about the
/// database.
#[derive(Debug, Clone)]
pub enum Operator {
    Http(Box<Http>),
    State(PathBuf),
}

/// Reads only one part of a config file (`[http]` or `[state]`), for the operator commands:
/// the database settings (often a `${DATABASE_URL}` kept in a root-only file) and the other
/// tables are not read, so an unset variable there is no error.
pub fn load_operator(
    path: &Path,
    part: OperatorPart,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Operator, ConfigError> {
    let text = read_config_file(path)?;
    parse_operator(&text, path, part, lookup)
}

/// [`load_operator`] on text read from `path`.
pub fn parse_operator(
    text: &str,
    path: &Path,
    part: OperatorPart,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Operator, ConfigError> {
    let ctx = Ctx::new(text, path, lookup);
    let raw: RawOperator = toml::from_str(text).map_err(|e| toml_error(&ctx, &e))?;
    let base = config_folder(path);
    match part {
        OperatorPart::Http { token } => Ok(Operator::Http(Box::new(match raw.http {
            Some(mut h) => {
                if !token {
                    h.token = None;
                }
                resolve_http(&ctx, &h, &base).map_err(ConfigError::Invalid)?
            }
            None => Http::default(),
        }))),
        OperatorPart::State => Ok(Operator::State(
            resolve_state_dir(&ctx, raw.state.as_ref(), &base).map_err(ConfigError::Invalid)?,
        )),
    }
}

/// A TOML or serde error at its place, with "did you mean" for a mistyped key or value.
fn toml_error(ctx: &Ctx<'_>, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim_end().replace('\n', "; ");
    ctx.error(e.span(), None, suggest::did_you_mean(&message))
}

/// The folder relative paths in a config file are resolved against: the file's own folder,
/// made absolute (so an error names the path as it is read, whatever the working directory).
pub fn config_folder(path: &Path) -> PathBuf {
    let parent = path.parent().unwrap_or(Path::new(""));
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf())
}

/// The largest config file read, and the largest TLS certificate or key.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// How long reading the config file (or a TLS file) may take (a file on a hung network
/// mount, say).
const CONFIG_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Why [`read_regular_file`] refused a file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("is not a regular file (a FIFO, a device or a directory)")]
    NotRegular,
    #[error("is {0} bytes; at most {MAX_CONFIG_BYTES} bytes are read")]
    TooBig(u64),
    #[error("grew past {MAX_CONFIG_BYTES} bytes while it was read")]
    Grew,
    #[error(
        "could not be read within {}",
        humantime::format_duration(CONFIG_READ_TIMEOUT)
    )]
    TimedOut,
}

/// Reads a file that must be a regular file of at most [`MAX_CONFIG_BYTES`], within
/// [`CONFIG_READ_TIMEOUT`]: the config, a TLS certificate or key. A FIFO, a device such as
/// `/dev/zero` or a directory is refused at once instead of blocking or filling memory.
pub fn read_regular_file(path: &Path) -> Result<Vec<u8>, FileError> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(FileError::NotRegular);
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(FileError::TooBig(meta.len()));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let owned = path.to_path_buf();
    std::thread::spawn(move || {
        use std::io::Read;
        let result = std::fs::File::open(&owned).and_then(|f| {
            let mut bytes = Vec::new();
            f.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes)?;
            Ok(bytes)
        });
        let _ = tx.send(result);
    });
    match rx.recv_timeout(CONFIG_READ_TIMEOUT) {
        Ok(Ok(bytes)) if bytes.len() as u64 > MAX_CONFIG_BYTES => Err(FileError::Grew),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(FileError::Io(e)),
        Err(_) => Err(FileError::TimedOut),
    }
}

/// Reads the config file (see [`read_regular_file`]) as UTF-8 text.
fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    let shown = path.display().to_string();
    let read = |source: std::io::Error| ConfigError::Read {
        path: shown.clone(),
        source,
    };
    let bytes = read_regular_file(path).map_err(|e| match e {
        FileError::Io(source) => read(source),
        FileError::NotRegular => ConfigError::Invalid(Located {
            path: shown.clone(),
            position: None,
            key: None,
            message: format!("{e}; give the path of the TOML file"),
        }),
        e => ConfigError::Invalid(Located {
            path: shown.clone(),
            position: None,
            key: None,
            message: e.to_string(),
        }),
    })?;
    String::from_utf8(bytes)
        .map_err(|e| read(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// Parses and resolves config text as if read from `path`.
pub fn parse(
    text: &str,
    path: &Path,
    env_override: Option<&str>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let ctx = Ctx::new(text, path, lookup);
    let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(&ctx, &e))?;
    resolve(&ctx, raw, path, env_override).map_err(ConfigError::Invalid)
}

// ---------------------------------------------------------------------------------------------
// Raw, as written in the file.

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
            "TOKEN" => Some("t0k3n-t0k3n-t0k3n".into()),
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
            base_path: String::new(),
            job_url: None,
            external_url: None,
            user_header: None,
            trusted_proxies: Vec::new(),
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
    fn max_bulk_defaults_to_ten_thousand_and_takes_no_zero() {
        let c = load_str(MINIMAL, None).unwrap();
        assert_eq!(c.safety.max_bulk, 10_000);
        let with = |n: &str| load_str(&format!("{MINIMAL}\n[safety]\nmax_bulk = {n}\n"), None);
        assert_eq!(with("500").unwrap().safety.max_bulk, 500);
        let err = with("0").unwrap_err();
        assert!(
            err.contains("safety.max_bulk") && err.contains("must be at least 1"),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let text = MINIMAL.replace("table = \"jobs\"", "table = \"jobs\"\ntabel = \"x\"");
        let err = load_str(&text, None).unwrap_err();
        assert!(err.starts_with("/etc/jobwarden/jw.toml:7:1: "), "{err}");
        assert!(err.contains("unknown field `tabel`"), "{err}");
    }

    #[test]
    fn a_blank_or_short_token_is_refused_with_the_reason() {
        let with = |http: &str| load_str(&format!("{MINIMAL}\n[http]\n{http}\n"), None);
        for (token, said) in [
            ("\"\"", "is blank"),
            ("\"   \"", "is blank"),
            ("\"short-token\"", "is 11 characters long"),
            ("\"${EMPTY}\"", "EMPTY"),
        ] {
            let err = with(&format!("token = {token}")).unwrap_err();
            assert!(
                err.contains(":13:") && err.contains("`http.token`") && err.contains(said),
                "{token}: {err}"
            );
        }
        let err = with("token = \"short-token\"").unwrap_err();
        assert!(err.contains("at least 16 characters"), "{err}");
        assert!(
            !err.contains("short-token\""),
            "the token is not shown: {err}"
        );
        let c = with("token = \"${TOKEN}\"").unwrap();
        assert_eq!(c.http.token.as_deref(), Some("t0k3n-t0k3n-t0k3n"));
        assert_eq!(with("").unwrap().http.token, None);
    }

    #[test]
    fn a_hold_lasts_at_most_a_year() {
        assert_eq!(parse_hold("365d"), Ok(MAX_HOLD));
        assert_eq!(parse_hold("0s"), Ok(Duration::ZERO));
        for long in ["366d", "100000000000y"] {
            let err = parse_hold(long).unwrap_err();
            assert!(err.contains("at most 1 year"), "{long}: {err}");
        }
        assert!(parse_hold("soon").unwrap_err().contains("not a duration"));
    }

    #[test]
    fn a_base_path_with_dot_segments_is_refused() {
        let with = |base: &str| {
            load_str(
                &format!("{MINIMAL}\n[http]\nbase_path = \"{base}\"\n"),
                None,
            )
        };
        for bad in ["/a/../b", "/..", "/.", "/jw/./x", "/jw/.."] {
            let err = with(bad).unwrap_err();
            assert!(
                err.contains("`http.base_path`") && err.contains("`.` or `..` segment"),
                "{bad}: {err}"
            );
        }
        for fine in ["/jobwarden", "/jw/v1.2", "/.well", "/a..b/", ""] {
            assert!(with(fine).is_ok(), "{fine}");
        }
    }

    #[test]
    fn user_header_is_believed_only_from_trusted_proxies() {
        let config = load_str(
            &format!("{MINIMAL}\n[http]\nuser_header = \"X-Forwarded-User\"\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n"),
            None,
        )
        .expect("loads");
        assert_eq!(config.http.user_header.as_deref(), Some("x-forwarded-user"));
        assert_eq!(config.http.trusted_proxies.len(), 2);
        let alone = load_str(
            &format!("{MINIMAL}\n[http]\nuser_header = \"X-Forwarded-User\"\n"),
            None,
        )
        .expect_err("without trusted_proxies");
        assert!(
            alone.contains("`http.user_header`") && alone.contains("needs http.trusted_proxies"),
            "{alone}"
        );
        let bad = load_str(
            &format!("{MINIMAL}\n[http]\ntrusted_proxies = [\"proxy.internal\"]\n"),
            None,
        )
        .expect_err("a name");
        assert!(
            bad.contains("`http.trusted_proxies`") && bad.contains("10.0.0.0/8"),
            "{bad}"
        );
    }

    #[test]
    fn external_url_is_an_http_url_kept_without_its_trailing_slash() {
        let with = |url: &str| {
            load_str(
                &format!("{MINIMAL}\n[http]\nexternal_url = \"{url}\"\n"),
                None,
            )
        };
        let config = with("https://jobs.internal/jobwarden/").unwrap();
        assert_eq!(
            config.http.external_url.as_deref(),
            Some("https://jobs.internal/jobwarden")
        );
        for bad in ["jobs.internal", "https://", "ftp://x", "https://x/?a=1"] {
            let err = with(bad).unwrap_err();
            assert!(err.contains("`http.external_url`"), "{bad}: {err}");
        }
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
    fn audit_max_size_takes_every_unit_and_names_the_key() {
        assert_eq!(
            load_str(MINIMAL, None).unwrap().audit_max_size,
            64 * 1024 * 1024,
            "the default"
        );
        for (text, expected) in [
            ("64MiB", 64 << 20),
            ("64 mib", 64 << 20),
            ("500KB", 500_000),
            ("2KiB", 2048),
            ("1GB", 1_000_000_000),
            ("1GiB", 1 << 30),
            ("1048576", 1 << 20),
            ("4096B", 4096),
        ] {
            let c = load_str(&format!("{MINIMAL}\n[audit]\nmax_size = \"{text}\""), None);
            match c {
                Ok(c) => assert_eq!(c.audit_max_size, expected, "{text}"),
                Err(e) => panic!("{text}: {e}"),
            }
        }
        for (text, says) in [
            ("big", "not a size"),
            ("64 MiBs", "not a size"),
            ("-1MiB", "not a size"),
            ("100", "at least 1KiB"),
            ("99999999999TiB", "too large"),
        ] {
            let err =
                load_str(&format!("{MINIMAL}\n[audit]\nmax_size = \"{text}\""), None).unwrap_err();
            assert!(
                err.contains("`audit.max_size`") && err.contains(says) && err.contains(":13:"),
                "{text}: {err}"
            );
        }
        assert_eq!(format_size(64 << 20), "64MiB");
        assert_eq!(format_size(1500), "1500");
        assert_eq!(parse_size(&format_size(3 << 30)), Ok(3 << 30));
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
    fn workers_need_the_job_worker_column_but_not_the_other_way() {
        let with_worker = MINIMAL.replace(
            "table = \"jobs\"",
            "table = \"jobs\"\nworker = \"worker_id\"",
        );
        let workers = "\n[workers]\ntable = \"procrastinate_workers\"\nheartbeat_at = \"last_heartbeat\"\nhost = \"host\"\n";
        // `worker` alone is the row's owner, shown in findings, judged by nothing.
        let c = load_str(&with_worker, None).unwrap();
        assert_eq!(c.jobs.worker.as_ref().unwrap().column, "worker_id");
        assert!(c.jobs.workers.is_none());
        // `[workers]` alone is an error naming its key and line.
        let err = load_str(&format!("{MINIMAL}{workers}"), None).unwrap_err();
        assert!(
            err.contains("`workers.table`")
                && err.contains("jw.toml:13:")
                && err.contains("worker"),
            "{err}"
        );
        let c = load_str(&format!("{with_worker}{workers}"), None).unwrap();
        assert_eq!(c.jobs.worker.as_ref().unwrap().column, "worker_id");
        let w = c.jobs.workers.as_ref().unwrap();
        assert_eq!(
            (
                w.table.name.as_str(),
                w.id.column.as_str(),
                w.heartbeat_at.column.as_str()
            ),
            ("procrastinate_workers", "id", "last_heartbeat")
        );
        assert_eq!(w.host.as_ref().unwrap().column, "host");
        assert!(w.pid.is_none());
        // `heartbeat_at` is required; an unknown key is named.
        let err =
            load_str(&format!("{with_worker}\n[workers]\ntable = \"w\"\n"), None).unwrap_err();
        assert!(err.contains("heartbeat_at"), "{err}");
        let err = load_str(&format!("{with_worker}{workers}beat = \"x\"\n"), None).unwrap_err();
        assert!(err.contains("beat"), "{err}");
        // A heartbeat rule needs the job's heartbeat or a worker's.
        let rule = "\n[[rules]]\nname = \"hb\"\nstatuses = [\"running\"]\nsignal = \"heartbeat\"\nafter = \"5m\"\n";
        let no_beat = with_worker.replace("heartbeat_at = \"updated_at\"\n", "");
        assert!(load_str(&format!("{no_beat}{workers}{rule}"), None).is_ok());
        let err = load_str(
            &format!(
                "{}{rule}",
                MINIMAL.replace("heartbeat_at = \"updated_at\"\n", "")
            ),
            None,
        )
        .unwrap_err();
        assert!(err.contains("no `[workers]`"), "{err}");
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
        for secret in ["s3cret", "t0k3n-t0k3n-t0k3n", "XYZ"] {
            assert!(!printed.contains(secret), "{secret} leaked: {printed}");
        }
        assert_eq!(
            c.secrets(),
            vec![
                "s3cret".to_string(),
                "t0k3n-t0k3n-t0k3n".to_string(),
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
    fn a_reserved_character_in_the_password_is_named_with_its_encoding() {
        for (url, c) in [
            ("postgres://app:pa#ss@127.0.0.1:5432/app", Some('#')),
            ("postgres://app:pa?ss@db/app", Some('?')),
            ("mysql://app:pa/ss@db/app", Some('/')),
            ("postgres://app:p@ss@db/app", Some('@')),
            ("postgres://app:p%23ss@db/app", None),
            ("postgres://db:5432/app?options=a@b", None),
            ("postgres://app:pw@db/app?sslmode=require", None),
            ("sqlite://jobs.db", None),
            ("postgres://app@%2Frun%2Fpostgresql/app", None),
        ] {
            assert_eq!(resolve::reserved_in_userinfo(url), c, "{url}");
        }
        let err = load_str(
            &MINIMAL.replace("sqlite://jobs.db", "postgres://app:pa#ss@db/app"),
            None,
        )
        .unwrap_err();
        assert!(
            err.contains(":3:7:") && err.contains("percent-encode `#` as `%23`"),
            "{err}"
        );
        assert!(!err.contains("pa#ss"), "the password is not shown: {err}");
    }

    /// Every key the config reads, table by table, as serde itself lists them: a key that is
    /// not a field makes the error name every field the table has.
    fn keys_of(table: &str) -> Vec<String> {
        let probe = "zz_not_a_key = 1";
        let text = match table {
            "" => format!("{probe}\n{MINIMAL}"),
            "jobs" => MINIMAL.replace("[jobs]\n", &format!("[jobs]\n{probe}\n")),
            "jobs.statuses" => {
                MINIMAL.replace("[jobs.statuses]\n", &format!("[jobs.statuses]\n{probe}\n"))
            }
            "database" => MINIMAL.replace("[database]\n", &format!("[database]\n{probe}\n")),
            "rules" | "artifacts" | "alerts" => format!("{MINIMAL}\n[[{table}]]\n{probe}\n"),
            _ => format!("{MINIMAL}\n[{table}]\n{probe}\n"),
        };
        let err = load_str(&text, None).unwrap_err();
        let expected = err
            .split_once("expected")
            .unwrap_or_else(|| panic!("[{table}]: {err}"))
            .1;
        let expected = expected.split("; did you mean").next().unwrap_or(expected);
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_example_config_lists_every_key() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/jobwarden.example.toml");
        let example = std::fs::read_to_string(&path).unwrap();
        // Keys set or shown commented out (`# key = ...`), under their table's header.
        let mut listed: std::collections::BTreeSet<(String, String)> = Default::default();
        let mut table = String::new();
        for line in example.lines() {
            // A header may be commented out too (`# [writes.fail]`: columns of no real table).
            let body = line.trim().trim_start_matches('#').trim_start();
            if let Some(header) = body.strip_prefix('[') {
                table = header.trim_matches(['[', ']']).to_string();
                continue;
            }
            if let Some((key, _)) = body.split_once('=') {
                let key = key.trim();
                if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    listed.insert((table.clone(), key.to_string()));
                }
            }
        }
        let tables = keys_of("");
        let mut missing = Vec::new();
        for top in &tables {
            if top == "writes" {
                // Its tables hold any column name: each must be shown with an example.
                for k in keys_of("writes") {
                    if !listed.iter().any(|(t, _)| *t == format!("writes.{k}")) {
                        missing.push(format!("[writes.{k}]"));
                    }
                }
                continue;
            }
            // A table is what the example has a header for; any other name is a top-level key
            // (or a table the example lacks altogether: reported by its name).
            let is_table = listed.iter().any(|(t, _)| t == top);
            if is_table {
                let mut keys = keys_of(top);
                if top == "jobs" {
                    keys.retain(|k| k != "statuses");
                    for k in keys_of("jobs.statuses") {
                        if !listed.contains(&("jobs.statuses".into(), k.clone())) {
                            missing.push(format!("[jobs.statuses] {k}"));
                        }
                    }
                }
                for k in keys {
                    if !listed.contains(&(top.clone(), k.clone())) {
                        missing.push(format!("[{top}] {k}"));
                    }
                }
            } else if !listed.contains(&(String::new(), top.clone())) {
                missing.push(top.clone());
            }
        }
        assert!(
            tables.len() >= 10 && listed.len() > 60,
            "the probe found the keys: {tables:?}"
        );
        assert!(
            missing.is_empty(),
            "{} does not list {missing:?}: add each with what it does and its default",
            path.display()
        );
    }

    #[test]
    fn expand_handles_dollars() {
        assert_eq!(expand("a$$b", &env).unwrap(), "a$b");
        assert_eq!(expand("cost $5", &env).unwrap(), "cost $5");
        assert!(expand("${", &env).is_err());
        assert!(expand("${A-B}", &env).unwrap_err().contains("not a valid"));
    }
}

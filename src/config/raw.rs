//! The file as serde reads it: every table with `deny_unknown_fields`, every value that an
//! error may point at kept with its span (`Spanned`), nothing resolved yet.

use super::*;

pub(super) type Text = Spanned<String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) environment: Option<Text>,
    pub(super) interval: Option<Text>,
    pub(super) dry_run: Option<bool>,
    pub(super) terminal_counts_every: Option<Text>,
    pub(super) database: RawDatabase,
    pub(super) jobs: RawJobs,
    #[serde(default)]
    pub(super) rules: Vec<RawRule>,
    #[serde(default)]
    pub(super) artifacts: Vec<RawArtifacts>,
    pub(super) http: Option<RawHttp>,
    #[serde(default)]
    pub(super) alerts: Vec<RawAlert>,
    pub(super) state: Option<RawState>,
    pub(super) safety: Option<RawSafety>,
    pub(super) audit: Option<RawAudit>,
    pub(super) writes: Option<RawWrites>,
    pub(super) workers: Option<RawWorkers>,
}

/// `[workers]`: a registry of worker processes, each with its own heartbeat.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkers {
    pub(super) table: Text,
    pub(super) id: Option<Text>,
    pub(super) heartbeat_at: Text,
    pub(super) host: Option<Text>,
    pub(super) pid: Option<Text>,
}

/// `[writes.fail]` and `[writes.requeue]`: column name to value, any TOML value (its shape is
/// checked when resolved).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWrites {
    #[serde(default)]
    pub(super) fail: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    pub(super) requeue: BTreeMap<String, Spanned<toml::Value>>,
}

/// What the operator commands (`pause`, `snooze`, `audit`) read: `[http]` or `[state]`
/// only. The other tables are the daemon's, so they are neither read nor checked here (a
/// `${DATABASE_URL}` kept in a root-only file is never expanded).
#[derive(Deserialize)]
pub(super) struct RawOperator {
    pub(super) http: Option<RawHttp>,
    pub(super) state: Option<RawState>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    pub(super) table: Option<Text>,
    pub(super) max_size: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSafety {
    pub(super) max_actions_per_scan: Option<Spanned<i64>>,
    pub(super) max_stuck_fraction: Option<Spanned<f64>>,
    pub(super) min_active: Option<Spanned<i64>>,
    pub(super) min_age: Option<Text>,
    pub(super) startup_grace: Option<Text>,
    pub(super) confirm_scans: Option<Spanned<i64>>,
    pub(super) max_bulk: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    pub(super) dir: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    pub(super) url: Text,
    pub(super) max_connections: Option<Spanned<i64>>,
    pub(super) query_timeout: Option<Text>,
    pub(super) timezone: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJobs {
    pub(super) table: Text,
    pub(super) id: Option<Text>,
    pub(super) status: Option<Text>,
    pub(super) created_at: Option<Text>,
    pub(super) heartbeat_at: Option<Text>,
    pub(super) status_since: Option<Text>,
    pub(super) progress: Option<Text>,
    pub(super) finished_at: Option<Text>,
    pub(super) error: Option<Text>,
    pub(super) payload: Option<Text>,
    pub(super) parent_id: Option<Text>,
    pub(super) phase: Option<Text>,
    pub(super) pid: Option<Text>,
    pub(super) attempts: Option<Text>,
    pub(super) max_attempts: Option<Spanned<i64>>,
    pub(super) host: Option<Text>,
    pub(super) worker: Option<Text>,
    #[serde(rename = "where")]
    pub(super) where_sql: Option<Text>,
    pub(super) statuses: RawStatuses,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStatuses {
    #[serde(default)]
    pub(super) pending: Vec<Text>,
    #[serde(default)]
    pub(super) running: Vec<Text>,
    #[serde(default)]
    pub(super) succeeded: Vec<Text>,
    #[serde(default)]
    pub(super) failed: Vec<Text>,
    #[serde(default)]
    pub(super) cancelled: Vec<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) name: Text,
    pub(super) statuses: Spanned<Vec<Text>>,
    pub(super) signal: Spanned<Signal>,
    pub(super) after: Spanned<toml::Value>,
    pub(super) phases: Option<Vec<Text>>,
    pub(super) action: Option<Spanned<Action>>,
    pub(super) severity: Option<Severity>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawArtifacts {
    pub(super) name: Text,
    pub(super) root: Text,
    pub(super) pattern: Text,
    #[serde(default)]
    pub(super) partial: Vec<Text>,
    pub(super) settle: Option<Text>,
    #[serde(default)]
    pub(super) required: Vec<Text>,
    pub(super) watch: Option<WatchMode>,
    pub(super) reconcile_every: Option<Text>,
    pub(super) required_within: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub(super) listen: Option<Text>,
    pub(super) token: Option<Text>,
    #[serde(default)]
    pub(super) allowed_hosts: Vec<Text>,
    pub(super) tls_cert: Option<Text>,
    pub(super) tls_key: Option<Text>,
    pub(super) allow_plaintext: Option<bool>,
    pub(super) base_path: Option<Text>,
    pub(super) job_url: Option<Text>,
    pub(super) external_url: Option<Text>,
    pub(super) user_header: Option<Text>,
    #[serde(default)]
    pub(super) trusted_proxies: Vec<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlert {
    pub(super) name: Option<Text>,
    pub(super) kind: Spanned<AlertKind>,
    pub(super) url: Text,
    pub(super) min_severity: Option<Severity>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, Text>,
    pub(super) hmac_secret: Option<Text>,
    pub(super) repeat_every: Option<Text>,
    pub(super) timeout: Option<Text>,
    pub(super) queue: Option<Spanned<i64>>,
}

// ---------------------------------------------------------------------------------------------
// Resolution.

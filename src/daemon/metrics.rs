//! Prometheus metrics, on a registry the daemon owns and passes in (never the crate's global
//! one), rendered in the classic text format that `promtool check metrics` lints cleanly.
//!
//! Label values are bounded by the config: status words and rule names come from the file,
//! kinds and outcomes are fixed enums, and no job id is ever a label. Gauges whose label sets
//! come and go (findings per rule) are set to 0 rather than removed when a set clears, so
//! alerting rules see the series fall instead of vanish.

use std::collections::BTreeSet;
use std::sync::Mutex;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::app::scan::Report;
use crate::config::{StatusClass, Statuses};
use crate::core::detect::Outcome;

/// Scan duration buckets, in seconds: a scan is milliseconds when healthy and bounded by the
/// query timeout (default 5 s) when not.
const SCAN_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The listener's connections (the web side's own listener counts them); cloned into its
/// accept loop.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    /// Open now.
    pub open: IntGauge,
    /// Closed at accept: the cap was reached with every connection busy.
    pub refused: IntCounter,
    /// Closed by jobwarden before the client did, by reason.
    pub closed: IntCounterVec,
}

/// How many unlisted status words are named in labels; the rest share one.
pub const UNLISTED_NAMED: usize = 10;

/// Every metric jobwarden exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    jobs: IntGaugeVec,
    jobs_by_status: IntGaugeVec,
    unlisted_statuses: IntGaugeVec,
    findings: IntGaugeVec,
    oldest_heartbeat_age: Gauge,
    pub scan_duration: Histogram,
    pub scans: IntCounter,
    pub scan_errors: IntCounterVec,
    /// Writes of the audit trail that failed (each holds its write back).
    pub audit_errors: IntCounter,
    pub database_up: IntGauge,
    pub last_scan_success: Gauge,
    pub leader: IntGauge,
    actions: IntCounterVec,
    pub alerts_sent: IntCounterVec,
    pub alert_failures: IntCounterVec,
    pub alert_queue_depth: IntGaugeVec,
    pub alerts_dropped: IntCounterVec,
    artifacts: IntGaugeVec,
    pub artifact_scan_duration: Histogram,
    artifact_watch_mode: IntGaugeVec,
    artifact_root_present: IntGaugeVec,
    artifact_skipped: IntCounterVec,
    pub http: HttpMetrics,
    /// 1 while an operator's pause holds every write back.
    pub writes_paused: IntGauge,
    /// Incidents open, and the jobs in them.
    pub incidents_open: IntGauge,
    pub incident_jobs: IntGauge,
    /// 1 while the operator's holds are lost (`holds.json` could not be read): every write
    /// is held back until an operator's pause.
    pub holds_lost: IntGauge,
    /// Failed saves of the state files, by file (see [`Metrics::save_errors`]).
    state_errors: IntCounterVec,
    pub jobs_snoozed: IntGauge,
    skipped_seen: Mutex<std::collections::HashMap<(String, String), u64>>,
    finding_labels: Mutex<BTreeSet<[String; 3]>>,
}

impl Metrics {
    /// Registers every metric on `registry`.
    pub fn new(registry: Registry) -> Result<Metrics, prometheus::Error> {
        let jobs = IntGaugeVec::new(
            Opts::new("jobwarden_jobs", "Jobs per status class, as of the last scan (terminal classes as of the last terminal count, every terminal_counts_every)."),
            &["status_class"],
        )?;
        let jobs_by_status = IntGaugeVec::new(
            Opts::new(
                "jobwarden_jobs_by_status",
                "Jobs per status word of the table, as of the last scan (terminal words as of the last terminal count).",
            ),
            &["status"],
        )?;
        let unlisted_statuses = IntGaugeVec::new(
            Opts::new(
                "jobwarden_unlisted_status_rows",
                "Rows in status words [jobs.statuses] does not list (never watched), as of the last status count; the 10 commonest words by name, the rest as status=\"(other)\".",
            ),
            &["status"],
        )?;
        let findings = IntGaugeVec::new(
            Opts::new(
                "jobwarden_findings",
                "Findings per kind, rule and severity, as of the last scan.",
            ),
            &["kind", "rule", "severity"],
        )?;
        let oldest_heartbeat_age = Gauge::new(
            "jobwarden_oldest_heartbeat_age_seconds",
            "Age of the oldest heartbeat among running jobs (created_at before the first beat) as of the last scan; 0 with none.",
        )?;
        let scan_duration = Histogram::with_opts(
            HistogramOpts::new(
                "jobwarden_scan_duration_seconds",
                "Duration of one scan, database reads included.",
            )
            .buckets(SCAN_BUCKETS.to_vec()),
        )?;
        let scans = IntCounter::new("jobwarden_scans_total", "Scans that completed.")?;
        let scan_errors = IntCounterVec::new(
            Opts::new(
                "jobwarden_scan_errors_total",
                "Scans that failed, by what failed: database (not reached, or it could not be read) or query (the database answered, and rejected a query the config builds).",
            ),
            &["source"],
        )?;
        let audit_errors = IntCounter::new(
            "jobwarden_audit_errors_total",
            "Scans in which the audit trail could not be written; their writes were held back.",
        )?;
        let database_up = IntGauge::new(
            "jobwarden_database_up",
            "1 when the last scan reached the database (whatever the database answered), else 0.",
        )?;
        let last_scan_success = Gauge::new(
            "jobwarden_last_scan_success_timestamp_seconds",
            "Unix time of the last scan that completed.",
        )?;
        let leader = IntGauge::new(
            "jobwarden_leader",
            "1 when this replica leads (writes and alerts), 0 when it stands by, as of the last scan.",
        )?;
        let actions = IntCounterVec::new(
            Opts::new(
                "jobwarden_actions_total",
                "Writes jobwarden made or would have made, by action and outcome.",
            ),
            &["action", "outcome"],
        )?;
        let alerts_sent = IntCounterVec::new(
            Opts::new(
                "jobwarden_alerts_sent_total",
                "Alert messages a receiver accepted, by sink and state.",
            ),
            &["sink", "state"],
        )?;
        let alert_failures = IntCounterVec::new(
            Opts::new(
                "jobwarden_alert_failures_total",
                "Alert delivery attempts that failed, by sink.",
            ),
            &["sink"],
        )?;
        let alert_queue_depth = IntGaugeVec::new(
            Opts::new(
                "jobwarden_alert_queue_depth",
                "Alert messages waiting for delivery, by sink.",
            ),
            &["sink"],
        )?;
        let alerts_dropped = IntCounterVec::new(
            Opts::new(
                "jobwarden_alerts_dropped_total",
                "Alert messages dropped because a sink's queue was full.",
            ),
            &["sink"],
        )?;
        let artifacts = IntGaugeVec::new(
            Opts::new("jobwarden_artifacts", "Files under each artifact root as of the last scan: settled, writing (changed within settle), partial."),
            &["root", "state"],
        )?;
        let artifact_scan_duration = Histogram::with_opts(
            HistogramOpts::new(
                "jobwarden_artifact_scan_duration_seconds",
                "Time a scan spends on the artifact roots (index reads, lookups, polling walks).",
            )
            .buckets(SCAN_BUCKETS.to_vec()),
        )?;
        let artifact_watch_mode = IntGaugeVec::new(
            Opts::new(
                "jobwarden_artifact_watch_mode",
                "1 for how each artifact root is kept current: events (notify) or poll.",
            ),
            &["root", "mode"],
        )?;
        let artifact_root_present = IntGaugeVec::new(
            Opts::new(
                "jobwarden_artifact_root_present",
                "1 when an artifact root exists and can be read, as of the last walk; while it is 0 the root gives no missing_artifact finding.",
            ),
            &["root"],
        )?;
        let artifact_skipped = IntCounterVec::new(
            Opts::new(
                "jobwarden_artifact_skipped_total",
                "Paths under an artifact root that were skipped, by reason.",
            ),
            &["root", "reason"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "jobwarden_build_info",
                "Always 1; the version, the git revision and the rustc that built it are labels.",
            ),
            &["version", "revision", "rustc"],
        )?;
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                env!("JOBWARDEN_REVISION"),
                env!("JOBWARDEN_RUSTC"),
            ])
            .set(1);
        let writes_paused = IntGauge::new(
            "jobwarden_writes_paused",
            "1 while an operator's pause (POST /api/v1/pause) holds every write back, as of the last scan; alerts go on.",
        )?;
        let holds_lost = IntGauge::new(
            "jobwarden_holds_lost",
            "1 while the operator's saved holds (holds.json) could not be read: every write is held back until an operator's pause (jobwarden pause --for 0s) ends it.",
        )?;
        let state_errors = IntCounterVec::new(
            Opts::new(
                "jobwarden_state_errors_total",
                "Saves of a state file that failed, by file: alerts (alerts.json), memory (memory.json), holds (holds.json), audit (audit.jsonl).",
            ),
            &["file"],
        )?;
        let jobs_snoozed = IntGauge::new(
            "jobwarden_jobs_snoozed",
            "Jobs an operator snoozed (no alerts and no writes for them), as of the last scan.",
        )?;
        let http = HttpMetrics {
            open: IntGauge::new(
                "jobwarden_http_connections",
                "HTTP connections open now (at most the cap: one evicted to make room gives its slot up at once).",
            )?,
            refused: IntCounter::new(
                "jobwarden_http_connections_refused_total",
                "HTTP connections closed as soon as accepted: the connection cap was reached and every open connection was answering a request.",
            )?,
            closed: IntCounterVec::new(
                Opts::new(
                    "jobwarden_http_connections_closed_total",
                    "HTTP connections jobwarden closed before the client did, by reason: header_timeout (no complete request in time), idle_timeout (keep-alive with no request), write_timeout (a response not taken by its client within the write timeout), evicted (the oldest idle one, to make room at the cap), tls_handshake.",
                ),
                &["reason"],
            )?,
        };
        // The exporter guide's process_* metrics, under the prefix every metric here carries.
        if let Ok(pid) = libc::pid_t::try_from(std::process::id()) {
            registry.register(Box::new(
                prometheus::process_collector::ProcessCollector::new(pid, "jobwarden"),
            ))?;
        }
        let incidents_open = IntGauge::new(
            "jobwarden_incidents_open",
            "Incidents open as of the last scan: findings grouped by one cause (a mass stall, a host whose processes died, jobs whose signals stopped together).",
        )?;
        let incident_jobs = IntGauge::new(
            "jobwarden_incident_jobs",
            "Jobs in the open incidents, as of the last scan.",
        )?;
        for collector in [
            Box::new(jobs.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(jobs_by_status.clone()),
            Box::new(unlisted_statuses.clone()),
            Box::new(findings.clone()),
            Box::new(oldest_heartbeat_age.clone()),
            Box::new(scan_duration.clone()),
            Box::new(scans.clone()),
            Box::new(scan_errors.clone()),
            Box::new(audit_errors.clone()),
            Box::new(database_up.clone()),
            Box::new(last_scan_success.clone()),
            Box::new(leader.clone()),
            Box::new(actions.clone()),
            Box::new(alerts_sent.clone()),
            Box::new(alert_failures.clone()),
            Box::new(alert_queue_depth.clone()),
            Box::new(alerts_dropped.clone()),
            Box::new(artifacts.clone()),
            Box::new(artifact_scan_duration.clone()),
            Box::new(artifact_watch_mode.clone()),
            Box::new(artifact_root_present.clone()),
            Box::new(artifact_skipped.clone()),
            Box::new(build_info),
            Box::new(writes_paused.clone()),
            Box::new(incidents_open.clone()),
            Box::new(incident_jobs.clone()),
            Box::new(holds_lost.clone()),
            Box::new(state_errors.clone()),
            Box::new(jobs_snoozed.clone()),
            Box::new(http.open.clone()),
            Box::new(http.refused.clone()),
            Box::new(http.closed.clone()),
        ] {
            registry.register(collector)?;
        }
        // Known label values start at 0, so rate() and alerts see them from the first scrape.
        scan_errors.with_label_values(&["database"]);
        scan_errors.with_label_values(&["query"]);
        for reason in [
            "header_timeout",
            "idle_timeout",
            "write_timeout",
            "evicted",
            "tls_handshake",
        ] {
            http.closed.with_label_values(&[reason]);
        }
        Ok(Metrics {
            registry,
            jobs,
            jobs_by_status,
            unlisted_statuses,
            findings,
            oldest_heartbeat_age,
            scan_duration,
            scans,
            scan_errors,
            audit_errors,
            database_up,
            last_scan_success,
            leader,
            actions,
            alerts_sent,
            alert_failures,
            alert_queue_depth,
            alerts_dropped,
            artifacts,
            artifact_scan_duration,
            artifact_watch_mode,
            artifact_root_present,
            artifact_skipped,
            http,
            writes_paused,
            incidents_open,
            incident_jobs,
            holds_lost,
            state_errors,
            jobs_snoozed,
            skipped_seen: Mutex::new(Default::default()),
            finding_labels: Mutex::new(BTreeSet::new()),
        })
    }

    /// Records a completed scan's counts and findings.
    pub fn observe_report(&self, report: &Report, statuses: &Statuses) {
        for class in [StatusClass::Pending, StatusClass::Running] {
            let n = report.jobs.get(&class).copied().unwrap_or(0);
            self.jobs.with_label_values(&[class.as_str()]).set(n as i64);
            for word in statuses.words(class) {
                let n = report.by_status.get(word).copied().unwrap_or(0);
                self.jobs_by_status.with_label_values(&[word]).set(n as i64);
            }
        }
        self.oldest_heartbeat_age
            .set(report.oldest_heartbeat_age.unwrap_or(0.0));
        let mut current: BTreeSet<[String; 3]> = BTreeSet::new();
        let mut counts: std::collections::BTreeMap<[String; 3], i64> = Default::default();
        for f in &report.findings {
            let key = [
                f.kind.as_str().to_string(),
                f.rule.clone(),
                f.severity.as_str().to_string(),
            ];
            *counts.entry(key.clone()).or_default() += 1;
            current.insert(key);
        }
        let mut previous = self
            .finding_labels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for gone in previous.difference(&current) {
            self.findings
                .with_label_values(&gone.each_ref().map(String::as_str))
                .set(0);
        }
        for (key, n) in &counts {
            self.findings
                .with_label_values(&key.each_ref().map(String::as_str))
                .set(*n);
        }
        previous.extend(current);
    }

    /// Records the whole-table count of terminal statuses.
    pub fn observe_terminal(
        &self,
        counts: &std::collections::BTreeMap<String, u64>,
        statuses: &Statuses,
    ) {
        for class in [
            StatusClass::Succeeded,
            StatusClass::Failed,
            StatusClass::Cancelled,
        ] {
            let mut total = 0;
            for word in statuses.words(class) {
                let n = counts.get(word).copied().unwrap_or(0);
                total += n;
                self.jobs_by_status.with_label_values(&[word]).set(n as i64);
            }
            if !statuses.words(class).is_empty() {
                self.jobs
                    .with_label_values(&[class.as_str()])
                    .set(total as i64);
            }
        }
    }

    /// Records the rows in words no class lists: a bounded label (the commonest
    /// [`UNLISTED_NAMED`] words, the rest summed as `(other)`).
    pub fn observe_unlisted(&self, unlisted: &[crate::core::vocabulary::Unlisted]) {
        self.unlisted_statuses.reset();
        for (i, u) in unlisted.iter().enumerate() {
            let label = if i < UNLISTED_NAMED {
                u.word.as_str()
            } else {
                "(other)"
            };
            self.unlisted_statuses
                .with_label_values(&[label])
                .add(u.rows.min(i64::MAX as u64) as i64);
        }
    }

    /// Records an artifact root's state.
    pub fn observe_artifacts(&self, index: &crate::adapters::artifacts::Index, now: f64) {
        let root = index.spec.name.as_str();
        for (state, n) in index.states(now) {
            self.artifacts
                .with_label_values(&[root, state])
                .set(n as i64);
        }
        self.artifact_root_present
            .with_label_values(&[root])
            .set(i64::from(index.root_present));
        for mode in [
            crate::adapters::artifacts::Mode::Events,
            crate::adapters::artifacts::Mode::Poll,
        ] {
            self.artifact_watch_mode
                .with_label_values(&[root, mode.as_str()])
                .set(i64::from(index.mode == mode));
        }
        let mut seen = self.skipped_seen.lock().unwrap_or_else(|p| p.into_inner());
        for (reason, total) in &index.skipped {
            let last = seen
                .entry((root.to_string(), reason.as_str().to_string()))
                .or_default();
            if *total > *last {
                self.artifact_skipped
                    .with_label_values(&[root, reason.as_str()])
                    .inc_by(*total - *last);
                *last = *total;
            }
        }
    }

    /// The alert metrics, for the delivery tasks.
    pub fn sink_metrics(&self) -> crate::adapters::alerts::delivery::SinkMetrics {
        crate::adapters::alerts::delivery::SinkMetrics {
            sent: self.alerts_sent.clone(),
            failures: self.alert_failures.clone(),
            depth: self.alert_queue_depth.clone(),
            dropped: self.alerts_dropped.clone(),
        }
    }

    /// The failed saves of the state files, counted here (each file's series starts at 0).
    /// Make it once: clones share the errors the console shows.
    pub fn save_errors(&self) -> crate::adapters::state::SaveErrors {
        crate::adapters::state::SaveErrors::new(self.state_errors.clone())
    }

    /// Counts one write (or would-be write).
    pub fn count_action(&self, action: crate::config::Action, outcome: Outcome) {
        self.actions
            .with_label_values(&[action.as_str(), outcome.as_str()])
            .inc();
    }

    /// The registry in Prometheus's text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            tracing::error!("cannot encode metrics: {e}");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Statuses;

    #[test]
    fn registers_every_metric_with_help_and_no_job_ids() {
        let m = Metrics::new(Registry::new()).unwrap();
        m.database_up.set(1);
        let statuses = Statuses {
            running: vec!["running".into()],
            succeeded: vec!["done".into()],
            ..Statuses::default()
        };
        m.observe_terminal(&[("done".to_string(), 7)].into_iter().collect(), &statuses);
        let text = m.render();
        let build_info = format!(
            "jobwarden_build_info{{revision=\"{}\",rustc=\"{}\",version=\"{}\"}} 1",
            env!("JOBWARDEN_REVISION"),
            env!("JOBWARDEN_RUSTC"),
            env!("CARGO_PKG_VERSION")
        );
        for name in [
            "jobwarden_database_up 1",
            "jobwarden_scans_total 0",
            build_info.as_str(),
            "jobwarden_scan_errors_total{source=\"database\"} 0",
            "jobwarden_jobs{status_class=\"succeeded\"} 7",
            "jobwarden_jobs_by_status{status=\"done\"} 7",
            "# HELP jobwarden_scan_duration_seconds",
        ] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
    }
}

//! `jobwarden run`, the long-running sidecar, in three rooms whose arrows point one way
//! (`tests/layout.rs` checks them):
//!
//! - [`scan_loop`]: the one task that scans, acts and alerts, and handles the requests the
//!   web side sends, between scans;
//! - [`state`]: what the loop publishes (the latest report, readiness, the role, the
//!   history) and the request channels, with the [`metrics`] it owns;
//! - [`web`]: the HTTP routes, the console's pages and jobwarden's own listener; it only
//!   reads the state and sends requests.
//!
//! The loop and the web side both use the state; neither names the other. This file wires
//! them together ([`run`]). The daemon is the outermost layer: it may import from every
//! other one, and nothing but `main.rs` imports from it.

use std::future::Future;
use std::time::Duration;

use prometheus::Registry;
use tokio::sync::{mpsc, oneshot};

use crate::adapters::notify;
use crate::config::Config;

pub(crate) mod metrics;
mod scan_loop;
pub mod state;
pub(crate) mod web;

pub use scan_loop::{Options, Reloader};
pub use state::{
    Ask, BulkRequest, JobRefusal, JobRequest, RecoverRequest, Select, Shared, Targets,
};

/// How long the HTTP side may take to finish its answers at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Tls(#[from] crate::adapters::tls::TlsError),
}

impl DaemonError {
    /// `run`'s exit code: 2 for what the config names (certificate and key files that cannot
    /// be read or are not a pair), 3 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::Tls(_) => crate::app::commands::EXIT_USAGE,
            DaemonError::Bind { .. } | DaemonError::Metrics(_) => {
                crate::app::commands::EXIT_UNAVAILABLE
            }
        }
    }
}

/// Binds the config's listen address (port 0: the system picks one; the start line and
/// [`tokio::net::TcpListener::local_addr`] say which).
pub async fn bind(config: &Config) -> Result<tokio::net::TcpListener, DaemonError> {
    tokio::net::TcpListener::bind(&config.http.listen)
        .await
        .map_err(|source| DaemonError::Bind {
            addr: config.http.listen.to_string(),
            source,
        })
}

/// Runs the daemon on a bound `listener` until `shutdown` completes. `reloads` yields one
/// item per SIGHUP.
pub async fn run(
    config: Config,
    registry: Registry,
    listener: tokio::net::TcpListener,
    options: Options,
    reloads: mpsc::Receiver<()>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let metrics = metrics::Metrics::new(registry)?;
    let tls = scan_loop::load_tls(&config)?;
    let listen = listener.local_addr().unwrap_or(config.http.listen);
    let (shared, inbox) = Shared::new(
        &config,
        metrics,
        tls,
        listen,
        options.dry_run,
        options.clock,
    );
    tracing::info!(listen = %listen, tls = shared.tls.get().is_some(), environment = ?config.environment, dry_run = config.dry_run || options.dry_run, "jobwarden started");
    if let Some(period) = notify::watchdog_period() {
        if config.interval + config.database.query_timeout * 3 >= period {
            tracing::warn!(
                "the systemd watchdog period ({}) is not much longer than interval + query timeouts; raise WatchdogSec",
                humantime::format_duration(period)
            );
        }
    }
    let (http_stop_tx, http_stop_rx) = oneshot::channel::<()>();
    let limits = web::server::Limits::for_process();
    tracing::debug!(
        max_connections = limits.max_connections,
        "http limits: header timeout {:?}, idle timeout {:?}",
        limits.header_timeout,
        limits.idle_timeout
    );
    let server = tokio::spawn(web::http::serve(listener, shared.clone(), limits, async {
        let _ = http_stop_rx.await;
    }));
    let notifier = options.notifier.clone();
    let mut scan_loop = scan_loop::Loop::new(config, shared, options).await;
    scan_loop.run(inbox, reloads, shutdown).await;
    notifier.stopping();
    tracing::info!("shutting down");
    let _ = http_stop_tx.send(());
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, server).await;
    scan_loop.close().await;
    Ok(())
}

//! `jobwarden run`, the long-running sidecar: the scan loop and its shared state ([`run`]),
//! the HTTP routes ([`http`]) on jobwarden's own listener ([`server`]), and the Prometheus
//! metrics ([`metrics`]).
//!
//! The daemon is the outermost layer: it may import from every other one, and nothing but
//! `main.rs` imports from it.

pub(crate) mod console;
pub(crate) mod http;
pub(crate) mod metrics;
mod run;
pub(crate) mod server;

pub use run::{
    bind, run, Ask, BulkRequest, DaemonError, JobRefusal, JobRequest, Options, RecoverRequest,
    Reloader, Select, Shared, Targets,
};

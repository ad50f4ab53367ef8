//! The pure core: what jobwarden knows and decides, as plain values.
//!
//! The vocabulary of statuses, signals, actions and severities and the shape of a jobs table
//! ([`vocabulary`]); a job row and its timestamps ([`job`], [`zone`]); what jobwarden
//! remembers between scans ([`memory`]); detection ([`detect`]), the writes it plans
//! ([`plan`]) and the limits on them ([`safety`]); how a file path names a job ([`pattern`]);
//! the extra columns a write sets, in the queue library's own shape ([`writes`]);
//! the SQL text of each dialect ([`sql`]); retry delays ([`backoff`]); the bounds of the
//! candidate read ([`candidates`], not used by the scan yet).
//!
//! Nothing here does I/O, reads a clock or spawns a task: every function is a function of its
//! arguments (time comes in as a value), so all of it is tested with plain values. Modules
//! here import only from `core`; `tests/layout.rs` fails the build of the tests otherwise.

pub(crate) mod backoff;
pub mod candidates;
pub mod detect;
pub(crate) mod holds;
pub(crate) mod incident;
pub(crate) mod job;
pub(crate) mod memory;
pub(crate) mod pattern;
pub(crate) mod plan;
pub(crate) mod safety;
pub mod sql;
pub(crate) mod vocabulary;
pub mod writes;
pub(crate) mod zone;

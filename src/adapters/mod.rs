//! The adapters: thin I/O around the core. The database ([`store`]), the artifact folders
//! ([`artifacts`]), alert receivers ([`alerts`]), the leader lock ([`leader`]), the local
//! process table ([`process`]), the audit trail ([`audit`]), the state directory's files
//! ([`state`]), systemd's notify socket ([`notify`]), the listener's certificate ([`tls`]),
//! wall-clock time ([`clock`]), and a running daemon's HTTP API, for the commands that ask it
//! to act ([`api`]).
//!
//! An adapter turns the outside world into the core's values and back; it decides nothing the
//! core could decide. Modules here may import from `core`, `config` and other adapters, never
//! from `app` or `daemon`.

pub mod alerts;
pub mod api;
pub mod artifacts;
pub mod audit;
pub mod clock;
pub(crate) mod leader;
pub mod notify;
pub mod process;
pub(crate) mod state;
pub mod store;
pub(crate) mod tls;

//! jobwarden: a watchdog for home-grown jobs tables.
//!
//! A functional core with an imperative shell, in layers whose dependencies point one way:
//!
//! ```text
//! core  <-  config  <-  adapters  <-  app  <-  daemon  <-  main.rs
//! ```
//!
//! [`core`] decides from plain values which jobs are stuck and what to write; [`config`] turns
//! the TOML file into the core's values; [`adapters`] are the thin I/O around it (database,
//! folders, alert receivers, state files); [`app`] runs one scan and the one-shot commands;
//! [`daemon`] is `jobwarden run`. `tests/layout.rs` checks the direction. See ARCHITECTURE.md
//! for the map and the flow of one scan.
//!
//! The layers are public, and inside them the modules that the binary (`main.rs`), the
//! integration tests and the benchmarks use: the tests reach the store, the scanner and the
//! guarded write directly to set up races a process boundary cannot, and run the daemon
//! in-process on paused time. Every other module is `pub(crate)`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod adapters;
pub mod app;
pub mod config;
pub mod core;
pub mod daemon;

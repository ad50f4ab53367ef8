//! jobwarden: a watchdog for home-grown jobs tables.
//!
//! The crate is a functional core with an imperative shell. [`detect`] decides, from plain
//! values, which jobs are stuck; [`store`] (the database), [`process`] (the local process
//! table) and [`report`] (the terminal) are thin adapters around it; [`commands`] wires them
//! into the one-shot commands. See ARCHITECTURE.md for the map and the flow of one scan.

pub mod actions;
pub mod alerts;
pub mod artifacts;
pub mod audit;
pub mod backoff;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod detect;
pub mod http;
pub mod job;
pub mod leader;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod process;
pub mod report;
pub mod safety;
pub mod scan;
pub mod server;
pub mod sql;
pub mod store;
pub mod verify;
pub mod zone;

//! The application: one scan ([`scan`]: read the table and the folders, run the core),
//! applying what it planned under the guards ([`actions`]), the terminal report ([`report`]),
//! the one-shot commands ([`commands`]), `validate --connect`'s proof ([`verify`]), the
//! embedded demo ([`demo`]) and the log lines on standard error ([`logging`]).
//!
//! Modules here may import from `core`, `config` and `adapters`, never from `daemon`: the
//! daemon is one more caller of a scan.

pub mod actions;
pub mod commands;
pub mod demo;
pub mod logging;
pub(crate) mod report;
pub mod scan;
pub(crate) mod verify;

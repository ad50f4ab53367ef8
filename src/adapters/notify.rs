//! The systemd notify protocol (`sd_notify(3)`), when `NOTIFY_SOCKET` is set; a no-op
//! otherwise. The daemon says `READY=1` once the config is loaded, the listener bound and the
//! first scan attempted; `WATCHDOG=1` only when a scan cycle completes, so a wedged loop or a
//! hung query gets the service restarted rather than just a dead process; `RELOADING=1` with
//! `MONOTONIC_USEC` on SIGHUP, then `READY=1`; `STOPPING=1` on the way out; and a one-line
//! `STATUS=`.

use std::time::Duration;

use sd_notify::NotifyState;

/// Sends notify messages to systemd, if it is listening.
#[derive(Debug, Clone)]
pub struct Notifier {
    enabled: bool,
}

impl Notifier {
    /// Enabled when `NOTIFY_SOCKET` is set.
    pub fn from_env() -> Notifier {
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
        }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier { enabled: false }
    }

    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// A scan cycle completed, with its one-line summary.
    pub fn cycle(&self, status: &str) {
        self.send(&[NotifyState::Watchdog, NotifyState::Status(status)]);
    }

    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(e) => tracing::debug!("cannot read the monotonic clock for RELOADING=1: {e}"),
        }
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if self.enabled {
            if let Err(e) = sd_notify::notify(false, states) {
                tracing::warn!("cannot notify systemd: {e}");
            }
        }
    }
}

/// systemd's watchdog period (`WATCHDOG_USEC`), when it has one for us.
pub fn watchdog_period() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec))
}

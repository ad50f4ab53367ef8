//! Wall-clock time, where jobwarden needs it: the alerts' timestamps (`fired_at`,
//! Alertmanager's `startsAt` and `endsAt`), file ages against their mtimes, and the
//! last-success metric. Job ages never use it (they are judged on the database's clock).
//!
//! The daemon takes a [`Clock`], so a test can run it on Tokio's paused clock:
//! [`Clock::following_tokio`] starts at the host's time and then moves only as Tokio's clock
//! does.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Unix seconds, from the host or following Tokio's clock.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The host's wall clock.
    System,
    /// `origin` Unix seconds at Tokio instant `start`, advancing with Tokio's clock.
    Tokio { origin: f64, start: Instant },
}

impl Clock {
    /// A clock that reads the host's time once and then follows Tokio's (paused in tests).
    pub fn following_tokio() -> Clock {
        Clock::Tokio {
            origin: system_now(),
            start: Instant::now(),
        }
    }

    /// Unix seconds now.
    pub fn now(&self) -> f64 {
        match self {
            Clock::System => system_now(),
            Clock::Tokio { origin, start } => origin + start.elapsed().as_secs_f64(),
        }
    }
}

fn system_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_with_paused_time_only() {
        let clock = Clock::following_tokio();
        let t0 = clock.now();
        assert!(
            (t0 - Clock::System.now()).abs() < 5.0,
            "starts at the host's time"
        );
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(clock.now() - t0, 3600.0);
    }
}

//! Capped exponential backoff with jitter, for everything that retries: the scan loop while
//! the database is down, and alert delivery while a receiver is.

use std::time::Duration;

/// Capped exponential backoff with jitter: each wait is between half and all of
/// `min * 2^attempt`, capped at `max` and at the `limit` given to [`Backoff::next`].
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    pub attempt: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            attempt: 0,
        }
    }

    pub fn next(&mut self, limit: Duration) -> Duration {
        let cap = self.max.min(limit).max(self.min);
        let full = self
            .min
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(cap);
        self.attempt = self.attempt.saturating_add(1);
        let half = full / 2;
        half + half.mul_f64(fastrand::f64())
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
        let interval = Duration::from_secs(15);
        let waits: Vec<Duration> = (0..10).map(|_| b.next(interval)).collect();
        for (i, w) in waits.iter().enumerate() {
            let full = Duration::from_millis(500 * (1 << i)).min(interval);
            assert!(
                *w >= full / 2 && *w <= full,
                "attempt {i}: {w:?} not in [{:?}, {full:?}]",
                full / 2
            );
        }
        b.reset();
        assert!(b.next(interval) <= Duration::from_millis(500));
    }
}

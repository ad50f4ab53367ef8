//! Capped exponential backoff with jitter, for everything that retries: the scan loop while
//! the database is down, and alert delivery while a receiver is.

use std::time::Duration;

/// Capped exponential backoff with jitter: each wait is between half and all of
/// `min * 2^attempt`, capped at `max` and at the `limit` given to [`Backoff::next`]. The
/// jitter is the caller's random draw, so this stays a function of its arguments.
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

    /// The next wait; `jitter` in `[0, 1)` places it between half and all of the full wait.
    pub fn next(&mut self, limit: Duration, jitter: f64) -> Duration {
        let cap = self.max.min(limit).max(self.min);
        let full = self
            .min
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(cap);
        self.attempt = self.attempt.saturating_add(1);
        let half = full / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
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
        let ms = Duration::from_millis;
        // The lowest draw gives half the full wait, the highest all of it; capped at 15 s.
        let low: Vec<Duration> = (0..7).map(|_| b.next(interval, 0.0)).collect();
        assert_eq!(
            low,
            [
                ms(250),
                ms(500),
                ms(1000),
                ms(2000),
                ms(4000),
                ms(7500),
                ms(7500)
            ]
        );
        b.reset();
        let high: Vec<Duration> = (0..7).map(|_| b.next(interval, 1.0)).collect();
        assert_eq!(
            high,
            [
                ms(500),
                ms(1000),
                ms(2000),
                ms(4000),
                ms(8000),
                ms(15000),
                ms(15000)
            ]
        );
        b.reset();
        assert_eq!(b.next(interval, 0.5), ms(375));
    }
}

//! What an operator put on hold: a pause of every write of the daemon (a deploy window).
//! A plain value with the time passed in; `adapters::state` keeps it across restarts.

use serde::{Deserialize, Serialize};

/// The operator's holds, as saved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Holds {
    /// No write until this Unix time (alerts go on).
    #[serde(default)]
    pub paused_until: Option<f64>,
}

impl Holds {
    /// When writes resume, if they are paused at `now`.
    pub fn paused(&self, now: f64) -> Option<f64> {
        self.paused_until.filter(|&until| until > now)
    }

    /// Forgets holds that ended before `now`; whether anything changed.
    pub fn expire(&mut self, now: f64) -> bool {
        let before = self.paused_until;
        if self.paused(now).is_none() {
            self.paused_until = None;
        }
        before != self.paused_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_ends_at_its_time() {
        let mut h = Holds {
            paused_until: Some(100.0),
        };
        assert_eq!(h.paused(50.0), Some(100.0));
        assert_eq!(h.paused(100.0), None);
        assert!(!h.expire(50.0), "nothing ended yet");
        assert!(h.expire(150.0));
        assert_eq!(h, Holds::default());
    }
}

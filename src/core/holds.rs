//! What an operator put on hold: a pause of every write of the daemon (a deploy window), and
//! snoozes of single jobs (no alerts and no writes for that job until then). A plain value
//! with the time passed in; `adapters::state` keeps it across restarts. Holds fail closed: a
//! saved file that cannot be read leaves them *lost*, which holds every write until an
//! operator's pause replaces it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::safety::HeldBack;

/// The operator's holds, as saved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Holds {
    /// No write until this Unix time (alerts go on).
    #[serde(default)]
    pub paused_until: Option<f64>,
    /// Why and by whom, while paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseNote>,
    /// Snoozed jobs, by job id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub snoozed: BTreeMap<String, Snooze>,
    /// The saved holds could not be read (why, and where the file was kept): what they held
    /// is unknown, so every write is held until an operator's pause (any `for`) ends this.
    /// Saved, so a restart holds too; it never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<String>,
}

/// Why writes were paused, and who asked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PauseNote {
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub by: String,
}

/// One job's snooze.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snooze {
    /// Unix time it ends.
    pub until: f64,
    /// Why, in the operator's words.
    #[serde(default)]
    pub reason: String,
    /// Who asked (`http 127.0.0.1:50312`).
    #[serde(default)]
    pub by: String,
}

impl Holds {
    /// When writes resume, if they are paused at `now`.
    pub fn paused(&self, now: f64) -> Option<f64> {
        self.paused_until.filter(|&until| until > now)
    }

    /// Why every write is held back at `now`, if it is: the holds were lost, or an
    /// operator's pause is in force.
    pub fn every_write_held(&self, now: f64) -> Option<HeldBack> {
        match (&self.lost, self.paused(now)) {
            (Some(why), _) => Some(HeldBack::HoldsLost(why.clone())),
            (None, Some(until)) => Some(HeldBack::Paused { until }),
            (None, None) => None,
        }
    }

    /// The job's snooze, if it is snoozed at `now`.
    pub fn snooze(&self, job_id: &str, now: f64) -> Option<&Snooze> {
        self.snoozed.get(job_id).filter(|s| s.until > now)
    }

    /// The snoozes in force at `now`, by job id.
    pub fn snoozes(&self, now: f64) -> BTreeMap<String, Snooze> {
        self.snoozed
            .iter()
            .filter(|(_, s)| s.until > now)
            .map(|(id, s)| (id.clone(), s.clone()))
            .collect()
    }

    /// Forgets holds that ended before `now`; whether anything changed.
    pub fn expire(&mut self, now: f64) -> bool {
        let before = self.clone();
        if self.paused(now).is_none() {
            self.paused_until = None;
            self.pause = None;
        }
        self.snoozed.retain(|_, s| s.until > now);
        before != *self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_ends_at_its_time() {
        let mut h = Holds {
            paused_until: Some(100.0),
            ..Holds::default()
        };
        assert_eq!(h.paused(50.0), Some(100.0));
        assert_eq!(h.paused(100.0), None);
        assert!(!h.expire(50.0), "nothing ended yet");
        assert!(h.expire(150.0));
        assert_eq!(h, Holds::default());
    }

    #[test]
    fn a_snooze_holds_one_job_until_its_time() {
        let snooze = |until: f64| Snooze {
            until,
            reason: "deploying a fix".into(),
            by: "http 127.0.0.1:1".into(),
        };
        let mut h = Holds::default();
        h.snoozed.insert("7".into(), snooze(100.0));
        h.snoozed.insert("8".into(), snooze(200.0));
        assert_eq!(h.snooze("7", 50.0).map(|s| s.until), Some(100.0));
        assert!(h.snooze("9", 50.0).is_none(), "another job is not held");
        assert!(h.snooze("7", 100.0).is_none(), "over at its time");
        assert_eq!(
            h.snoozes(150.0).keys().collect::<Vec<_>>(),
            vec!["8"],
            "only the one still in force"
        );
        assert!(h.expire(150.0));
        assert_eq!(h.snoozed.len(), 1);
        assert!(h.paused(150.0).is_none(), "a snooze is not a pause");
    }

    #[test]
    fn lost_holds_hold_every_write_until_a_pause_replaces_them() {
        let mut h = Holds {
            lost: Some("holds.json is not valid".into()),
            ..Holds::default()
        };
        assert!(matches!(
            h.every_write_held(50.0),
            Some(HeldBack::HoldsLost(why)) if why == "holds.json is not valid"
        ));
        assert!(!h.expire(1e12), "lost holds never expire");
        assert!(h.every_write_held(1e12).is_some());
        let saved: Holds = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        assert_eq!(saved, h, "kept across a restart");
        h.lost = None;
        h.paused_until = Some(100.0);
        assert_eq!(
            h.every_write_held(50.0),
            Some(HeldBack::Paused { until: 100.0 })
        );
        assert_eq!(h.every_write_held(100.0), None);
    }

    #[test]
    fn holds_saved_before_snoozes_existed_still_read() {
        let h: Holds = serde_json::from_str(r#"{"paused_until": 5.0}"#).unwrap();
        assert_eq!(h.paused_until, Some(5.0));
        assert!(h.snoozed.is_empty());
    }
}

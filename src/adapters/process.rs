//! The local process table: is a job's pid still alive, and what is this host called.
//!
//! Kept apart from the detection core, which only receives the set of dead pids. jobwarden
//! must share the PID namespace of the application it watches (no `PrivatePIDs=`, no separate
//! container PID namespace); otherwise every pid would look dead, so `dead_process` is only
//! evaluated for rows whose `host` names this machine.

use std::collections::BTreeSet;

/// Whether a process with this pid exists. A pid owned by another user exists too (`EPERM`).
pub fn is_alive(pid: i64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        // 0 and negatives address process groups, never one job.
        return true;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks that the pid exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// The pids among `pids` that no longer exist.
pub fn dead_pids(pids: impl IntoIterator<Item = i64>) -> BTreeSet<i64> {
    pids.into_iter()
        .filter(|&p| p > 0 && !is_alive(p))
        .collect()
}

/// This machine's host name, as `gethostname(2)` gives it.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length, and gethostname writes at most that.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_pid_is_alive_and_a_reaped_child_is_dead() {
        assert!(is_alive(i64::from(std::process::id())));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = i64::from(child.id());
        child.wait().unwrap();
        assert!(!is_alive(pid));
        assert_eq!(
            dead_pids([pid, i64::from(std::process::id()), 0, -5]),
            BTreeSet::from([pid])
        );
    }

    #[test]
    fn pid_1_exists_even_if_not_ours() {
        assert!(is_alive(1));
        assert!(!hostname().is_empty());
    }
}

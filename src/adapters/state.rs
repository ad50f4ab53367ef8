//! The files jobwarden keeps in its state directory besides the audit trail and the alert
//! book: the job memory (`memory.json`) and the operator's holds (`holds.json`), each written
//! whole to a temporary file and renamed.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::core::memory::Memory;

/// The job memory's file, in the state directory.
pub const MEMORY_FILE: &str = "memory.json";
/// The operator's pause and snoozes.
pub const HOLDS_FILE: &str = "holds.json";

/// The saved holds; none when there is no file, or it cannot be read (said in the log).
pub fn load_holds(state_dir: &Path) -> crate::core::holds::Holds {
    let file = state_dir.join(HOLDS_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!(path = %file.display(), "the holds file is not valid, starting without holds: {e}");
            Default::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
        Err(e) => {
            tracing::warn!(path = %file.display(), "cannot read the holds file, starting without holds: {e}");
            Default::default()
        }
    }
}

/// Saves the holds (to a temporary file, then renamed over the old one).
pub fn save_holds(state_dir: &Path, holds: &crate::core::holds::Holds) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(holds).map_err(std::io::Error::other)?;
    write_whole(&state_dir.join(HOLDS_FILE), &bytes)
}

/// Writes a file whole: a temporary file beside it, flushed to disk, then renamed over it;
/// no temporary file is left when that fails. Every whole-file state (the memory, the holds,
/// the alert book) is written through it.
pub(crate) fn write_whole(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = file.with_extension("json.tmp");
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The memory file under a state directory.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(MEMORY_FILE)
}

/// The saved memory for `scope`, or an empty one when there is none, it is of another scope,
/// or it cannot be read (said in the log: an empty memory only makes jobs look younger).
pub fn load(state_dir: &Path, scope: &str) -> Memory {
    let file = path(state_dir);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Memory::new(scope),
        Err(e) => {
            tracing::warn!(path = %file.display(), "cannot read the job memory, starting afresh: {e}");
            return Memory::new(scope);
        }
    };
    match serde_json::from_str::<Memory>(&text) {
        Ok(m) if m.scope() == scope => m,
        Ok(_) => Memory::new(scope),
        Err(e) => {
            tracing::warn!(path = %file.display(), "the job memory is not valid, starting afresh: {e}");
            Memory::new(scope)
        }
    }
}

/// Writes the memory (to a temporary file, then renamed over the old one) and marks it clean.
pub fn save(state_dir: &Path, memory: &mut Memory) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(memory).map_err(std::io::Error::other)?;
    write_whole(&path(state_dir), &bytes)?;
    memory.saved();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::job::JobRow;
    use crate::core::memory::Entered;

    const NOW: f64 = 1_767_225_600.0;

    #[test]
    fn saved_and_loaded_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Memory::new("pg/jobs");
        m.observe(&[JobRow::new("1", "running")], NOW);
        m.requeued("1", "pending", NOW + 1.0);
        save(dir.path(), &mut m).unwrap();
        assert!(!m.is_dirty());
        let loaded = load(dir.path(), "pg/jobs");
        let pending = JobRow::new("1", "pending");
        assert_eq!(loaded.entered(&pending), Ok((NOW + 1.0, Entered::Requeued)));
        assert!(load(dir.path(), "another/table").is_empty());
        std::fs::write(path(dir.path()), "{not json").unwrap();
        assert!(!load(dir.path(), "pg/jobs").has_scanned());
    }
}

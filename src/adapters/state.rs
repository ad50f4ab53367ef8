//! The files jobwarden keeps in its state directory besides the audit trail and the alert
//! book: the job memory (`memory.json`) and the operator's holds (`holds.json`), each written
//! whole to a temporary file and renamed.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::core::holds::Holds;
use crate::core::memory::Memory;

/// The job memory's file, in the state directory.
pub const MEMORY_FILE: &str = "memory.json";
/// The operator's pause and snoozes.
pub const HOLDS_FILE: &str = "holds.json";

/// The saved holds; none when there is no file. Holds fail closed: a file that cannot be
/// read or parsed (cut short, garbage, a directory, unreadable) is moved aside (see
/// [`move_aside`]) and the holds come back *lost* (`Holds::lost`), which holds every write
/// until an operator's pause ends it. The lost holds are saved in its place, so a restart
/// holds too; when they cannot be, the damaged file is put back for the next start to find.
pub fn load_holds(state_dir: &Path) -> Holds {
    let file = state_dir.join(HOLDS_FILE);
    remove_stale_temporaries(&file);
    let problem = match read_holds(&file) {
        Ok(holds) => return holds.unwrap_or_default(),
        Err(problem) => problem,
    };
    let mut why = format!("{HOLDS_FILE} {problem}");
    match move_aside(&file) {
        Ok(aside) => {
            why = format!("{why}; kept as {}", aside.display());
            let lost = Holds {
                lost: Some(why.clone()),
                ..Holds::default()
            };
            if let Err(e) = save_holds(state_dir, &lost) {
                let back = std::fs::rename(&aside, &file);
                why = format!(
                    "{why}; the lost holds cannot be saved ({e}){}",
                    if back.is_ok() {
                        ", so it was put back"
                    } else {
                        ""
                    }
                );
            }
        }
        Err(e) => why = format!("{why}; it cannot be moved aside ({e})"),
    }
    tracing::error!(
        path = %file.display(),
        "the operator's holds are lost: {why}; every write is held until an operator ends this (jobwarden pause --for 0s)"
    );
    Holds {
        lost: Some(why),
        ..Holds::default()
    }
}

/// A file of the state directory, as the bounded `file` label of
/// `jobwarden_state_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StateFile {
    Alerts,
    Memory,
    Holds,
    Audit,
}

impl StateFile {
    pub const ALL: [StateFile; 4] = [
        StateFile::Alerts,
        StateFile::Memory,
        StateFile::Holds,
        StateFile::Audit,
    ];

    /// The metric's label.
    pub fn as_str(self) -> &'static str {
        match self {
            StateFile::Alerts => "alerts",
            StateFile::Memory => "memory",
            StateFile::Holds => "holds",
            StateFile::Audit => "audit",
        }
    }

    /// The file's name in the state directory.
    pub fn file_name(self) -> &'static str {
        match self {
            StateFile::Alerts => crate::adapters::alerts::STATE_FILE,
            StateFile::Memory => MEMORY_FILE,
            StateFile::Holds => HOLDS_FILE,
            StateFile::Audit => crate::adapters::audit::AUDIT_FILE,
        }
    }
}

/// Failed saves of the state files: each counted in `jobwarden_state_errors_total{file}`, and
/// the last error of each file kept until it saves again (for `/` and `/readyz`). Clones
/// share the errors. Whoever saves logs the failure; a recovery is logged here, once.
#[derive(Debug, Clone)]
pub struct SaveErrors {
    count: prometheus::IntCounterVec,
    last: std::sync::Arc<std::sync::Mutex<BTreeMap<StateFile, String>>>,
}

impl SaveErrors {
    /// Starts every file's series at 0, so rate() and alerts see them from the first scrape.
    pub fn new(count: prometheus::IntCounterVec) -> SaveErrors {
        for file in StateFile::ALL {
            count.with_label_values(&[file.as_str()]);
        }
        SaveErrors {
            count,
            last: Default::default(),
        }
    }

    /// Records a save of `file`: a failure is counted and kept, a success clears it.
    pub fn record<T, E: std::fmt::Display>(&self, file: StateFile, result: &Result<T, E>) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Err(e) => {
                self.count.with_label_values(&[file.as_str()]).inc();
                last.insert(file, e.to_string());
            }
            Ok(_) => {
                if last.remove(&file).is_some() {
                    tracing::info!("{} is saved again", file.file_name());
                }
            }
        }
    }

    /// Each file whose last save failed, in words.
    pub fn current(&self) -> Vec<String> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.iter()
            .map(|(file, e)| format!("{} cannot be saved: {e}", file.file_name()))
            .collect()
    }
}

/// Moves a damaged state file (or whatever stands in its place) aside, to `<name>.corrupt`,
/// or `<name>.corrupt.1`, `.2`, ... when an earlier copy holds that name: a copy is never
/// overwritten. Returns where it went.
pub(crate) fn move_aside(file: &Path) -> std::io::Result<PathBuf> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for n in 0..1000 {
        let aside = file.with_file_name(match n {
            0 => format!("{name}.corrupt"),
            n => format!("{name}.corrupt.{n}"),
        });
        match std::fs::symlink_metadata(&aside) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::rename(file, &aside)?;
                return Ok(aside);
            }
            Err(e) => return Err(e),
            Ok(_) => continue,
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "a thousand earlier copies are in the way",
    ))
}

/// The holds saved in `file`: none when there is no file, nor a directory it could be in (the
/// state directory is a file, say: nothing was ever held there); else what is wrong with it.
fn read_holds(file: &Path) -> Result<Option<Holds>, String> {
    match read_state(file) {
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            Ok(None)
        }
        Err(e) => Err(format!("cannot be read: {e}")),
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("is not valid: {e}")),
    }
}

/// Saves the holds (to a temporary file, then renamed over the old one). A damaged file
/// still in the holds' place (put back at load because the lost holds could not be saved) is
/// first moved aside, never replaced, and put back again when the save fails.
pub fn save_holds(state_dir: &Path, holds: &Holds) -> std::io::Result<()> {
    let file = state_dir.join(HOLDS_FILE);
    let bytes = serde_json::to_vec(holds).map_err(std::io::Error::other)?;
    let aside = match read_holds(&file) {
        Ok(_) => None,
        Err(_) => Some(move_aside(&file)?),
    };
    let saved = write_whole(&file, &bytes);
    match (&saved, aside) {
        (Err(_), Some(aside)) => {
            let _ = std::fs::rename(&aside, &file);
        }
        (Ok(()), Some(aside)) => {
            tracing::warn!(path = %file.display(), "the damaged holds file is kept as {}", aside.display());
        }
        _ => {}
    }
    saved
}

/// Writes a file whole: a temporary file beside it (a fresh random name, created only if
/// nothing is there, so a link planted at a name it could guess is never followed), flushed
/// to disk, then renamed over it (a link in the file's place is replaced, its target left
/// alone); no temporary file is left when that fails. Every whole-file state (the memory, the
/// holds, the alert book) is written through it.
pub(crate) fn write_whole(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = temporary(file, fastrand::u64(..));
    let mut created = false;
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        created = true;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)
    })();
    if result.is_err() && created {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The temporary file of one save of `file`: `.<name>.<random>.tmp` beside it.
fn temporary(file: &Path, random: u64) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    file.with_file_name(format!(".{name}.{random:016x}.tmp"))
}

/// Removes the temporary files a save of `file` cut short by a crash left (regular files
/// only, untouched for a minute, so a save in flight in another process is left alone).
pub(crate) fn remove_stale_temporaries(file: &Path) {
    let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
        return;
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let entry_name = entry.file_name().to_string_lossy().into_owned();
        let ours = entry_name.starts_with(&prefix) && entry_name.ends_with(".tmp");
        let stale = entry.metadata().is_ok_and(|m| {
            m.file_type().is_file()
                && m.modified()
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age >= STALE_TEMPORARY)
        });
        if ours && stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// How long a temporary file stays untouched before a load takes it for a crash's leftover.
const STALE_TEMPORARY: std::time::Duration = std::time::Duration::from_secs(60);

/// Opens a state file without following a symbolic link in its place (a link there is an
/// error, not a way to read or write another file), and only a regular file (a directory or
/// a FIFO is an error; a FIFO does not block the open). `options` says how to open it.
pub(crate) fn open_state(
    file: &Path,
    options: &mut std::fs::OpenOptions,
) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let opened = options
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(file)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => std::io::Error::new(
                e.kind(),
                "it is a symbolic link, which jobwarden does not follow",
            ),
            _ => e,
        })?;
    let kind = opened.metadata()?.file_type();
    if !kind.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            if kind.is_dir() {
                "it is a directory"
            } else {
                "it is not a regular file"
            },
        ));
    }
    Ok(opened)
}

/// Reads a whole state file through [`open_state`].
pub(crate) fn read_state(file: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    open_state(file, std::fs::OpenOptions::new().read(true))?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The memory file under a state directory.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(MEMORY_FILE)
}

/// The saved memory for `scope`, or an empty one when there is none, it is of another scope,
/// or it cannot be read (said in the log: an empty memory only makes jobs look younger).
pub fn load(state_dir: &Path, scope: &str) -> Memory {
    let file = path(state_dir);
    remove_stale_temporaries(&file);
    let text = match read_state(&file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Memory::new(scope),
        Err(e) => {
            tracing::warn!(path = %file.display(), "cannot read the job memory, starting afresh: {e}");
            return Memory::new(scope);
        }
    };
    match serde_json::from_slice::<Memory>(&text) {
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
    fn damaged_holds_are_kept_aside_and_hold_every_write_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(HOLDS_FILE);
        assert_eq!(
            load_holds(dir.path()),
            Holds::default(),
            "no file, no holds"
        );
        std::fs::write(&file, r#"{"paused_until": 17"#).unwrap();
        let lost = load_holds(dir.path());
        let why = lost.lost.clone().expect("lost");
        assert!(why.contains("holds.json is not valid"), "{why}");
        assert!(why.contains("holds.json.corrupt"), "{why}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("holds.json.corrupt")).unwrap(),
            r#"{"paused_until": 17"#
        );
        assert_eq!(load_holds(dir.path()), lost, "a restart holds too");
        // A directory in its place: moved aside too, beside the first copy.
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir_all(file.join("inner")).unwrap();
        let why = load_holds(dir.path()).lost.expect("lost");
        assert!(why.contains("cannot be read"), "{why}");
        assert!(dir.path().join("holds.json.corrupt.1").is_dir());
        assert!(dir.path().join("holds.json.corrupt").is_file());
        // A damaged file in the holds' place when they are saved (put back at a load that
        // could not save the lost holds) is kept aside, not replaced.
        std::fs::write(&file, "garbage").unwrap();
        save_holds(dir.path(), &Holds::default()).unwrap();
        assert_eq!(load_holds(dir.path()), Holds::default());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("holds.json.corrupt.2")).unwrap(),
            "garbage"
        );
        std::fs::remove_file(dir.path().join("holds.json.corrupt.2")).unwrap();
        // A link in its place is not followed: moved aside, its target untouched.
        std::fs::remove_file(&file).unwrap();
        let target = dir.path().join("elsewhere.json");
        std::fs::write(&target, r#"{"paused_until": null}"#).unwrap();
        std::os::unix::fs::symlink(&target, &file).unwrap();
        let why = load_holds(dir.path()).lost.expect("lost");
        assert!(why.contains("symbolic link"), "{why}");
        assert!(
            std::fs::symlink_metadata(dir.path().join("holds.json.corrupt.2"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            r#"{"paused_until": null}"#
        );
    }

    #[test]
    fn a_save_never_follows_a_link_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(MEMORY_FILE);
        let target = dir.path().join("target");
        std::fs::write(&target, "theirs").unwrap();
        // A link at the file's name is replaced, not written through.
        std::os::unix::fs::symlink(&target, &file).unwrap();
        write_whole(&file, b"{}").unwrap();
        assert!(std::fs::symlink_metadata(&file).unwrap().is_file());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "theirs");
        // A temporary name is never reused: a file already there is an error, not a target.
        let tmp = temporary(&file, 7);
        std::os::unix::fs::symlink(&target, &tmp).unwrap();
        assert_eq!(
            tmp.file_name().unwrap(),
            ".memory.json.0000000000000007.tmp"
        );
        // A save that fails (a directory in the file's place) leaves no temporary file.
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir_all(file.join("inner")).unwrap();
        assert!(write_whole(&file, b"{}").is_err());
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        // A load removes a crash's leftover temporary files, not a link or a fresh one.
        let old = temporary(&file, 1);
        std::fs::write(&old, "half").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - 2 * STALE_TEMPORARY)
            .unwrap();
        let fresh = temporary(&file, 2);
        std::fs::write(&fresh, "in flight").unwrap();
        remove_stale_temporaries(&file);
        assert!(!old.exists());
        assert!(fresh.exists());
        assert!(std::fs::symlink_metadata(&tmp).is_ok());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "theirs");
    }

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

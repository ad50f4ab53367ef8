//! The report folders: an index of the files under each `[[artifacts]]` root, tied to job ids
//! through `pattern`.
//!
//! The index is keyed by job id, so a scan reads only the jobs it needs (the active ones,
//! recently succeeded ones, unknown ids and partial files), never every file. It is built by
//! one walk, then kept current by notify events (debounced) with a full re-walk every
//! `reconcile_every` that repairs anything the events missed; where events cannot be had (an
//! inotify limit, a network filesystem, `watch = "poll"`) every scan re-walks instead. The
//! poll is the source of truth; events only make it faster.
//!
//! jobwarden never writes, moves or deletes anything under a root. Symlinks are not followed
//! (no loops), and every file it cannot use (unreadable, vanished mid-walk, a name that is
//! not UTF-8) is logged once with its path, counted, and skipped.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{Artifacts, WatchMode};
pub use crate::core::pattern::{ArtifactFile, Glob, Pattern};

/// What the index knows of one file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileInfo {
    pub size: u64,
    /// Last modification, Unix seconds on this host's clock.
    pub modified: f64,
    /// Matches a `partial` glob: still being written.
    pub partial: bool,
    /// Which `required` globs it satisfies, by index.
    pub required: Vec<usize>,
}

/// Why a path was skipped, for `jobwarden_artifact_skipped_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Skip {
    Unreadable,
    NotUtf8,
    Vanished,
    Symlink,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Unreadable => "unreadable",
            Skip::NotUtf8 => "not_utf8",
            Skip::Vanished => "vanished",
            Skip::Symlink => "symlink",
        }
    }
}

/// The index of one root.
#[derive(Debug)]
pub struct Index {
    pub spec: Artifacts,
    pattern: Pattern,
    partial: Vec<Glob>,
    required: Vec<Glob>,
    /// Files by job id, then by path relative to the root: a scan reads a job's files
    /// without looking at any other.
    jobs: HashMap<Arc<str>, BTreeMap<Arc<str>, FileInfo>>,
    /// Every indexed path and its job id, ordered, so an event about a folder finds the
    /// files under it without looking at any other file. Each path and each job id is
    /// allocated once and shared (`Arc<str>`) by the maps that name it.
    files: BTreeMap<Arc<str>, Arc<str>>,
    /// How many partial files each job owns, for the jobs that own any.
    partials: BTreeMap<Arc<str>, usize>,
    /// Job ids seen since the last lookup in the table.
    pub new_ids: BTreeSet<String>,
    /// Whether the root existed at the last walk.
    pub root_present: bool,
    /// Paths already logged as skipped.
    logged: HashSet<PathBuf>,
    /// Skips so far, by reason.
    pub skipped: HashMap<Skip, u64>,
    /// How the index is kept current now.
    pub mode: Mode,
}

/// How an index is kept current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// notify events, with a periodic full reconcile.
    Events,
    /// A full walk every scan.
    Poll,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Events => "events",
            Mode::Poll => "poll",
        }
    }
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Index {
    /// An empty index for a root; call [`Index::reconcile`] to fill it.
    pub fn new(spec: &Artifacts) -> Index {
        Index {
            pattern: spec.compiled.pattern.clone(),
            partial: spec.compiled.partial.clone(),
            required: spec.compiled.required.clone(),
            spec: spec.clone(),
            files: BTreeMap::new(),
            jobs: HashMap::new(),
            partials: BTreeMap::new(),
            new_ids: BTreeSet::new(),
            root_present: false,
            logged: HashSet::new(),
            skipped: HashMap::new(),
            mode: if spec.watch == WatchMode::Poll {
                Mode::Poll
            } else {
                Mode::Events
            },
        }
    }

    /// Walks the whole root again and replaces the index with what it finds. A root that does
    /// not exist (yet) leaves the index empty and says so once.
    pub fn reconcile(&mut self) {
        let root = self.spec.root.clone();
        // A folder that cannot be listed is as good as absent: nothing can be known of it.
        let present = root.is_dir() && std::fs::read_dir(&root).is_ok();
        if !present && self.logged.insert(root.clone()) {
            tracing::warn!(root = %root.display(), artifacts = %self.spec.name, "the artifact root does not exist (yet); retrying");
        }
        if present {
            self.logged.remove(&root);
        }
        self.root_present = present;
        let old_ids: HashSet<Arc<str>> = self.jobs.keys().cloned().collect();
        self.files.clear();
        self.jobs.clear();
        self.partials.clear();
        if present {
            self.walk(&root);
        }
        for id in self.jobs.keys() {
            if !old_ids.contains(id) {
                self.new_ids.insert(id.to_string());
            }
        }
    }

    /// An empty index with this one's spec, mode and memory of what it logged, for a walk
    /// made without the lock (see [`reconcile`]).
    fn fresh(&self) -> Index {
        let mut fresh = Index::new(&self.spec);
        fresh.mode = self.mode;
        fresh.logged = self.logged.clone();
        fresh
    }

    /// Takes what a [`Index::fresh`] index walked: its files replace these, the job ids it
    /// found that this one did not have become new, its skips add to these.
    fn adopt(&mut self, walked: Index) {
        for id in walked.jobs.keys() {
            if !self.jobs.contains_key(id) {
                self.new_ids.insert(id.to_string());
            }
        }
        for (why, n) in walked.skipped {
            *self.skipped.entry(why).or_default() += n;
        }
        self.files = walked.files;
        self.jobs = walked.jobs;
        self.partials = walked.partials;
        self.root_present = walked.root_present;
        self.logged = walked.logged;
    }

    /// Brings one path up to date after an event: a file is re-read or removed, a folder is
    /// walked or its entries removed.
    pub fn refresh(&mut self, abs: &Path) {
        let Some(rel) = self.relative(abs) else {
            return;
        };
        // Drop everything at or under the path, then look again: only the entries in that
        // range of the ordered path index are touched.
        let prefix = format!("{rel}/");
        let exact = self.files.get_key_value(rel.as_str());
        let under = self
            .files
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(|(p, _)| p.starts_with(&prefix));
        let gone: Vec<Arc<str>> = exact
            .into_iter()
            .chain(under)
            .map(|(p, _)| p.clone())
            .collect();
        for path in gone {
            self.remove(&path);
        }
        // A path under a linked folder (`7 -> /etc`) is outside the root: never read.
        let through_link = abs
            .ancestors()
            .skip(1)
            .take_while(|a| a.starts_with(&self.spec.root) && *a != self.spec.root)
            .any(|a| std::fs::symlink_metadata(a).is_ok_and(|m| m.file_type().is_symlink()));
        if through_link {
            return;
        }
        match std::fs::symlink_metadata(abs) {
            Ok(m) if m.is_dir() => self.walk(abs),
            Ok(m) if m.is_file() => self.add_file(abs, &rel, &m),
            _ => {}
        }
    }

    fn relative(&mut self, abs: &Path) -> Option<String> {
        let rel = abs.strip_prefix(&self.spec.root).ok()?;
        match rel.to_str() {
            Some(r) if !r.is_empty() => Some(r.to_string()),
            Some(_) => None,
            None => {
                self.skip(abs, Skip::NotUtf8, "its name is not UTF-8");
                None
            }
        }
    }

    fn walk(&mut self, start: &Path) {
        let mut stack = vec![start.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.skip(&dir, Skip::Vanished, "it vanished while being read");
                    continue;
                }
                Err(e) => {
                    self.skip(&dir, Skip::Unreadable, &e.to_string());
                    continue;
                }
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_symlink() {
                    self.skip(&path, Skip::Symlink, "symlinks are not followed");
                } else if kind.is_dir() {
                    stack.push(path);
                } else if kind.is_file() {
                    let Some(rel) = self.relative(&path) else {
                        continue;
                    };
                    match entry.metadata() {
                        Ok(m) => self.add_file(&path, &rel, &m),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            self.skip(&path, Skip::Vanished, "it vanished while being read")
                        }
                        Err(e) => self.skip(&path, Skip::Unreadable, &e.to_string()),
                    }
                }
            }
        }
    }

    /// Takes one file out of every map.
    fn remove(&mut self, path: &str) {
        let Some(job) = self.files.remove(path) else {
            return;
        };
        let Some(files) = self.jobs.get_mut(&job) else {
            return;
        };
        let partial = files.remove(path).is_some_and(|info| info.partial);
        if files.is_empty() {
            self.jobs.remove(&job);
        }
        if partial {
            if let Some(n) = self.partials.get_mut(&job) {
                *n -= 1;
                if *n == 0 {
                    self.partials.remove(&job);
                }
            }
        }
    }

    /// Adds a file the index does not hold: `reconcile` starts from an empty index, and
    /// `refresh` removes everything at or under its path before it looks again.
    fn add_file(&mut self, _abs: &Path, rel: &str, meta: &std::fs::Metadata) {
        let Some(id) = self.pattern.job_id(rel) else {
            return;
        };
        let name = rel.rsplit('/').next().unwrap_or(rel);
        let partial = self.partial.iter().any(|g| g.matches(name));
        let required = self
            .required
            .iter()
            .enumerate()
            .filter(|(_, g)| g.matches(name))
            .map(|(i, _)| i)
            .collect();
        let info = FileInfo {
            size: meta.len(),
            modified: meta.modified().map(unix).unwrap_or(0.0),
            partial,
            required,
        };
        let job = match self.jobs.get_key_value(id.as_str()) {
            Some((job, _)) => job.clone(),
            None => {
                self.new_ids.insert(id.clone());
                Arc::from(id)
            }
        };
        let path: Arc<str> = Arc::from(rel);
        if partial {
            *self.partials.entry(job.clone()).or_default() += 1;
        }
        self.jobs
            .entry(job.clone())
            .or_default()
            .insert(path.clone(), info);
        self.files.insert(path, job);
    }

    fn skip(&mut self, path: &Path, why: Skip, detail: &str) {
        *self.skipped.entry(why).or_default() += 1;
        if self.logged.insert(path.to_path_buf()) {
            tracing::warn!(path = %path.display(), artifacts = %self.spec.name, reason = why.as_str(), "skipping a path: {detail}");
        }
    }

    /// The files of one job, with their ages at `now` (this host's clock).
    pub fn files_of(&self, job_id: &str, now: f64) -> Vec<ArtifactFile> {
        self.jobs
            .get(job_id)
            .into_iter()
            .flatten()
            .map(|(path, f)| ArtifactFile {
                path: path.to_string(),
                size: f.size,
                age: (now - f.modified).max(0.0),
                partial: f.partial,
                required: f.required.clone(),
            })
            .collect()
    }

    /// Job ids that own a partial file.
    pub fn partial_owners(&self) -> BTreeSet<&str> {
        self.partials.keys().map(|id| &**id).collect()
    }

    /// Whether any file names this job.
    pub fn has_job(&self, id: &str) -> bool {
        self.jobs.contains_key(id)
    }

    /// Counts of files: settled, writing (changed within `settle`), partial.
    pub fn states(&self, now: f64) -> [(&'static str, u64); 3] {
        let settle = self.spec.settle.as_secs_f64();
        let (mut settled, mut writing, mut partial) = (0, 0, 0);
        for f in self.jobs.values().flat_map(|m| m.values()) {
            if f.partial {
                partial += 1;
            } else if now - f.modified >= settle {
                settled += 1;
            } else {
                writing += 1;
            }
        }
        [
            ("settled", settled),
            ("writing", writing),
            ("partial", partial),
        ]
    }

    /// Number of files indexed.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// An index shared between its watcher task and the scans.
pub type Shared = Arc<Mutex<Index>>;

/// Walks a shared index's root again, holding its lock only to copy its spec and to swap
/// the result in: readers (a scan, the metrics) never wait for a walk. Blocking: call it
/// off the async runtime ([`reconcile_off_runtime`]).
pub fn reconcile(index: &Shared) {
    let mut walked = lock(index).fresh();
    walked.reconcile();
    lock(index).adopt(walked);
}

/// [`reconcile`] on a blocking thread, so a long walk leaves the runtime's workers to HTTP,
/// alerts and the scan loop.
pub async fn reconcile_off_runtime(index: &Shared) {
    let index = index.clone();
    off_runtime(move || reconcile(&index)).await;
}

/// Runs file-system work on tokio's blocking pool and waits for it. A panic in it is
/// resumed here, as if it had run inline.
async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Locks a shared index.
pub fn lock(index: &Shared) -> std::sync::MutexGuard<'_, Index> {
    index
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How often a root without a watcher (missing, or the watch failed) is tried again.
const WATCH_RETRY: Duration = Duration::from_secs(5);

/// How long events are collected before the index is updated.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// The channel notify's events arrive on.
type EventSender = tokio::sync::mpsc::UnboundedSender<notify::Result<notify::Event>>;
type Events = tokio::sync::mpsc::UnboundedReceiver<notify::Result<notify::Event>>;

/// Keeps an index current from notify events, with a full reconcile every
/// `reconcile_every`; falls back to polling (a walk every scan) when events cannot be had.
/// Returns the shared index and the task.
///
/// The watch is placed before the first walk: a file created while the index is being built
/// is then reported by an event, and one walk serves both.
pub async fn watch(spec: &Artifacts) -> (Shared, tokio::task::JoinHandle<()>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (shared, watcher) = {
        let (spec, tx) = (spec.clone(), tx.clone());
        // notify's recursive watch and the first walk both read the whole tree.
        off_runtime(move || {
            let mut index = Index::new(&spec);
            let placed = place_watch(&spec, &tx);
            note_watch(&mut index, &spec, &placed);
            index.reconcile();
            (Arc::new(Mutex::new(index)), placed.ok().flatten())
        })
        .await
    };
    let task = tokio::spawn(keep_current(shared.clone(), spec.clone(), watcher, tx, rx));
    (shared, task)
}

/// With `watch = "auto"` and the root present, a recursive watch on the root; `Ok(None)` when
/// there is nothing to watch (polling by config, or no root yet). notify walks the tree to
/// place it, so this runs without the index's lock.
fn place_watch(
    spec: &Artifacts,
    tx: &EventSender,
) -> notify::Result<Option<notify::RecommendedWatcher>> {
    use notify::Watcher as _;
    if spec.watch != WatchMode::Auto || !spec.root.is_dir() {
        return Ok(None);
    }
    let tx = tx.clone();
    // notify follows symlinks into other folders unless told not to: a link in the root to
    // `/etc` would be watched and its files listed as a job's.
    let config = notify::Config::default().with_follow_symlinks(false);
    let mut watcher = notify::RecommendedWatcher::new(
        move |ev| {
            let _ = tx.send(ev);
        },
        config,
    )?;
    watcher.watch(&spec.root, notify::RecursiveMode::Recursive)?;
    Ok(Some(watcher))
}

/// Records in the index how it is kept current after a [`place_watch`].
fn note_watch(
    index: &mut Index,
    spec: &Artifacts,
    placed: &notify::Result<Option<notify::RecommendedWatcher>>,
) {
    if spec.watch != WatchMode::Auto {
        return;
    }
    match placed {
        Ok(Some(_)) => index.mode = Mode::Events,
        // Until the root exists, every scan looks for it.
        Ok(None) => index.mode = Mode::Poll,
        Err(e) => {
            if index.mode != Mode::Poll {
                tracing::warn!(root = %spec.root.display(), "cannot watch the artifact root ({e}); falling back to a walk every scan");
            }
            index.mode = Mode::Poll;
        }
    }
}

async fn keep_current(
    shared: Shared,
    spec: Artifacts,
    mut watcher: Option<notify::RecommendedWatcher>,
    tx: EventSender,
    mut rx: Events,
) {
    let mut every = tokio::time::interval(spec.reconcile_every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        if spec.watch == WatchMode::Auto && watcher.is_none() {
            let (index, spec, tx) = (shared.clone(), spec.clone(), tx.clone());
            watcher = off_runtime(move || {
                let placed = place_watch(&spec, &tx);
                note_watch(&mut lock(&index), &spec, &placed);
                let watcher = placed.ok().flatten();
                if watcher.is_some() {
                    // Anything created before the watch began is picked up here.
                    reconcile(&index);
                }
                watcher
            })
            .await;
        }
        tokio::select! {
            Some(first) = rx.recv() => {
                let mut events = vec![first];
                let deadline = tokio::time::Instant::now() + DEBOUNCE;
                while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                    events.push(ev);
                }
                let mut rescan = false;
                let mut paths = BTreeSet::new();
                for ev in events {
                    match ev {
                        Ok(ev) if ev.need_rescan() => rescan = true,
                        // Reads (our own walks open folders) change nothing; reacting to
                        // them would make every walk trigger the next.
                        Ok(ev) if matches!(ev.kind, notify::EventKind::Access(_)) => {}
                        Ok(ev) => paths.extend(ev.paths),
                        Err(e) => {
                            tracing::warn!("artifact watch error ({e}); re-walking");
                            rescan = true;
                        }
                    }
                }
                if rescan {
                    reconcile_off_runtime(&shared).await;
                } else {
                    // A moved-in folder is walked here, under the lock (events are small
                    // as a rule; the periodic reconcile is the long walk, and takes none).
                    let index = shared.clone();
                    off_runtime(move || {
                        let mut index = lock(&index);
                        for p in paths {
                            index.refresh(&p);
                        }
                    })
                    .await;
                }
            }
            _ = tokio::time::sleep(WATCH_RETRY), if spec.watch == WatchMode::Auto && watcher.is_none() => {}
            _ = every.tick() => {
                let (mode, present) = {
                    let index = lock(&shared);
                    (index.mode, index.root_present)
                };
                if mode == Mode::Events || !present {
                    reconcile_off_runtime(&shared).await;
                }
                if !lock(&shared).root_present {
                    watcher = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::clock::Clock;

    fn spec(root: &Path) -> Artifacts {
        Artifacts {
            root_relative: None,
            name: "reports".into(),
            root: root.to_path_buf(),
            pattern: "{job_id}/**".into(),
            partial: vec!["*.part".into()],
            settle: Duration::from_secs(60),
            required: vec!["report.pdf".into()],
            watch: WatchMode::Poll,
            reconcile_every: Duration::from_secs(600),
            required_within: Duration::from_secs(86_400),
            compiled: crate::config::CompiledArtifacts {
                pattern: Pattern::new("{job_id}/**").unwrap(),
                partial: vec![Glob::new("*.part").unwrap()],
                required: vec![Glob::new("report.pdf").unwrap()],
            },
        }
    }

    #[test]
    fn a_walk_without_the_lock_is_swapped_in_like_a_reconcile() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("out");
        std::fs::create_dir_all(root.join("1")).unwrap();
        std::fs::write(root.join("1/report.pdf"), b"pdf").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("8")).unwrap();
        let shared: Shared = Arc::new(Mutex::new(Index::new(&spec(&root))));
        reconcile(&shared);
        {
            let mut index = lock(&shared);
            assert!(index.root_present);
            assert_eq!(index.len(), 1);
            assert_eq!(std::mem::take(&mut index.new_ids).len(), 1);
            assert_eq!(index.skipped.get(&Skip::Symlink), Some(&1));
        }
        std::fs::create_dir_all(root.join("2")).unwrap();
        std::fs::write(root.join("2/report.pdf.part"), b"x").unwrap();
        reconcile(&shared);
        let index = lock(&shared);
        assert_eq!(index.len(), 2);
        // Only the job that was not there before is new; skips add up.
        assert_eq!(index.new_ids.iter().cloned().collect::<Vec<_>>(), ["2"]);
        assert_eq!(
            index.partial_owners().into_iter().collect::<Vec<_>>(),
            ["2"]
        );
        assert_eq!(index.skipped.get(&Skip::Symlink), Some(&2));
    }

    #[test]
    fn walks_refreshes_and_skips() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("out");
        let mut index = Index::new(&spec(&root));
        index.reconcile();
        assert!(!index.root_present && index.is_empty());
        std::fs::create_dir_all(root.join("1")).unwrap();
        std::fs::write(root.join("1/report.pdf"), b"pdf").unwrap();
        std::fs::write(root.join("1/data.csv.part"), b"x").unwrap();
        std::fs::create_dir_all(root.join("2/sub")).unwrap();
        std::fs::write(root.join("2/sub/notes.md"), b"hello").unwrap();
        std::os::unix::fs::symlink(&root, root.join("2/loop")).unwrap();
        index.reconcile();
        assert_eq!(index.len(), 3);
        assert_eq!(
            index.new_ids.iter().cloned().collect::<Vec<_>>(),
            ["1", "2"]
        );
        assert_eq!(index.skipped.get(&Skip::Symlink), Some(&1));
        let files = index.files_of("1", Clock::System.now());
        assert_eq!(files.len(), 2);
        assert!(files
            .iter()
            .any(|f| f.path == "1/data.csv.part" && f.partial));
        assert!(files
            .iter()
            .any(|f| f.path == "1/report.pdf" && f.required == vec![0] && f.size == 3));
        assert_eq!(
            index.partial_owners().into_iter().collect::<Vec<_>>(),
            ["1"]
        );

        // The partial file is renamed to its final name, and folder 2 is deleted.
        std::fs::rename(root.join("1/data.csv.part"), root.join("1/data.csv")).unwrap();
        index.refresh(&root.join("1/data.csv.part"));
        index.refresh(&root.join("1/data.csv"));
        std::fs::remove_dir_all(root.join("2")).unwrap();
        index.refresh(&root.join("2"));
        assert_eq!(index.len(), 2);
        assert!(!index.has_job("2"));
        assert!(index.partial_owners().is_empty());

        // A file written again is read again, not listed twice; a job's files come in path
        // order; the folder refreshed as a whole gives the same index.
        std::fs::write(root.join("1/report.pdf"), b"pdf, longer").unwrap();
        index.refresh(&root.join("1/report.pdf"));
        index.refresh(&root.join("1"));
        let files = index.files_of("1", Clock::System.now());
        assert_eq!(
            files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["1/data.csv", "1/report.pdf"]
        );
        assert_eq!(files[1].size, 11);
        assert_eq!(index.len(), 2);
        assert_eq!(
            index
                .states(Clock::System.now())
                .iter()
                .map(|s| s.1)
                .sum::<u64>(),
            2
        );
    }

    #[test]
    fn names_that_are_not_utf8_are_skipped() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("5")).unwrap();
        std::fs::write(
            root.join("5")
                .join(std::ffi::OsStr::from_bytes(b"bad\xff.pdf")),
            b"x",
        )
        .unwrap();
        std::fs::write(root.join("5/ok.pdf"), b"x").unwrap();
        let mut index = Index::new(&spec(&root));
        index.reconcile();
        assert_eq!(index.len(), 1);
        assert_eq!(index.skipped.get(&Skip::NotUtf8), Some(&1));
    }
}

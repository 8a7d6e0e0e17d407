//! The process-group model: a [`Target`] (a pid file and a flavor), the masters and workers
//! it names, and the [`Phase`] of an upgrade, computed from the pid files and the live
//! process table alone.
//!
//! Nothing here remembers anything between calls: any process, at any time, can call
//! [`Target::observe`] and learn where an upgrade stands, even one started by another
//! process that was killed half-way. What does not match a known phase exactly is
//! reported as [`Phase::Unknown`] with the evidence, never guessed. This module reads
//! `/proc` and pid files; it never signals (see [`crate::ops`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::Error;
use crate::flavor::Flavor;
use crate::lock::TargetLock;
use crate::pid::Pid;
use crate::pidfile::read_pid_file_optional;
use crate::procfs::{self, ChildProc};

mod roles;
pub(crate) use roles::{is_child_master, is_worker_child, master_info, workers_of};

/// Where an upgrade of a target stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// One master with workers; no upgrade in progress.
    Steady,
    /// Old master (pid in `.oldbin`) and new master (its child, pid in the pid file), both
    /// with workers.
    Spawned,
    /// Old master alive without workers; new master with workers.
    Drained,
    /// The moment between the two, while an upgrade waits for it (it holds the
    /// target's lock): the old master renamed its pid file (nginx: `.oldbin`) and has a
    /// new master child that has not written the pid file yet. Every upgrade passes
    /// through it. The same files with nobody holding the lock (a hotreload killed in
    /// its spawn wait) are `Unknown`, ended by [`crate::rollback`]. No typed operation
    /// starts from it ([`crate::State::Unknown`] carries it).
    Spawning,
    /// Anything else; the observation's evidence says what was seen.
    Unknown,
}

impl Phase {
    /// `steady`, `spawning`, `spawned`, `drained` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Steady => "steady",
            Phase::Spawned => "spawned",
            Phase::Drained => "drained",
            Phase::Spawning => "spawning",
            Phase::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A worker process, as seen when observed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct WorkerInfo {
    /// Its pid.
    pub pid: Pid,
    /// Its start time (clock ticks since boot): with the pid, its identity.
    pub start_time: u64,
    /// Its title.
    pub title: String,
    /// Whether its title says it is finishing its requests before exiting.
    pub shutting_down: bool,
}

/// A master process and its workers, as seen when observed.
// With the `serde` feature, `Serialize` is written out in `serde_impl.rs` (the CLI's v1
// master object).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MasterInfo {
    /// Its pid.
    pub pid: Pid,
    /// The executable it runs (`/proc/<pid>/exe`), when readable.
    pub exe: Option<PathBuf>,
    /// Whether that executable was replaced or removed since it started.
    pub exe_deleted: bool,
    /// Its start time (clock ticks since boot): with the pid, its identity.
    pub start_time: u64,
    /// Its start time as wall-clock time (to about a second).
    pub started_at: SystemTime,
    /// Its title (nginx: `nginx: master process /usr/sbin/nginx -c ...`).
    pub title: String,
    /// Its raw command line (nginx rewrites it into the title).
    pub cmdline: Vec<String>,
    /// Its parent's pid.
    pub ppid: i32,
    /// Its session id.
    pub sid: i32,
    /// Its workers (children whose title says "worker"), sorted by pid.
    pub workers: Vec<WorkerInfo>,
}

impl MasterInfo {
    /// Workers that are not shutting down: the ones that accept new connections.
    pub fn active_workers(&self) -> impl Iterator<Item = &WorkerInfo> {
        self.workers.iter().filter(|w| !w.shutting_down)
    }
}

/// What [`Target::observe`] saw: the phase, the masters, and the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Observation {
    /// The phase the evidence shows.
    pub phase: Phase,
    /// The master in steady phase, or the old master during an upgrade (when seen).
    pub old_master: Option<MasterInfo>,
    /// The new master during an upgrade (when seen).
    pub new_master: Option<MasterInfo>,
    /// What was seen, one fact per line, in the order it was checked.
    pub evidence: Vec<String>,
}

impl fmt::Display for Observation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.phase)?;
        let describe = |m: &MasterInfo| format!("{} ({} workers)", m.pid, m.workers.len());
        match (self.phase, &self.old_master, &self.new_master) {
            (Phase::Steady, Some(m), _) => write!(f, ": master {}", describe(m)),
            (Phase::Spawned | Phase::Drained, Some(o), Some(n)) => {
                write!(
                    f,
                    ": old master {}, new master {}",
                    describe(o),
                    describe(n)
                )
            }
            _ => write!(f, ": {}", self.evidence.join("; ")),
        }
    }
}

/// The server to upgrade: its pid file, its flavor and (optionally) the executable path.
///
/// ```no_run
/// use hotreload_core::{Flavor, Phase, Target};
///
/// let target = Target::new("/run/nginx.pid").flavor(Flavor::nginx());
/// let seen = target.observe()?;
/// if seen.phase == Phase::Unknown {
///     for fact in &seen.evidence {
///         eprintln!("{fact}");
///     }
/// }
/// # Ok::<(), hotreload_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pid_file: PathBuf,
    flavor: Flavor,
    binary: Option<PathBuf>,
    server_args: Option<Vec<String>>,
    state_dir: Option<PathBuf>,
}

impl Target {
    /// A target named by its pid file, with the nginx flavor.
    pub fn new(pid_file: impl Into<PathBuf>) -> Self {
        Target {
            pid_file: pid_file.into(),
            flavor: Flavor::nginx(),
            binary: None,
            server_args: None,
            state_dir: None,
        }
    }

    /// Sets the flavor.
    pub fn flavor(mut self, flavor: Flavor) -> Self {
        self.flavor = flavor;
        self
    }

    /// Sets the executable path the master runs (default: the master's own `argv[0]`,
    /// which is what nginx executes on `USR2`).
    pub fn binary(mut self, binary: impl Into<PathBuf>) -> Self {
        self.binary = Some(binary.into());
        self
    }

    /// Sets hotreload's state home for this target: where its lock and journal live
    /// (default: `/run/hotreload` for root, `$XDG_RUNTIME_DIR/hotreload` otherwise). It is
    /// created (mode 0700) when missing and refused when anyone but the invoking user could
    /// write it (see [`crate::state`]).
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// The state home this target uses: the one set with [`Target::state_dir`], else the
    /// default (an error for a non-root user without `XDG_RUNTIME_DIR`).
    pub fn state_dir_path(&self) -> Result<PathBuf, Error> {
        match &self.state_dir {
            Some(dir) => Ok(dir.clone()),
            None => crate::state::default_dir(),
        }
    }

    /// The checked state home (`create`: made when missing; else `None` when missing).
    pub(crate) fn home(&self, create: bool) -> Result<Option<crate::state::Home>, Error> {
        crate::state::Home::open(&self.state_dir_path()?, create)
    }

    /// The configured pid file.
    pub fn pid_file(&self) -> &Path {
        &self.pid_file
    }

    /// The flavor.
    pub fn flavor_ref(&self) -> &Flavor {
        &self.flavor
    }

    /// The executable path, if one was set with [`Target::binary`].
    pub fn binary_path(&self) -> Option<&Path> {
        self.binary.as_deref()
    }

    /// The master's arguments after `argv[0]`, exactly as it was started, for a title
    /// that cannot say them for sure ([`Flavor::title_ambiguity`]: nginx joins its argv
    /// with spaces). Used for the config test, the `daemon` check and finding `argv[0]`
    /// (what the master re-executes); they must be how the title ends.
    pub fn server_args(mut self, args: Vec<String>) -> Self {
        self.server_args = Some(args);
        self
    }

    /// The master's argv: from [`Target::server_args`] when given, else from its
    /// command line or title, refused (`Err`, the reason) when the title is ambiguous.
    pub fn master_argv(&self, master: &MasterInfo) -> Result<Vec<String>, String> {
        match &self.server_args {
            Some(args) => self.flavor.master_argv_with(&master.cmdline, args),
            None => match self.flavor.title_ambiguity(&master.cmdline) {
                Some(reason) => Err(reason),
                None => Ok(self.flavor.master_argv(&master.cmdline)),
            },
        }
    }

    /// Where the old master's pid is during an upgrade (nginx: `<pid file>.oldbin`).
    pub fn old_pid_file(&self) -> PathBuf {
        self.flavor.old_pid_file(&self.pid_file)
    }

    /// Where the new master writes its pid during an upgrade (nginx: the pid file).
    pub fn new_pid_file(&self) -> PathBuf {
        self.flavor.new_pid_file(&self.pid_file)
    }

    /// The lock file of this target: `<state home>/<key>.lock`, the key naming the pid
    /// file's canonical path.
    pub fn lock_file(&self) -> Result<PathBuf, Error> {
        self.state_entry(crate::lock::LOCK_SUFFIX)
    }

    /// The journal of an upgrade in progress: `<state home>/<key>.journal`.
    pub fn journal_file(&self) -> Result<PathBuf, Error> {
        self.state_entry(crate::journal::JOURNAL_SUFFIX)
    }

    /// Where hotreload before 0.x kept the journal: `<pid file>.hotreload-journal`. One
    /// found there is reported by `status` and acted on only if it passes the same checks
    /// as one in the state home.
    pub fn legacy_journal_file(&self) -> PathBuf {
        crate::journal::legacy_journal_path(&self.pid_file)
    }

    /// The journal an operation on this target would act on, if one exists: the one in
    /// the state home, else one beside the pid file. Whether it is believed is decided
    /// when it is acted on.
    pub fn pending_journal(&self) -> Option<PathBuf> {
        let home = self.journal_file().ok();
        home.into_iter()
            .chain([self.legacy_journal_file()])
            .find(|p| std::fs::symlink_metadata(p).is_ok())
    }

    /// Facts about this target's journals, for a status report: each one found, whether
    /// hotreload would act on it, and the command that settles it.
    pub fn journal_notes(&self) -> Vec<String> {
        crate::journal::notes(self)
    }

    fn state_entry(&self, suffix: &str) -> Result<PathBuf, Error> {
        let dir = self.state_dir_path()?;
        let key = crate::state::key_of(&crate::state::canonical_pid_file(&self.pid_file)?);
        let mut name = key;
        name.push(suffix);
        Ok(dir.join(name))
    }

    /// Takes this target's lock (in hotreload's state home), for one upgrade at a time.
    ///
    /// Fails at once with [`Error::Locked`] naming the holder when another process holds
    /// it. The lock is released when the returned guard is dropped or its holder dies. A
    /// pid file that does not exist (nor its upgrade-time siblings) is refused before any
    /// file is made: a mistyped path leaves nothing behind.
    pub fn lock(&self) -> Result<TargetLock, Error> {
        let any_exists = [
            self.pid_file.clone(),
            self.old_pid_file(),
            self.new_pid_file(),
        ]
        .iter()
        .any(|p| std::fs::symlink_metadata(p).is_ok());
        if !any_exists {
            return Err(Error::PidFile {
                path: self.pid_file.clone(),
                problem: crate::error::PidFileProblem::Missing,
            });
        }
        let home = self.home(true)?.expect("a home made on demand exists");
        TargetLock::acquire_file(&home.target_entry(&self.pid_file, crate::lock::LOCK_SUFFIX)?)
    }

    /// Computes the phase from the pid files and the live process table.
    ///
    /// The files and `/proc` are read at slightly different instants, so the pid files
    /// are read again at the end; when they changed meanwhile the whole observation is
    /// made again (a few times, then reported as `Unknown`). An `Unknown` glimpse is
    /// looked at again twice, a few milliseconds apart, before it is believed: a server
    /// passes through states that match no phase for a few milliseconds (a forked worker
    /// briefly carries its master's title; the pid file is absent between a rename and a
    /// write).
    pub fn observe(&self) -> Result<Observation, Error> {
        let mut observation = self.observe_now()?;
        for pause in [2, 20] {
            if observation.phase != Phase::Unknown {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(pause));
            observation = self.observe_now()?;
        }
        Ok(observation)
    }

    /// One observation, without the second look at an `Unknown` result (for loops that
    /// poll anyway).
    pub(crate) fn observe_now(&self) -> Result<Observation, Error> {
        let mut last = None;
        for _ in 0..5 {
            let before = self.read_pid_files();
            let observation = self.observe_with(&before);
            if self.read_pid_files() == before {
                return Ok(observation);
            }
            last = Some(observation);
        }
        let mut observation = last.expect("at least one observation was made");
        observation.phase = Phase::Unknown;
        observation
            .evidence
            .push("the pid files kept changing while they were read: look again".into());
        Ok(observation)
    }

    fn read_pid_files(&self) -> PidFiles {
        let current = PidFileContent::read(&self.pid_file);
        let old_path = self.old_pid_file();
        let old = if old_path == self.pid_file {
            current.clone()
        } else {
            PidFileContent::read(&old_path)
        };
        let new_path = self.new_pid_file();
        let new = if new_path == self.pid_file {
            current.clone()
        } else {
            PidFileContent::read(&new_path)
        };
        PidFiles { current, old, new }
    }

    fn observe_with(&self, files: &PidFiles) -> Observation {
        let mut seen = Seen {
            flavor: &self.flavor,
            evidence: Vec::new(),
            children: Vec::new(),
        };
        let old_path = self.old_pid_file();
        let new_path = self.new_pid_file();
        let unknown = |seen: Seen, old_master, new_master| Observation {
            phase: Phase::Unknown,
            old_master,
            new_master,
            evidence: seen.evidence,
        };
        // The file that exists only while an upgrade is in progress: the old master's
        // (nginx's `.oldbin`) unless that is the configured pid file itself, then the new
        // master's (gunicorn's `.2`).
        let (marker_path, marker) = if old_path == self.pid_file {
            (&new_path, &files.new)
        } else {
            (&old_path, &files.old)
        };
        match marker {
            PidFileContent::Absent => {
                seen.fact(format!("no {}", marker_path.display()));
                let master = match seen.master(&self.pid_file, &files.current, "pid file") {
                    Some(m) => m,
                    None => return unknown(seen, None, None),
                };
                if new_path != self.pid_file && files.new != PidFileContent::Absent {
                    seen.fact(format!(
                        "{} exists although no upgrade is in progress",
                        new_path.display()
                    ));
                    return unknown(seen, Some(master), None);
                }
                let ok = seen.has_workers(&master)
                    & seen.no_child_master(&master)
                    & seen.no_parent_master(&master, marker_path);
                if !ok {
                    return unknown(seen, Some(master), None);
                }
                Observation {
                    phase: Phase::Steady,
                    old_master: Some(master),
                    new_master: None,
                    evidence: seen.evidence,
                }
            }
            _ => {
                let old = match seen.master(&old_path, &files.old, "old pid file") {
                    Some(m) => m,
                    None => {
                        if self.flavor.new_master_promotes_itself()
                            && files.old == PidFileContent::Absent
                        {
                            seen.fact(format!(
                                "the old master is gone and the new master has not yet renamed \
                                 {} to {} (it does so by itself)",
                                new_path.display(),
                                self.pid_file.display()
                            ));
                        }
                        return unknown(seen, None, None);
                    }
                };
                if files.new == PidFileContent::Absent {
                    seen.fact(format!(
                        "{} does not exist: a new master is starting, failed to start, or its pid \
                         file was removed",
                        new_path.display()
                    ));
                    let starting = seen.describe_children(&old);
                    // Only an upgrade that waits for it makes this a phase: with nobody
                    // holding the lock, a new master that does not come up is left over
                    // (a hotreload killed in its spawn wait) and needs a person.
                    let lock_file = self.lock_file().ok();
                    let waited_for =
                        starting && lock_file.as_deref().is_some_and(crate::lock::is_held);
                    if starting {
                        let lock = lock_file.as_ref().map_or_else(
                            || "the target's lock".to_string(),
                            |path| path.display().to_string(),
                        );
                        seen.fact(if waited_for {
                            format!("an upgrade holds {lock} and waits for the new master")
                        } else {
                            format!(
                                "no hotreload holds {lock}: nobody waits for this new master (an \
                                 upgrade killed in its spawn wait?)"
                            )
                        });
                    }
                    if waited_for {
                        return Observation {
                            phase: Phase::Spawning,
                            old_master: Some(old),
                            new_master: None,
                            evidence: seen.evidence,
                        };
                    }
                    return unknown(seen, Some(old), None);
                }
                if files.new == files.old {
                    seen.fact(format!(
                        "{} and {} name the same process",
                        new_path.display(),
                        old_path.display()
                    ));
                    return unknown(seen, Some(old), None);
                }
                let new = match seen.master(&new_path, &files.new, "new pid file") {
                    Some(m) => m,
                    None => {
                        seen.describe_children(&old);
                        return unknown(seen, Some(old), None);
                    }
                };
                if new.ppid != old.pid.get() {
                    seen.fact(format!(
                        "new master {} is not a child of old master {} (its parent is {}): two \
                         masters with no parent link",
                        new.pid, old.pid, new.ppid
                    ));
                    return unknown(seen, Some(old), Some(new));
                }
                seen.fact(format!(
                    "new master {} is a child of old master {}",
                    new.pid, old.pid
                ));
                // Where the title does not tell the roles apart, the new master could look
                // like one of the old master's workers.
                let mut old = old;
                old.workers.retain(|w| w.pid != new.pid);
                if !seen.has_workers(&new) {
                    return unknown(seen, Some(old), Some(new));
                }
                let phase = if old.workers.is_empty() {
                    seen.fact(format!("old master {} has no workers", old.pid));
                    Phase::Drained
                } else {
                    seen.fact(format!(
                        "old master {} has {} workers ({} shutting down)",
                        old.pid,
                        old.workers.len(),
                        old.workers.iter().filter(|w| w.shutting_down).count()
                    ));
                    Phase::Spawned
                };
                Observation {
                    phase,
                    old_master: Some(old),
                    new_master: Some(new),
                    evidence: seen.evidence,
                }
            }
        }
    }
}

/// What a pid file holds, for comparing two reads.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PidFileContent {
    Absent,
    Pid(Pid),
    Invalid(String),
}

impl PidFileContent {
    fn read(path: &Path) -> PidFileContent {
        match read_pid_file_optional(path) {
            Ok(Some(pid)) => PidFileContent::Pid(pid),
            Ok(None) => PidFileContent::Absent,
            Err(e) => PidFileContent::Invalid(error_chain(&e)),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct PidFiles {
    current: PidFileContent,
    old: PidFileContent,
    new: PidFileContent,
}

/// Collects evidence while the observation is computed.
struct Seen<'a> {
    flavor: &'a Flavor,
    evidence: Vec<String>,
    /// The children of each master looked at, listed once per observation (the one
    /// `/proc` pass: the workers, the child-master check and the description share it).
    children: Vec<(Pid, Result<Vec<ChildProc>, String>)>,
}

impl Seen<'_> {
    fn fact(&mut self, fact: String) {
        self.evidence.push(fact);
    }

    /// The master named by a pid file, or `None` (with the evidence) when the file does
    /// not name a live master.
    fn master(&mut self, path: &Path, content: &PidFileContent, what: &str) -> Option<MasterInfo> {
        let pid = match content {
            PidFileContent::Absent => {
                self.fact(format!("{what} {} does not exist", path.display()));
                return None;
            }
            PidFileContent::Invalid(problem) => {
                self.fact(format!("{what} {} is unusable: {problem}", path.display()));
                return None;
            }
            PidFileContent::Pid(pid) => *pid,
        };
        let info = match procfs::proc_info(pid) {
            Ok(info) => info,
            Err(Error::ProcessGone { .. }) => {
                self.fact(format!(
                    "{what} {} names {pid}, which is not running (stale pid file)",
                    path.display()
                ));
                return None;
            }
            Err(e) => {
                self.fact(format!(
                    "{what} {} names {pid}, which cannot be read: {}",
                    path.display(),
                    error_chain(&e)
                ));
                return None;
            }
        };
        if info.is_zombie() {
            self.fact(format!(
                "{what} {} names {pid}, a zombie (it has exited; its parent {} has not reaped it)",
                path.display(),
                info.ppid
            ));
            return None;
        }
        if !self.flavor.is_master_title(&info.title) {
            self.fact(format!(
                "{what} {} names {pid}, which is not a {} master: its title is `{}`",
                path.display(),
                self.flavor.name(),
                info.title
            ));
            return None;
        }
        let workers = self.workers(pid);
        self.fact(format!(
            "{what} {} names {pid}, a live master (`{}`)",
            path.display(),
            info.title
        ));
        Some(master_info(info, workers))
    }

    /// The children of `pid`, read from `/proc` at the first call for it.
    fn children_of(&mut self, pid: Pid) -> &Result<Vec<ChildProc>, String> {
        let at = match self.children.iter().position(|(p, _)| *p == pid) {
            Some(at) => at,
            None => {
                let listed = procfs::child_procs(pid).map_err(|e| error_chain(&e));
                self.children.push((pid, listed));
                self.children.len() - 1
            }
        };
        &self.children[at].1
    }

    fn workers(&mut self, pid: Pid) -> Vec<WorkerInfo> {
        let flavor = self.flavor;
        match self.children_of(pid) {
            Ok(children) => workers_of(flavor, children),
            Err(e) => {
                let fact = format!("children of {pid} cannot be listed: {e}");
                self.fact(fact);
                Vec::new()
            }
        }
    }

    fn has_workers(&mut self, master: &MasterInfo) -> bool {
        if master.workers.is_empty() {
            self.fact(format!("master {} has no workers", master.pid));
            return false;
        }
        let pids: Vec<String> = master.workers.iter().map(|w| w.pid.to_string()).collect();
        self.fact(format!(
            "master {} has workers {}",
            master.pid,
            pids.join(", ")
        ));
        true
    }

    /// In steady phase no child of the master may be a master.
    fn no_child_master(&mut self, master: &MasterInfo) -> bool {
        let flavor = self.flavor;
        let Ok(children) = self.children_of(master.pid) else {
            return true;
        };
        let facts: Vec<String> = children
            .iter()
            .filter(|c| is_child_master(flavor, *c))
            .map(|child| {
                format!(
                    "master {} has a child {} that is also a master (`{}`), but there is no old \
                     pid file",
                    master.pid, child.pid, child.title
                )
            })
            .collect();
        let none = facts.is_empty();
        self.evidence.extend(facts);
        none
    }

    /// Whether `master`'s parent is not a live master of the flavor. One whose parent is
    /// (a new master under its old one, both serving, with the old pid file removed) is
    /// not steady: two masters serve, and only the operator can say which should stay.
    fn no_parent_master(&mut self, master: &MasterInfo, marker_path: &Path) -> bool {
        let Some(parent) = Pid::new(i64::from(master.ppid))
            .ok()
            .filter(|p| p.get() > 1)
            .and_then(|p| procfs::proc_info(p).ok())
        else {
            return true;
        };
        if parent.is_zombie() || !self.flavor.is_master_title(&parent.title) {
            return true;
        }
        // Where titles do not tell roles apart, a master is a parent of workers other
        // than `master` itself.
        if self.flavor.roles_from_parent_link() {
            let others = procfs::children(parent.pid).is_ok_and(|children| {
                children.iter().any(|c| {
                    c.pid != master.pid && !c.is_zombie() && self.flavor.is_worker_title(&c.title)
                })
            });
            if !others {
                return true;
            }
        }
        self.fact(format!(
            "master {} is a child of master {} (`{}`), which is alive: two masters serve and \
             {} is missing (an upgrade whose old pid file was removed). Settle it by hand: \
             `kill -{stop} {}` retires the old master and keeps the new one, or `kill -{stop} \
             {}` keeps the old one (then restore its pid file)",
            master.pid,
            parent.pid,
            parent.title,
            marker_path.display(),
            parent.pid,
            master.pid,
            stop = self.flavor.signals().graceful_stop.name()
        ));
        false
    }

    /// Says what the master's children other than its workers are; true when one of
    /// them is live (a new master starting).
    fn describe_children(&mut self, master: &MasterInfo) -> bool {
        let flavor = self.flavor;
        let Ok(children) = self.children_of(master.pid) else {
            return false;
        };
        let mut live = false;
        let facts: Vec<String> = children
            .iter()
            .filter(|child| !is_worker_child(flavor, *child))
            .map(|child| {
                live |= !child.is_zombie();
                let state = if child.is_zombie() { ", a zombie" } else { "" };
                format!(
                    "old master {} has a child {}{state} titled `{}`",
                    master.pid, child.pid, child.title
                )
            })
            .collect();
        self.evidence.extend(facts);
        live
    }
}

/// An error and its sources on one line: "a: b: c".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

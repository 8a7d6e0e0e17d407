//! Server flavors: what differs between servers that share the master/worker upgrade dance.
//!
//! A [`Flavor`] is data, not code paths: the signal that does each job, how the pid files
//! are named during an upgrade, how the config is tested, and how a process title says
//! "master" or "worker". The operations in [`crate::ops`] read these values and never
//! name a server. nginx is built in; other servers (unicorn, gunicorn) are described by
//! the same fields (gunicorn's new master writes `<pidfile>.2`, and its TERM/QUIT are the
//! reverse of nginx's: both are expressible here).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::signal::Signal;

/// Which signal does which job for a flavor.
///
/// Construct from a known map ([`SignalMap::nginx`]) and change fields as needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SignalMap {
    /// Sent to the master to start a new master on the current executable (nginx: `USR2`).
    pub spawn: Signal,
    /// Sent to the old master to stop its workers but keep its sockets (nginx: `WINCH`).
    pub stop_workers: Signal,
    /// Graceful shutdown: finish requests, then exit (nginx: `QUIT`).
    pub graceful_stop: Signal,
    /// Fast shutdown (nginx: `TERM`).
    pub fast_stop: Signal,
    /// Start workers again (nginx: `HUP`; while a new binary runs it does not re-read the config).
    pub restart_workers: Signal,
    /// Reopen log files (nginx: `USR1`).
    pub reopen_logs: Signal,
}

impl SignalMap {
    /// nginx's signals (also unicorn's).
    pub fn nginx() -> Self {
        SignalMap {
            spawn: Signal::Usr2,
            stop_workers: Signal::Winch,
            graceful_stop: Signal::Quit,
            fast_stop: Signal::Term,
            restart_workers: Signal::Hup,
            reopen_logs: Signal::Usr1,
        }
    }

    /// unicorn's signals: the same as nginx's (`USR2`, `WINCH`, `QUIT` graceful, `TERM`
    /// fast, `HUP`, `USR1`).
    pub fn unicorn() -> Self {
        SignalMap::nginx()
    }

    /// gunicorn's signals: `USR2` re-execs, `WINCH` stops the workers (when daemonized),
    /// `HUP` starts workers again (it reloads the app), and **`TERM` is graceful while
    /// `QUIT` is fast** (the reverse of nginx).
    pub fn gunicorn() -> Self {
        SignalMap {
            graceful_stop: Signal::Term,
            fast_stop: Signal::Quit,
            ..SignalMap::nginx()
        }
    }
}

/// How a pid file used during an upgrade is named, relative to the configured pid file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PidFileName {
    /// The configured pid file itself.
    Same,
    /// The configured pid file's name with this suffix appended (`nginx.pid` + `.oldbin`).
    Suffix(String),
}

impl PidFileName {
    /// The path this naming gives for the configured pid file `pid_file`.
    pub fn apply(&self, pid_file: &Path) -> PathBuf {
        match self {
            PidFileName::Same => pid_file.to_path_buf(),
            PidFileName::Suffix(suffix) => {
                let mut name = OsString::from(pid_file.as_os_str());
                name.push(suffix);
                PathBuf::from(name)
            }
        }
    }
}

/// Markers that identify a process's role from its title (`/proc/<pid>/cmdline`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TitleMarkers {
    /// Present in a master's title (nginx: `master process`).
    pub master: String,
    /// Present in a worker's title (nginx: `worker process`).
    pub worker: String,
    /// Present in a worker's title once it is finishing its requests before exiting
    /// (nginx: `is shutting down`).
    pub shutting_down: String,
    /// Present in the titles of a master's helpers, children that are neither workers nor
    /// masters and are never stopped by hotreload (nginx: `cache manager process`, `cache
    /// loader process`; an aborted cache load is not restarted).
    pub helpers: Vec<String>,
}

impl TitleMarkers {
    /// nginx's titles: `nginx: master process ...`, `nginx: worker process [is shutting down]`.
    pub fn nginx() -> Self {
        TitleMarkers {
            master: "master process".into(),
            worker: "worker process".into(),
            shutting_down: "is shutting down".into(),
            helpers: vec![
                "cache manager process".into(),
                "cache loader process".into(),
            ],
        }
    }

    /// unicorn's titles: `unicorn master [(old)] <args>`, `unicorn worker[N] <args>`. A
    /// unicorn worker's title does not change while it finishes its requests, so
    /// `shutting_down` is empty (never matches).
    pub fn unicorn() -> Self {
        TitleMarkers {
            master: "unicorn master".into(),
            worker: "unicorn worker[".into(),
            shutting_down: String::new(),
            helpers: Vec::new(),
        }
    }

    /// gunicorn's titles. Without the `setproctitle` module (Debian's package) master and
    /// workers keep the same command line (`/usr/bin/python3 /usr/bin/gunicorn ...`); with
    /// it they read `gunicorn: master [app]` and `gunicorn: worker [app]`. Both contain
    /// `gunicorn`, which is therefore the marker for both roles; the flavor says the roles
    /// come from the parent link ([`Roles::FromParentLink`]).
    pub fn gunicorn() -> Self {
        TitleMarkers {
            master: "gunicorn".into(),
            worker: "gunicorn".into(),
            shutting_down: String::new(),
            helpers: Vec::new(),
        }
    }
}

/// How a flavor tells its masters from its workers: a rule per role, stated by the
/// flavor (not inferred from its markers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Roles {
    /// The title says: a process titled with the master marker is a master, one titled
    /// with the worker marker is a worker (nginx, unicorn).
    FromTitle,
    /// The title only says "one of ours" (gunicorn without `setproctitle`): a process
    /// titled so is a master when a pid file names it or when it has children titled so,
    /// and a worker when it is a child of a master without such children of its own.
    FromParentLink,
}

/// How a master's title relates to the command line it was started with (what it
/// executes again on the spawn signal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TitleArgs {
    /// The title is `<prefix><master marker> <original argv, argv[0] included>` (nginx).
    AfterMasterMarker,
    /// The title is `<basename of argv[0]> <master marker tail> <original arguments>`:
    /// the arguments follow the master marker but the path of `argv[0]` is lost (unicorn:
    /// `unicorn master -D -c u.conf.rb`, which re-executes `/usr/bin/unicorn`, a script
    /// run by the interpreter that `/proc/<pid>/exe` names).
    ArgsAfterMasterMarker,
    /// The command line is left as it was started (gunicorn without `setproctitle`:
    /// `/usr/bin/python3 /usr/bin/gunicorn ...`, which re-executes `/usr/bin/python3`).
    Untouched,
}

/// How to test a configuration with a (new) executable before starting it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigTest {
    /// The server has no config test.
    None,
    /// Run `<binary> <flags...>` followed by the master's own command-line options named in
    /// `carried` (each with its value), so the test reads the same prefix, config file and
    /// directives as the running master. nginx: flags `-t`, carried `-p`, `-c`, `-g`.
    Flags {
        /// Flags that ask for a config test (nginx: `-t`).
        flags: Vec<String>,
        /// Options of the master's command line to repeat, each taking one value, given
        /// either as the next argument (`-c conf`) or attached (`-cconf`).
        carried: Vec<String>,
    },
    /// Run `<binary>` with all of the master's arguments after `argv[0]`, with `flags`
    /// inserted before the argument at index `at` of those (gunicorn: the master runs
    /// `/usr/bin/python3 /usr/bin/gunicorn -D ... app:app`, the test is
    /// `/usr/bin/python3 /usr/bin/gunicorn --check-config -D ... app:app`, `at` 1).
    AllArgs {
        /// Flags that ask for a config test (gunicorn: `--check-config`).
        flags: Vec<String>,
        /// Where the flags go among the master's arguments (after `argv[0]`).
        at: usize,
    },
}

/// A server flavor: signal map, pid-file naming, config test and title markers.
///
/// ```
/// use hotreload_core::Flavor;
/// use std::path::Path;
///
/// let nginx = Flavor::nginx();
/// assert_eq!(nginx.old_pid_file(Path::new("/run/nginx.pid")), Path::new("/run/nginx.pid.oldbin"));
/// assert_eq!(nginx.new_pid_file(Path::new("/run/nginx.pid")), Path::new("/run/nginx.pid"));
/// assert!(nginx.is_worker_title("nginx: worker process is shutting down"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Flavor {
    name: String,
    signals: SignalMap,
    old_pid_file: PidFileName,
    new_pid_file: PidFileName,
    config_test: ConfigTest,
    config_test_absent_reason: String,
    titles: TitleMarkers,
    title_args: TitleArgs,
    roles: Roles,
}

impl Flavor {
    /// nginx (and servers that copy its protocol, such as fake-nginx).
    pub fn nginx() -> Self {
        Flavor {
            name: "nginx".into(),
            signals: SignalMap::nginx(),
            old_pid_file: PidFileName::Suffix(".oldbin".into()),
            new_pid_file: PidFileName::Same,
            config_test: ConfigTest::Flags {
                flags: vec!["-t".into()],
                carried: vec!["-p".into(), "-c".into(), "-g".into()],
            },
            config_test_absent_reason: String::new(),
            titles: TitleMarkers::nginx(),
            title_args: TitleArgs::AfterMasterMarker,
            roles: Roles::FromTitle,
        }
    }

    /// unicorn (tested with 6.0.0): nginx's signals and pid-file naming (`<pid>.oldbin`
    /// for the old master, the pid file itself for the new one), titles
    /// `unicorn master ...` / `unicorn worker[N] ...`, and no config test.
    pub fn unicorn() -> Self {
        Flavor {
            name: "unicorn".into(),
            signals: SignalMap::unicorn(),
            old_pid_file: PidFileName::Suffix(".oldbin".into()),
            new_pid_file: PidFileName::Same,
            config_test: ConfigTest::None,
            config_test_absent_reason: "unicorn has no config test: a bad config shows only \
                when the new master starts (it then exits and the old master takes its pid \
                file back)"
                .into(),
            titles: TitleMarkers::unicorn(),
            title_args: TitleArgs::ArgsAfterMasterMarker,
            roles: Roles::FromTitle,
        }
    }

    /// gunicorn (tested with 20.1.0): `TERM` graceful, `QUIT` fast; the old master keeps
    /// the pid file, the new master writes `<pid file>.2` and, once the old master is gone,
    /// renames it to the pid file by itself ("promotion"); config test
    /// `--check-config` with the master's own arguments; roles from the parent link.
    pub fn gunicorn() -> Self {
        Flavor {
            name: "gunicorn".into(),
            signals: SignalMap::gunicorn(),
            old_pid_file: PidFileName::Same,
            new_pid_file: PidFileName::Suffix(".2".into()),
            config_test: ConfigTest::AllArgs {
                flags: vec!["--check-config".into()],
                at: 1,
            },
            config_test_absent_reason: String::new(),
            titles: TitleMarkers::gunicorn(),
            title_args: TitleArgs::Untouched,
            roles: Roles::FromParentLink,
        }
    }

    /// Names accepted by [`Flavor::by_name`].
    pub fn known_names() -> &'static [&'static str] {
        &["nginx", "unicorn", "gunicorn"]
    }

    /// A built-in flavor by name (case-insensitive), or `None`.
    pub fn by_name(name: &str) -> Option<Flavor> {
        match name.to_ascii_lowercase().as_str() {
            "nginx" => Some(Flavor::nginx()),
            "unicorn" => Some(Flavor::unicorn()),
            "gunicorn" => Some(Flavor::gunicorn()),
            _ => None,
        }
    }

    /// This flavor with another name (for reports).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// This flavor with another signal map.
    pub fn with_signals(mut self, signals: SignalMap) -> Self {
        self.signals = signals;
        self
    }

    /// This flavor with other pid-file naming: `old` is where the old master's pid goes once
    /// it spawns a new master, `new` is where the new master writes its pid.
    pub fn with_pid_files(mut self, old: PidFileName, new: PidFileName) -> Self {
        self.old_pid_file = old;
        self.new_pid_file = new;
        self
    }

    /// This flavor with another config test.
    pub fn with_config_test(mut self, config_test: ConfigTest) -> Self {
        self.config_test = config_test;
        self
    }

    /// This flavor with other title markers.
    pub fn with_titles(mut self, titles: TitleMarkers) -> Self {
        self.titles = titles;
        self
    }

    /// This flavor with another relation between title and command line.
    pub fn with_title_args(mut self, title_args: TitleArgs) -> Self {
        self.title_args = title_args;
        self
    }

    /// How the master's title relates to its command line.
    pub fn title_args(&self) -> TitleArgs {
        self.title_args
    }

    /// Why the flavor has no config test (for the preflight's report), or `None` when it
    /// has one.
    pub fn config_test_absent_reason(&self) -> Option<String> {
        match self.config_test {
            ConfigTest::None if self.config_test_absent_reason.is_empty() => {
                Some(format!("the {} flavor has no config test", self.name))
            }
            ConfigTest::None => Some(self.config_test_absent_reason.clone()),
            _ => None,
        }
    }

    /// Whether roles come from the parent link rather than from the title
    /// ([`Roles::FromParentLink`]).
    pub fn roles_from_parent_link(&self) -> bool {
        self.roles == Roles::FromParentLink
    }

    /// How this flavor tells masters from workers.
    pub fn roles(&self) -> Roles {
        self.roles
    }

    /// Sets how masters are told from workers.
    pub fn with_roles(mut self, roles: Roles) -> Self {
        self.roles = roles;
        self
    }

    /// Whether the new master renames its pid file to the configured one by itself once the
    /// old master is gone (gunicorn's promotion of `<pid file>.2`): true when the new
    /// master's pid file is not the configured one.
    pub fn new_master_promotes_itself(&self) -> bool {
        self.new_pid_file != PidFileName::Same
    }

    /// The flavor's name (`nginx`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which signal does which job.
    pub fn signals(&self) -> &SignalMap {
        &self.signals
    }

    /// The title markers.
    pub fn titles(&self) -> &TitleMarkers {
        &self.titles
    }

    /// The config test.
    pub fn config_test(&self) -> &ConfigTest {
        &self.config_test
    }

    /// Where the old master's pid is while a new master runs (nginx: `<pid_file>.oldbin`).
    pub fn old_pid_file(&self, pid_file: &Path) -> PathBuf {
        self.old_pid_file.apply(pid_file)
    }

    /// Where the new master writes its pid while the old one lives (nginx: `pid_file` itself;
    /// gunicorn: `<pid_file>.2`).
    pub fn new_pid_file(&self, pid_file: &Path) -> PathBuf {
        self.new_pid_file.apply(pid_file)
    }

    /// The arguments (after the executable) that test the config the way the master with
    /// command line `master_argv` (including `argv[0]`) runs it, or `None` when the flavor
    /// has no config test.
    ///
    /// ```
    /// let args = hotreload_core::Flavor::nginx()
    ///     .config_test_args(&["/usr/sbin/nginx", "-p", "/srv", "-c", "conf/nginx.conf", "-q"])
    ///     .unwrap();
    /// assert_eq!(args, ["-t", "-p", "/srv", "-c", "conf/nginx.conf"]);
    /// ```
    pub fn config_test_args<S: AsRef<str>>(&self, master_argv: &[S]) -> Option<Vec<String>> {
        let (flags, carried) = match &self.config_test {
            ConfigTest::None => return None,
            ConfigTest::AllArgs { flags, at } => {
                let mut args: Vec<String> = master_argv
                    .iter()
                    .skip(1)
                    .map(|a| a.as_ref().to_string())
                    .collect();
                let at = (*at).min(args.len());
                args.splice(at..at, flags.iter().cloned());
                return Some(args);
            }
            ConfigTest::Flags { flags, carried } => (flags, carried),
        };
        let mut args = flags.clone();
        let mut rest = master_argv.iter().skip(1).map(AsRef::as_ref);
        while let Some(arg) = rest.next() {
            for option in carried {
                if arg == option {
                    args.push(arg.to_string());
                    if let Some(value) = rest.next() {
                        args.push(value.to_string());
                    }
                    break;
                } else if arg.starts_with(option.as_str()) {
                    args.push(arg.to_string());
                    break;
                }
            }
        }
        Some(args)
    }

    /// Whether a process title says "master".
    pub fn is_master_title(&self, title: &str) -> bool {
        title.contains(&self.titles.master)
    }

    /// Whether a process title says "worker".
    pub fn is_worker_title(&self, title: &str) -> bool {
        title.contains(&self.titles.worker)
    }

    /// Whether a process title says "helper" (nginx's cache manager and loader).
    pub fn is_helper_title(&self, title: &str) -> bool {
        self.titles
            .helpers
            .iter()
            .any(|h| title.contains(h.as_str()))
    }

    /// Whether a worker's title says it is finishing its requests before exiting (never,
    /// when the flavor's marker is empty).
    pub fn is_shutting_down_title(&self, title: &str) -> bool {
        !self.titles.shutting_down.is_empty() && title.contains(&self.titles.shutting_down)
    }

    /// The master's original command line, recovered from its title.
    ///
    /// nginx overwrites its `argv` with `nginx: master process <original args>`, so the
    /// original arguments are the words after the master marker; a master that keeps its
    /// `argv` is returned as is. Arguments that contained spaces are put back together by
    /// nginx's grammar (`-g` runs to the `;` ending its last directive, a path to the next
    /// option).
    /// With [`TitleArgs::Untouched`] the command line is the argv; with
    /// [`TitleArgs::ArgsAfterMasterMarker`] the result lacks `argv[0]`, whose path the title
    /// does not keep (the words after the marker are the arguments; a first word in
    /// parentheses, unicorn's `(old)`, is part of the marker).
    pub fn master_argv(&self, cmdline: &[String]) -> Vec<String> {
        if self.title_args == TitleArgs::Untouched {
            return cmdline.to_vec();
        }
        let title = cmdline.join(" ");
        if self.title_args == TitleArgs::ArgsAfterMasterMarker {
            let Some(at) = title.find(&self.titles.master) else {
                return cmdline.to_vec();
            };
            let after = &title[at + self.titles.master.len()..];
            return after
                .split_whitespace()
                .skip_while(|w| w.starts_with('(') && w.ends_with(')'))
                .map(str::to_string)
                .collect();
        }
        match title.find(&self.titles.master) {
            Some(at) => {
                let after = &title[at + self.titles.master.len()..];
                let words: Vec<String> = after.split_whitespace().map(str::to_string).collect();
                if words.is_empty() {
                    cmdline.to_vec()
                } else {
                    // nginx's option grammar puts back the arguments that held spaces
                    // (`-g 'daemon on; master_process on;'`, Debian's unit).
                    crate::nginx_conf::rejoin_title_args(&words)
                }
            }
            None => cmdline.to_vec(),
        }
    }

    /// The title's text after the master marker, for a flavor whose title is
    /// `<marker><argv joined with spaces>` (nginx) and a master that shows one.
    fn title_rest<'a>(&self, cmdline: &'a [String]) -> Option<&'a str> {
        if self.title_args != TitleArgs::AfterMasterMarker || cmdline.len() != 1 {
            return None;
        }
        let title = &cmdline[0];
        let at = title.find(&self.titles.master)?;
        let rest = &title[at + self.titles.master.len()..];
        Some(rest.strip_prefix(' ').unwrap_or(rest))
    }

    /// Why [`master_argv`](Self::master_argv) cannot be sure of the argv it puts back from
    /// this master's title (see the arguments' boundaries there), if it cannot; `None`
    /// for a real argv.
    pub fn title_ambiguity(&self, cmdline: &[String]) -> Option<String> {
        crate::nginx_conf::title_ambiguity(self.title_rest(cmdline)?)
    }

    /// The master's argv from `args`, its arguments after `argv[0]` as given by the
    /// operator (for a title [`title_ambiguity`](Self::title_ambiguity) refuses): they
    /// must be how the title ends, and `argv[0]` is what comes before them.
    pub fn master_argv_with(
        &self,
        cmdline: &[String],
        args: &[String],
    ) -> Result<Vec<String>, String> {
        let Some(rest) = self.title_rest(cmdline) else {
            let argv0 = self
                .master_argv(cmdline)
                .into_iter()
                .next()
                .unwrap_or_default();
            return Ok(std::iter::once(argv0).chain(args.iter().cloned()).collect());
        };
        let tail = args.join(" ");
        let argv0 = if tail.is_empty() {
            Some(rest)
        } else {
            rest.strip_suffix(tail.as_str())
                .and_then(|head| head.strip_suffix(' '))
        };
        match argv0.filter(|a| !a.is_empty()) {
            Some(argv0) => Ok(std::iter::once(argv0.to_string())
                .chain(args.iter().cloned())
                .collect()),
            None => Err(format!(
                "the arguments given (`{tail}`) are not how the master's title ends (`{rest}`)"
            )),
        }
    }
}

impl Default for Flavor {
    fn default() -> Self {
        Flavor::nginx()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_title_args_with_spaces_are_put_back_for_the_config_test() {
        // Debian's unit: ExecStart=/usr/sbin/nginx -g 'daemon on; master_process on;'.
        let f = Flavor::nginx();
        let title = vec![
            "nginx: master process /usr/sbin/nginx -g daemon on; master_process on;".to_string(),
        ];
        let argv = f.master_argv(&title);
        assert_eq!(
            argv,
            ["/usr/sbin/nginx", "-g", "daemon on; master_process on;"]
        );
        assert_eq!(
            f.config_test_args(&argv).unwrap(),
            ["-t", "-g", "daemon on; master_process on;"]
        );
        // A prefix with a space, -c, and -g 'daemon off;' after them.
        let title = vec![
            "nginx: master process /opt/my nginx/sbin/nginx -p /opt/my nginx/ -c conf/a b.conf -g daemon off;"
                .to_string(),
        ];
        assert_eq!(
            f.config_test_args(&f.master_argv(&title)).unwrap(),
            [
                "-t",
                "-p",
                "/opt/my nginx/",
                "-c",
                "conf/a b.conf",
                "-g",
                "daemon off;"
            ]
        );
    }

    #[test]
    fn an_ambiguous_title_is_refused_and_explicit_arguments_resolve_it() {
        let f = Flavor::nginx();
        let t = |s: &str| vec![format!("nginx: master process {s}")];
        // Put back by the grammar: argv[0] with a space (nginx takes no operands), -g.
        let ok = t("/opt/my nginx/sbin/nginx -g daemon on; master_process on;");
        assert_eq!(f.title_ambiguity(&ok), None);
        assert_eq!(
            f.master_argv(&ok),
            [
                "/opt/my nginx/sbin/nginx",
                "-g",
                "daemon on; master_process on;"
            ]
        );
        // A word that no master option starts, a flag twice, a run of spaces.
        for bad in [
            "/usr/sbin/nginx -c /etc/my -x.conf",
            "/opt/a -b/nginx -p /opt",
            "/usr/sbin/nginx -c /etc/a -c.conf",
            "/usr/sbin/nginx -c /etc/a  b.conf",
        ] {
            assert!(f.title_ambiguity(&t(bad)).is_some(), "{bad}");
        }
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let bad = t("/opt/a -b/nginx -c /etc/my -x.conf");
        assert_eq!(
            f.master_argv_with(&bad, &args(&["-c", "/etc/my -x.conf"]))
                .unwrap(),
            ["/opt/a -b/nginx", "-c", "/etc/my -x.conf"]
        );
        assert!(f
            .master_argv_with(&bad, &args(&["-c", "/etc/other.conf"]))
            .is_err());
    }

    #[test]
    fn pid_file_naming_is_data() {
        let gunicorn_like = Flavor::nginx().with_name("gunicorn").with_pid_files(
            PidFileName::Suffix(".oldbin".into()),
            PidFileName::Suffix(".2".into()),
        );
        let pid = Path::new("/run/app.pid");
        assert_eq!(
            gunicorn_like.old_pid_file(pid),
            Path::new("/run/app.pid.oldbin")
        );
        assert_eq!(gunicorn_like.new_pid_file(pid), Path::new("/run/app.pid.2"));
        assert_eq!(gunicorn_like.name(), "gunicorn");
    }

    #[test]
    fn config_test_carries_prefix_conf_and_directives() {
        let f = Flavor::nginx();
        let argv = [
            "/sbin/nginx",
            "-g",
            "daemon on;",
            "-c/etc/n.conf",
            "-q",
            "-p",
        ];
        assert_eq!(
            f.config_test_args(&argv).unwrap(),
            ["-t", "-g", "daemon on;", "-c/etc/n.conf", "-p"]
        );
        let none = f.clone().with_config_test(ConfigTest::None);
        assert_eq!(none.config_test_args(&argv), None);
    }

    #[test]
    fn master_argv_from_nginx_title() {
        let f = Flavor::nginx();
        let title = vec!["nginx: master process /usr/sbin/nginx -c /etc/nginx.conf".to_string()];
        assert_eq!(
            f.master_argv(&title),
            ["/usr/sbin/nginx", "-c", "/etc/nginx.conf"]
        );
        let plain: Vec<String> = ["/bin/x", "-c", "c"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(f.master_argv(&plain), plain);
    }

    #[test]
    fn roles_from_titles() {
        let f = Flavor::nginx();
        assert!(f.is_master_title("nginx: master process /usr/sbin/nginx"));
        assert!(!f.is_worker_title("nginx: master process /usr/sbin/nginx"));
        assert!(f.is_worker_title("nginx: worker process"));
        assert!(f.is_shutting_down_title("nginx: worker process is shutting down"));
        assert_eq!(Flavor::by_name("NGINX"), Some(Flavor::nginx()));
        assert_eq!(Flavor::by_name("apache"), None);
        assert_eq!(f.signals().spawn, Signal::Usr2);
    }

    #[test]
    fn every_known_name_is_a_flavor() {
        for name in Flavor::known_names() {
            assert_eq!(Flavor::by_name(name).unwrap().name(), *name);
        }
    }

    #[test]
    fn unicorn_is_nginx_signals_oldbin_and_no_config_test() {
        let f = Flavor::by_name("Unicorn").unwrap();
        assert_eq!(*f.signals(), SignalMap::nginx());
        let pid = Path::new("/srv/u.pid");
        assert_eq!(f.old_pid_file(pid), Path::new("/srv/u.pid.oldbin"));
        assert_eq!(f.new_pid_file(pid), pid);
        assert!(!f.new_master_promotes_itself());
        assert!(!f.roles_from_parent_link());
        assert_eq!(f.config_test_args(&["unicorn", "-c", "u.rb"]), None);
        assert!(f
            .config_test_absent_reason()
            .unwrap()
            .contains("no config test"));
        let master = "unicorn master -D -c /srv/u.conf.rb /srv/config.ru";
        let old = "unicorn master (old) -D -c /srv/u.conf.rb /srv/config.ru";
        let worker = "unicorn worker[1] -D -c /srv/u.conf.rb /srv/config.ru";
        assert!(f.is_master_title(master) && f.is_master_title(old));
        assert!(!f.is_worker_title(master) && !f.is_master_title(worker));
        assert!(f.is_worker_title(worker) && !f.is_shutting_down_title(worker));
        let args = ["-D", "-c", "/srv/u.conf.rb", "/srv/config.ru"];
        assert_eq!(f.master_argv(&[master.to_string()]), args);
        assert_eq!(f.master_argv(&[old.to_string()]), args);
    }

    #[test]
    fn gunicorn_reverses_term_and_quit_and_writes_dot_2() {
        let f = Flavor::gunicorn();
        assert_eq!(f.signals().graceful_stop, Signal::Term);
        assert_eq!(f.signals().fast_stop, Signal::Quit);
        assert_eq!(f.signals().spawn, Signal::Usr2);
        assert_eq!(f.signals().stop_workers, Signal::Winch);
        let pid = Path::new("/srv/g.pid");
        assert_eq!(f.old_pid_file(pid), pid);
        assert_eq!(f.new_pid_file(pid), Path::new("/srv/g.pid.2"));
        assert!(f.new_master_promotes_itself());
        assert!(f.roles_from_parent_link());
        let cmdline: Vec<String> = [
            "/usr/bin/python3",
            "/usr/bin/gunicorn",
            "-D",
            "-b",
            "127.0.0.1:8000",
            "app:app",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(f.master_argv(&cmdline), cmdline);
        assert_eq!(
            f.config_test_args(&cmdline).unwrap(),
            [
                "/usr/bin/gunicorn",
                "--check-config",
                "-D",
                "-b",
                "127.0.0.1:8000",
                "app:app"
            ]
        );
        assert_eq!(f.config_test_absent_reason(), None);
        assert!(!f.is_shutting_down_title(&cmdline.join(" ")));
    }
}

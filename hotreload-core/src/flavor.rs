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
}

impl TitleMarkers {
    /// nginx's titles: `nginx: master process ...`, `nginx: worker process [is shutting down]`.
    pub fn nginx() -> Self {
        TitleMarkers {
            master: "master process".into(),
            worker: "worker process".into(),
            shutting_down: "is shutting down".into(),
        }
    }
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
    titles: TitleMarkers,
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
            titles: TitleMarkers::nginx(),
        }
    }

    /// Names accepted by [`Flavor::by_name`].
    pub fn known_names() -> &'static [&'static str] {
        &["nginx"]
    }

    /// A built-in flavor by name (case-insensitive), or `None`.
    pub fn by_name(name: &str) -> Option<Flavor> {
        match name.to_ascii_lowercase().as_str() {
            "nginx" => Some(Flavor::nginx()),
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
        let ConfigTest::Flags { flags, carried } = &self.config_test else {
            return None;
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

    /// Whether a worker's title says it is finishing its requests before exiting.
    pub fn is_shutting_down_title(&self, title: &str) -> bool {
        title.contains(&self.titles.shutting_down)
    }

    /// The master's original command line, recovered from its title.
    ///
    /// nginx overwrites its `argv` with `nginx: master process <original args>`, so the
    /// original arguments are the words after the master marker; a master that keeps its
    /// `argv` is returned as is. Arguments that contained spaces cannot be told apart.
    pub fn master_argv(&self, cmdline: &[String]) -> Vec<String> {
        let title = cmdline.join(" ");
        match title.find(&self.titles.master) {
            Some(at) => {
                let after = &title[at + self.titles.master.len()..];
                let words: Vec<String> = after.split_whitespace().map(str::to_string).collect();
                if words.is_empty() {
                    cmdline.to_vec()
                } else {
                    words
                }
            }
            None => cmdline.to_vec(),
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
}

//! The preflight's `daemon` evidence for nginx: whether the master runs daemonized, judged
//! from its effective `daemon` setting (`-g` on its command line, then the configuration
//! as `nginx -T` dumps it, run as the master's user), not from its parent pid.
//!
//! Why not the parent: under systemd (`Type=simple`) or a container init, a `daemon off`
//! master's parent is PID 1 and it leads its own session, which looks daemonized; nginx
//! still ignores USR2 then (its parent is the one it started with), or takes USR2 and
//! ignores WINCH once orphaned, and the upgrade would only fail at a deadline.

use std::fs;
use std::path::{Path, PathBuf};

use super::Run;
use crate::exec::run_command_as;
use crate::model::MasterInfo;
use crate::nginx_conf::{
    dump_sections, main_directive_in_dump, main_level, nginx_options, NginxOptions,
};
use crate::ops::engine::Ctx;
use crate::ops::spawn_would_be_ignored;
use crate::process::ProcInfo;
use crate::procfs::Credentials;

/// The `daemon` value (`on`/`off`) among main-level directives.
fn daemon_of(directives: &[(String, Vec<String>)]) -> Option<String> {
    directives
        .iter()
        .find(|(name, _)| name == "daemon")
        .and_then(|(_, args)| args.first().cloned())
}

/// The `daemon` setting of an `nginx -T` dump: each `# configuration file X:` section is
/// one file; `daemon` is valid at the main level only, so a section's own main level is
/// where it can be. `None` when the text is no dump (or sets nothing); the file it is in.
fn daemon_in_dump(dump: &str) -> Option<Option<(String, String)>> {
    if dump_sections(dump).is_empty() {
        return None;
    }
    Some(main_directive_in_dump(dump, "daemon"))
}

/// The `daemon` setting of the configuration file `conf`, following `include`s at the
/// main level (a `*` in the last component is expanded), as nginx reads it.
fn daemon_in_files(conf: &Path, depth: usize) -> Result<Option<(String, String)>, String> {
    let text = fs::read_to_string(conf).map_err(|e| format!("`{}`: {e}", conf.display()))?;
    let conf_dir = conf.parent().unwrap_or(Path::new("/"));
    for (name, args) in main_level(&text) {
        if name == "daemon" {
            return Ok(args
                .first()
                .map(|v| (v.clone(), conf.display().to_string())));
        }
        if name == "include" && depth < 10 {
            let Some(pattern) = args.first() else {
                continue;
            };
            for file in expand(&conf_dir.join(pattern)) {
                if let Some(found) = daemon_in_files(&file, depth + 1)? {
                    return Ok(Some(found));
                }
            }
        }
    }
    Ok(None)
}

/// The files a (simple) include pattern names: the path itself, or with `*` in its last
/// component, the matching names of that directory, sorted.
fn expand(pattern: &Path) -> Vec<PathBuf> {
    let name = pattern.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let Some((before, after)) = name.split_once('*') else {
        return vec![pattern.to_path_buf()];
    };
    let dir = pattern.parent().unwrap_or(Path::new("/"));
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            (n.len() >= before.len() + after.len() && n.starts_with(before) && n.ends_with(after))
                .then(|| e.path())
        })
        .collect();
    files.sort();
    files
}

impl Run<'_> {
    /// The `spawn-not-ignored` check: for nginx, from the effective `daemon` setting; for
    /// other flavors (which have no such setting), from the process tree.
    pub(super) fn daemon_check(
        &self,
        ctx: &Ctx<'_>,
        master: &MasterInfo,
        info: &ProcInfo,
    ) -> Result<String, String> {
        let heuristic = |why: &str| match spawn_would_be_ignored(info) {
            None => Ok(format!(
                "{why}the master is daemonized: it acts on the spawn signal"
            )),
            Some(reason) => Err(reason),
        };
        if self.target.flavor_ref().name() != "nginx" {
            return heuristic("");
        }
        // The argv as the operator gave it, when the title is ambiguous.
        let opts = match self.target.master_argv(master) {
            Ok(argv) if argv.len() > 1 => nginx_options(&argv),
            _ => nginx_options(&master.cmdline),
        };
        let (value, source) = match self.effective_daemon(ctx, master, &opts) {
            Ok(Some(found)) => found,
            Ok(None) => {
                return Ok(
                    "no `daemon` directive in -g or the configuration: nginx's default \
                     `daemon on`, it acts on the spawn signal"
                        .into(),
                )
            }
            // No evidence to be had (an unreadable configuration fails the config test
            // later anyway): the process tree is the best there is.
            Err(why) => return heuristic(&format!("{why}; from the process tree: ")),
        };
        if value == "off" {
            return Err(format!(
                "nginx runs with `daemon off` ({source}): a master that is not daemonized \
                 ignores the spawn signal while its first parent lives (systemd, a container's \
                 init, a supervisor), and ignores the drain signal once orphaned. To change: \
                 under systemd, `Type=forking`, `PIDFile=` naming nginx's `pid` file, and \
                 `daemon on` (drop `daemon off` from -g and the configuration), then restart \
                 the service once; in a container, roll the container instead, or run a \
                 daemonizing master (`daemon on`) under an init that reaps (tini, dumb-init)"
            ));
        }
        Ok(format!(
            "nginx runs with `daemon {value}` ({source}): it acts on the spawn signal"
        ))
    }

    /// `(on|off, where it was found)`, or `None` when nothing sets it.
    fn effective_daemon(
        &self,
        ctx: &Ctx<'_>,
        master: &MasterInfo,
        opts: &NginxOptions,
    ) -> Result<Option<(String, String)>, String> {
        if let Some(globals) = &opts.globals {
            if let Some(value) = daemon_of(&main_level(globals)) {
                return Ok(Some((value, format!("from `-g '{globals}'`"))));
            }
        }
        let cwd = fs::read_link(format!("/proc/{}/cwd", master.pid)).ok();
        // The running executable (even if replaced since) dumps what the master reads.
        let exe = PathBuf::from(format!("/proc/{}/exe", master.pid));
        let ids = Credentials::to_assume(master.pid).map_err(|e| e.to_string())?;
        let mut args = vec!["-T".to_string(), "-q".to_string()];
        args.extend(opts.args());
        let dump = run_command_as(
            &exe,
            &args,
            cwd.as_deref(),
            ids.as_ref(),
            self.opts.ops.spawn_timeout,
            ctx.waiter(),
        );
        if let Ok((true, _, text)) = &dump {
            if let Some(found) = daemon_in_dump(text) {
                return Ok(found.map(|(v, file)| (v, format!("in {file}, as `nginx -T` shows it"))));
            }
        }
        // No dump (an nginx before 1.9.2, or a stand-in without -T): read the files.
        let prefix = opts
            .prefix
            .as_deref()
            .map(PathBuf::from)
            .or(cwd)
            .ok_or("the master's prefix is unknown")?;
        let conf = prefix.join(opts.conf.as_deref().unwrap_or("conf/nginx.conf"));
        daemon_in_files(&conf, 0).map(|found| found.map(|(v, file)| (v, format!("in {file}"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn title(t: &str) -> Vec<String> {
        vec![t.to_string()]
    }

    #[test]
    fn options_come_back_from_the_title() {
        let o = nginx_options(&title(
            "nginx: master process /usr/sbin/nginx -g daemon on; master_process on;",
        ));
        assert_eq!(o.globals.as_deref(), Some("daemon on; master_process on;"));
        let o = nginx_options(&title(
            "nginx: master process /srv/nginx -p /srv/my site -c conf/nginx.conf -g daemon off;",
        ));
        assert_eq!(o.prefix.as_deref(), Some("/srv/my site"));
        assert_eq!(o.conf.as_deref(), Some("conf/nginx.conf"));
        assert_eq!(o.globals.as_deref(), Some("daemon off;"));
        let o = nginx_options(&title(
            "nginx: master process nginx -c/etc/n.conf -gdaemon off;",
        ));
        assert_eq!(o.conf.as_deref(), Some("/etc/n.conf"));
        assert_eq!(o.globals.as_deref(), Some("daemon off;"));
        // A real argv keeps its boundaries.
        let argv: Vec<String> = ["/usr/sbin/nginx", "-g", "pid /a b.pid;", "-c", "x"]
            .map(String::from)
            .to_vec();
        let o = nginx_options(&argv);
        assert_eq!(o.globals.as_deref(), Some("pid /a b.pid;"));
        assert_eq!(o.conf.as_deref(), Some("x"));
        assert_eq!(
            nginx_options(&title("nginx: master process /usr/sbin/nginx")),
            NginxOptions::default()
        );
    }

    #[test]
    fn daemon_is_read_at_the_main_level_only() {
        let conf = "# daemon off;\nuser www-data;\nhttp { map $a $b { daemon off; } }\n\
                    daemon  'off' ; events {}\n";
        assert_eq!(daemon_of(&main_level(conf)).as_deref(), Some("off"));
        assert_eq!(
            daemon_of(&main_level("http { map $a $b { daemon off; } }")),
            None
        );
        assert_eq!(
            daemon_of(&main_level("daemon on; master_process on;")).as_deref(),
            Some("on")
        );
    }

    #[test]
    fn a_dump_is_read_section_by_section() {
        let dump = "# configuration file /etc/nginx/nginx.conf:\nevents {}\ninclude /etc/nginx/main.d/*.conf;\n\
                    http { include /etc/nginx/maps.conf; }\n\n\
                    # configuration file /etc/nginx/maps.conf:\nmap $a $b { daemon off; }\n\n\
                    # configuration file /etc/nginx/main.d/d.conf:\ndaemon off;\n";
        assert_eq!(
            daemon_in_dump(dump),
            Some(Some(("off".into(), "/etc/nginx/main.d/d.conf".into())))
        );
        assert_eq!(
            daemon_in_dump("# configuration file /x:\nevents {}\n"),
            Some(None)
        );
        assert_eq!(
            daemon_in_dump("nginx: the configuration file /x syntax is ok\n"),
            None
        );
    }

    #[test]
    fn includes_at_the_main_level_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("main.d")).unwrap();
        fs::write(dir.path().join("main.d/a.conf"), "worker_processes 2;\n").unwrap();
        fs::write(dir.path().join("main.d/b.conf"), "daemon off;\n").unwrap();
        let conf = dir.path().join("nginx.conf");
        fs::write(&conf, "events {}\ninclude main.d/*.conf;\n").unwrap();
        let found = daemon_in_files(&conf, 0).unwrap().unwrap();
        assert_eq!(found.0, "off");
        assert!(found.1.ends_with("main.d/b.conf"), "{found:?}");
        fs::write(&conf, "events {}\n").unwrap();
        assert_eq!(daemon_in_files(&conf, 0).unwrap(), None);
    }
}

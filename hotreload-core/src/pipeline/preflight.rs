//! The preflight checks of the pipeline: everything that can be checked before anything
//! changes, each reported as a [`Check`]; the first failure refuses the upgrade.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::plan::Plan;
use super::report::FailureKind;
use super::{Run, UpgradeError};
use crate::error::Error;
use crate::event::Event;
use crate::exec::run_command_as;
use crate::flavor::TitleArgs;
use crate::fsutil::{elf_header, same_content, same_file};
use crate::journal::Journal;
use crate::model::{error_chain, MasterInfo};
use crate::ops::engine::Ctx;
use crate::ops::{installed_binary, State, Steady};
use crate::process::ProcInfo;
use crate::procfs::{self, Credentials};

use super::report::Check;

impl Run<'_> {
    /// Checks everything that can be checked before changing anything.
    pub(super) fn preflight(&self, ctx: &Ctx<'_>) -> Result<(Steady, Plan), UpgradeError> {
        let target = self.target;
        let refuse = |e| self.fail(FailureKind::Refused, e, None);
        // Before anything else: without pidfds, refuse if they are required, else report
        // the fallback (once: the recorder drops the operations' repeats).
        ctx.pidfd_gate().map_err(refuse)?;
        let state = target.attach().map_err(refuse)?;
        let steady = match state {
            State::Steady(s) => s,
            other => {
                let observation = other.observation().clone();
                let error = Error::Preflight {
                    check: "steady".into(),
                    detail: format!(
                        "the server is not in steady phase but {}: {}; finish or roll back the \
                         upgrade in progress first",
                        observation.phase,
                        observation.evidence.join("; ")
                    ),
                };
                self.check(ctx, "steady", false, error.to_string());
                return Err(self.fail(FailureKind::Refused, error, Some(observation)));
            }
        };
        let master = steady.master().clone();
        self.report.borrow_mut().old_pid = Some(master.pid);
        self.check(
            ctx,
            "steady",
            true,
            format!(
                "master {} with {} workers",
                master.pid,
                master.workers.len()
            ),
        );
        let info = procfs::proc_info(master.pid).map_err(refuse)?;
        let mut failures = Vec::new();
        let mut unchanged = false;
        let mut record = |name: &str, result: Result<String, String>| match result {
            Ok(detail) => self.check(ctx, name, true, detail),
            Err(detail) => {
                self.check(ctx, name, false, detail.clone());
                failures.push(Error::Preflight {
                    check: name.into(),
                    detail,
                });
            }
        };
        record("no-journal", self.no_journal());
        record("catches-spawn-signal", self.catches_spawn(&info));
        record("spawn-not-ignored", self.daemon_check(ctx, &master, &info));
        record("systemd", self.systemd_check(ctx, &master));
        let argv = match target.master_argv(&master) {
            Ok(argv) => argv,
            Err(reason) => {
                record(
                    "title-args",
                    Err(format!(
                        "{reason}; give the master's arguments explicitly (each one after \
                         argv[0], as it was started: the CLI's --server-arg, \
                         Target::server_args)"
                    )),
                );
                target.flavor_ref().master_argv(&master.cmdline)
            }
        };
        let argv0 = PathBuf::from(argv.first().cloned().unwrap_or_default());
        let argv0_kept = target.flavor_ref().title_args() != TitleArgs::ArgsAfterMasterMarker;
        record(
            "argv0-absolute",
            if !argv0_kept {
                Ok(format!(
                    "the {} title does not keep argv[0]'s path: the master re-executes its own \
                     start command, run by `{}`",
                    target.flavor_ref().name(),
                    master.exe.as_deref().unwrap_or(Path::new("?")).display()
                ))
            } else if argv0.is_absolute() {
                Ok(format!("the master was started as `{}`", argv0.display()))
            } else {
                Err(format!(
                    "the master was started as `{}`, a relative path: nginx executes argv[0] \
                     verbatim relative to its working directory on the spawn signal; restart it \
                     once with an absolute path",
                    argv0.display()
                ))
            },
        );
        let binary = installed_binary(target, &master);
        if argv0_kept {
            record("binary-is-argv0", self.binary_is_argv0(&binary, &argv0));
        }
        // With no swap, the file already at the binary path is the new executable.
        let installs = self.opts.swap.installs();
        let new_binary = match &self.opts.new_binary {
            _ if !installs => Some(binary.clone()),
            Some(path) => Some(path.clone()),
            None => None,
        };
        match &new_binary {
            None => record(
                "new-binary",
                Err(format!(
                    "no new executable given (needed for the {} swap)",
                    self.opts.swap.name()
                )),
            ),
            Some(new) => {
                if installs {
                    record("binary-trusted", self.binary_trusted(&info, &binary));
                    record(
                        "binary-is-running",
                        self.binary_is_running(&master, &binary),
                    );
                }
                record("new-binary", self.new_binary_ok(&master, new));
                let same = self.same_build(&master, new);
                // With no swap, the file in place counts as the build only where the
                // executable is the server (nginx: the title carries its own argv). Under
                // an interpreter (unicorn, gunicorn: `python3 gunicorn ...`) the same
                // executable says nothing about the code that starts.
                let exe_is_server =
                    target.flavor_ref().title_args() == TitleArgs::AfterMasterMarker;
                if let Ok(Some(why)) = &same {
                    if installs || exe_is_server {
                        unchanged = true;
                        ctx.emit(Event::Observed {
                            what: format!("{why}: the running build is the one asked for"),
                        });
                    }
                }
                record(
                    "new-binary-differs",
                    match same {
                        Ok(None) => Ok(format!(
                            "`{}` differs from the running executable",
                            new.display()
                        )),
                        Ok(Some(why)) if unchanged => Ok(format!("{why}: nothing to upgrade")),
                        Ok(Some(why)) => Ok(format!(
                            "no swap: the code already in place starts ({why}; expected \
                             when it runs an interpreter, as unicorn and gunicorn do)"
                        )),
                        Err(e) => Err(e),
                    },
                );
                // The layout the swap needs (a plain file for rename and copy, a symlink
                // for symlink), checked now so that a misfit is refused before the config
                // test, and in a dry run. Nothing to install when the build already runs.
                if installs && !unchanged {
                    // Another server's unfinished upgrade of this same file owns the backup
                    // beside it: refused here (naming its journal), before the layout check
                    // would only see "a backup already exists".
                    record(
                        "no-other-swap",
                        self.target
                            .journal_file()
                            .and_then(|ours| {
                                crate::journal::check_no_other_swap(self.target, &ours, &binary)
                            })
                            .map(|()| {
                                format!(
                                    "no other target's unfinished upgrade swapped `{}`",
                                    binary.display()
                                )
                            })
                            .map_err(|e| error_chain(&e)),
                    );
                    record(
                        "swap-layout",
                        self.opts
                            .swap
                            .preflight(&binary, new)
                            .map_err(|e| error_chain(&e)),
                    );
                }
            }
        }
        if let Some(error) = failures.into_iter().next() {
            return Err(self.fail(
                FailureKind::Refused,
                error,
                Some(steady.observation().clone()),
            ));
        }
        let new_binary = new_binary.expect("checked above");
        let mut plan = Plan::new(self, &master, binary, new_binary, argv);
        if unchanged {
            plan.unchanged = true;
            plan.steps = vec![format!(
                "nothing: master {} already runs `{}`",
                master.pid,
                plan.new_binary.display()
            )];
        }
        Ok((steady, plan))
    }

    fn check(&self, ctx: &Ctx<'_>, name: &str, ok: bool, detail: String) {
        ctx.emit(Event::Check {
            name: name.into(),
            ok,
            detail: detail.clone(),
        });
        self.report.borrow_mut().preflight.push(Check {
            name: name.into(),
            ok,
            detail,
        });
    }

    fn no_journal(&self) -> Result<String, String> {
        let left = |path: &std::path::Path, j: Journal| {
            Err(format!(
                "an earlier upgrade (of master {}) left its journal at {}: it did not finish; \
                 roll it back or commit it first",
                j.old_master,
                path.display()
            ))
        };
        let path = self.target.journal_file().map_err(|e| error_chain(&e))?;
        if self
            .target
            .home(false)
            .map_err(|e| error_chain(&e))?
            .is_some()
        {
            match Journal::read(&path) {
                Ok(None) => {}
                Ok(Some(j)) => return left(&path, j),
                Err(e) => return Err(error_chain(&e)),
            }
        }
        // Beside the pid file, where anyone who can write that directory could put one:
        // only a journal we would act on blocks the upgrade (else any user could block it).
        let legacy = self.target.legacy_journal_file();
        match Journal::read(&legacy) {
            Ok(Some(j)) => left(&legacy, j),
            Ok(None) => Ok(format!("no unfinished upgrade ({} absent)", path.display())),
            Err(e) => Ok(format!(
                "no unfinished upgrade ({} absent; ignoring {}: {})",
                path.display(),
                legacy.display(),
                error_chain(&e)
            )),
        }
    }

    fn catches_spawn(&self, info: &ProcInfo) -> Result<String, String> {
        let signal = self.target.flavor_ref().signals().spawn;
        if info.caught.contains(signal) {
            Ok(format!("master {} has a handler for {signal}", info.pid))
        } else {
            Err(Error::NotCatching {
                pid: info.pid,
                signal,
                ignored: info.ignored.contains(signal),
            }
            .to_string())
        }
    }

    fn binary_is_argv0(&self, binary: &Path, argv0: &Path) -> Result<String, String> {
        // The same path, or paths that resolve to the same name: swapping one then swaps
        // the other. A hard link to the same file is not enough (a rename replaces one name).
        let resolves_to_argv0 =
            || -> io::Result<bool> { Ok(fs::canonicalize(binary)? == fs::canonicalize(argv0)?) };
        if binary == argv0 || resolves_to_argv0().unwrap_or(false) {
            Ok(format!(
                "`{}` is what the master executes on the spawn signal",
                binary.display()
            ))
        } else {
            Err(format!(
                "the master executes `{}` (its argv[0]) on the spawn signal, not `{}`: swapping \
                 `{}` would not change what starts",
                argv0.display(),
                binary.display(),
                binary.display()
            ))
        }
    }

    /// The path the swap replaces comes from the master's title (or its `/proc/<pid>/exe`)
    /// unless given: believed only as far as the master's user is, who writes that title
    /// and may run any executable it can read. A server of a user other than ours must
    /// own the file it asks us to replace, or the operator must name it (`--binary`).
    fn binary_trusted(&self, info: &ProcInfo, binary: &Path) -> Result<String, String> {
        if self.target.binary_path().is_some() {
            return Ok(format!(
                "`{}` was given explicitly (--binary)",
                binary.display()
            ));
        }
        let ours = crate::sys::geteuid();
        if info.uid == ours {
            return Ok(format!(
                "master {} runs as hotreload's own {}",
                info.pid,
                user_name(ours, u32::MAX)
            ));
        }
        let owner = fs::metadata(binary)
            .map_err(|e| format!("`{}`: {e}", binary.display()))?
            .uid();
        let link_owner = fs::symlink_metadata(binary)
            .map_err(|e| format!("`{}`: {e}", binary.display()))?
            .uid();
        if owner == info.uid && link_owner == info.uid {
            return Ok(format!(
                "`{}` belongs to {}, the master's user",
                binary.display(),
                user_name(owner, u32::MAX)
            ));
        }
        let culprit = if owner != info.uid { owner } else { link_owner };
        Err(format!(
            "master {} runs as {}, and its executable path `{}` comes from its process title \
             (which that user writes) but belongs to {}: replacing it on that user's word is \
             refused; if `{}` really is this server's executable, name it with `--binary {}` \
             (it must still be what master {} runs)",
            info.pid,
            user_name(info.uid, u32::MAX),
            binary.display(),
            user_name(culprit, u32::MAX),
            binary.display(),
            binary.display(),
            info.pid
        ))
    }

    fn binary_is_running(&self, master: &MasterInfo, binary: &Path) -> Result<String, String> {
        let running = PathBuf::from(format!("/proc/{}/exe", master.pid));
        match procfs::runs_file(master.pid, binary) {
            Ok(true) => Ok(format!("master {} runs `{}`", master.pid, binary.display())),
            // A copy of what it runs (a `copy` swap that was rolled back puts a copy back).
            Ok(false) if same_content(&running, binary).unwrap_or(false) => Ok(format!(
                "`{}` holds the same bytes as the executable master {} runs",
                binary.display(),
                master.pid
            )),
            Ok(false) => Err(format!(
                "master {} does not run `{}` (it runs `{}`{}): was the executable replaced \
                 already? then use the `none` swap",
                master.pid,
                binary.display(),
                master.exe.as_deref().unwrap_or(Path::new("?")).display(),
                if master.exe_deleted {
                    ", since deleted or replaced"
                } else {
                    ""
                }
            )),
            Err(e) => Err(error_chain(&e)),
        }
    }

    fn new_binary_ok(&self, master: &MasterInfo, new: &Path) -> Result<String, String> {
        let meta = fs::metadata(new).map_err(|e| format!("`{}`: {e}", new.display()))?;
        if !meta.is_file() {
            return Err(format!("`{}` is not a regular file", new.display()));
        }
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(format!("`{}` is not executable (chmod +x)", new.display()));
        }
        let new_elf = elf_header(new).map_err(|e| format!("`{}`: {e}", new.display()))?;
        let running = elf_header(Path::new(&format!("/proc/{}/exe", master.pid)))
            .or_else(|_| elf_header(Path::new("/proc/self/exe")))
            .map_err(|e| format!("the running executable: {e}"))?;
        if new_elf != running {
            return Err(format!(
                "`{}` is an ELF executable for {}, but the master runs one for {}",
                new.display(),
                new_elf,
                running
            ));
        }
        Ok(format!(
            "`{}` is an executable for {}",
            new.display(),
            new_elf
        ))
    }

    /// `Some(why)` when `new` is the build the master runs (the very file, or the same
    /// bytes as `/proc/<pid>/exe`).
    fn same_build(&self, master: &MasterInfo, new: &Path) -> Result<Option<String>, String> {
        let running = PathBuf::from(format!("/proc/{}/exe", master.pid));
        if same_file(&running, new).unwrap_or(false) {
            return Ok(Some(format!(
                "`{}` is the very file master {} runs",
                new.display(),
                master.pid
            )));
        }
        match same_content(&running, new) {
            Ok(true) => Ok(Some(format!(
                "`{}` is identical to the executable master {} runs",
                new.display(),
                master.pid
            ))),
            Ok(false) => Ok(None),
            Err(e) => Err(format!("cannot compare with the running executable: {e}")),
        }
    }

    /// Runs the flavor's config test with the new executable and the master's options,
    /// in the master's working directory.
    pub(super) fn config_test(
        &self,
        ctx: &Ctx<'_>,
        master: &MasterInfo,
        plan: &Plan,
    ) -> Result<(), UpgradeError> {
        let Some(args) = self.target.flavor_ref().config_test_args(&plan.argv) else {
            let reason = self
                .target
                .flavor_ref()
                .config_test_absent_reason()
                .unwrap_or_default();
            self.check(ctx, "config-test", true, reason);
            return Ok(());
        };
        let command = format!("{} {}", plan.new_binary.display(), args.join(" "));
        let cwd = fs::read_link(format!("/proc/{}/cwd", master.pid)).ok();
        // The test reads the server's configuration and may write what it names (its pid
        // file, its logs): it runs with the master's rights, never with more.
        let ids = match Credentials::to_assume(master.pid) {
            Ok(ids) => ids,
            Err(e) => {
                self.check(ctx, "config-test", false, error_chain(&e));
                return Err(self.fail(FailureKind::Refused, e, None));
            }
        };
        let as_whom = match &ids {
            Some(ids) => format!("as {}", user_name(ids.uid, ids.gid)),
            None => format!(
                "as hotreload's own user {}, the master's",
                user_name(crate::sys::geteuid(), u32::MAX)
            ),
        };
        match run_command_as(
            &plan.new_binary,
            &args,
            cwd.as_deref(),
            ids.as_ref(),
            self.opts.ops.spawn_timeout,
            ctx.waiter(),
        ) {
            Ok((true, _, output)) => {
                let warnings = config_test_warnings(&output);
                for warning in &warnings {
                    ctx.warning(format!("the config test warns: {warning}"));
                }
                let detail = if warnings.is_empty() {
                    format!("ran the config test {as_whom}: `{command}` accepts the configuration")
                } else {
                    format!(
                        "ran the config test {as_whom}: `{command}` accepts the configuration, with warnings: {}",
                        warnings.join("; ")
                    )
                };
                self.check(ctx, "config-test", true, detail);
                Ok(())
            }
            Ok((false, status, output)) => {
                let error = Error::ConfigTest {
                    command,
                    status,
                    output: output.trim_end().to_string(),
                };
                self.check(ctx, "config-test", false, error.to_string());
                Err(self.fail(FailureKind::Refused, error, None))
            }
            Err(e) => {
                self.check(ctx, "config-test", false, error_chain(&e));
                let kind = if matches!(e, Error::Cancelled { .. }) {
                    FailureKind::Cancelled
                } else {
                    FailureKind::Refused
                };
                Err(self.fail(kind, e, None))
            }
        }
    }
}

/// `uid 65534 (nobody), gid 65534` for messages: the name from `/etc/passwd` when it has
/// one (`gid` left out when `u32::MAX`).
pub(crate) fn user_name(uid: u32, gid: u32) -> String {
    let name = fs::read_to_string("/etc/passwd").ok().and_then(|text| {
        text.lines().find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let id = fields.nth(1)?.parse::<u32>().ok()?;
            (id == uid).then(|| name.to_string())
        })
    });
    let user = match name {
        Some(name) => format!("user {uid} ({name})"),
        None => format!("user {uid}"),
    };
    if gid == u32::MAX {
        user
    } else {
        format!("{user}, group {gid}")
    }
}

/// The warnings of a passed config test, each without its prefix: nginx writes
/// `nginx: [warn] …` on a terminal's stderr, or `2026/01/01 00:00:00 [warn] 1#1: …` when
/// its compiled-in error log is stderr (Debian).
fn config_test_warnings(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once("[warn] ")?;
            // The log format puts `pid#tid: ` first.
            let rest = match rest.split_once(": ") {
                Some((head, tail))
                    if head.contains('#')
                        && head.bytes().all(|b| b.is_ascii_digit() || b == b'#') =>
                {
                    tail
                }
                _ => rest,
            };
            Some(rest.trim().to_string())
        })
        .collect()
}

#[cfg(test)]
mod warning_tests {
    use super::config_test_warnings;

    #[test]
    fn both_of_nginxs_warning_formats_are_kept() {
        let output = "nginx: [warn] the \"listen ... http2\" directive is deprecated in /e/n.conf:5\n\
                      2026/12/01 13:00:00 [warn] 42#42: the \"listen ... http2\" directive is deprecated in /e/n.conf:6\n\
                      nginx: the configuration file /e/n.conf syntax is ok\n";
        assert_eq!(
            config_test_warnings(output),
            [
                "the \"listen ... http2\" directive is deprecated in /e/n.conf:5",
                "the \"listen ... http2\" directive is deprecated in /e/n.conf:6",
            ]
        );
        assert!(config_test_warnings("nginx: the configuration file x syntax is ok").is_empty());
    }
}

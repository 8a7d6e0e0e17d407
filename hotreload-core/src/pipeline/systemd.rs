//! The pipeline's systemd gates: before anything changes, refuse an upgrade whose retire
//! would end the service (the `systemd` check); after the retire, check that systemd took
//! the new master as the service's main process, and say so loudly when it did not.

use super::report::FailureKind;
use super::{Run, UpgradeError};
use crate::error::Error;
use crate::event::Event;
use crate::model::MasterInfo;
use crate::ops::engine::Ctx;
use crate::pid::Pid;
use crate::systemd::{self, retire_would_end_service, Unit, SHOW_TIMEOUT};

impl Run<'_> {
    /// The `systemd` preflight check. Remembers the unit when the master is its main
    /// process, for [`Run::systemd_after_retire`].
    pub(super) fn systemd_check(
        &self,
        ctx: &Ctx<'_>,
        master: &MasterInfo,
    ) -> Result<String, String> {
        let Some(name) = systemd::unit_of(master.pid) else {
            return Ok(format!("master {} runs in no systemd service", master.pid));
        };
        let unit = match systemd::show(&name, SHOW_TIMEOUT, ctx.waiter()) {
            Ok(unit) => unit,
            // A cgroup that names a service without a systemd to ask (a container that
            // sees its host's cgroup paths): nothing to protect from here.
            Err(e) => {
                let why = crate::model::error_chain(&e);
                ctx.warning(format!(
                    "master {} runs in {name}, but systemd cannot be asked about it ({why}): \
                     whether systemd follows the new master is not checked",
                    master.pid
                ));
                return Ok(format!("{name}: not checked ({why})"));
            }
        };
        ctx.emit(Event::Observed {
            what: format!("systemd: master {} runs in {unit}", master.pid),
        });
        if let Some(why) = retire_would_end_service(&unit, master.pid, self.target.pid_file()) {
            return Err(why);
        }
        if unit.main_pid == Some(master.pid) {
            *self.systemd_unit.borrow_mut() = Some(name.clone());
            Ok(format!(
                "master {} is the main process of {name} (Type=forking, PIDFile= is its pid \
                 file): systemd follows the new master",
                master.pid
            ))
        } else {
            Ok(format!(
                "master {} runs in {name} but is not its main process: retiring it does not \
                 end the service",
                master.pid
            ))
        }
    }

    /// After the retire: waits (up to the quit timeout) for systemd to name `new_master`
    /// the main process of the unit the old master was, and reports it; an
    /// [`FailureKind::Unrecovered`] error when systemd lost track of the server.
    pub(super) fn systemd_after_retire(&self, new_master: Pid) -> Result<(), UpgradeError> {
        let Some(name) = self.systemd_unit.borrow().clone() else {
            return Ok(());
        };
        // The upgrade is done: this look must not be cut short by a cancel.
        let ctx = self.ctx();
        ctx.ignore_cancel();
        let mut last: Option<Unit> = None;
        let mut asked: Option<Error> = None;
        let followed = ctx.poll(
            &format!("systemd to take master {new_master} as the main process of {name}"),
            self.opts.ops.quit_timeout,
            || match systemd::show(&name, SHOW_TIMEOUT, ctx.waiter()) {
                Ok(unit) => {
                    let done = unit.main_pid == Some(new_master)
                        || !matches!(unit.active_state.as_str(), "active" | "reloading");
                    last = Some(unit);
                    Ok(done.then_some(()))
                }
                Err(e) => {
                    asked = Some(e);
                    Ok(None)
                }
            },
        );
        let lost = match (&followed, &last) {
            (Ok(Some(())), Some(unit)) if unit.main_pid == Some(new_master) => {
                ctx.emit(Event::Observed {
                    what: format!(
                        "systemd: MainPID of {name} is the new master {new_master} ({})",
                        unit.active_state
                    ),
                });
                return Ok(());
            }
            (_, Some(unit)) => format!("it shows {unit}"),
            (Err(e), None) => crate::model::error_chain(e),
            (Ok(_), None) => asked
                .as_ref()
                .map_or_else(|| "no answer".into(), |e| crate::model::error_chain(e)),
        };
        let pid_file = self.target.pid_file().display();
        let error = Error::Systemd {
            unit: name.clone(),
            detail: format!(
                "systemd lost track of the server after the old master was retired: {lost}, \
                 while the new master is {new_master}. systemd may stop it or not restart it \
                 as it should. Check `systemctl status {name}`; if the new master is gone, \
                 `systemctl start {name}`; else restart the service once at a quiet moment \
                 so that systemd tracks it again. Make sure the unit says `Type=forking` and \
                 `PIDFile={pid_file}` (nginx's `pid`)"
            ),
        };
        ctx.warning(error.to_string());
        Err(self.fail(FailureKind::Unrecovered, error, self.target.observe().ok()))
    }
}

//! The pipeline's systemd gate: before anything changes, refuse an upgrade whose retire
//! would end the service (the `systemd` preflight check). The retire itself checks again
//! and then watches systemd follow the new master (`ops::unit_guard`).

use super::Run;
use crate::event::Event;
use crate::model::MasterInfo;
use crate::ops::engine::Ctx;
use crate::systemd::{self, retire_would_end_service, SHOW_TIMEOUT};

impl Run<'_> {
    /// The `systemd` preflight check.
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
        if let Some(why) = retire_would_end_service(
            &unit,
            master.pid,
            self.target.pid_file(),
            &self
                .target
                .flavor_ref()
                .new_pid_file(self.target.pid_file()),
        ) {
            return Err(why);
        }
        if unit.main_pid == Some(master.pid) {
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
}

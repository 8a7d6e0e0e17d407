//! The retire's systemd guard: before the old master is told to stop, refuse (nothing
//! changed) when that would end its systemd service; after it is gone, wait for systemd to
//! take the new master as the service's main process, and fail loudly when it lost track.
//! In the operation (not only the pipeline's preflight) so that a step-by-step `commit`
//! is guarded too.

use super::engine::Ctx;
use crate::error::Error;
use crate::event::Event;
use crate::model::error_chain;
use crate::pid::Pid;
use crate::systemd::{self, retire_would_end_service, Unit, SHOW_TIMEOUT};

/// Before the retire: `Ok(Some(unit))` when `old` is the main process of a unit that will
/// follow the new master (to check after), `Ok(None)` when no unit is concerned, an error
/// (a refusal, nothing changed) when retiring `old` would end the service.
pub(crate) fn before_retire(ctx: &Ctx<'_>, old: Pid) -> Result<Option<String>, Error> {
    let Some(name) = systemd::unit_of(old) else {
        return Ok(None);
    };
    let unit = match systemd::show(&name, SHOW_TIMEOUT, ctx.waiter()) {
        Ok(unit) => unit,
        Err(e @ Error::Cancelled { .. }) => return Err(e),
        // No systemd to ask (a container that sees its host's cgroup paths): the preflight
        // said so already.
        Err(_) => return Ok(None),
    };
    if let Some(why) = retire_would_end_service(
        &unit,
        old,
        ctx.target.pid_file(),
        &ctx.target.flavor_ref().new_pid_file(ctx.target.pid_file()),
    ) {
        return Err(Error::Preflight {
            check: "systemd".into(),
            detail: why,
        });
    }
    Ok((unit.main_pid == Some(old)).then_some(name))
}

/// After the retire: waits (up to the quit timeout) for `new` to be the main process of
/// `name` and reports it; [`Error::Systemd`] when systemd lost track of the server.
pub(crate) fn after_retire(ctx: &Ctx<'_>, name: &str, new: Pid) -> Result<(), Error> {
    let mut last: Option<Unit> = None;
    let mut asked: Option<Error> = None;
    let followed = ctx.poll(
        &format!("systemd to take master {new} as the main process of {name}"),
        ctx.opts.quit_timeout,
        || match systemd::show(name, SHOW_TIMEOUT, ctx.waiter()) {
            Ok(unit) => {
                let done = unit.main_pid == Some(new)
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
        (Ok(Some(())), Some(unit)) if unit.main_pid == Some(new) => {
            ctx.emit(Event::Observed {
                what: format!(
                    "systemd: MainPID of {name} is the new master {new} ({})",
                    unit.active_state
                ),
            });
            return Ok(());
        }
        (_, Some(unit)) => format!("it shows {unit}"),
        (Err(e), None) => error_chain(e),
        (Ok(_), None) => asked
            .as_ref()
            .map_or_else(|| "no answer".into(), |e| error_chain(e)),
    };
    let pid_file = ctx.target.pid_file().display();
    let error = Error::Systemd {
        unit: name.to_string(),
        detail: format!(
            "systemd lost track of the server after the old master was retired: {lost}, while \
             the new master is {new}. systemd may stop it, or not restart it as it should. \
             Check `systemctl status {name}`; if the new master is gone, `systemctl start \
             {name}`; else restart the service once at a quiet moment so that systemd tracks \
             it again. Make sure the unit says `Type=forking` and `PIDFile={pid_file}` \
             (nginx's `pid`)"
        ),
    };
    ctx.warning(error.to_string());
    Err(error)
}

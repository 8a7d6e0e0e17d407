//! The check before the drain: a listening socket that only the old master holds is
//! orphaned once the old workers go (the kernel still queues connections on it, nobody
//! accepts them). nginx does this by design when the new configuration has fewer
//! workers with `listen … reuseport` (the new master closes the inherited per-worker
//! socket it has no worker for), or drops a `listen`.

use super::engine::Ctx;
use crate::error::{Error, OrphanedSocket};
use crate::pid::Pid;
use crate::procfs;

/// The listening sockets `old` holds and `new` does not.
pub(crate) fn orphaned_sockets(old: Pid, new: Pid) -> Result<Vec<OrphanedSocket>, Error> {
    Ok(procfs::listeners_only_in(old, new)?
        .into_iter()
        .map(|l| OrphanedSocket::new(l.address, l.inode))
        .collect())
}

/// Refuses the drain ([`Error::OrphanedSockets`]) when it would orphan sockets, unless
/// the options accept it (then it warns). A table that cannot be read is no evidence of
/// a problem: it warns and lets the drain go on.
pub(super) fn check_before_drain(ctx: &Ctx<'_>, old: Pid, new: Pid) -> Result<(), Error> {
    let sockets = match orphaned_sockets(old, new) {
        Ok(sockets) => sockets,
        Err(e) => {
            ctx.warning(format!(
                "could not compare the listening sockets of masters {old} and {new} ({}); \
                 draining without that check",
                crate::model::error_chain(&e)
            ));
            return Ok(());
        }
    };
    if sockets.is_empty() {
        return Ok(());
    }
    let error = Error::OrphanedSockets { old, new, sockets };
    if ctx.opts.allow_orphaned_sockets {
        ctx.warning(format!(
            "{error}; draining anyway, as allowed: those connections are lost until old \
             master {old} exits"
        ));
        return Ok(());
    }
    Err(error)
}

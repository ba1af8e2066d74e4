//! DEL: undo an attachment through the driver that built it, or, when the
//! container side is already gone, through the record on its host link.
use super::attach::{Mode, host_and_mode, runtime};
use super::env::Env;
use super::error::CniResult;
use super::types::NetConf;
use super::undo::detach;
use crate::netlink::Net;
use crate::netns::NetNs;
use std::path::Path;

/// DEL: idempotent; a missing namespace or interface is success.
pub fn del(env: &Env, conf: &NetConf, mode: Mode) -> CniResult<()> {
    let tag = super::tag::encode(&conf.name, &env.container_id, &env.ifname);
    // What stores the tag as text may hold an earlier version's spelling.
    let spellings = super::tag::spellings(&conf.name, &env.container_id, &env.ifname);
    let bridge = match (mode, host_and_mode(conf, mode)) {
        (Mode::Bridge, Ok((b, _))) => Some(b),
        _ => None,
    };
    if mode == Mode::Ovs
        && let Some(db) = &conf.socket_file
    {
        // The OVS driver finds rows of vanished guests through this
        // variable. SAFETY: still single-threaded here: neither the async
        // runtime nor any namespace helper thread exists yet.
        unsafe { std::env::set_var(crate::ovsdb::SOCKET_ENV, db) };
    }
    runtime()?.block_on(async {
        let host = Net::new(None, false)?;
        // A namespace that is already gone took the container end with it.
        let ns = (!env.netns.is_empty())
            .then(|| NetNs::open(Path::new(&env.netns)).ok())
            .flatten();
        let cont = match &ns {
            Some(ns) => Some((Net::new(Some(ns), false)?, ns.inode()?)),
            None => None,
        };
        // A lease our own DHCP client keeps is released while the link
        // still exists (no-op when there is none).
        if let Some(ns) = &ns {
            let _ = crate::dhcp::keeper::release(ns, &env.ifname).await;
        }
        detach(
            &host,
            cont.as_ref().map(|(n, i)| (n, *i)),
            &tag,
            bridge.as_deref(),
        )
        .await?;
        if mode == Mode::Sriov {
            // A namespace destroyed before DEL handed the VF back to the
            // host; its state file says how it looked.
            for t in &spellings {
                crate::sriov::restore::release_returned(&host, t).await?;
            }
        }
        if mode == Mode::Ovs {
            // A guest that vanished first leaves its Port/Interface rows
            // behind (its veth died with it); remove any recorded for us.
            for t in &spellings {
                crate::driver::ovs::detach_gone(t, Some(&env.ifname), false).await?;
            }
        }
        Ok(())
    })
}

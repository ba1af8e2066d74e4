//! An image node's container: how `up` makes it from the node's
//! definition (labelled with its lab and a hash of that definition), and
//! the node's `exec` lines run in it once its links are up.
use super::model::{ImageNode, Lab, container_name};
use super::state;
use crate::error::{Error, Result};
use crate::guest::engine::{CreateSpec, Engine};

/// The label that says which lab started a container (so a `up` killed
/// before saving its state can adopt it).
pub const LAB_LABEL: &str = "pipework.lab";

/// The label with a hash of the node's definition (image, cmd, binds,
/// env, …) its container was made from: an edited node is told apart
/// from its running container.
pub const SPEC_LABEL: &str = "pipework.lab.spec";

pub fn spec_hash(i: &ImageNode) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("{i:?}"));
    d[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// Create an image node's container (no network, labelled with its lab)
/// and start it; returns the id. A container that will not start is
/// removed again.
pub fn run(engine: &Engine, name: &str, i: &ImageNode, lab: &str) -> Result<String> {
    let mut labels = i.labels.clone();
    labels.insert(LAB_LABEL.to_string(), lab.to_string());
    labels.insert(SPEC_LABEL.to_string(), spec_hash(i));
    let spec = CreateSpec {
        image: &i.image,
        cmd: &i.cmd,
        entrypoint: i.entrypoint.as_deref(),
        env: &i.env,
        labels,
        binds: &i.binds,
        user: i.user.as_deref(),
        privileged: i.privileged,
        cap_add: if i.privileged { &[] } else { &i.cap_add },
    };
    let id = engine.create(name, &spec)?;
    engine.start(&id).inspect_err(|_| {
        let _ = engine.remove(&id);
    })?;
    Ok(id)
}

/// Run node `n`'s `exec` lines in its container, in order; the first
/// that fails (non-zero exit) is the error, with what it wrote.
/// The container's start is remembered with the result, so that a
/// restarted container (a new namespace) gets its lines run again.
pub fn exec(lab: &Lab, n: &str, i: &ImageNode, st: &mut state::State) -> Result<()> {
    if i.exec.is_empty() {
        return Ok(());
    }
    let engine = super::engine()?;
    let cname = container_name(&lab.name, n);
    // Remembered before the first line: an `up` killed half-way leaves
    // `0/N`, which `status` and the next `up` name (the lines are not run
    // twice: `ip addr add` is not idempotent).
    let of = i.exec.len();
    let started = engine
        .inspect(&cname)?
        .map(|c| c.state.started_at)
        .unwrap_or_default();
    let run = |ok| state::ExecRun {
        ok,
        of,
        begun: true,
        started: started.clone(),
    };
    st.exec.insert(n.to_string(), run(0));
    state::save(&lab.name, st)?;
    for (k, argv) in i.exec.iter().enumerate() {
        let (code, out) = engine.exec(&cname, argv)?;
        if code != 0 {
            let said = out.lines().last().unwrap_or_default().trim().to_string();
            return Err(Error::other(format!(
                "nodes.{n}.exec[{}] `{}` exited {code}{}",
                k + 1,
                crate::untrusted::display(&argv.join(" ")),
                if said.is_empty() {
                    String::new()
                } else {
                    format!(": {}", crate::untrusted::display(&said))
                }
            )));
        }
    }
    st.exec.insert(n.to_string(), run(of));
    state::save(&lab.name, st)
}

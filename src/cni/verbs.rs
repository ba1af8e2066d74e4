//! The six CNI verbs. Each one decodes and checks the config, then hands
//! the kernel work to `attach` and the address work to `ipam`.
use super::attach::{self, Mode};
use super::env::{Command, Env};
use super::error::{CniError, CniResult, code};
use super::ipam::Ipam;
use super::types::{self, AddResult, NetConf, Version};
use super::{check as checker, detach, gc as collector};

/// Run one verb; `Ok(Some(json))` is printed on stdout.
pub fn dispatch(env: &Env, stdin: &[u8]) -> CniResult<Option<String>> {
    if env.command == Command::Version {
        return Ok(Some(version(stdin)?));
    }
    let (conf, mode) = checked_conf(env, stdin)?;
    let ipam = Ipam::from_conf(&conf, env);
    match env.command {
        Command::Add => add(env, &conf, mode, ipam?, stdin).map(Some),
        Command::Del => del(env, &conf, mode, ipam, stdin).map(|_| None),
        Command::Check => check(env, &conf, mode, ipam?, stdin).map(|_| None),
        Command::Status => status(&conf, mode, ipam?, stdin).map(|_| None),
        Command::Gc => gc(&conf, mode, ipam?, stdin).map(|_| None),
        Command::Version => version(stdin).map(Some),
    }
}

/// The part of every verb that only reads stdin: decode the config, check
/// its version against the verb, validate it and pick the mode. No kernel,
/// no exec, so the fuzz harness (crate::fuzzing) calls it directly.
pub fn checked_conf(env: &Env, stdin: &[u8]) -> CniResult<(NetConf, Mode)> {
    let conf = types::parse_conf(stdin)?;
    let ver = Version::negotiate(&conf.cni_version)?;
    let need = match env.command {
        Command::Check => Some(Version(0, 4, 0)),
        Command::Status | Command::Gc => Some(Version(1, 1, 0)),
        _ => None,
    };
    if let Some(min) = need.filter(|min| ver < *min) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "{} needs cniVersion {}.{}.{} or later, the config says {}",
                env.command.as_str(),
                min.0,
                min.1,
                min.2,
                conf.cni_version
            ),
            "",
        ));
    }
    conf.validate()?;
    let mode = Mode::from_conf(&conf)?;
    Ok((conf, mode))
}

fn version(stdin: &[u8]) -> CniResult<String> {
    let asked = if stdin.iter().all(u8::is_ascii_whitespace) {
        types::LATEST.to_string()
    } else {
        let v: serde_json::Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                code::DECODING_FAILURE,
                "cannot decode VERSION input",
                e.to_string(),
            )
        })?;
        v.get("cniVersion")
            .and_then(|x| x.as_str())
            .unwrap_or(types::LATEST)
            .to_string()
    };
    Ok(serde_json::json!({
        "cniVersion": asked,
        "supportedVersions": types::SUPPORTED_VERSIONS,
    })
    .to_string())
}

fn prev_result(conf: &NetConf) -> CniResult<Option<AddResult>> {
    conf.prev_result
        .as_ref()
        .filter(|v| !v.is_null())
        .map(AddResult::from_value)
        .transpose()
}

fn add(env: &Env, conf: &NetConf, mode: Mode, ipam: Ipam, stdin: &[u8]) -> CniResult<String> {
    let prev = prev_result(conf)?.unwrap_or_default();
    // Check the namespace and the name before anything is allocated or built.
    let mut plumber = attach::preflight(env, conf, mode)?;
    let release = |e: CniError| {
        // Release what IPAM gave us; the ADD error is what matters.
        if let Err(rel) = ipam.forward(Command::Del, stdin) {
            eprintln!("pipework (cni): releasing the address after a failed ADD: {rel}");
        }
        e
    };
    #[cfg(feature = "overlay")]
    let overlay = mode == Mode::Overlay;
    #[cfg(not(feature = "overlay"))]
    let overlay = false;
    let (ip, attached) = if overlay {
        // Addresses come from the overlay (etcd), not from an IPAM plugin.
        #[cfg(feature = "overlay")]
        {
            super::overlay::add(env, conf, &mut plumber)?
        }
        #[cfg(not(feature = "overlay"))]
        return Err(CniError::config(
            "mode 'overlay': built without the overlay",
        ));
    } else if ipam.is_delegated() {
        // As the reference plugins do: the link first, since a delegated
        // IPAM may need it (dhcp leases on the container interface).
        plumber.link(None)?;
        let got = match ipam {
            Ipam::Dhcp => plumber.dhcp_lease(env),
            _ => ipam.add(conf, env, stdin),
        };
        let mut ip = match got {
            Ok(ip) => ip,
            Err(e) => {
                plumber.undo();
                return Err(release(e));
            }
        };
        if conf.is_default_gateway {
            add_default_routes(&mut ip);
        }
        let attached = plumber.finish(env, conf, &ip).map_err(release)?;
        (ip, attached)
    } else {
        let mut ip = ipam.add(conf, env, stdin)?;
        if conf.is_default_gateway {
            add_default_routes(&mut ip);
        }
        plumber.link(Some(&ip))?;
        let attached = plumber.finish(env, conf, &ip)?;
        (ip, attached)
    };
    // Chained after another interface plugin: keep its result and append ours.
    let mut result = prev;
    let base = result.interfaces.len();
    let guest_index = base + attached.len() - 1;
    result.interfaces.extend(attached);
    for mut one in ip.ips {
        one.interface = Some(guest_index);
        result.ips.push(one);
    }
    result.routes.extend(ip.routes);
    let dns = if ip.dns.is_empty() {
        conf.dns.clone().unwrap_or_default()
    } else {
        ip.dns
    };
    if result.dns.is_empty() {
        result.dns = dns;
    }
    Ok(result.to_json(&conf.cni_version))
}

/// `isDefaultGateway`: a default route through each family's gateway.
fn add_default_routes(ip: &mut AddResult) {
    for v4 in [true, false] {
        let gw = ip
            .ips
            .iter()
            .filter(|i| i.address.is_ipv4() == v4)
            .find_map(|i| i.gateway);
        let has_default = ip
            .routes
            .iter()
            .any(|r| r.dst.prefix() == 0 && r.dst.is_ipv4() == v4);
        if let (Some(gw), false) = (gw, has_default) {
            let dst = if v4 { "0.0.0.0/0" } else { "::/0" };
            if let Ok(dst) = dst.parse() {
                ip.routes.push(types::Route {
                    dst,
                    gw: Some(gw),
                    mtu: None,
                    advmss: None,
                    priority: None,
                    table: None,
                    scope: None,
                });
            }
        }
    }
}

/// DEL is best effort and idempotent: every step runs even if an earlier
/// one found nothing, and "already gone" is success.
fn del(
    env: &Env,
    conf: &NetConf,
    mode: Mode,
    ipam: CniResult<Ipam>,
    stdin: &[u8],
) -> CniResult<()> {
    // IPAM first, as the reference plugins do: dhcp sends its release over
    // the container interface, which must still exist.
    // A missing IPAM plugin cannot hold a lease we could release.
    let released = match ipam {
        Ok(ipam) => ipam.forward(Command::Del, stdin),
        Err(e) if e.code == code::NOT_AVAILABLE => {
            eprintln!("pipework (cni): DEL: {e}; nothing to release");
            Ok(())
        }
        Err(e) => Err(e),
    };
    #[cfg(feature = "overlay")]
    if mode == Mode::Overlay {
        super::overlay::del(env, conf)?;
    }
    let detached = detach::del(env, conf, mode);
    detached.and(released)
}

fn check(env: &Env, conf: &NetConf, mode: Mode, ipam: Ipam, stdin: &[u8]) -> CniResult<()> {
    let prev = prev_result(conf)?.ok_or_else(|| {
        CniError::config("CHECK needs prevResult: the result of the ADD being checked")
    })?;
    ipam.forward(Command::Check, stdin)?;
    checker::check(env, conf, mode, &prev)
}

fn status(conf: &NetConf, mode: Mode, ipam: Ipam, stdin: &[u8]) -> CniResult<()> {
    attach::status(conf, mode)?;
    ipam.forward(Command::Status, stdin)
}

fn gc(conf: &NetConf, mode: Mode, ipam: Ipam, stdin: &[u8]) -> CniResult<()> {
    let valid = conf.valid_attachments.clone().unwrap_or_default();
    let ours = collector::gc(conf, mode, &valid);
    // Keep going after our own errors: stale leases are worth removing too.
    let theirs = ipam.forward(Command::Gc, stdin);
    ours.and(theirs)
}

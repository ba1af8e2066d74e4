//! IP address management: delegate to an IPAM plugin on `CNI_PATH`
//! (SPEC.md section 4), except `static`, which we answer in-process because
//! it needs no state and saves an exec on every ADD.
use super::env::{Command, Env};
use super::error::{CniError, CniResult, code};
use super::types::{AddResult, IpConfig, NetConf, Route, Version};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command as Proc, Stdio};

/// What the config asks for, resolved once per invocation.
pub enum Ipam {
    /// No `ipam` section: only runtimeConfig `ips` (if any) are applied.
    None,
    Static,
    /// `"type": "pipework-dhcp"`: our own DHCP client, run in-process on the
    /// container interface, with a lease keeper (no IPAM daemon needed).
    Dhcp,
    Delegate {
        name: String,
        binary: PathBuf,
        /// The dhcp IPAM's daemon socket (its `daemonSocketPath` key).
        dhcp_socket: PathBuf,
    },
}

impl Ipam {
    pub fn from_conf(conf: &NetConf, env: &Env) -> CniResult<Self> {
        let Some(ipam) = &conf.ipam else {
            return Ok(Ipam::None);
        };
        match ipam.ipam_type.as_str() {
            "" => Err(CniError::config("ipam: the 'type' key is missing")),
            "static" => Ok(Ipam::Static),
            NATIVE_DHCP => Ok(Ipam::Dhcp),
            name => Ok(Ipam::Delegate {
                name: name.to_string(),
                binary: find_plugin(name, &env.path)?,
                dhcp_socket: ipam
                    .daemon_socket_path
                    .clone()
                    .unwrap_or_else(|| DHCP_SOCK.into())
                    .into(),
            }),
        }
    }

    /// IPAM that needs the container link to exist first (delegated
    /// plugins such as dhcp, and our own DHCP client).
    pub fn is_delegated(&self) -> bool {
        matches!(self, Ipam::Delegate { .. } | Ipam::Dhcp)
    }

    /// ADD: the addresses, routes and DNS to apply.
    pub fn add(&self, conf: &NetConf, env: &Env, stdin: &[u8]) -> CniResult<AddResult> {
        match self {
            Ipam::None => static_result(conf, env, false),
            Ipam::Static => static_result(conf, env, true),
            Ipam::Dhcp => Err(CniError::new(
                code::INTERNAL,
                "pipework-dhcp leases are taken on the link (Plumber::dhcp_lease)",
                "",
            )),
            Ipam::Delegate { binary, .. } => {
                let out = exec(binary, Command::Add, stdin)?;
                let v = out.ok_or_else(|| {
                    CniError::new(code::IPAM, "IPAM plugin returned no result on ADD", "")
                })?;
                AddResult::from_value(&v)
            }
        }
    }

    /// DEL, CHECK, GC and STATUS are forwarded; only their success matters.
    pub fn forward(&self, command: Command, stdin: &[u8]) -> CniResult<()> {
        let Ipam::Delegate {
            name,
            binary,
            dhcp_socket,
        } = self
        else {
            return Ok(());
        };
        if matches!(command, Command::Gc | Command::Status) && !speaks_1_1(binary) {
            // Plugins older than spec 1.1 do not know these verbs; calling
            // them would only produce a spurious error.
            // The dhcp plugin needs its daemon: that much we can check.
            if command == Command::Status && name == "dhcp" && !dhcp_socket.exists() {
                return Err(CniError::new(
                    code::NOT_AVAILABLE,
                    format!(
                        "the dhcp IPAM daemon is not running ({} is missing)",
                        dhcp_socket.display()
                    ),
                    "start it with: /usr/lib/cni/dhcp daemon",
                ));
            }
            eprintln!(
                "pipework (cni): {}: IPAM plugin '{name}' predates spec 1.1, not forwarded",
                command.as_str()
            );
            return Ok(());
        }
        exec(binary, command, stdin).map(|_| ())
    }
}

const DHCP_SOCK: &str = "/run/cni/dhcp.sock";

/// The IPAM type name of our own DHCP client.
pub const NATIVE_DHCP: &str = "pipework-dhcp";

/// A DHCP lease as a CNI IPAM result.
pub fn lease_result(lease: &crate::dhcp::Lease) -> CniResult<AddResult> {
    let address = ipnetwork::IpNetwork::new(lease.address.into(), lease.prefix)
        .map_err(|e| CniError::new(code::IPAM, format!("DHCP lease: {e}"), ""))?;
    let mut r = AddResult {
        ips: vec![IpConfig {
            address,
            gateway: lease.router.map(IpAddr::V4),
            interface: None,
        }],
        ..Default::default()
    };
    for sr in lease.effective_routes() {
        if let Ok(dst) = ipnetwork::IpNetwork::new(sr.dest.into(), sr.prefix) {
            r.routes.push(Route {
                dst,
                gw: Some(IpAddr::V4(sr.gateway)),
                mtu: None,
                advmss: None,
                priority: None,
                table: None,
                scope: None,
            });
        }
    }
    r.dns.nameservers = lease.dns.iter().map(|d| d.to_string()).collect();
    r.dns.domain = lease.domain.clone();
    Ok(r)
}

/// Look a plugin up on `CNI_PATH`; a missing one makes the plugin unusable
/// for this config (code 50, which STATUS reports as "not available").
pub fn find_plugin(name: &str, path: &[PathBuf]) -> CniResult<PathBuf> {
    if name.contains('/') || name == "." || name == ".." {
        return Err(CniError::config(format!(
            "ipam type '{name}' is not a plugin name"
        )));
    }
    path.iter()
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::new(
                code::NOT_AVAILABLE,
                format!("IPAM plugin '{name}' not found on CNI_PATH"),
                format!(
                    "searched: {}",
                    path.iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(":")
                ),
            )
        })
}

/// Run a delegated plugin with our environment and stdin, its stderr
/// passed through to ours. Returns its stdout JSON (None when empty).
pub fn exec(binary: &Path, command: Command, stdin: &[u8]) -> CniResult<Option<serde_json::Value>> {
    match run_once(binary, command, stdin)? {
        Err(e)
            if e.code == code::INCOMPATIBLE_VERSION
                && conf_version(stdin).is_some_and(|v| v > Version(1, 0, 0)) =>
        {
            // Spec 1.1 changed no result fields for IPAM, so a delegate that
            // stops at 1.0.0 (Debian's reference plugins) is asked again in
            // 1.0.0 rather than failing the whole ADD.
            let mut v: serde_json::Value = serde_json::from_slice(stdin)
                .map_err(|e| CniError::new(code::DECODING_FAILURE, "config", e.to_string()))?;
            v["cniVersion"] = "1.0.0".into();
            run_once(binary, command, v.to_string().as_bytes())?
        }
        other => other,
    }
}

fn conf_version(stdin: &[u8]) -> Option<Version> {
    let v: serde_json::Value = serde_json::from_slice(stdin).ok()?;
    Version::parse(v.get("cniVersion")?.as_str()?)
}

type Outcome = CniResult<Option<serde_json::Value>>;

fn run_once(binary: &Path, command: Command, stdin: &[u8]) -> CniResult<Outcome> {
    let mut child = Proc::new(binary)
        .env("CNI_COMMAND", command.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            CniError::new(
                code::IO_FAILURE,
                format!("cannot run IPAM plugin {}", binary.display()),
                e.to_string(),
            )
        })?;
    if let Some(mut pipe) = child.stdin.take() {
        // A plugin may exit before reading everything (e.g. on a version
        // error); its verdict on stdout is what counts, not EPIPE here.
        let _ = pipe.write_all(stdin);
    }
    let out = child.wait_with_output().map_err(|e| {
        CniError::new(
            code::IO_FAILURE,
            format!("IPAM plugin {} did not finish", binary.display()),
            e.to_string(),
        )
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let json: Option<serde_json::Value> = if text.trim().is_empty() {
        None
    } else {
        Some(serde_json::from_str(&text).map_err(|e| {
            CniError::new(
                code::IPAM,
                format!("IPAM plugin {} wrote invalid JSON", binary.display()),
                format!("{e}: {}", text.trim()),
            )
        })?)
    };
    if out.status.success() {
        return Ok(Ok(json));
    }
    // Pass the delegate's own error through: its code is meaningful to
    // the runtime (e.g. 11 from dhcp when the lease is not there yet).
    let err = json
        .as_ref()
        .and_then(|v| {
            Some(CniError::new(
                u32::try_from(v.get("code")?.as_u64()?).ok()?,
                v.get("msg")
                    .and_then(|m| m.as_str())
                    .unwrap_or("IPAM error"),
                v.get("details").and_then(|m| m.as_str()).unwrap_or(""),
            ))
        })
        .unwrap_or_else(|| {
            CniError::new(
                code::IPAM,
                format!("IPAM plugin {} failed ({})", binary.display(), out.status),
                text.trim().to_string(),
            )
        });
    Ok(Err(err))
}

fn speaks_1_1(binary: &Path) -> bool {
    let Ok(Ok(Some(v))) = run_once(binary, Command::Version, br#"{"cniVersion":"1.1.0"}"#) else {
        return false;
    };
    v.get("supportedVersions")
        .and_then(|s| s.as_array())
        .is_some_and(|s| s.iter().any(|x| x == "1.1.0"))
}

/// The `static` IPAM type, plus runtime-requested addresses: runtimeConfig
/// `ips` and CNI_ARGS `IP=`/`GATEWAY=` (the same sources the reference
/// static plugin reads), then the `addresses` list of the config.
fn static_result(conf: &NetConf, env: &Env, is_static: bool) -> CniResult<AddResult> {
    let ipam = conf.ipam.clone().unwrap_or_default();
    let mut ips = Vec::new();
    let gateway_arg = env
        .arg("GATEWAY")
        .map(|g| {
            g.parse::<IpAddr>()
                .map_err(|_| CniError::config(format!("CNI_ARGS GATEWAY={g} is not an IP address")))
        })
        .transpose()?;
    let mut push = |addr: &str, src: &str| -> CniResult<()> {
        let address = addr.parse().map_err(|_| {
            CniError::config(format!(
                "{src}: '{addr}' is not an address in CIDR form (for example 10.0.0.5/24)"
            ))
        })?;
        ips.push(IpConfig {
            address,
            gateway: gateway_arg,
            interface: None,
        });
        Ok(())
    };
    for a in conf.wanted_ips() {
        push(a, "runtimeConfig ips")?;
    }
    if is_static && let Some(list) = env.arg("IP") {
        for a in list.split(',') {
            push(a, "CNI_ARGS IP")?;
        }
    }
    if ips.is_empty() {
        ips.extend(ipam.addresses.iter().map(|a| IpConfig {
            address: a.address,
            gateway: a.gateway,
            interface: None,
        }));
    }
    if is_static && ips.is_empty() {
        return Err(CniError::config(
            "ipam static: no addresses; set ipam.addresses, runtimeConfig ips or CNI_ARGS IP=",
        ));
    }
    let routes: Vec<Route> = ipam.routes.clone();
    let dns = ipam.dns.clone().unwrap_or_default();
    Ok(AddResult {
        interfaces: Vec::new(),
        ips,
        routes,
        dns,
    })
}

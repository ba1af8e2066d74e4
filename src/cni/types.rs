//! CNI wire types: the plugin configuration we read and the results we
//! write, for every spec version we speak.
//!
//! Internally a result is always the 1.1 shape. Older versions differ only
//! in small ways (0.3.x/0.4.0 tag each IP with "version"; fields added in
//! 1.1 do not exist before), so conversion happens once, at the edge, in
//! [`AddResult::to_json`]. Unknown keys are ignored on input because
//! runtimes add their own (podman's `args`, libcni's `capabilities`).
use super::error::{CniError, CniResult, code};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Versions whose result format we produce, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
pub const LATEST: &str = "1.1.0";

/// A spec version as (major, minor, patch), comparable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u16, pub u16, pub u16);

impl Version {
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.split('.').map(|p| p.parse::<u16>().ok());
        let v = Version(it.next()??, it.next()??, it.next()??);
        it.next().is_none().then_some(v)
    }

    /// The version a config asks for, if we speak it; error code 1 otherwise.
    pub fn negotiate(s: &str) -> CniResult<Self> {
        if SUPPORTED_VERSIONS.contains(&s)
            && let Some(v) = Version::parse(s)
        {
            return Ok(v);
        }
        let shown = if s.is_empty() { "(missing)" } else { s };
        Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("cniVersion {shown} is not supported by pipework"),
            format!("supported versions: {}", SUPPORTED_VERSIONS.join(", ")),
        ))
    }
}

/// Serialise `IpNetwork` as its CIDR string without the crate's serde feature.
mod cidr {
    use ipnetwork::IpNetwork;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(n: &IpNetwork, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(n)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<IpNetwork, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|e| D::Error::custom(format!("'{s}' is not an address in CIDR form: {e}")))
    }
}

/// The plugin configuration object on stdin (SPEC.md section 3, derived
/// request configuration), with the keys pipework understands.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    #[serde(default)]
    pub cni_version: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub plugin_type: String,
    /// Which pipework driver plumbs the interface.
    pub mode: Option<String>,
    pub bridge: Option<String>,
    pub master: Option<String>,
    pub mtu: Option<u32>,
    pub vlan: Option<u16>,
    pub mac: Option<String>,
    #[serde(default)]
    pub is_gateway: bool,
    #[serde(default)]
    pub is_default_gateway: bool,
    #[serde(default)]
    pub ip_masq: bool,
    /// Mode "bridge": keep conntrack for frames within the bridge, i.e. no
    /// raw-table notrack rule (the CLI's `--keep-conntrack`; see
    /// firewall/notrack.rs). Our own key: the reference plugins add no
    /// such rule, so they have nothing to opt out of.
    #[serde(default)]
    pub keep_conntrack: bool,
    /// Mode "bridge": the CLI's `--tc-redirect` (driver/tc_redirect.rs).
    #[serde(default)]
    pub tc_redirect: bool,
    pub macvlan_mode: Option<String>,
    pub ipvlan_mode: Option<String>,
    /// OVSDB socket for mode "ovs" (ovs-cni's key name), e.g.
    /// `unix:/var/run/openvswitch/db.sock`.
    #[serde(rename = "socket_file")]
    pub socket_file: Option<String>,
    pub ipam: Option<IpamConf>,
    pub dns: Option<Dns>,
    #[serde(default)]
    pub runtime_config: RuntimeConfig,
    /// Raw, because it can be in any supported version's format.
    pub prev_result: Option<serde_json::Value>,
    /// CNI_ARGS-like values passed in the config (`args.cni.ips`, `args.cni.mac`).
    pub args: Option<ConfArgs>,
    #[serde(rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<Attachment>>,
    /// Mode "sriov", with sriov-cni's key names (see `SriovConf`).
    #[serde(flatten)]
    pub sriov: SriovConf,
}

/// sriov-cni's configuration keys, so its configs work with only `type`
/// changed: `deviceID` names the VF by PCI address; or `master` (the PF)
/// with an optional `vf` index.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct SriovConf {
    #[serde(rename = "deviceID")]
    pub device_id: Option<String>,
    pub vf: Option<u32>,
    #[serde(rename = "vlanQoS")]
    pub vlan_qos: Option<u8>,
    #[serde(rename = "vlanProto")]
    pub vlan_proto: Option<String>,
    pub spoofchk: Option<String>,
    pub trust: Option<String>,
    pub link_state: Option<String>,
    pub min_tx_rate: Option<u32>,
    pub max_tx_rate: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct RuntimeConfig {
    pub mac: Option<String>,
    #[serde(default)]
    pub ips: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct ConfArgs {
    #[serde(default)]
    pub cni: RuntimeConfig,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The `ipam` section. Only `type` matters for delegation; the rest is
/// what the `static` IPAM type accepts, which we handle in-process.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct IpamConf {
    #[serde(rename = "type", default)]
    pub ipam_type: String,
    #[serde(default)]
    pub addresses: Vec<StaticAddress>,
    #[serde(default)]
    pub routes: Vec<Route>,
    pub dns: Option<Dns>,
    /// The dhcp IPAM type's daemon socket, for STATUS.
    #[serde(rename = "daemonSocketPath")]
    pub daemon_socket_path: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StaticAddress {
    #[serde(with = "cidr")]
    pub address: IpNetwork,
    pub gateway: Option<IpAddr>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    #[serde(rename = "pciID", default, skip_serializing_if = "String::is_empty")]
    pub pci_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IpConfig {
    #[serde(with = "cidr")]
    pub address: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Route {
    #[serde(with = "cidr")]
    pub dst: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        *self == Dns::default()
    }
}

/// An ADD result (also what IPAM plugins return, minus `interfaces`).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct AddResult {
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: Dns,
}

impl AddResult {
    /// Parse a result written in any supported version (the 0.3/0.4
    /// per-IP "version" tag is redundant with the address and is ignored).
    pub fn from_value(v: &serde_json::Value) -> CniResult<Self> {
        if let Some(ver) = v.get("cniVersion").and_then(|x| x.as_str()) {
            Version::negotiate(ver)?;
        }
        serde_json::from_value(v.clone()).map_err(|e| {
            CniError::new(
                code::DECODING_FAILURE,
                "cannot decode result",
                e.to_string(),
            )
        })
    }

    /// The result JSON for protocol `version`.
    pub fn to_json(&self, version: &str) -> String {
        let v = Version::parse(version).unwrap_or(Version(1, 1, 0));
        let mut out = serde_json::to_value(self).unwrap_or_default();
        if let Some(obj) = out.as_object_mut() {
            obj.insert("cniVersion".into(), version.into());
        }
        if v < Version(1, 0, 0) {
            // 0.3.x and 0.4.0 tag each IP with its family.
            for (ip, json) in self.ips.iter().zip(list_mut(&mut out, "ips")) {
                let fam = if ip.address.is_ipv4() { "4" } else { "6" };
                json["version"] = fam.into();
            }
        }
        if v < Version(1, 1, 0) {
            for r in list_mut(&mut out, "routes") {
                strip(r, &["mtu", "advmss", "priority", "table", "scope"]);
            }
            for i in list_mut(&mut out, "interfaces") {
                strip(i, &["mtu", "socketPath", "pciID"]);
            }
        }
        out.to_string()
    }

    /// Index of the interface named `name` that lives in `sandbox`.
    pub fn interface_index(&self, name: &str, sandbox: &str) -> Option<usize> {
        self.interfaces
            .iter()
            .position(|i| i.name == name && i.sandbox == sandbox)
    }
}

fn list_mut<'a>(
    v: &'a mut serde_json::Value,
    key: &str,
) -> impl Iterator<Item = &'a mut serde_json::Value> {
    v.get_mut(key)
        .and_then(|x| x.as_array_mut())
        .into_iter()
        .flatten()
}

fn strip(v: &mut serde_json::Value, keys: &[&str]) {
    if let Some(obj) = v.as_object_mut() {
        for k in keys {
            obj.remove(*k);
        }
    }
}

/// Decode the configuration on stdin. Bytes that are not JSON are a
/// decoding failure (6); JSON of the wrong shape is an invalid config (7).
pub fn parse_conf(bytes: &[u8]) -> CniResult<NetConf> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        CniError::new(
            code::DECODING_FAILURE,
            "cannot decode network configuration",
            e.to_string(),
        )
    })?;
    serde_json::from_value(v).map_err(|e| {
        CniError::new(
            code::INVALID_CONFIG,
            "invalid network configuration",
            e.to_string(),
        )
    })
}

impl NetConf {
    /// Checks that do not depend on the verb: name syntax, type, and our
    /// own keys' values.
    pub fn validate(&self) -> CniResult<()> {
        let name_ok = {
            let mut ch = self.name.chars();
            ch.next().is_some_and(|c| c.is_ascii_alphanumeric())
                && ch.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        };
        if !name_ok {
            return Err(CniError::config(format!(
                "network name '{}' is invalid: it must start with a letter or digit, then letters, digits, '_', '.' or '-'",
                self.name
            )));
        }
        if self.ip_masq {
            return Err(CniError::new(
                code::UNSUPPORTED_FIELD,
                "ipMasq: true is not supported by pipework",
                "chain the reference 'firewall' or 'portmap' plugins, or masquerade on the host",
            ));
        }
        if let Some(m) = self.mtu
            && !(68..=65535).contains(&m)
        {
            return Err(CniError::config(format!(
                "mtu: {m} is out of range, use 68..65535"
            )));
        }
        Ok(())
    }

    /// The MAC asked for: runtimeConfig wins over `args`, which wins over the static key.
    pub fn wanted_mac(&self, cni_args_mac: Option<&str>) -> Option<String> {
        self.runtime_config
            .mac
            .clone()
            .or_else(|| self.args.as_ref().and_then(|a| a.cni.mac.clone()))
            .or_else(|| cni_args_mac.map(str::to_string))
            .or_else(|| self.mac.clone())
    }

    /// Addresses asked for by the runtime (runtimeConfig `ips`, or `args.cni.ips`).
    pub fn wanted_ips(&self) -> &[String] {
        if !self.runtime_config.ips.is_empty() {
            &self.runtime_config.ips
        } else {
            self.args.as_ref().map(|a| &a.cni.ips[..]).unwrap_or(&[])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AddResult {
        AddResult {
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: "02:00:00:00:00:01".into(),
                mtu: Some(1500),
                sandbox: "/run/netns/x".into(),
                ..Default::default()
            }],
            ips: vec![
                IpConfig {
                    address: "10.0.0.5/24".parse().unwrap(),
                    gateway: Some("10.0.0.1".parse().unwrap()),
                    interface: Some(0),
                },
                IpConfig {
                    address: "fd00::5/64".parse().unwrap(),
                    gateway: None,
                    interface: Some(0),
                },
            ],
            routes: vec![Route {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: None,
                mtu: Some(1400),
                advmss: None,
                priority: None,
                table: None,
                scope: None,
            }],
            dns: Dns::default(),
        }
    }

    #[test]
    fn version_negotiation() {
        assert!(Version::negotiate("1.1.0").is_ok());
        assert!(Version::negotiate("0.3.1").is_ok());
        assert_eq!(Version::negotiate("0.2.0").unwrap_err().code, 1);
        assert_eq!(Version::negotiate("").unwrap_err().code, 1);
        assert_eq!(Version::negotiate("9.9.9").unwrap_err().code, 1);
        assert!(Version(0, 4, 0) < Version(1, 0, 0));
    }

    #[test]
    fn result_per_version() {
        let r = sample();
        let old: serde_json::Value = serde_json::from_str(&r.to_json("0.3.1")).unwrap();
        assert_eq!(old["cniVersion"], "0.3.1");
        assert_eq!(old["ips"][0]["version"], "4");
        assert_eq!(old["ips"][1]["version"], "6");
        assert!(old["routes"][0].get("mtu").is_none());
        assert!(old["interfaces"][0].get("mtu").is_none());
        let v1: serde_json::Value = serde_json::from_str(&r.to_json("1.0.0")).unwrap();
        assert!(v1["ips"][0].get("version").is_none());
        assert!(v1["routes"][0].get("mtu").is_none());
        let v11: serde_json::Value = serde_json::from_str(&r.to_json("1.1.0")).unwrap();
        assert_eq!(v11["routes"][0]["mtu"], 1400);
        assert_eq!(v11["interfaces"][0]["mtu"], 1500);
        assert_eq!(v11["ips"][0]["address"], "10.0.0.5/24");
        // Round trip from every version gives back the same addresses.
        for v in SUPPORTED_VERSIONS {
            let back =
                AddResult::from_value(&serde_json::from_str(&r.to_json(v)).unwrap()).unwrap();
            assert_eq!(back.ips, r.ips, "{v}");
        }
    }

    #[test]
    fn conf_errors() {
        assert_eq!(parse_conf(b"{not json").unwrap_err().code, 6);
        assert_eq!(parse_conf(b"").unwrap_err().code, 6);
        assert_eq!(parse_conf(br#"{"mtu":"big"}"#).unwrap_err().code, 7);
        assert_eq!(
            parse_conf(br#"{"keepConntrack":"yes"}"#).unwrap_err().code,
            7
        );
        assert!(
            parse_conf(br#"{"keepConntrack":true}"#)
                .unwrap()
                .keep_conntrack
        );
        assert!(!parse_conf(br#"{}"#).unwrap().keep_conntrack);
        assert!(parse_conf(br#"{"tcRedirect":true}"#).unwrap().tc_redirect);
        assert!(!parse_conf(br#"{}"#).unwrap().tc_redirect);
        let c = parse_conf(
            br#"{"cniVersion":"1.1.0","name":"n","type":"pipework","mode":"bridge","bridge":"br0",
                "isGateway":true,"ipam":{"type":"static","addresses":[{"address":"10.0.0.5/24","gateway":"10.0.0.1"}]},
                "runtimeConfig":{"mac":"02:00:00:00:00:09","ips":["10.0.0.7/24"]},
                "cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}],"extra":{"x":1}}"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert!(c.is_gateway);
        assert_eq!(c.wanted_mac(None).as_deref(), Some("02:00:00:00:00:09"));
        assert_eq!(c.wanted_ips(), ["10.0.0.7/24".to_string()]);
        assert_eq!(c.ipam.unwrap().addresses.len(), 1);
        assert_eq!(c.valid_attachments.unwrap()[0].ifname, "eth0");
        let bad = parse_conf(br#"{"cniVersion":"1.1.0","name":"-x","type":"pipework"}"#).unwrap();
        assert_eq!(bad.validate().unwrap_err().code, 7);
    }
}

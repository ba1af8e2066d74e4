//! What we built, written on the kernel objects themselves (the link alias,
//! IFLA_IFALIAS, up to 255 bytes), so the kernel stays the source of truth
//! for `ls` and `detach`: no side database to drift out of date.
use serde::{Deserialize, Serialize};

const PREFIX: &str = "pipework ";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// Driver kind: "bridge", "macvlan", "ovs", "phys", …
    pub k: String,
    /// Host interface as the user named it (bridge, parent NIC, …).
    pub h: String,
    /// Host-side link we created (veth end), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hi: Option<String>,
    /// Guest as resolved: container name, netns name or pid.
    pub g: String,
    /// Short container id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Container-side interface name.
    #[serde(rename = "if")]
    pub ifname: String,
    /// Driver-specific extras (original NIC name/MTU for phys, OVS port, …).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub x: serde_json::Map<String, serde_json::Value>,
}

impl Record {
    pub fn encode(&self) -> String {
        let mut s = String::from(PREFIX);
        // Serialising a struct of strings and maps cannot fail.
        s.push_str(&serde_json::to_string(self).unwrap_or_default());
        s
    }

    pub fn decode(alias: &str) -> Option<Record> {
        serde_json::from_str(alias.strip_prefix(PREFIX)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_fits_an_alias() {
        let r = Record {
            k: "bridge".into(),
            h: "br1".into(),
            hi: Some("veth1pl12345".into()),
            g: "web1".into(),
            id: Some("0123456789ab".into()),
            ifname: "eth1".into(),
            x: Default::default(),
        };
        let a = r.encode();
        assert!(a.len() < 256);
        assert_eq!(Record::decode(&a), Some(r));
        assert_eq!(Record::decode("some admin alias"), None);
    }
}

//! Physical and virtual functions as sysfs shows them, read as a pure
//! function of a root directory (`/sys` in production, a temp tree in the
//! unit tests).
//!
//! Every path is built from a name we validated: the PF's netdev name as
//! the user typed it, or a PCI address that matches `dddd:bb:dd.f`. Only
//! the last component of a symlink's target is used (`virtfn3 ->
//! ../0000:01:10.6` gives `0000:01:10.6`, checked again), so nothing a
//! link name or a guest could influence ever steers a path. Sysfs shows a
//! device's `net/` entry only in the namespace that mounted it: a VF whose
//! netdev sits in a guest has an empty `net/` here, which is how we tell
//! "in the host" from "given away".
use std::path::{Path, PathBuf};

/// What went wrong, as the caller words it for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SysfsError {
    /// No such network interface on the host.
    NoNetdev(String),
    /// The interface has no PCI device behind it (virtual, or not PCI).
    NotPci(String),
    /// A PCI device without SR-IOV capability.
    NotSriov(String),
    /// A PCI address that is not a VF of anything.
    NotVf(String),
    /// No PCI device at that address.
    NoDevice(String),
    /// Sysfs said something we could not read.
    Unreadable(String),
}

impl std::fmt::Display for SysfsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SysfsError::NoNetdev(n) => write!(f, "no such interface {n} on the host"),
            SysfsError::NotPci(n) => write!(
                f,
                "{n} is not a PCI NIC (no device behind it): SR-IOV needs a physical function"
            ),
            SysfsError::NotSriov(n) => {
                write!(f, "{n} has no SR-IOV capability (no sriov_totalvfs)")
            }
            SysfsError::NotVf(p) => write!(f, "PCI device {p} is not an SR-IOV virtual function"),
            SysfsError::NoDevice(p) => write!(f, "no PCI device {p}"),
            SysfsError::Unreadable(w) => write!(f, "cannot read {w}"),
        }
    }
}

/// One virtual function of a PF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vf {
    pub index: u32,
    pub pci: String,
    /// Its netdev in the namespace that mounted sysfs (the host), if any.
    pub netdev: Option<String>,
}

/// A physical function and its VFs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pf {
    /// Netdev name (the first, if the device has several ports).
    pub name: String,
    pub pci: String,
    /// `sriov_totalvfs`: how many VFs the NIC can have.
    pub total: u32,
    /// `sriov_numvfs`: how many are enabled now (0: SR-IOV disabled).
    pub num: u32,
    pub vfs: Vec<Vf>,
}

impl Pf {
    pub fn vf(&self, index: u32) -> Option<&Vf> {
        self.vfs.iter().find(|v| v.index == index)
    }
}

/// `dddd:bb:dd.f`, lower-case hex: the only shape of PCI address we accept
/// (what sysfs uses and sriov-cni's `deviceID` carries).
pub fn is_pci_address(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 | 10 => true,
            11 => (b'0'..=b'7').contains(c),
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

/// A plain interface name: usable as one path component.
fn is_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && !s
            .bytes()
            .any(|b| b == b'/' || b.is_ascii_whitespace() || b.is_ascii_control())
}

fn device_dir(root: &Path, pci: &str) -> PathBuf {
    root.join("bus/pci/devices").join(pci)
}

/// The last component of a symlink's target, if it is a PCI address.
fn link_to_pci(path: &Path) -> Option<String> {
    let t = std::fs::read_link(path).ok()?;
    let last = t.file_name()?.to_str()?.to_string();
    is_pci_address(&last).then_some(last)
}

fn read_u32(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The netdev names under a PCI device (sorted; a multi-port device has
/// several, a device given to another namespace none).
pub fn netdevs_of(root: &Path, pci: &str) -> Vec<String> {
    if !is_pci_address(pci) {
        return vec![];
    }
    let mut v: Vec<String> = std::fs::read_dir(device_dir(root, pci).join("net"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| is_ifname(n))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The PCI address behind a host interface.
pub fn pci_of_netdev(root: &Path, netdev: &str) -> Result<String, SysfsError> {
    if !is_ifname(netdev) {
        return Err(SysfsError::NoNetdev(netdev.to_string()));
    }
    let dir = root.join("class/net").join(netdev);
    if std::fs::symlink_metadata(&dir).is_err() {
        return Err(SysfsError::NoNetdev(netdev.to_string()));
    }
    link_to_pci(&dir.join("device")).ok_or_else(|| SysfsError::NotPci(netdev.to_string()))
}

/// The PF behind host interface `netdev`, with its VFs.
pub fn pf_by_netdev(root: &Path, netdev: &str) -> Result<Pf, SysfsError> {
    let pci = pci_of_netdev(root, netdev)?;
    pf_by_pci(root, &pci, netdev)
}

/// The PF at `pci` (named `name` for messages), with its VFs.
pub fn pf_by_pci(root: &Path, pci: &str, name: &str) -> Result<Pf, SysfsError> {
    let dev = device_dir(root, pci);
    let total = read_u32(&dev.join("sriov_totalvfs"))
        .ok_or_else(|| SysfsError::NotSriov(name.to_string()))?;
    let num = read_u32(&dev.join("sriov_numvfs"))
        .ok_or_else(|| SysfsError::Unreadable(format!("{name}'s sriov_numvfs")))?;
    let mut vfs = Vec::new();
    for index in 0..num {
        let Some(vf_pci) = link_to_pci(&dev.join(format!("virtfn{index}"))) else {
            continue;
        };
        let netdev = netdevs_of(root, &vf_pci).into_iter().next();
        vfs.push(Vf {
            index,
            pci: vf_pci,
            netdev,
        });
    }
    Ok(Pf {
        name: name.to_string(),
        pci: pci.to_string(),
        total,
        num,
        vfs,
    })
}

/// The PF and index of the VF at `pci`.
pub fn vf_by_pci(root: &Path, pci: &str) -> Result<(Pf, u32), SysfsError> {
    if !is_pci_address(pci) {
        return Err(SysfsError::NoDevice(pci.to_string()));
    }
    let dev = device_dir(root, pci);
    if std::fs::symlink_metadata(&dev).is_err() {
        return Err(SysfsError::NoDevice(pci.to_string()));
    }
    let pf_pci = link_to_pci(&dev.join("physfn")).ok_or_else(|| SysfsError::NotVf(pci.into()))?;
    let name = netdevs_of(root, &pf_pci)
        .into_iter()
        .next()
        .unwrap_or_else(|| pf_pci.clone());
    let pf = pf_by_pci(root, &pf_pci, &name)?;
    let index = pf
        .vfs
        .iter()
        .find(|v| v.pci == pci)
        .map(|v| v.index)
        .ok_or_else(|| SysfsError::NotVf(pci.to_string()))?;
    Ok((pf, index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A sysfs-shaped tree: devices under `devices/pci0000:00/`, the bus
    /// and class directories as symlinks into it, as the kernel lays it out.
    struct Tree(PathBuf);

    impl Tree {
        fn new(tag: &str) -> Tree {
            let d = std::env::temp_dir().join(format!("pws-sysfs-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(d.join("bus/pci/devices")).unwrap();
            std::fs::create_dir_all(d.join("class/net")).unwrap();
            Tree(d)
        }
        fn dev(&self, pci: &str) -> PathBuf {
            let p = self.0.join("devices/pci0000:00").join(pci);
            if !p.exists() {
                std::fs::create_dir_all(p.join("net")).unwrap();
                symlink(
                    format!("../../../devices/pci0000:00/{pci}"),
                    self.0.join("bus/pci/devices").join(pci),
                )
                .unwrap();
            }
            p
        }
        fn netdev(&self, pci: &str, name: &str) {
            let dev = self.dev(pci);
            std::fs::create_dir_all(dev.join("net").join(name)).unwrap();
            let c = self.0.join("class/net").join(name);
            std::fs::create_dir_all(&c).unwrap();
            symlink(
                format!("../../../devices/pci0000:00/{pci}"),
                c.join("device"),
            )
            .unwrap();
        }
        /// A PF with `num` of `total` VFs at 0000:01:10.<2i> (as igb lays
        /// them out); VFs listed in `in_host` have a host netdev `vfN`.
        fn pf(&self, name: &str, total: u32, num: u32, in_host: &[u32]) {
            let pf = "0000:01:00.0";
            self.netdev(pf, name);
            let dev = self.dev(pf);
            std::fs::write(dev.join("sriov_totalvfs"), format!("{total}\n")).unwrap();
            std::fs::write(dev.join("sriov_numvfs"), format!("{num}\n")).unwrap();
            for i in 0..num {
                let vf = format!("0000:01:1{}.{}", i / 4, (i % 4) * 2);
                self.dev(&vf);
                symlink(format!("../{vf}"), dev.join(format!("virtfn{i}"))).unwrap();
                symlink(format!("../{pf}"), self.dev(&vf).join("physfn")).unwrap();
                if in_host.contains(&i) {
                    self.netdev(&vf, &format!("vf{i}"));
                }
            }
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn pci_addresses() {
        assert!(is_pci_address("0000:01:10.0"));
        assert!(is_pci_address("0000:af:1f.7"));
        for bad in [
            "0000:01:10.8",
            "0000:01:10",
            "0000:01:10.0/",
            "../01:10.0000",
            "0000:AF:10.0",
            "0000-01-10.0",
            "",
        ] {
            assert!(!is_pci_address(bad), "{bad}");
        }
    }

    #[test]
    fn a_pf_lists_its_vfs_and_which_are_in_the_host() {
        let t = Tree::new("pf");
        t.pf("eth0", 7, 5, &[0, 1, 3]);
        let pf = pf_by_netdev(&t.0, "eth0").unwrap();
        assert_eq!((pf.pci.as_str(), pf.total, pf.num), ("0000:01:00.0", 7, 5));
        assert_eq!(pf.vfs.len(), 5);
        assert_eq!(pf.vf(4).map(|v| v.pci.as_str()), Some("0000:01:11.0"));
        assert_eq!(pf.vf(3).and_then(|v| v.netdev.as_deref()), Some("vf3"));
        assert_eq!(pf.vf(2).and_then(|v| v.netdev.as_deref()), None);
        assert_eq!(pf.vf(5), None);
    }

    #[test]
    fn a_vf_by_pci_address_names_its_pf_and_index() {
        let t = Tree::new("vf");
        t.pf("eth0", 7, 4, &[2]);
        let (pf, i) = vf_by_pci(&t.0, "0000:01:10.4").unwrap();
        assert_eq!((pf.name.as_str(), i), ("eth0", 2));
        assert_eq!(netdevs_of(&t.0, "0000:01:10.4"), vec!["vf2".to_string()]);
        assert_eq!(
            vf_by_pci(&t.0, "0000:01:00.0").err(),
            Some(SysfsError::NotVf("0000:01:00.0".into()))
        );
        assert_eq!(
            vf_by_pci(&t.0, "0000:02:00.0").err(),
            Some(SysfsError::NoDevice("0000:02:00.0".into()))
        );
    }

    #[test]
    fn disabled_virtual_and_missing_devices_are_told_apart() {
        let t = Tree::new("kinds");
        t.pf("eth0", 7, 0, &[]);
        let pf = pf_by_netdev(&t.0, "eth0").unwrap();
        assert_eq!((pf.num, pf.vfs.len()), (0, 0));
        // A virtual interface: a class entry without a device link.
        std::fs::create_dir_all(t.0.join("class/net/veth0")).unwrap();
        assert_eq!(
            pf_by_netdev(&t.0, "veth0").err(),
            Some(SysfsError::NotPci("veth0".into()))
        );
        // A PCI NIC without SR-IOV.
        t.netdev("0000:03:00.0", "eth9");
        assert_eq!(
            pf_by_netdev(&t.0, "eth9").err(),
            Some(SysfsError::NotSriov("eth9".into()))
        );
        assert_eq!(
            pf_by_netdev(&t.0, "nope").err(),
            Some(SysfsError::NoNetdev("nope".into()))
        );
    }

    #[test]
    fn names_that_would_leave_the_tree_are_not_followed() {
        let t = Tree::new("esc");
        t.pf("eth0", 7, 2, &[0]);
        // A symlink whose target's last component is not a PCI address.
        let dev = t.0.join("devices/pci0000:00/0000:01:00.0");
        std::fs::remove_file(dev.join("virtfn1")).unwrap();
        symlink("../../../../etc", dev.join("virtfn1")).unwrap();
        let pf = pf_by_netdev(&t.0, "eth0").unwrap();
        assert_eq!(pf.vfs.len(), 1);
        for bad in ["../eth0", "..", "a/b", ""] {
            assert!(pf_by_netdev(&t.0, bad).is_err(), "{bad}");
        }
        assert!(netdevs_of(&t.0, "../../etc").is_empty());
    }
}

//! libvirt: which vd disks a domain's XML asks for, so that its `qemu` hook can start their
//! servers before QEMU starts (`vd-libvirt-hook`).
//!
//! A vd disk in a libvirt domain is QEMU's ivshmem-doorbell device connected to a
//! `vd-ivshmem-server` socket:
//!
//! ```xml
//! <shmem name='vm1-disk'>
//!   <model type='ivshmem-doorbell'/>
//!   <server path='/run/vd-ivshmem/vm1-disk.sock'/>
//!   <msi vectors='1' ioeventfd='on'/>
//! </shmem>
//! ```
//!
//! The server of that disk is the systemd unit `vd-ivshmem@NAME.service`, where NAME is the
//! socket's file name without `.sock` in the servers' directory (`/run/vd-ivshmem`, the unit's
//! default `SOCKET`). Shared memory elements of another model, or whose server socket lives
//! elsewhere, belong to someone else and are left alone.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// One vd disk of a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VdDisk {
    /// The `vd-ivshmem@NAME` instance (and `/etc/vd/ivshmem/NAME.env`).
    pub name: String,
    /// The server's socket, as QEMU will connect to it.
    pub socket: PathBuf,
}

/// Whether `name` can be a systemd instance and a file name: letters, digits, `-`, `_`, `.`,
/// not starting with `.`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The vd disks of the domain described by `xml` whose server sockets are in `run_dir`, in
/// document order. A vd disk whose socket name cannot be a unit instance is an error (QEMU
/// would never find a server for it).
pub fn vd_disks(xml: &str, run_dir: &Path) -> Result<Vec<VdDisk>> {
    let doc = roxmltree::Document::parse(xml).context("the domain XML does not parse")?;
    let root = doc.root_element();
    if !root.has_tag_name("domain") {
        bail!(
            "the XML is not a libvirt domain (root element <{}>)",
            root.tag_name().name()
        );
    }
    let mut out = Vec::new();
    let shmems = root
        .children()
        .filter(|n| n.has_tag_name("devices"))
        .flat_map(|d| d.children().filter(|n| n.has_tag_name("shmem")));
    for shm in shmems {
        let child = |tag: &str| shm.children().find(|n| n.has_tag_name(tag));
        if child("model").and_then(|m| m.attribute("type")) != Some("ivshmem-doorbell") {
            continue;
        }
        let Some(path) = child("server").and_then(|s| s.attribute("path")) else {
            continue;
        };
        let socket = PathBuf::from(path);
        if socket.parent() != Some(run_dir) {
            continue;
        }
        let Some(name) = socket
            .file_name()
            .and_then(|f| f.to_str())
            .and_then(|f| f.strip_suffix(".sock"))
        else {
            continue;
        };
        if !valid_name(name) {
            bail!(
                "shmem {:?}: server socket {path}: {name:?} cannot name a vd-ivshmem@ unit \
                 (use letters, digits, '-', '_' and '.')",
                shm.attribute("name").unwrap_or("?")
            );
        }
        out.push(VdDisk {
            name: name.to_owned(),
            socket,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `virsh dumpxml` prints for a domain with one vd disk, trimmed.
    const DOMAIN: &str = r#"<domain type='kvm' id='3'>
  <name>desk1</name>
  <uuid>5b8c1f1e-6a7d-4c39-9e76-0c1b1f0d2a11</uuid>
  <memory unit='KiB'>2097152</memory>
  <os><type arch='x86_64' machine='pc-q35-10.0'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <source file='/var/lib/libvirt/images/desk1.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <shmem name='desk1-disk'>
      <model type='ivshmem-doorbell'/>
      <server path='/run/vd-ivshmem/desk1-disk.sock'/>
      <msi vectors='1' ioeventfd='on'/>
      <alias name='shmem0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/>
    </shmem>
    <shmem name='clipboard'>
      <model type='ivshmem-plain'/>
      <size unit='M'>4</size>
    </shmem>
    <shmem name='other-server'>
      <model type='ivshmem-doorbell'/>
      <server path='/run/someone-else/x.sock'/>
    </shmem>
    <shmem name='desk1-data'>
      <model type='ivshmem-doorbell'/>
      <server path='/run/vd-ivshmem/desk1-data.sock'/>
      <msi vectors='1'/>
    </shmem>
  </devices>
</domain>"#;

    #[test]
    fn vd_disks_are_the_doorbell_shmems_on_vd_sockets() {
        let d = vd_disks(DOMAIN, Path::new("/run/vd-ivshmem")).unwrap();
        let names: Vec<&str> = d.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["desk1-disk", "desk1-data"]);
        assert_eq!(d[0].socket, Path::new("/run/vd-ivshmem/desk1-disk.sock"));
        // Another servers' directory: none of them is ours.
        assert!(vd_disks(DOMAIN, Path::new("/run/vd")).unwrap().is_empty());
    }

    #[test]
    fn bad_xml_and_bad_names_are_errors() {
        assert!(vd_disks("<domain><devices>", Path::new("/run/vd-ivshmem")).is_err());
        assert!(vd_disks("<network/>", Path::new("/run/vd-ivshmem")).is_err());
        let bad = DOMAIN.replace("desk1-disk.sock", "desk1 disk.sock");
        let e = vd_disks(&bad, Path::new("/run/vd-ivshmem")).unwrap_err();
        assert!(
            format!("{e:#}").contains("cannot name a vd-ivshmem@ unit"),
            "{e:#}"
        );
        assert!(vd_disks("<domain/>", Path::new("/run/vd-ivshmem"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn unit_names_are_checked() {
        assert!(valid_name("vm1-disk_0.a"));
        for n in ["", ".hidden", "a/b", "a@b", "a b", "é"] {
            assert!(!valid_name(n), "{n:?}");
        }
    }
}

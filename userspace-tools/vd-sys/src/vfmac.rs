//! A VF's MAC address, set through its PF's driver (rtnetlink `RTM_SETLINK` on the PF with
//! `IFLA_VFINFO_LIST` / `IFLA_VF_MAC`, what `ip link set PF vf N mac M` sends).
//!
//! A VF that moves between guests must carry the MAC of the guest's standby NIC: net_failover in
//! the guest pairs the VF with its standby by their permanent MAC, which igbvf takes from the PF
//! when it resets the VF (so the address is set while the VF is out of every guest, before it is
//! plugged in). The PF and the VF's index under it come from sysfs (`physfn`, `virtfnN`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkAttribute, LinkMessage, LinkVfInfo, VfInfo, VfInfoMac};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

const PCI: &str = "/sys/bus/pci/devices";

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut m = [0u8; 6];
    let mut parts = s.trim().split(':');
    for b in m.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(m)
}

/// Formats as `aa:bb:cc:dd:ee:ff`.
pub fn mac_string(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Where a VF sits: its PF's netdev (name, ifindex) and its index under the PF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfPlace {
    pub pf: String,
    pub pf_netdev: String,
    pub pf_ifindex: u32,
    pub vf_index: u32,
}

fn other(msg: String) -> io::Error {
    io::Error::other(msg)
}

/// Finds VF `vf` (`0000:01:10.0`) under its PF, from sysfs rooted at `root` (tests) or
/// `/sys/bus/pci/devices`.
pub fn vf_place_in(root: &Path, vf: &str) -> io::Result<VfPlace> {
    let physfn = fs::read_link(root.join(vf).join("physfn"))
        .map_err(|e| other(format!("{vf} is not a VF (no physfn link: {e})")))?;
    let pf = physfn
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| other(format!("{vf}: bad physfn link {}", physfn.display())))?
        .to_owned();
    let pf_dir = root.join(&pf);
    let mut vf_index = None;
    for e in fs::read_dir(&pf_dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(n) = name.to_str().and_then(|n| n.strip_prefix("virtfn")) else {
            continue;
        };
        let Ok(i) = n.parse::<u32>() else { continue };
        let t = fs::read_link(e.path())?;
        if t.file_name().and_then(|f| f.to_str()) == Some(vf) {
            vf_index = Some(i);
        }
    }
    let vf_index =
        vf_index.ok_or_else(|| other(format!("{vf} is not listed under its PF {pf}")))?;
    let net: PathBuf = pf_dir.join("net");
    let pf_netdev = fs::read_dir(&net)
        .map_err(|e| other(format!("PF {pf} has no netdev (is its driver bound?): {e}")))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .next()
        .ok_or_else(|| other(format!("PF {pf} has no netdev")))?;
    let pf_ifindex = fs::read_to_string(net.join(&pf_netdev).join("ifindex"))?
        .trim()
        .parse()
        .map_err(|e| other(format!("ifindex of {pf_netdev}: {e}")))?;
    Ok(VfPlace {
        pf,
        pf_netdev,
        pf_ifindex,
        vf_index,
    })
}

/// [`vf_place_in`] on the running system.
pub fn vf_place(vf: &str) -> io::Result<VfPlace> {
    vf_place_in(Path::new(PCI), vf)
}

/// Sets VF `vf`'s MAC to `mac` through its PF's driver (needs CAP_NET_ADMIN). The PF driver
/// answers with its own errno (igb: `EINVAL` for a multicast or zero address).
pub fn set_vf_mac(vf: &str, mac: [u8; 6]) -> io::Result<VfPlace> {
    let p = vf_place(vf)?;
    let mut link = LinkMessage::default();
    link.header.index = p.pf_ifindex;
    link.attributes
        .push(LinkAttribute::VfInfoList(vec![LinkVfInfo(vec![
            VfInfo::Mac(VfInfoMac::new(p.vf_index, &mac)),
        ])]));
    let mut hdr = NetlinkHeader::default();
    hdr.flags = NLM_F_REQUEST | NLM_F_ACK;
    hdr.sequence_number = 1;
    let mut msg = NetlinkMessage::new(
        hdr,
        NetlinkPayload::from(RouteNetlinkMessage::SetLink(link)),
    );
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);

    let mut s = Socket::new(NETLINK_ROUTE)?;
    s.bind_auto()?;
    s.connect(&SocketAddr::new(0, 0))?;
    s.send(&buf, 0)?;
    let mut rx = vec![0u8; 8192];
    loop {
        let n = s.recv(&mut &mut rx[..], 0)?;
        let mut off = 0;
        while off < n {
            let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[off..n])
                .map_err(|e| other(format!("rtnetlink answer: {e}")))?;
            let len = m.header.length as usize;
            if let NetlinkPayload::Error(e) = m.payload {
                return match e.code {
                    None => Ok(p),
                    Some(c) => Err(io::Error::from_raw_os_error(-c.get())),
                };
            }
            if len == 0 {
                break;
            }
            off += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_and_format() {
        assert_eq!(
            parse_mac("52:54:00:77:00:0a"),
            Some([0x52, 0x54, 0, 0x77, 0, 0x0a])
        );
        assert_eq!(
            mac_string(&[0x52, 0x54, 0, 0x77, 0, 0x0a]),
            "52:54:00:77:00:0a"
        );
        for bad in [
            "",
            "52:54:00:77:00",
            "52:54:00:77:00:0a:01",
            "52:54:00:77:00:0g",
            "5:54:00:77:00:0a",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_vf_is_found_under_its_pf() {
        let d = std::env::temp_dir().join(format!("vd-vfmac-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        let pf = d.join("0000:01:00.0");
        fs::create_dir_all(pf.join("net/enp1s0")).unwrap();
        fs::write(pf.join("net/enp1s0/ifindex"), "3\n").unwrap();
        for (i, vf) in ["0000:01:10.0", "0000:01:10.2"].iter().enumerate() {
            fs::create_dir_all(d.join(vf)).unwrap();
            std::os::unix::fs::symlink("../0000:01:00.0", d.join(vf).join("physfn")).unwrap();
            std::os::unix::fs::symlink(format!("../{vf}"), pf.join(format!("virtfn{i}"))).unwrap();
        }
        let p = vf_place_in(&d, "0000:01:10.2").unwrap();
        assert_eq!(
            p,
            VfPlace {
                pf: "0000:01:00.0".into(),
                pf_netdev: "enp1s0".into(),
                pf_ifindex: 3,
                vf_index: 1
            }
        );
        let e = vf_place_in(&d, "0000:01:00.0").unwrap_err();
        assert!(e.to_string().contains("not a VF"), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }
}

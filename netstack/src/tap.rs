//! Taps through the tun driver: open `/dev/net/tun`, `TUNSETIFF` with
//! `IFF_TAP | IFF_NO_PI` (and `IFF_VNET_HDR` for virtio-net offloads), optionally
//! `TUNSETOWNER` / `TUNSETGROUP` / `TUNSETPERSIST`, and hand back the file descriptor to
//! pass to QEMU as `-netdev tap,fd=N`. (Creating a tap over netlink is refused by the
//! kernel with EOPNOTSUPP, hence the ioctl.) Attaching a tap to a bridge, marking it and
//! bringing it up go through [`Netlink`].
//!
//! A persistent tap owned by an unprivileged uid can be opened by a QEMU running as that
//! uid; a non-persistent tap disappears when its last descriptor is closed.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use rtnetlink::LinkUnspec;
use rtnetlink::packet_route::link::LinkMessage;

use crate::link::{Link, Mark, Netlink, check_bridge, validate_ifname};
use crate::{MacAddr, NetError};

/// The tun/tap control device.
pub const TUN_DEVICE: &str = "/dev/net/tun";

mod ioctl {
    use std::mem::size_of;

    nix::ioctl_write_ptr_bad!(
        tunsetiff,
        nix::request_code_write!(b'T', 202, size_of::<libc::c_int>()),
        libc::ifreq
    );
    nix::ioctl_write_int_bad!(
        tunsetpersist,
        nix::request_code_write!(b'T', 203, size_of::<libc::c_int>())
    );
    nix::ioctl_write_int_bad!(
        tunsetowner,
        nix::request_code_write!(b'T', 204, size_of::<libc::c_int>())
    );
    nix::ioctl_write_int_bad!(
        tunsetgroup,
        nix::request_code_write!(b'T', 206, size_of::<libc::c_int>())
    );
}

/// How to create a tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapSpec {
    /// Interface name (at most 15 bytes; by convention `ktap-...`).
    pub name: String,
    /// `IFF_VNET_HDR`: frames carry a virtio-net header (checksum and segmentation
    /// offloads); QEMU then needs `vnet_hdr=on`.
    pub vnet_hdr: bool,
    /// `TUNSETOWNER`: the uid allowed to attach (the uid QEMU runs as).
    pub owner: Option<u32>,
    /// `TUNSETGROUP`: the gid allowed to attach.
    pub group: Option<u32>,
    /// `TUNSETPERSIST`: the tap outlives the descriptor (until deleted).
    pub persist: bool,
}

impl TapSpec {
    /// A non-persistent tap with `IFF_VNET_HDR`, no owner or group.
    pub fn new(name: impl Into<String>) -> Self {
        TapSpec {
            name: name.into(),
            vnet_hdr: true,
            owner: None,
            group: None,
            persist: false,
        }
    }
}

/// An `ifreq` carrying `name` and `flags`.
fn ifreq(name: &str, flags: libc::c_int) -> Result<libc::ifreq, NetError> {
    validate_ifname(name)?;
    // SAFETY: ifreq is plain old data (a char array and a union of integers and plain
    // structs); all-zero bytes are a valid value of it.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    // The name is at most 15 bytes (validated), so the terminating NUL stays in place.
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // The tun flags fit in the short of the union (the highest used is 0x4000).
    ifr.ifr_ifru.ifru_flags = flags as libc::c_short;
    Ok(ifr)
}

/// Open `/dev/net/tun` and attach to (creating if needed) the tap `name`.
fn open_with_flags(name: &str, flags: libc::c_int) -> Result<OwnedFd, NetError> {
    let ifr = ifreq(name, flags)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(TUN_DEVICE)
        .map_err(|e| NetError::io("open", TUN_DEVICE, e))?;
    // SAFETY: `file` is an open descriptor of /dev/net/tun and `ifr` a valid ifreq that
    // lives across the call; TUNSETIFF only reads it.
    unsafe { ioctl::tunsetiff(file.as_raw_fd(), &ifr) }
        .map_err(|e| NetError::sys("TUNSETIFF", name, e))?;
    Ok(OwnedFd::from(file))
}

fn id_arg(what: &'static str, id: u32) -> Result<libc::c_int, NetError> {
    libc::c_int::try_from(id).map_err(|_| NetError::invalid(what, format!("{id} is too large")))
}

/// Create (or attach to) the tap of `spec` and return its descriptor, close-on-exec: the
/// caller places it in QEMU (`-netdev tap,fd=N[,vnet_hdr=on]`). Without `persist` the
/// tap disappears when the descriptor (and every copy of it) is closed.
pub fn open_tap(spec: &TapSpec) -> Result<OwnedFd, NetError> {
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
    if spec.vnet_hdr {
        flags |= libc::IFF_VNET_HDR;
    }
    let fd = open_with_flags(&spec.name, flags)?;
    if let Some(uid) = spec.owner {
        let uid = id_arg("tap owner", uid)?;
        // SAFETY: TUNSETOWNER on our open tun descriptor, with an integer argument.
        unsafe { ioctl::tunsetowner(fd.as_raw_fd(), uid) }
            .map_err(|e| NetError::sys("TUNSETOWNER", &spec.name, e))?;
    }
    if let Some(gid) = spec.group {
        let gid = id_arg("tap group", gid)?;
        // SAFETY: TUNSETGROUP on our open tun descriptor, with an integer argument.
        unsafe { ioctl::tunsetgroup(fd.as_raw_fd(), gid) }
            .map_err(|e| NetError::sys("TUNSETGROUP", &spec.name, e))?;
    }
    if spec.persist {
        // SAFETY: TUNSETPERSIST on our open tun descriptor, with an integer argument.
        unsafe { ioctl::tunsetpersist(fd.as_raw_fd(), 1) }
            .map_err(|e| NetError::sys("TUNSETPERSIST", &spec.name, e))?;
    }
    tracing::info!(tap = %spec.name, vnet_hdr = spec.vnet_hdr, owner = ?spec.owner,
        group = ?spec.group, persist = spec.persist, "opened tap");
    Ok(fd)
}

/// Set or clear `TUNSETPERSIST` on the existing tap `name`. Clearing it on a tap nobody
/// has open deletes the tap; it fails with EBUSY while a process (QEMU) is attached.
/// Only for taps: `TUNSETIFF` refuses a name that is not a tun/tap device with EINVAL.
/// Prefer [`Netlink::delete_tap`], which also checks that the tap is kcore's.
pub fn set_persist(name: &str, persist: bool) -> Result<(), NetError> {
    let fd = open_with_flags(name, libc::IFF_TAP | libc::IFF_NO_PI)?;
    // SAFETY: TUNSETPERSIST on our open tun descriptor, with an integer argument.
    unsafe { ioctl::tunsetpersist(fd.as_raw_fd(), libc::c_int::from(persist)) }
        .map_err(|e| NetError::sys("TUNSETPERSIST", name, e))?;
    drop(fd);
    tracing::info!(tap = %name, persist, "set tap persistence");
    Ok(())
}

/// True if the tun control device exists (taps can be made).
pub fn tun_available() -> bool {
    Path::new(TUN_DEVICE).exists()
}

impl Netlink {
    /// Mark the existing tap `tap` as kcore's with `mark` and make it a port of `bridge`,
    /// up, in one request that also gives it the bridge's MTU and, if given, `mac` as its
    /// host-side address. The bridge may be kcore's or the host's own (a bridge-mode
    /// network joins one): it is only joined, never changed.
    pub async fn attach_tap(
        &self,
        tap: &str,
        bridge: &Link,
        mark: &Mark,
        mac: Option<MacAddr>,
    ) -> Result<(), NetError> {
        check_bridge(bridge)?;
        let link = self.require_tap(tap).await?;
        self.set_mark(tap, mark).await?;
        let mut msg = LinkUnspec::new_with_index(link.index)
            .controller(bridge.index)
            .up();
        if let Some(mac) = mac {
            msg = msg.address(mac.octets().to_vec());
        }
        if let Some(mtu) = bridge.mtu {
            msg = msg.mtu(mtu);
        }
        self.set_port(tap, bridge, msg.build()).await
    }

    /// Put the kcore tap `tap` back on `bridge` and bring it up (after the bridge was made
    /// again), unless it is a port of that bridge already. True when it was attached.
    pub async fn reattach_tap(&self, tap: &Link, bridge: &Link) -> Result<bool, NetError> {
        if tap.controller == Some(bridge.index) {
            return Ok(false);
        }
        check_bridge(bridge)?;
        if tap.kind.as_deref() != Some("tun") || !tap.is_kcore() {
            return Err(NetError::NotKcore {
                name: tap.name.clone(),
                alias: tap.alias.clone(),
            });
        }
        let msg = LinkUnspec::new_with_index(tap.index)
            .controller(bridge.index)
            .up()
            .build();
        self.set_port(&tap.name, bridge, msg).await?;
        Ok(true)
    }

    /// The tap `name`: a link of kind `tun`.
    async fn require_tap(&self, name: &str) -> Result<Link, NetError> {
        let link = self.require("tap", name).await?;
        if link.kind.as_deref() != Some("tun") {
            return Err(NetError::invalid(
                "tap",
                format!("{name} is a {:?} link, not a tap", link.kind),
            ));
        }
        Ok(link)
    }

    async fn set_port(&self, tap: &str, bridge: &Link, msg: LinkMessage) -> Result<(), NetError> {
        self.handle()
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|source| NetError::Netlink {
                op: "attach tap",
                name: format!("{tap} to {}", bridge.name),
                source,
            })
    }

    /// Open the tap of `spec` ([`open_tap`]), then [`attach_tap`](Self::attach_tap) it
    /// to the kcore bridge `bridge` with `mark`. If attaching fails, a persistent tap is removed again.
    pub async fn create_tap(
        &self,
        spec: &TapSpec,
        bridge: &str,
        mark: &Mark,
    ) -> Result<OwnedFd, NetError> {
        let fd = open_tap(spec)?;
        let attached = match self.require_kcore("bridge", bridge).await {
            Ok(br) => self.attach_tap(&spec.name, &br, mark, None).await,
            Err(e) => Err(e),
        };
        if let Err(e) = attached {
            drop(fd);
            if spec.persist
                && let Err(cleanup) = set_persist(&spec.name, false)
            {
                tracing::warn!(tap = %spec.name, error = %cleanup, "could not remove the tap");
            }
            return Err(e);
        }
        Ok(fd)
    }

    /// Delete the kcore tap `name` (persistent or not, attached or not). Returns false if
    /// there was no such link; a link that is not a kcore tap is refused.
    pub async fn delete_tap(&self, name: &str) -> Result<bool, NetError> {
        let Some(link) = self.get(name).await? else {
            return Ok(false);
        };
        if link.kind.as_deref() != Some("tun") {
            return Err(NetError::invalid(
                "tap",
                format!("{name} is a {:?} link, not a tap", link.kind),
            ));
        }
        self.delete(name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_carries_name_and_flags() {
        let ifr = ifreq("ktap-x", libc::IFF_TAP | libc::IFF_NO_PI).expect("valid");
        let name: Vec<u8> = ifr.ifr_name.iter().map(|&c| c as u8).collect();
        assert_eq!(&name[..7], b"ktap-x\0");
        // SAFETY: the union's flags member was the one written by `ifreq`.
        let flags = unsafe { ifr.ifr_ifru.ifru_flags };
        assert_eq!(flags, 0x1002);
    }

    #[test]
    fn ifreq_refuses_long_names() {
        let err = ifreq("ktap-0123456789ab", libc::IFF_TAP).expect_err("too long");
        assert!(err.to_string().contains("at most 15"), "{err}");
        let err = open_tap(&TapSpec::new("ktap-0123456789ab")).expect_err("too long");
        assert!(matches!(err, NetError::InvalidName { .. }), "{err}");
    }

    #[test]
    fn ids_must_fit_an_int() {
        assert!(id_arg("tap owner", 1000).is_ok());
        assert!(id_arg("tap owner", u32::MAX).is_err());
    }
}

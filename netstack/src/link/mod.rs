//! Links through rtnetlink: a [`Netlink`] handle that creates kcore's bridges (fixed MAC,
//! MTU, up), enslaves an uplink, sets MTU and addresses, lists and deletes links (taps join
//! bridges through [`Netlink::attach_tap`], in [`crate::tap`]). Callers get operations,
//! never the raw rtnetlink handle.
//!
//! kcore marks every link it creates with the interface alias `kcore:<purpose>:<owner>`
//! ([`Mark`]) and names them with a prefix (`kbr-`, `ktap-`). The alias is the authority:
//! [`Netlink::list_kcore_links`] returns the links that carry one, and every call that
//! changes or removes a link refuses a link without one ([`NetError::NotKcore`]), so the
//! host's own interfaces are never touched (an uplink is only ever enslaved or released, a
//! host bridge only ever gets kcore's taps as ports).

use std::fmt;

use futures::TryStreamExt;
use rtnetlink::LinkUnspec;
use rtnetlink::packet_route::link::{
    LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage,
};

use crate::{MacAddr, NetError};

mod bridge;
pub mod counters;
mod names;

pub use counters::{LinkCounters, read_counters};
pub use names::{
    ALIAS_PREFIX, BRIDGE_PREFIX, MAX_IFNAME_LEN, MTU_RANGE, Mark, TAP_PREFIX, derive_name,
    validate_ifname,
};

/// A network interface as netlink reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// The link kind (`bridge`, `tun`, `veth`, ...); `None` for physical devices and `lo`.
    pub kind: Option<String>,
    /// The MAC address, if it is a valid unicast one (`None` for `lo`).
    pub mac: Option<MacAddr>,
    pub mtu: Option<u32>,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Has a carrier (IFF_LOWER_UP); a tap has none until its file descriptor is in use.
    pub carrier: bool,
    /// The index of the bridge this link is a port of.
    pub controller: Option<u32>,
    pub alias: Option<String>,
}

impl Link {
    /// The kcore mark in the alias, if any.
    pub fn mark(&self) -> Option<Mark> {
        self.alias.as_deref().and_then(Mark::from_alias)
    }

    /// True if the link carries a kcore mark.
    pub fn is_kcore(&self) -> bool {
        self.mark().is_some()
    }

    fn from_message(msg: LinkMessage) -> Self {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            kind: None,
            mac: None,
            mtu: None,
            up: msg.header.flags.contains(LinkFlags::Up),
            carrier: msg.header.flags.contains(LinkFlags::LowerUp),
            controller: None,
            alias: None,
        };
        for attr in msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name = n,
                LinkAttribute::Address(a) => link.mac = MacAddr::from_slice(&a).ok(),
                LinkAttribute::Mtu(m) => link.mtu = Some(m),
                LinkAttribute::Controller(c) if c != 0 => link.controller = Some(c),
                LinkAttribute::IfAlias(a) if !a.is_empty() => link.alias = Some(a),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let NlLinkInfo::Kind(kind) = info {
                            link.kind = Some(kind.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

/// What a kcore bridge looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSpec {
    /// Interface name (at most 15 bytes; by convention `kbr-<network>`).
    pub name: String,
    /// A fixed MAC: without one a bridge takes the address of its first port and changes
    /// it when ports come and go.
    pub mac: MacAddr,
    /// MTU; `None` keeps the kernel's default (1500).
    pub mtu: Option<u32>,
    pub mark: Mark,
}

/// The negative errno of a netlink error reply, as a positive errno.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| -c.get()),
        _ => None,
    }
}

/// A link that ports may join: a bridge.
pub(crate) fn check_bridge(br: &Link) -> Result<(), NetError> {
    if br.kind.as_deref() != Some("bridge") {
        return Err(NetError::invalid(
            "bridge",
            format!("{} is a {:?} link, not a bridge", br.name, br.kind),
        ));
    }
    Ok(())
}

fn check_mtu(mtu: u32) -> Result<(), NetError> {
    if MTU_RANGE.contains(&mtu) {
        Ok(())
    } else {
        Err(NetError::invalid(
            "MTU",
            format!(
                "{mtu} is outside {}..={}",
                MTU_RANGE.start(),
                MTU_RANGE.end()
            ),
        ))
    }
}

/// A route netlink connection. Must be created inside a tokio runtime (the connection
/// runs as a task of it); the socket belongs to the network namespace of the creating
/// thread. Dropping the handle stops the connection task.
pub struct Netlink {
    handle: rtnetlink::Handle,
    task: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for Netlink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Netlink").finish_non_exhaustive()
    }
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Netlink {
    /// Open a NETLINK_ROUTE socket and spawn its connection task on the current runtime.
    pub fn new() -> Result<Self, NetError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| {
            NetError::invalid("context", "Netlink::new must run inside a tokio runtime")
        })?;
        let (conn, handle, _) = rtnetlink::new_connection()
            .map_err(|e| NetError::io("open netlink socket", "NETLINK_ROUTE", e))?;
        let task = rt.spawn(conn);
        Ok(Netlink { handle, task })
    }

    /// The underlying rtnetlink handle, for this crate's requests only: callers get an
    /// operation (such as [`Netlink::attach_tap`]), never raw messages.
    pub(crate) fn handle(&self) -> &rtnetlink::Handle {
        &self.handle
    }

    /// The link named `name`, or `None` if there is none.
    pub async fn get(&self, name: &str) -> Result<Option<Link>, NetError> {
        validate_ifname(name)?;
        let mut stream = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match stream.try_next().await {
            Ok(msg) => Ok(msg.map(Link::from_message)),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(source) => Err(NetError::Netlink {
                op: "get link",
                name: name.to_string(),
                source,
            }),
        }
    }

    /// The link with index `index`, or `None` if there is none.
    pub async fn get_by_index(&self, index: u32) -> Result<Option<Link>, NetError> {
        let mut stream = self.handle.link().get().match_index(index).execute();
        match stream.try_next().await {
            Ok(msg) => Ok(msg.map(Link::from_message)),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(source) => Err(NetError::Netlink {
                op: "get link",
                name: format!("index {index}"),
                source,
            }),
        }
    }

    /// The link named `name`; [`NetError::LinkNotFound`] with `kind` if there is none.
    pub async fn require(&self, kind: &'static str, name: &str) -> Result<Link, NetError> {
        self.get(name).await?.ok_or_else(|| NetError::LinkNotFound {
            kind,
            name: name.to_string(),
        })
    }

    /// The link named `name`, which must exist and carry a kcore mark.
    pub async fn require_kcore(&self, kind: &'static str, name: &str) -> Result<Link, NetError> {
        let link = self.require(kind, name).await?;
        if !link.is_kcore() {
            return Err(NetError::NotKcore {
                name: link.name,
                alias: link.alias,
            });
        }
        Ok(link)
    }

    /// All links of the namespace.
    pub async fn list(&self) -> Result<Vec<Link>, NetError> {
        self.handle
            .link()
            .get()
            .execute()
            .map_ok(Link::from_message)
            .try_collect()
            .await
            .map_err(|source| NetError::Netlink {
                op: "list links",
                name: String::new(),
                source,
            })
    }

    /// The links that carry a kcore mark.
    pub async fn list_kcore_links(&self) -> Result<Vec<Link>, NetError> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .filter(Link::is_kcore)
            .collect())
    }

    async fn set_link(
        &self,
        op: &'static str,
        link: &Link,
        msg: LinkMessage,
    ) -> Result<(), NetError> {
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|source| NetError::Netlink {
                op,
                name: link.name.clone(),
                source,
            })
    }

    /// Set the MTU of a kcore link.
    pub async fn set_mtu(&self, name: &str, mtu: u32) -> Result<(), NetError> {
        check_mtu(mtu)?;
        let link = self.require_kcore("link", name).await?;
        let msg = LinkUnspec::new_with_index(link.index).mtu(mtu).build();
        self.set_link("set mtu", &link, msg).await
    }

    /// Bring a kcore link up.
    pub async fn set_up(&self, name: &str) -> Result<(), NetError> {
        let link = self.require_kcore("link", name).await?;
        let msg = LinkUnspec::new_with_index(link.index).up().build();
        self.set_link("set up", &link, msg).await
    }

    /// Mark a link as kcore's (for a link kcore created by other means, e.g. a tap made
    /// with the tun ioctl). A link already marked for someone else is refused.
    pub async fn set_mark(&self, name: &str, mark: &Mark) -> Result<(), NetError> {
        let link = self.require("link", name).await?;
        if let Some(alias) = &link.alias
            && Mark::from_alias(alias).as_ref() != Some(mark)
        {
            return Err(NetError::NotKcore {
                name: link.name,
                alias: link.alias.clone(),
            });
        }
        let msg = LinkUnspec::new_with_index(link.index)
            .alias(mark.alias())
            .build();
        self.set_link("set alias", &link, msg).await
    }

    /// Delete a kcore link. Returns false if there was no such link; a link without a
    /// kcore mark is refused.
    pub async fn delete(&self, name: &str) -> Result<bool, NetError> {
        let Some(link) = self.get(name).await? else {
            return Ok(false);
        };
        if !link.is_kcore() {
            return Err(NetError::NotKcore {
                name: link.name,
                alias: link.alias,
            });
        }
        self.delete_link(&link).await
    }

    async fn delete_link(&self, link: &Link) -> Result<bool, NetError> {
        match self.handle.link().del(link.index).execute().await {
            Ok(()) => {
                tracing::info!(link = %link.name, alias = ?link.alias, "deleted link");
                Ok(true)
            }
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(false),
            Err(source) => Err(NetError::Netlink {
                op: "delete link",
                name: link.name.clone(),
                source,
            }),
        }
    }

    /// Delete every kcore link, or only those whose mark has `owner`; ports (taps) go
    /// before bridges. Returns the names deleted.
    pub async fn delete_kcore_links(&self, owner: Option<&str>) -> Result<Vec<String>, NetError> {
        let mut links: Vec<Link> = self
            .list_kcore_links()
            .await?
            .into_iter()
            .filter(|l| owner.is_none() || l.mark().is_some_and(|m| Some(m.owner()) == owner))
            .collect();
        links.sort_by_key(|l| l.kind.as_deref() == Some("bridge"));
        let mut deleted = Vec::new();
        for link in links {
            if self.delete_link(&link).await? {
                deleted.push(link.name);
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::link::InfoKind;

    #[test]
    fn ifname_validation() {
        validate_ifname("kbr-default").expect("ok");
        validate_ifname("a23456789012345").expect("15 bytes ok");
        let err = validate_ifname("a234567890123456").expect_err("16 bytes");
        assert_eq!(
            err.to_string(),
            "invalid interface name \"a234567890123456\": 16 bytes long; Linux interface names are at most 15"
        );
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "a\tb"] {
            assert!(validate_ifname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn derived_names() {
        assert_eq!(
            derive_name(BRIDGE_PREFIX, "default").expect("ok"),
            "kbr-default"
        );
        let long = derive_name(TAP_PREFIX, "0f8e5c2a-1111-4444-8888-123456789abc/0").expect("ok");
        assert_eq!(long.len(), 15);
        assert!(long.starts_with(TAP_PREFIX));
        assert_eq!(
            long,
            derive_name(TAP_PREFIX, "0f8e5c2a-1111-4444-8888-123456789abc/0").expect("ok"),
            "stable"
        );
        assert_ne!(
            long,
            derive_name(TAP_PREFIX, "0f8e5c2a-1111-4444-8888-123456789abc/1").expect("ok")
        );
        // A key with characters the kernel refuses is hashed too.
        let odd = derive_name(BRIDGE_PREFIX, "a b").expect("ok");
        assert_eq!(odd.len(), 15);
        assert!(derive_name("a-very-long-prefix", "x").is_err());
    }

    #[test]
    fn marks_round_trip() {
        let m = Mark::new("tap", "vm-1234:0").expect("ok");
        assert_eq!(m.alias(), "kcore:tap:vm-1234:0");
        assert_eq!(Mark::from_alias(&m.alias()), Some(m.clone()));
        assert_eq!(m.purpose(), "tap");
        assert_eq!(m.owner(), "vm-1234:0");
        assert_eq!(Mark::from_alias("uplink to the lab"), None);
        assert_eq!(Mark::from_alias("kcore:"), None);
        assert_eq!(Mark::from_alias("kcore:bridge:"), None);
        assert!(Mark::new("Bridge", "x").is_err());
        assert!(Mark::new("br:x", "x").is_err());
        assert!(Mark::new("bridge", "a b").is_err());
        assert!(Mark::new("bridge", "x".repeat(250)).is_err());
    }

    #[test]
    fn mtu_bounds() {
        assert!(check_mtu(67).is_err());
        assert!(check_mtu(68).is_ok());
        assert!(check_mtu(9000).is_ok());
        assert!(check_mtu(65536).is_err());
    }

    #[test]
    fn link_from_message() {
        let mut msg = LinkMessage::default();
        msg.header.index = 7;
        msg.header.flags = LinkFlags::Up;
        msg.attributes = vec![
            LinkAttribute::IfName("kbr-x".into()),
            LinkAttribute::Address(vec![0x52, 0x54, 0, 1, 2, 3]),
            LinkAttribute::Mtu(9000),
            LinkAttribute::IfAlias("kcore:bridge:x".into()),
            LinkAttribute::LinkInfo(vec![NlLinkInfo::Kind(InfoKind::Bridge)]),
        ];
        let link = Link::from_message(msg);
        assert_eq!(link.index, 7);
        assert_eq!(link.name, "kbr-x");
        assert_eq!(link.kind.as_deref(), Some("bridge"));
        assert_eq!(
            link.mac.map(|m| m.to_string()).as_deref(),
            Some("52:54:00:01:02:03")
        );
        assert_eq!(link.mtu, Some(9000));
        assert!(link.up && !link.carrier);
        assert_eq!(link.controller, None);
        assert_eq!(link.mark(), Some(Mark::new("bridge", "x").expect("ok")));
    }
}

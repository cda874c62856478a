//! Who made a request to the controller.
//!
//! Over the local unix socket, the caller is the peer process: tonic accepts each
//! connection as a `tokio::net::UnixStream` and attaches its SO_PEERCRED credentials (uid,
//! gid, pid, read by the kernel when the client connected, so the client cannot lie about
//! them) to every request as `UdsConnectInfo`. The uid's supplementary groups come from
//! the group database (getgrouplist), on the controller's host where the uid lives. Over
//! mutual TLS, the caller is the client certificate the TLS layer verified: its CN and its
//! role (OU).
//!
//! The event of every change made through the API names the caller ([`Requester`]: the
//! caller, and the client program when the client names itself in the `kcore-client`
//! metadata), and the controller passes the caller to nodes as `kcore.v1.Caller`, so a node
//! reads only the host paths the caller may (see `hostpath.rs`).

use std::ffi::CString;
use std::fmt;

use nix::unistd::{Gid, Uid, User};
use tonic::transport::server::UdsConnectInfo;

use crate::auth;

/// The identity behind one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A process on this host, over the unix socket.
    Unix {
        uid: u32,
        /// The process's group when it connected.
        gid: u32,
        pid: Option<i32>,
        /// The user name of `uid`, if it has one.
        user: Option<String>,
        /// Every group of `uid` (the group database), `gid` included.
        groups: Vec<u32>,
    },
    /// A client certificate over mutual TLS.
    Certificate { name: String, role: String },
    /// Neither (a transport without credentials).
    Unknown,
}

impl Caller {
    /// The caller of `req`, from the connection it came in on.
    pub fn of<T>(req: &tonic::Request<T>) -> Caller {
        if let Some(cred) = req
            .extensions()
            .get::<UdsConnectInfo>()
            .and_then(|i| i.peer_cred)
        {
            return Caller::unix(cred.uid(), cred.gid(), cred.pid());
        }
        if let Some(leaf) = req.peer_certs().and_then(|c| c.first().cloned()) {
            return Caller::Certificate {
                name: auth::cn_of_cert(&leaf).unwrap_or_default(),
                role: auth::role_of_cert(&leaf)
                    .map(|r| r.to_string())
                    .unwrap_or_default(),
            };
        }
        Caller::Unknown
    }

    /// A local process: its user name and groups looked up here.
    pub fn unix(uid: u32, gid: u32, pid: Option<i32>) -> Caller {
        let user = User::from_uid(Uid::from_raw(uid)).ok().flatten();
        let mut groups = vec![gid];
        if let Some(u) = &user
            && let Ok(name) = CString::new(u.name.as_str())
        {
            match nix::unistd::getgrouplist(&name, u.gid) {
                Ok(gs) => groups.extend(gs.into_iter().map(Gid::as_raw)),
                Err(e) => tracing::warn!(uid, error = %e, "cannot list the groups of the caller"),
            }
        }
        groups.sort_unstable();
        groups.dedup();
        Caller::Unix {
            uid,
            gid,
            pid,
            user: user.map(|u| u.name),
            groups,
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Unix {
                uid, user: Some(u), ..
            } => write!(f, "uid {uid} ({u}) on the local socket"),
            Caller::Unix { uid, .. } => write!(f, "uid {uid} on the local socket"),
            Caller::Certificate { name, role } => write!(f, "{name} ({role} certificate)"),
            Caller::Unknown => f.write_str("an unidentified caller"),
        }
    }
}

/// The request metadata a client may name itself with (e.g. `kcore-mcp/0.1.0`).
pub const CLIENT_METADATA: &str = "kcore-client";

/// The longest client name kept; longer ones are cut.
const CLIENT_MAX: usize = 64;

/// Who asked for a change, as its event names them: the caller the transport authenticated
/// and, when the client says which program it is (metadata `kcore-client`), that name. The
/// name is the client's own claim: it says how a change was made, never who may make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    pub caller: Caller,
    /// The client program, as it named itself (printable ASCII, at most 64 characters).
    pub client: Option<String>,
}

impl Requester {
    /// The requester of `req`: its caller and the client it names.
    pub fn of<T>(req: &tonic::Request<T>) -> Requester {
        let client = req
            .metadata()
            .get(CLIENT_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(client_name);
        Requester {
            caller: Caller::of(req),
            client,
        }
    }
}

impl fmt::Display for Requester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.caller)?;
        match &self.client {
            Some(client) => write!(f, " via {client}"),
            None => Ok(()),
        }
    }
}

/// A client's name as events show it: printable ASCII only (anything else becomes `?`),
/// at most [`CLIENT_MAX`] characters; `None` when nothing is left.
fn client_name(raw: &str) -> Option<String> {
    let name: String = raw
        .trim()
        .chars()
        .take(CLIENT_MAX)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requester_names_the_client_it_says_it_is() {
        let mut req = tonic::Request::new(());
        req.metadata_mut().insert(
            CLIENT_METADATA,
            tonic::metadata::MetadataValue::from_static("kcore-mcp/0.1.0"),
        );
        let r = Requester::of(&req);
        assert_eq!(r.client.as_deref(), Some("kcore-mcp/0.1.0"));
        assert_eq!(r.caller, Caller::Unknown);
        assert_eq!(r.to_string(), "an unidentified caller via kcore-mcp/0.1.0");
        let plain = Requester::of(&tonic::Request::new(()));
        assert_eq!(plain.to_string(), "an unidentified caller");
    }

    #[test]
    fn client_names_are_printable_and_bounded() {
        assert_eq!(client_name("  "), None);
        assert_eq!(client_name("a\tb").as_deref(), Some("a?b"));
        assert_eq!(client_name("a\u{7f}b").as_deref(), Some("a?b"));
        assert_eq!(
            client_name(&"x".repeat(100)).map(|s| s.len()),
            Some(CLIENT_MAX)
        );
    }

    #[test]
    fn root_is_named_and_has_its_groups() {
        let c = Caller::unix(0, 0, Some(1));
        let Caller::Unix { user, groups, .. } = &c else {
            panic!("{c:?}");
        };
        assert_eq!(user.as_deref(), Some("root"));
        assert!(groups.contains(&0), "{groups:?}");
        assert_eq!(c.to_string(), "uid 0 (root) on the local socket");
    }
}

//! Which tools this server offers: the flags it was started with, under the ceiling of the
//! identity it calls kcore with.
//!
//! Every tool has an [`Access`] level. Read tools are always offered; write tools only with
//! `--allow-write`; destructive ones (delete, force stop, drain, QMP commands other than
//! `query-*`) only with `--allow-destructive` too. Above the flags sits the [`Ceiling`]:
//! kcored decides what a caller may do by the role in its client certificate (`OU=admin` or
//! `OU=viewer`, see kcored/src/auth.rs), and a tool is offered only if every kcored method
//! it calls is one that role may call. So with a viewer certificate no tool that changes
//! anything exists, whatever the flags. On the local unix socket kcored checks no role
//! (the socket's file mode decides who connects), so there the flags alone decide.

use std::fmt;
use std::path::Path;

use kcore_client::endpoint::{Pem, Resolved, Target};
use x509_parser::prelude::{FromDer, X509Certificate};

/// What a tool does to the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Reads only.
    Read,
    /// Makes or changes something; nothing is lost.
    Write,
    /// May lose something: a VM, a guest's unsaved state, whatever a QMP command does.
    Destructive,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read-only",
            Access::Write => "write",
            Access::Destructive => "destructive",
        }
    }
}

/// The methods of `kcore.v1.KcoreService` a viewer certificate may call: kcored's
/// `READ_METHODS` (kcored/src/auth.rs; a test keeps the two the same).
pub const VIEWER_METHODS: &[&str] = &[
    "ListVMs",
    "GetVM",
    "ListNodes",
    "GetNodeStatus",
    "WatchEvents",
    "GetConsoleLog",
    "ListPools",
    "ListImages",
    "ListVolumes",
    "ListNetworks",
    "GetNetwork",
    "GetVMStats",
    "ListTemplates",
    "GetTemplate",
];

/// What the identity kcore-mcp calls kcore with may do there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ceiling {
    /// The local unix socket (or a plain endpoint): kcored checks no role.
    Local,
    /// A client certificate with the admin role: everything.
    Admin { name: String },
    /// A client certificate with the viewer role: [`VIEWER_METHODS`] only.
    Viewer { name: String },
}

impl Ceiling {
    /// Whether this identity may call every one of `methods`.
    pub fn permits(&self, methods: &[&str]) -> bool {
        match self {
            Ceiling::Local | Ceiling::Admin { .. } => true,
            Ceiling::Viewer { .. } => methods.iter().all(|m| VIEWER_METHODS.contains(m)),
        }
    }
}

impl fmt::Display for Ceiling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ceiling::Local => f.write_str("the local socket (no role check)"),
            Ceiling::Admin { name } => write!(f, "certificate {name} (role admin)"),
            Ceiling::Viewer { name } => write!(f, "certificate {name} (role viewer, read-only)"),
        }
    }
}

/// Why the identity cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CeilingError {
    #[error(
        "an https endpoint needs a client certificate and key: set KCORE_CLIENT_CERT and \
         KCORE_CLIENT_KEY (or client_cert and client_key in ~/.config/kcore/config.toml)"
    )]
    NoCertificate,
    #[error("reading the client certificate {}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the client certificate: {0}")]
    Certificate(String),
}

/// The ceiling of the identity `endpoint` connects with.
pub fn ceiling_of(endpoint: &Resolved) -> Result<Ceiling, CeilingError> {
    match &endpoint.target {
        Target::Unix(_) | Target::Http(_) => Ok(Ceiling::Local),
        Target::Https { .. } => {
            let pem = match endpoint.tls.client_cert.as_ref() {
                Some(Pem::File(path)) => read(path)?,
                Some(Pem::Inline(text)) => text.as_bytes().to_vec(),
                None => return Err(CeilingError::NoCertificate),
            };
            ceiling_of_pem(&pem)
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CeilingError> {
    std::fs::read(path).map_err(|source| CeilingError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The ceiling of a PEM client certificate, read as kcored reads it: `O=kcore` and a single
/// `OU`, the role; the CN names it.
pub fn ceiling_of_pem(pem: &[u8]) -> Result<Ceiling, CeilingError> {
    let bad = |m: String| CeilingError::Certificate(m);
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|e| bad(format!("not a PEM certificate: {e}")))?;
    let (_, cert) =
        X509Certificate::from_der(&pem.contents).map_err(|e| bad(format!("not X.509: {e}")))?;
    let subject = cert.subject();
    let strings = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>| {
        it.filter_map(|a| a.as_str().ok())
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let org = strings(&mut subject.iter_organization());
    if org != ["kcore"] {
        return Err(bad(format!(
            "{subject} is not a kcore certificate (O=kcore)"
        )));
    }
    let name = strings(&mut subject.iter_common_name())
        .into_iter()
        .next()
        .unwrap_or_default();
    match strings(&mut subject.iter_organizational_unit()).as_slice() {
        [role] if role == "admin" => Ok(Ceiling::Admin { name }),
        [role] if role == "viewer" => Ok(Ceiling::Viewer { name }),
        [role] => Err(bad(format!(
            "{subject} has role {role}, which may not use kcore's API: use an admin or a \
             viewer certificate (kctl cert issue NAME --role viewer)"
        ))),
        _ => Err(bad(format!(
            "{subject} names no single role (OU=admin or OU=viewer)"
        ))),
    }
}

/// The flags and the ceiling together: which tools are offered.
#[derive(Debug, Clone)]
pub struct Policy {
    pub allow_write: bool,
    pub allow_destructive: bool,
    pub ceiling: Ceiling,
}

impl Policy {
    /// Why a tool of `access` that calls `methods` is not offered, or `None` if it is.
    pub fn refusal(&self, access: Access, methods: &[&str]) -> Option<String> {
        if !self.ceiling.permits(methods) {
            return Some(format!(
                "kcore-mcp calls kcore as {}, which may not call {}",
                self.ceiling,
                methods.join(", ")
            ));
        }
        match access {
            Access::Read => None,
            Access::Write if self.allow_write => None,
            Access::Destructive if self.allow_write && self.allow_destructive => None,
            Access::Write => Some(
                "it changes things, and kcore-mcp was started read-only (start it with \
                 --allow-write to offer it)"
                    .to_string(),
            ),
            Access::Destructive => Some(
                "it is destructive, and kcore-mcp was started without --allow-destructive \
                 (start it with --allow-write --allow-destructive to offer it)"
                    .to_string(),
            ),
        }
    }

    /// Whether a tool is offered.
    pub fn allows(&self, access: Access, methods: &[&str]) -> bool {
        self.refusal(access, methods).is_none()
    }

    /// One line for the log and the server's instructions.
    pub fn describe(&self) -> String {
        let level = if !self.ceiling.permits(&["CreateVM"]) || !self.allow_write {
            "read-only"
        } else if self.allow_destructive {
            "read, write and destructive tools"
        } else {
            "read and write tools (nothing destructive)"
        };
        format!("{level}; calling kcore as {}", self.ceiling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(o: &str, ous: &[&str], cn: &str) -> String {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, o);
        for ou in ous {
            dn.push(rcgen::DnType::OrganizationalUnitName, *ou);
        }
        dn.push(rcgen::DnType::CommonName, cn);
        p.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().expect("key");
        p.self_signed(&key).expect("cert").pem()
    }

    #[test]
    fn roles_as_kcored_reads_them() {
        let admin = cert("kcore", &["admin"], "ops");
        assert_eq!(
            ceiling_of_pem(admin.as_bytes()).expect("admin"),
            Ceiling::Admin { name: "ops".into() }
        );
        let viewer = cert("kcore", &["viewer"], "dash");
        assert_eq!(
            ceiling_of_pem(viewer.as_bytes()).expect("viewer"),
            Ceiling::Viewer {
                name: "dash".into()
            }
        );
        for (o, ous) in [
            ("kcore", &["node"][..]),
            ("other", &["admin"][..]),
            ("kcore", &[][..]),
        ] {
            let pem = cert(o, ous, "x");
            let err = ceiling_of_pem(pem.as_bytes()).expect_err("refused");
            assert!(matches!(err, CeilingError::Certificate(_)), "{err}");
        }
        assert!(ceiling_of_pem(b"garbage").is_err());
    }

    #[test]
    fn a_viewer_gets_no_tool_that_changes_anything_whatever_the_flags() {
        let viewer = Policy {
            allow_write: true,
            allow_destructive: true,
            ceiling: Ceiling::Viewer { name: "v".into() },
        };
        assert!(viewer.allows(Access::Read, &["ListVMs", "GetVM"]));
        assert!(!viewer.allows(Access::Read, &["ExecQMP"]));
        assert!(!viewer.allows(Access::Write, &["CreateVM"]));
        assert!(!viewer.allows(Access::Destructive, &["DeleteVM"]));
        let why = viewer
            .refusal(Access::Write, &["CreateVM"])
            .expect("refused");
        assert!(why.contains("role viewer"), "{why}");
        assert!(viewer.describe().starts_with("read-only"));
    }

    #[test]
    fn flags_open_write_then_destructive() {
        let mut p = Policy {
            allow_write: false,
            allow_destructive: false,
            ceiling: Ceiling::Local,
        };
        assert!(p.allows(Access::Read, &["ExecQMP"]));
        assert!(!p.allows(Access::Write, &["StartVM"]));
        assert!(
            p.refusal(Access::Write, &["StartVM"])
                .expect("refused")
                .contains("--allow-write")
        );
        p.allow_write = true;
        assert!(p.allows(Access::Write, &["StartVM"]));
        assert!(!p.allows(Access::Destructive, &["DeleteVM"]));
        p.allow_destructive = true;
        assert!(p.allows(Access::Destructive, &["DeleteVM"]));
        let admin = Policy {
            ceiling: Ceiling::Admin { name: "a".into() },
            ..p
        };
        assert!(admin.allows(Access::Destructive, &["ExecQMP"]));
    }

    #[test]
    fn the_viewer_methods_are_kcoreds() {
        let auth = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kcored/src/auth.rs");
        let source = std::fs::read_to_string(&auth).expect("kcored/src/auth.rs");
        let list = source
            .split_once("pub const READ_METHODS: &[&str] = &[")
            .and_then(|(_, rest)| rest.split_once("];"))
            .map(|(list, _)| list)
            .expect("READ_METHODS in kcored/src/auth.rs");
        let methods: Vec<&str> = list.split('"').skip(1).step_by(2).collect();
        assert_eq!(methods, VIEWER_METHODS);
    }
}

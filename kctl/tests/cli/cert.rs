//! `kctl cert`.

use super::common::texts::*;
use super::common::*;

#[test]
fn list_and_revoke() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["cert", "list"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("SERIAL "), "{out}");
    assert!(lines[3].starts_with("7be41a0c95  ops"), "{out}");
    assert!(lines[3].ends_with("  -"), "not revoked: {out}");

    assert_eq!(
        ok(&server.kctl(&["cert", "revoke", "ops"])),
        "Revoked viewer certificate 7be41a0c95 of ops\n"
    );
    assert_eq!(
        ok(&server.kctl(&["cert", "revoke", "--serial", "5A1C93E07B"])),
        "Revoked admin certificate 5a1c93e07b of admin\n"
    );
    let err = failed(&server.kctl(&["cert", "revoke", "nobody"]));
    assert_eq!(
        err,
        format!("Error: {} (NotFound)\n", NO_CERT_NAMED.fill(&["nobody"]))
    );
    let err = failed(&server.kctl(&["cert", "revoke", "controller"]));
    assert_eq!(
        err,
        format!(
            "Error: {} (FailedPrecondition)\n",
            CONTROLLER_CERT.fill(&["3f08d2c4e1"])
        )
    );
}

#[test]
fn issue_writes_the_files() {
    let server = Server::unix();
    let out_dir = server.dir.path().join("alice");
    let out = ok(&server.kctl(&[
        "cert",
        "issue",
        "alice",
        "--role",
        "viewer",
        "--out",
        out_dir.to_str().expect("utf-8"),
    ]));
    let files = ["alice.crt", "alice.key", "ca.crt"].map(|f| out_dir.join(f));
    assert_eq!(
        out,
        files
            .iter()
            .map(|f| format!("{}\n", f.display()))
            .collect::<String>()
    );
    for f in &files {
        let pem = std::fs::read_to_string(f).expect("pem");
        assert!(pem.starts_with("-----BEGIN "), "{}: {pem}", f.display());
    }
    // Never over an existing pair.
    let err = failed(&server.kctl(&[
        "cert",
        "issue",
        "alice",
        "--role",
        "admin",
        "--out",
        out_dir.to_str().expect("utf-8"),
    ]));
    assert!(err.contains("alice.crt exists"), "{err}");
}

//! `kctl image`.

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use super::common::*;

#[test]
fn image_import_without_a_tty_prints_only_the_result() {
    let server = Server::unix();
    // A file on this machine, given relative to the working directory: sent canonical.
    std::fs::write(server.dir.path().join("debian.qcow2"), b"QFI").expect("image file");
    let output = server.kctl(&[
        "image",
        "import",
        "debian-12",
        "./debian.qcow2",
        "--sha256",
        &SHA.to_uppercase(),
    ]);
    assert_eq!(
        ok(&output),
        "Imported image debian-12 (qcow2, 2.0 GiB virtual, sha256 0123456789ab...)\n"
    );
    assert_eq!(text(&output.stderr), "", "no progress without a TTY");

    let json: serde_json::Value = serde_json::from_str(&ok(&server.kctl(&[
        "image",
        "import",
        "unsized",
        "https://example.com/alpine.img",
        "--node",
        "node-2",
        "--pool",
        "fast",
        "-o",
        "json",
    ])))
    .expect("json");
    assert_eq!(json["name"], "unsized");
    assert_eq!(json["node"], "node-2");
    assert_eq!(json["pool"], "fast");
    assert_eq!(json["virtual_size"], (2 * GIB).to_string());
    assert_eq!(json["sha256"], SHA);

    let imports = recorded(&server.mock.imports);
    assert_eq!(imports.len(), 2);
    let canonical = server
        .dir
        .path()
        .join("debian.qcow2")
        .canonicalize()
        .expect("canonical");
    assert_eq!(imports[0].source, canonical.to_string_lossy());
    assert_eq!(imports[0].sha256, SHA, "lowercased");
    assert_eq!(
        (imports[0].node.as_str(), imports[0].pool.as_str()),
        ("", "")
    );
    assert_eq!(imports[1].source, "https://example.com/alpine.img");
    assert_eq!(imports[1].sha256, "");
    assert_eq!(imports[1].node, "node-2");
    assert_eq!(imports[1].pool, "fast");
}

#[test]
fn image_import_error_mid_stream() {
    let server = Server::unix();
    let output = server.kctl(&["image", "import", "broken", "/srv/images/x.qcow2"]);
    let err = failed(&output);
    assert_eq!(
        err,
        format!("Error: sha256 of /srv/images/x.qcow2 is {SHA}, not  (InvalidArgument)\n")
    );
    assert_eq!(text(&output.stdout), "");
    let output = server.kctl(&["image", "import", "x", "y", "--sha256", "abc"]);
    assert_eq!(output.status.code(), Some(2), "a usage error");
    let err = text(&output.stderr);
    assert!(err.contains("is not a sha256 (64 hex digits)"), "{err}");
}

#[test]
fn image_import_on_a_tty_draws_progress_on_stderr() {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};

    let server = Server::unix();
    let pty = nix::pty::openpty(None, None).expect("openpty");
    // Non-blocking, so draining stops at the end of what kctl drew (the test keeps the
    // slave open, so the master never reports EOF).
    let flags = fcntl(&pty.master, FcntlArg::F_GETFL).expect("F_GETFL");
    fcntl(
        &pty.master,
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )
    .expect("F_SETFL");
    let mut command = server.command(&["image", "import", "debian-12", "/srv/d.qcow2"]);
    command
        .env("TERM", "xterm")
        .stderr(Stdio::from(pty.slave.try_clone().expect("dup slave")));
    let child = command.spawn().expect("spawn");
    let output = wait(child, Duration::from_secs(20));
    // What kctl drew is far less than a pty buffers, so reading after the exit is enough.
    let mut master = std::fs::File::from(pty.master);
    let mut drawn = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        drawn.extend_from_slice(&buf[..n]);
    }
    assert_eq!(
        ok(&output),
        "Imported image debian-12 (qcow2, 2.0 GiB virtual, sha256 0123456789ab...)\n"
    );
    let drawn = text(&drawn);
    assert!(drawn.contains("Importing debian-12"), "{drawn:?}");
    assert!(drawn.contains("/2.00 GiB"), "{drawn:?}");
}

#[test]
fn image_list_and_delete() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["image", "list"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "NAME       NODE    POOL     FORMAT    VIRTUAL     ACTUAL  SHA256",
            "debian-12  node-1  default  qcow2     2.0 GiB  700.0 MiB  0123456789ab",
            "alpine     node-1  fast     raw     128.0 MiB  128.0 MiB  -",
        ]
    );
    let yaml: serde_json::Value =
        serde_yaml::from_str(&ok(&server.kctl(&["image", "ls", "-o", "yaml"]))).expect("yaml");
    assert_eq!(yaml["images"][0]["sha256"], SHA);

    assert_eq!(
        ok(&server.kctl(&[
            "image",
            "delete",
            "debian-12",
            "--node",
            "node-1",
            "--pool",
            "default"
        ])),
        "Deleted image debian-12\n"
    );
    assert_eq!(
        ok(&server.kctl(&["image", "rm", "debian-12", "-o", "json"])),
        "{}\n"
    );
    let err = failed(&server.kctl(&["image", "delete", "nope"]));
    assert_eq!(err, "Error: image \"nope\" not found (NotFound)\n");
    let deletes = recorded(&server.mock.image_deletes);
    assert_eq!(
        deletes
            .iter()
            .map(|d| (d.name.as_str(), d.node.as_str(), d.pool.as_str()))
            .collect::<Vec<_>>(),
        [("debian-12", "node-1", "default"), ("debian-12", "", "")]
    );
}

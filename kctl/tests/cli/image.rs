//! `kctl image`.

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use super::common::texts::*;
use super::common::*;

#[test]
fn image_import_without_a_tty_prints_only_the_result() {
    let server = Server::unix();
    // A file on this machine, given relative to the working directory: sent canonical.
    std::fs::write(
        server.dir.path().join("debian.raw"),
        vec![0u8; MIB as usize],
    )
    .expect("image file");
    let output = server.kctl(&[
        "image",
        "import",
        "debian-13",
        "./debian.raw",
        "--sha256",
        &ZEROS_1M_SHA.to_uppercase(),
    ]);
    assert_eq!(
        ok(&output),
        "Imported image debian-13 (raw, 1.0 MiB virtual, sha256 30e14955ebf1...)\n"
    );
    assert_eq!(text(&output.stderr), "", "no progress without a TTY");

    // From a URL that does not say its length.
    let json: serde_json::Value = serde_json::from_str(&ok(&server.kctl(&[
        "image", "import", "tiny", TINY_URL, "--node", "node-1", "--pool", "default", "-o", "json",
    ])))
    .expect("json");
    assert_eq!(json["name"], "tiny");
    assert_eq!(json["node"], "node-1");
    assert_eq!(json["pool"], "default");
    assert_eq!(json["virtual_size"], MIB.to_string());
    assert_eq!(json["sha256"], ZEROS_1M_SHA);

    let imports = recorded(&server.records.imports);
    assert_eq!(imports.len(), 2);
    let canonical = server
        .dir
        .path()
        .join("debian.raw")
        .canonicalize()
        .expect("canonical");
    assert_eq!(imports[0].source, canonical.to_string_lossy());
    assert_eq!(imports[0].sha256, ZEROS_1M_SHA, "lowercased");
    assert_eq!(
        (imports[0].node.as_str(), imports[0].pool.as_str()),
        ("", "")
    );
    assert_eq!(imports[1].source, TINY_URL);
    assert_eq!(imports[1].sha256, "");
    assert_eq!(imports[1].node, "node-1");
    assert_eq!(imports[1].pool, "default");
}

#[test]
fn image_import_errors() {
    let server = Server::unix();
    // The checksum is known once every byte is in: after the progress.
    std::fs::write(server.dir.path().join("x.raw"), vec![0u8; MIB as usize]).expect("image");
    let output = server.kctl(&["image", "import", "broken", "x.raw", "--sha256", SHA]);
    assert_eq!(
        failed(&output),
        format!(
            "Error: {} (InvalidArgument)\n",
            SHA256_MISMATCH.fill(&["broken", SHA, ZEROS_1M_SHA])
        )
    );
    assert_eq!(text(&output.stdout), "");
    // Not a disk image.
    std::fs::write(server.dir.path().join("odd.raw"), vec![0u8; 1000]).expect("image");
    let reason = RAW_NOT_SECTORS.fill(&["1000"]);
    assert_eq!(
        failed(&server.kctl(&["image", "import", "odd", "odd.raw"])),
        format!(
            "Error: {} (InvalidArgument)\n",
            IMAGE_REFUSED.fill(&["odd", &reason])
        )
    );
    // A path that is not there, a URL that is not, a name in use, a pool without images.
    let os = "No such file or directory (os error 2)";
    assert_eq!(
        failed(&server.kctl(&["image", "import", "x", "/srv/images/x.qcow2"])),
        format!(
            "Error: {} (InvalidArgument)\n",
            HOST_FILE_UNREADABLE.fill(&["image source", "/srv/images/x.qcow2", os])
        )
    );
    let url = "https://images.example/nope.img";
    let reason = HTTP_STATUS.fill(&["404", "Not Found"]);
    assert_eq!(
        failed(&server.kctl(&["image", "import", "x", url])),
        format!(
            "Error: {} (Unavailable)\n",
            DOWNLOAD_FAILED.fill(&[url, &reason])
        )
    );
    assert_eq!(
        failed(&server.kctl(&["image", "import", "debian-12", TINY_URL])),
        format!(
            "Error: {} (AlreadyExists)\n",
            IMAGE_EXISTS.fill(&["debian-12", "default"])
        )
    );
    assert_eq!(
        failed(&server.kctl(&["image", "import", "x", TINY_URL, "--pool", "fast"])),
        format!(
            "Error: {} (InvalidArgument)\n",
            NOT_AN_IMAGE_POOL.fill(&["fast"])
        )
    );
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
    let mut command = server.command(&["image", "import", "debian-13", BIG_URL]);
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
        "Imported image debian-13 (raw, 2.0 GiB virtual, sha256 a7c744c13cc1...)\n"
    );
    let drawn = text(&drawn);
    assert!(drawn.contains("Importing debian-13"), "{drawn:?}");
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
            "alpine     node-1  default  raw     128.0 MiB  128.0 MiB  -",
            "debian-12  node-1  default  qcow2     2.0 GiB  700.0 MiB  0123456789ab",
        ]
    );
    let yaml: serde_json::Value =
        serde_yaml::from_str(&ok(&server.kctl(&["image", "ls", "-o", "yaml"]))).expect("yaml");
    assert_eq!(yaml["images"][1]["sha256"], SHA);

    assert_eq!(
        ok(&server.kctl(&[
            "image", "delete", "alpine", "--node", "node-1", "--pool", "default"
        ])),
        "Deleted image alpine\n"
    );
    assert_eq!(
        ok(&server.kctl(&["image", "rm", "alpine", "-o", "json"])),
        "{}\n"
    );
    let err = failed(&server.kctl(&["image", "delete", "nope"]));
    assert_eq!(
        err,
        format!("Error: {} (NotFound)\n", NO_SUCH.fill(&["image", "nope"]))
    );
    // web's boot disk is a clone of debian-12.
    let err = failed(&server.kctl(&["image", "delete", "debian-12"]));
    assert_eq!(
        err,
        format!(
            "Error: {} (FailedPrecondition)\n",
            IMAGE_IN_USE.fill(&["debian-12", "web-root"])
        )
    );
    let deletes = recorded(&server.records.image_deletes);
    assert_eq!(
        deletes
            .iter()
            .map(|d| (d.name.as_str(), d.node.as_str(), d.pool.as_str()))
            .collect::<Vec<_>>(),
        [
            ("alpine", "node-1", "default"),
            ("alpine", "", ""),
            ("nope", "", ""),
            ("debian-12", "", "")
        ]
    );
}

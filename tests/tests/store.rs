//! The controller's store refuses what it does not understand: a real `kcored all-in-one`
//! started on a controller.db with a newer schema version, a dropped table or a damaged
//! page exits non-zero within seconds, says which file and what is wrong, and makes
//! nothing (no run dir, no socket, no VM or network dirs). A db of an older schema version
//! is backed up (0600) before it is migrated, and keeps its rows.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kcore_proto::v1 as pb;
use kcore_tests::{Daemon, bin, guest};
use rusqlite::Connection;

/// A controller.db made by this build's daemon, with one VM (defined, not started), as a
/// single file (checkpointed, out of WAL mode). Returns it and its schema version.
fn template(dir: &Path) -> (PathBuf, i64) {
    let mut d = Daemon::start();
    let g = guest();
    d.kctl(&[
        "vm",
        "create",
        "old",
        "--vcpu",
        "1",
        "--memory",
        "64",
        "--kernel",
        g.kernel.to_str().expect("utf8"),
        "--start=false",
    ])
    .expect_ok("vm create");
    d.kill9();
    let db = d.data_dir().join("controller.db");
    let c = Connection::open(&db).expect("open the daemon's db");
    c.pragma_update(None, "journal_mode", "DELETE")
        .expect("leave WAL");
    let version: i64 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("user_version");
    drop(c);
    let out = dir.join("template.db");
    std::fs::copy(&db, &out).expect("copy the db");
    (out, version)
}

/// Start `kcored all-in-one` on a data dir holding only `db` (as controller.db, changed by
/// `spoil`): it must exit non-zero within 10 s with each of `needles` on stderr, and make
/// nothing besides.
fn refused(template: &Path, spoil: impl FnOnce(&Path), needles: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let run = dir.path().join("run");
    std::fs::create_dir(&data).expect("data dir");
    let db = data.join("controller.db");
    std::fs::copy(template, &db).expect("copy");
    spoil(&db);
    let mut child = Command::new(bin("kcored"))
        .arg("all-in-one")
        .arg("--data-dir")
        .arg(&data)
        .arg("--run-dir")
        .arg(&run)
        .args(["--accel", "tcg", "--node-name", "node1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kcored");
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "kcored still runs after 10 s on a bad db:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "kcored exited 0: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "stderr lacks {n:?}:\n{stderr}");
    }
    // Only the locks the daemon takes first of all (one daemon per dir) are there: no
    // socket, no VM or network state.
    let ls = |dir: &Path| -> Vec<String> {
        let mut left: Vec<String> = std::fs::read_dir(dir)
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        left.sort();
        left
    };
    assert_eq!(
        ls(&run),
        ["kcored.lock"],
        "kcored made files in the run dir"
    );
    assert_eq!(
        ls(&data),
        ["controller.db", "kcored.lock"],
        "kcored made files in the data dir"
    );
}

#[test]
fn a_db_it_does_not_understand_stops_the_daemon_before_it_makes_anything() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (template, current) = template(tmp.path());

    // A newer kcored's db.
    let db_name = "controller.db";
    refused(
        &template,
        |db| {
            Connection::open(db)
                .expect("open")
                .pragma_update(None, "user_version", 999)
                .expect("set version");
        },
        &[
            db_name,
            "has schema version 999",
            &format!("this kcored knows versions 0 to {current}"),
            "a newer kcored wrote it",
        ],
    );

    // A table gone.
    refused(
        &template,
        |db| {
            Connection::open(db)
                .expect("open")
                .execute_batch("DROP TABLE networks")
                .expect("drop");
        },
        &[
            db_name,
            &format!("(schema version {current}) has no table networks"),
        ],
    );

    // A damaged page: the vms table's root page scribbled over.
    refused(
        &template,
        |db| {
            let c = Connection::open(db).expect("open");
            let root: i64 = c
                .query_row(
                    "SELECT rootpage FROM sqlite_master WHERE name = 'vms'",
                    [],
                    |r| r.get(0),
                )
                .expect("root page");
            let page: i64 = c
                .pragma_query_value(None, "page_size", |r| r.get(0))
                .expect("page size");
            drop(c);
            let mut bytes = std::fs::read(db).expect("read");
            let at = ((root - 1) * page) as usize;
            bytes[at..at + 64].fill(0xff);
            std::fs::write(db, bytes).expect("write");
        },
        &[db_name, "failed PRAGMA quick_check"],
    );
}

#[test]
fn an_older_db_is_backed_up_then_migrated_with_its_rows() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (template, current) = template(tmp.path());
    let old = current - 2;
    // The db as schema version 11 left it: without the last two migrations' changes.
    let d = Daemon::start_prepared(|data| {
        let db = data.join("controller.db");
        std::fs::copy(&template, &db).expect("copy");
        let c = Connection::open(&db).expect("open");
        // Undo migration 12 (the spec in the store's own schema, and the vcpus and memory
        // columns): the spec as the proto's JSON again.
        let kernel = guest().kernel.to_str().expect("utf8").to_string();
        c.execute(
            "UPDATE vms SET spec = json_object('vcpu', 1, 'memory_mb', 64, 'kernel', ?1)",
            [&kernel],
        )
        .expect("an old spec");
        c.execute_batch(
            "ALTER TABLE vms DROP COLUMN vcpus; ALTER TABLE vms DROP COLUMN memory_mib;",
        )
        .expect("drop the newest columns");
        // Undo migration 13: a network as the proto's JSON (a bridge network on a host
        // bridge that is not there: the node cannot put it in place, and says so).
        let net = pb::Network {
            name: "lan".into(),
            mode: pb::NetworkMode::Bridge as i32,
            bridge: "br-gone".into(),
            created_at: "2026-11-01T00:00:00.000Z".into(),
            ..Default::default()
        };
        c.execute(
            "INSERT INTO networks (name, def, created_at) VALUES ('lan', ?1, ?2)",
            [
                serde_json::to_string(&net).expect("json"),
                net.created_at.clone(),
            ],
        )
        .expect("an old network");
        c.pragma_update(None, "user_version", old)
            .expect("set version");
    });
    let nets = d
        .kctl(&["-o", "json", "network", "list"])
        .expect_ok("network list")
        .json();
    let lan = &nets["networks"][0];
    assert_eq!(
        (
            lan["name"].as_str(),
            lan["mode"].as_str(),
            lan["bridge"].as_str()
        ),
        (Some("lan"), Some("NETWORK_MODE_BRIDGE"), Some("br-gone")),
        "the network was read from the proto's JSON: {nets}"
    );
    let list = d
        .kctl(&["-o", "json", "vm", "list"])
        .expect_ok("vm list")
        .json();
    let names: Vec<&str> = list["vms"]
        .as_array()
        .expect("vms")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, ["old"], "the old row survived the migration");
    // Its spec was read from the proto's JSON into the store's own schema.
    let vm = d.vm("old");
    assert_eq!(
        vm["spec"]["kernel"],
        guest().kernel.to_str().expect("utf8"),
        "{vm}"
    );
    assert_eq!(
        (vm["vcpu"].as_u64(), vm["memory_mb"].as_u64()),
        (Some(1), Some(64))
    );
    let bak = d.data_dir().join(format!("controller.db.bak-v{old}"));
    let meta = std::fs::metadata(&bak).expect("the backup exists");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let b = Connection::open(&bak).expect("the backup opens");
    let v: i64 = b
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("user_version");
    assert_eq!(v, old);
    let name: String = b
        .query_row("SELECT name FROM vms", [], |r| r.get(0))
        .expect("the backup has the row");
    assert_eq!(name, "old");
    assert!(
        d.log().contains("backed up the store before migrating it"),
        "{}",
        d.log()
    );
}

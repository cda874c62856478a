//! Image import: local files and HTTP (a server on 127.0.0.1), checks, and cleanup.

mod common;

use common::*;
use kcore_storage::{StorageError, VolumeFormat};

const MIB: u64 = 1 << 20;

fn sha256sum(path: &std::path::Path) -> String {
    sh(&["sha256sum", p(path)])
        .split_whitespace()
        .next()
        .expect("sum")
        .to_string()
}

#[test]
fn import_local_qcow2_and_raw() {
    require_qemu();
    let (tmp, pool) = dir_pool();
    let src = make_qcow2(tmp.path(), "src.qcow2", "32M", 2);
    let sum = sha256sum(&src);
    let mut calls = Vec::new();
    let img = pool
        .images()
        .import(
            "debian-12",
            p(&src),
            Some(&sum.to_uppercase()),
            &mut |d, t| calls.push((d, t)),
        )
        .expect("import qcow2");
    assert_eq!(img.name, "debian-12");
    assert_eq!(img.format, VolumeFormat::Qcow2);
    assert_eq!(img.virtual_size, 32 * MIB);
    assert!(img.actual_size >= 2 * MIB);
    assert_eq!(img.sha256.as_deref(), Some(sum.as_str()));
    assert_eq!(img.path, pool.images().dir().join("debian-12.qcow2"));
    let len = std::fs::metadata(&src).expect("meta").len();
    assert_eq!(calls.last(), Some(&(len, Some(len))));
    assert!(calls.windows(2).all(|w| w[0].0 < w[1].0), "{calls:?}");

    let raw = tmp.path().join("disk.raw");
    std::fs::write(&raw, vec![7u8; MIB as usize]).expect("write raw");
    let r = pool
        .images()
        .import("rawimg", p(&raw), None, &mut |_, _| {})
        .expect("import raw");
    assert_eq!(r.format, VolumeFormat::Raw);
    assert_eq!(r.virtual_size, MIB);
    assert_eq!(r.sha256.as_deref(), Some(sha256sum(&raw).as_str()));

    // The checksum is stored beside the image and reported by the listing.
    let stored =
        std::fs::read_to_string(pool.images().dir().join("debian-12.sha256")).expect("sha file");
    assert_eq!(stored, format!("{sum}  debian-12.qcow2\n"));
    let listed = pool.images().list_images().expect("list");
    assert_eq!(listed, vec![img.clone(), r]);
    assert_eq!(
        entries(pool.images().dir()),
        [
            "debian-12.qcow2",
            "debian-12.sha256",
            "rawimg.raw",
            "rawimg.sha256"
        ]
    );

    // Names are unique across formats.
    let err = pool
        .images()
        .import("debian-12", p(&raw), None, &mut |_, _| {})
        .expect_err("duplicate");
    assert!(matches!(err, StorageError::AlreadyExists { .. }), "{err}");
    assert_eq!(pool.images().get("debian-12").expect("get"), img);
}

#[test]
fn refused_imports_leave_nothing_behind() {
    require_qemu();
    let (tmp, pool) = dir_pool();
    let dir = pool.images().dir().to_path_buf();

    // A text file: qemu-img calls it raw, the 512-byte rule refuses it.
    let text = tmp.path().join("notes.txt");
    std::fs::write(&text, "hello, this is not a disk\n").expect("write");
    let err = pool
        .images()
        .import("text", p(&text), None, &mut |_, _| {})
        .expect_err("text file");
    assert!(matches!(err, StorageError::ImageRefused { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("not a disk image") && msg.contains("512-byte sector"),
        "{msg}"
    );

    // Big enough but not whole sectors.
    let odd = tmp.path().join("odd.bin");
    std::fs::write(&odd, vec![1u8; 1000]).expect("write");
    let err = pool
        .images()
        .import("odd", p(&odd), None, &mut |_, _| {})
        .expect_err("odd size");
    assert!(err.to_string().contains("multiple of 512 bytes"), "{err}");

    // A checksum mismatch.
    let src = make_qcow2(tmp.path(), "src.qcow2", "8M", 1);
    let err = pool
        .images()
        .import("bad-sum", p(&src), Some(&"0".repeat(64)), &mut |_, _| {})
        .expect_err("mismatch");
    match &err {
        StorageError::ChecksumMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &"0".repeat(64));
            assert_eq!(actual, &sha256sum(&src));
        }
        other => panic!("unexpected {other}"),
    }
    // A malformed checksum is refused before anything is read.
    let err = pool
        .images()
        .import("bad-sum", p(&src), Some("abc"), &mut |_, _| {})
        .expect_err("malformed");
    assert!(matches!(err, StorageError::InvalidSha256(_)), "{err}");

    // Another format.
    let vmdk = tmp.path().join("disk.vmdk");
    sh(&["qemu-img", "create", "-q", "-f", "vmdk", p(&vmdk), "1M"]);
    let err = pool
        .images()
        .import("vmdk", p(&vmdk), None, &mut |_, _| {})
        .expect_err("vmdk");
    assert!(
        matches!(err, StorageError::UnsupportedFormat { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("vmdk"), "{err}");

    // A qcow2 with a backing file (could point a guest at a host file).
    let overlay = tmp.path().join("overlay.qcow2");
    sh(&[
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "raw",
        "-b",
        "/etc/hostname",
        p(&overlay),
        "1M",
    ]);
    let err = pool
        .images()
        .import("overlay", p(&overlay), None, &mut |_, _| {})
        .expect_err("backing file");
    assert!(err.to_string().contains("backing file"), "{err}");

    // A missing source.
    let err = pool
        .images()
        .import("missing", "/nonexistent/kcore.img", None, &mut |_, _| {})
        .expect_err("missing");
    assert!(matches!(err, StorageError::Io { .. }), "{err}");

    assert_eq!(entries(&dir), Vec::<String>::new());
    assert!(pool.images().list_images().expect("list").is_empty());
}

#[test]
fn http_import() {
    require_qemu();
    let (tmp, pool) = dir_pool();
    let src = make_qcow2(tmp.path(), "src.qcow2", "64M", 4);
    let body = std::fs::read(&src).expect("read");
    let sum = sha256sum(&src);
    let (url, server) = serve_once(Serve::Full(body.clone()));
    let mut calls = Vec::new();
    let img = pool
        .images()
        .import("web", &url, Some(&sum), &mut |d, t| calls.push((d, t)))
        .expect("http import");
    server.join().expect("server");
    assert_eq!(img.format, VolumeFormat::Qcow2);
    assert_eq!(img.virtual_size, 64 * MIB);
    assert_eq!(img.sha256.as_deref(), Some(sum.as_str()));
    let total = body.len() as u64;
    assert!(calls.len() > 1, "several progress calls: {calls:?}");
    assert!(calls.windows(2).all(|w| w[0].0 < w[1].0), "{calls:?}");
    assert!(calls.iter().all(|c| c.1 == Some(total)), "{calls:?}");
    assert_eq!(calls.last().map(|c| c.0), Some(total));
    assert_eq!(std::fs::read(&img.path).expect("read"), body);
}

#[test]
fn http_failures_leave_nothing_behind() {
    require_qemu();
    let (tmp, pool) = dir_pool();
    let src = make_qcow2(tmp.path(), "src.qcow2", "64M", 4);
    let body = std::fs::read(&src).expect("read");

    // The connection drops mid-way.
    let cut = body.len() / 2;
    let (url, server) = serve_once(Serve::Truncated(body.clone(), cut));
    let mut last = 0;
    let err = pool
        .images()
        .import("cut", &url, None, &mut |d, _| last = d)
        .expect_err("truncated");
    server.join().expect("server");
    assert!(matches!(err, StorageError::Download { .. }), "{err}");
    assert!(err.to_string().contains(&url), "{err}");
    assert!(last > 0 && last <= cut as u64, "got {last} of {cut}");

    // An HTTP error.
    let (url, server) = serve_once(Serve::NotFound);
    let err = pool
        .images()
        .import("missing", &url, None, &mut |_, _| {})
        .expect_err("404");
    server.join().expect("server");
    assert!(err.to_string().contains("HTTP 404"), "{err}");

    // Nobody listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let err = pool
        .images()
        .import(
            "refused",
            &format!("http://127.0.0.1:{port}/x"),
            None,
            &mut |_, _| {},
        )
        .expect_err("connection refused");
    assert!(matches!(err, StorageError::Download { .. }), "{err}");

    // A full download with the wrong checksum.
    let (url, server) = serve_once(Serve::Full(body));
    let err = pool
        .images()
        .import("wrong", &url, Some(&"f".repeat(64)), &mut |_, _| {})
        .expect_err("checksum");
    server.join().expect("server");
    assert!(
        matches!(err, StorageError::ChecksumMismatch { .. }),
        "{err}"
    );

    assert_eq!(entries(pool.images().dir()), Vec::<String>::new());
}

#[test]
fn stale_import_files_are_cleaned_up() {
    require_qemu();
    let (_tmp, pool) = dir_pool();
    let dir = pool.images().dir().to_path_buf();
    std::fs::write(dir.join(".import-abc123"), b"half an image").expect("write");
    std::fs::write(dir.join("keep.raw"), vec![0u8; 512]).expect("write");
    // Temporary files are never listed as images.
    let names: Vec<String> = pool
        .images()
        .list_images()
        .expect("list")
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["keep"]);
    assert_eq!(pool.images().cleanup_stale_imports().expect("cleanup"), 1);
    assert_eq!(entries(&dir), ["keep.raw"]);
    // An image placed by hand has no checksum.
    assert_eq!(pool.images().get("keep").expect("get").sha256, None);
}

//! The dir backend against the real qemu-img / qemu-io, in tempdirs.

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::*;
use kcore_storage::{
    Backend, DirBackend, MAX_VOLUME_BYTES, StorageError, SystemRunner, VolumeFormat,
};

const MIB: u64 = 1 << 20;

fn import_local(pool: &DirBackend, name: &str, path: &std::path::Path) -> kcore_storage::ImageInfo {
    pool.images()
        .import(name, p(path), None, &mut |_, _| {})
        .expect("import")
}

#[test]
fn create_qcow2_and_raw() {
    require_qemu();
    let (tmp, pool) = dir_pool();
    let q = pool
        .create_volume("disk-a", 64 * MIB, VolumeFormat::Qcow2)
        .expect("qcow2");
    assert_eq!(q.format, VolumeFormat::Qcow2);
    assert_eq!(q.virtual_size, 64 * MIB);
    assert!(q.actual_size < 4 * MIB, "qcow2 is thin: {}", q.actual_size);
    assert_eq!(q.backing, None);
    assert_eq!(
        q.path,
        tmp.path()
            .canonicalize()
            .expect("canon")
            .join("volumes/disk-a.qcow2")
    );
    let r = pool
        .create_volume("disk-b", 8 * MIB, VolumeFormat::Raw)
        .expect("raw");
    assert_eq!(r.format, VolumeFormat::Raw);
    assert_eq!(r.virtual_size, 8 * MIB);
    assert_eq!(std::fs::metadata(&r.path).expect("raw file").len(), 8 * MIB);
    // qcow2 is the default format.
    assert_eq!(VolumeFormat::default(), VolumeFormat::Qcow2);
    // Private whatever the umask: files 0600, the pool's directories 0700.
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&q.path), 0o600, "qcow2 volume");
    assert_eq!(mode(&r.path), 0o600, "raw volume");
    assert_eq!(mode(&tmp.path().join("volumes")), 0o700);
    assert_eq!(mode(&tmp.path().join("images")), 0o700);

    let names: Vec<String> = pool
        .list()
        .expect("list")
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["disk-a", "disk-b"]);
    assert_eq!(pool.info("disk-b").expect("info"), r);
    assert_eq!(pool.path("disk-a").expect("path"), q.path);

    // A name is taken whatever the format.
    for f in [VolumeFormat::Qcow2, VolumeFormat::Raw] {
        let err = pool.create_volume("disk-a", MIB, f).expect_err("dup");
        assert!(matches!(err, StorageError::AlreadyExists { .. }), "{err}");
    }
    // Sizes are rounded up to a sector.
    let odd = pool
        .create_volume("odd", 1000, VolumeFormat::Qcow2)
        .expect("odd");
    assert_eq!(odd.virtual_size, 1024);

    pool.delete("disk-a").expect("delete");
    assert!(!q.path.exists());
    assert!(matches!(
        pool.info("disk-a"),
        Err(StorageError::NotFound { .. })
    ));
    assert!(matches!(
        pool.delete("disk-a"),
        Err(StorageError::NotFound { .. })
    ));
}

#[test]
fn size_rules() {
    require_qemu();
    let (_tmp, pool) = dir_pool();
    let err = pool
        .create_volume("zero", 0, VolumeFormat::Qcow2)
        .expect_err("0");
    assert!(matches!(err, StorageError::InvalidSize(_)), "{err}");
    let err = pool
        .create_volume("huge", MAX_VOLUME_BYTES + 1, VolumeFormat::Qcow2)
        .expect_err("cap");
    assert!(err.to_string().contains("64 TiB"), "{err}");

    let free = pool.capacity().expect("capacity").free_bytes;
    assert!(free > 0 && free < MAX_VOLUME_BYTES / 2, "free {free}");
    // raw must fit in the free space...
    let err = pool
        .create_volume("big-raw", free + 1024 * MIB, VolumeFormat::Raw)
        .expect_err("raw too big");
    assert!(
        matches!(err, StorageError::InsufficientSpace { .. }),
        "{err}"
    );
    // ...qcow2 is thin and may overcommit (up to the cap).
    let q = pool
        .create_volume("big-qcow2", free + 1024 * MIB, VolumeFormat::Qcow2)
        .expect("thin qcow2");
    assert!(q.virtual_size > free);
    // Nothing half-made is left by the refusals.
    assert_eq!(entries(&pool.root().join("volumes")), ["big-qcow2.qcow2"]);
}

#[test]
fn resize_grows_and_refuses_to_shrink() {
    require_qemu();
    let (_tmp, pool) = dir_pool();
    pool.create_volume("q", 16 * MIB, VolumeFormat::Qcow2)
        .expect("create");
    pool.create_volume("r", 4 * MIB, VolumeFormat::Raw)
        .expect("create");
    assert_eq!(
        pool.resize("q", 32 * MIB).expect("grow").virtual_size,
        32 * MIB
    );
    assert_eq!(
        pool.resize("r", 8 * MIB).expect("grow").virtual_size,
        8 * MIB
    );
    // The same size is a no-op.
    assert_eq!(
        pool.resize("q", 32 * MIB).expect("same").virtual_size,
        32 * MIB
    );
    let err = pool.resize("q", 16 * MIB).expect_err("shrink");
    assert!(matches!(err, StorageError::ShrinkRefused { .. }), "{err}");
    assert!(err.to_string().contains("only grow"), "{err}");
    let err = pool.resize("r", MIB).expect_err("shrink");
    assert!(matches!(err, StorageError::ShrinkRefused { .. }), "{err}");
    assert_eq!(pool.info("q").expect("info").virtual_size, 32 * MIB);
    let free = pool.capacity().expect("capacity").free_bytes;
    let err = pool
        .resize("r", free + 1024 * MIB)
        .expect_err("raw growth beyond free space");
    assert!(
        matches!(err, StorageError::InsufficientSpace { .. }),
        "{err}"
    );
    assert!(matches!(
        pool.resize("missing", 64 * MIB),
        Err(StorageError::NotFound { .. })
    ));
}

#[test]
fn clones_are_instant_overlays_that_share_no_writes() {
    require_qemu();
    let (tmp, pool) = dir_pool();
    let src = make_qcow2(tmp.path(), "src.qcow2", "64M", 16);
    let image = import_local(&pool, "base", &src);
    assert!(image.actual_size > 16 * MIB);

    let start = Instant::now();
    let a = pool
        .clone_from_image(&image, "vm-a", None)
        .expect("clone a");
    let b = pool
        .clone_from_image(&image, "vm-b", Some(128 * MIB))
        .expect("clone b");
    let took = start.elapsed();
    assert!(took.as_secs() < 5, "two clones took {took:?}");
    for v in [&a, &b] {
        assert_eq!(v.format, VolumeFormat::Qcow2);
        assert_eq!(v.backing.as_deref(), Some("base"));
        assert!(
            v.actual_size < 2 * MIB,
            "an overlay, not a copy: {}",
            v.actual_size
        );
    }
    assert_eq!(a.virtual_size, 64 * MIB);
    assert_eq!(b.virtual_size, 128 * MIB);
    // The overlay names its backing file relative to itself.
    let raw_info = sh(&["qemu-img", "info", "-U", "--output=json", p(&a.path)]);
    assert!(
        raw_info.contains("\"backing-filename\": \"../images/base.qcow2\""),
        "{raw_info}"
    );

    // Both see the image's data.
    assert!(qemu_io(&a.path, "qcow2", "read -P 0xcd 1M 4k"));
    assert!(qemu_io(&b.path, "qcow2", "read -P 0xcd 1M 4k"));
    // A write into one clone is seen by neither the other nor the image.
    assert!(qemu_io(&a.path, "qcow2", "write -P 0xab 0 4k"));
    assert!(qemu_io(&a.path, "qcow2", "read -P 0xab 0 4k"));
    assert!(qemu_io(&b.path, "qcow2", "read -P 0 0 4k"));
    assert!(!qemu_io(&b.path, "qcow2", "read -P 0xab 0 4k"));
    assert!(qemu_io(&image.path, "qcow2", "read -P 0 0 4k"));

    // Smaller than the image: refused.
    let err = pool
        .clone_from_image(&image, "vm-c", Some(MIB))
        .expect_err("smaller than image");
    assert!(matches!(err, StorageError::ShrinkRefused { .. }), "{err}");
    assert!(!pool.root().join("volumes/vm-c.qcow2").exists());

    // An image of another pool: refused (this pool's in-use check could not see it).
    let (_tmp2, other) = dir_pool();
    let foreign = import_local(&other, "base", &src);
    let err = pool
        .clone_from_image(&foreign, "vm-d", None)
        .expect_err("foreign image");
    assert!(matches!(err, StorageError::ImageRefused { .. }), "{err}");
}

#[test]
fn image_in_use_cannot_be_deleted() {
    require_qemu();
    let (tmp, pool) = dir_pool();
    let src = make_qcow2(tmp.path(), "src.qcow2", "8M", 0);
    let image = import_local(&pool, "base", &src);
    import_local(&pool, "unused", &src);
    pool.clone_from_image(&image, "vm-1", None).expect("clone");
    pool.clone_from_image(&image, "vm-2", None).expect("clone");
    pool.create_volume("plain", MIB, VolumeFormat::Raw)
        .expect("plain");

    assert_eq!(pool.image_users("base").expect("users"), ["vm-1", "vm-2"]);
    let err = pool.delete_image("base").expect_err("in use");
    match &err {
        StorageError::ImageInUse { image, volumes } => {
            assert_eq!(image, "base");
            assert_eq!(volumes, &["vm-1", "vm-2"]);
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("vm-1, vm-2"), "{err}");
    assert!(image.path.exists());

    pool.delete_image("unused").expect("unused image goes");
    pool.delete("vm-1").expect("delete");
    assert!(pool.delete_image("base").is_err());
    pool.delete("vm-2").expect("delete");
    pool.delete_image("base").expect("no longer in use");
    assert!(pool.images().list_images().expect("list").is_empty());
    assert_eq!(entries(pool.images().dir()), Vec::<String>::new());
    assert!(matches!(
        pool.delete_image("base"),
        Err(StorageError::NotFound { .. })
    ));
}

#[test]
fn path_escapes_are_refused() {
    require_qemu();
    let (tmp, pool) = dir_pool();
    for bad in ["../x", "/etc/passwd", "..", ".", "a/b", ".hidden", ""] {
        let err = pool
            .create_volume(bad, MIB, VolumeFormat::Qcow2)
            .expect_err(bad);
        assert!(
            matches!(err, StorageError::InvalidName { .. }),
            "{bad}: {err}"
        );
        assert!(matches!(
            pool.info(bad),
            Err(StorageError::InvalidName { .. })
        ));
        assert!(matches!(
            pool.delete(bad),
            Err(StorageError::InvalidName { .. })
        ));
        assert!(matches!(
            pool.path(bad),
            Err(StorageError::InvalidName { .. })
        ));
        assert!(matches!(
            pool.resize(bad, 2 * MIB),
            Err(StorageError::InvalidName { .. })
        ));
        assert!(matches!(
            pool.images().import(bad, "/dev/null", None, &mut |_, _| {}),
            Err(StorageError::InvalidName { .. })
        ));
        assert!(matches!(
            pool.delete_image(bad),
            Err(StorageError::InvalidName { .. })
        ));
    }

    // A symlink planted in the pool that points outside it.
    let outside = tmp.path().join("outside.qcow2");
    sh(&["qemu-img", "create", "-q", "-f", "qcow2", p(&outside), "1M"]);
    let before = std::fs::read(&outside).expect("read");
    std::os::unix::fs::symlink(&outside, pool.root().join("volumes/evil.qcow2")).expect("symlink");
    std::os::unix::fs::symlink("/etc/passwd", pool.root().join("volumes/passwd.raw"))
        .expect("symlink");
    std::os::unix::fs::symlink("/etc/passwd", pool.root().join("images/passwd.raw"))
        .expect("symlink");
    for name in ["evil", "passwd"] {
        for err in [
            pool.info(name).expect_err("info"),
            pool.delete(name).expect_err("delete"),
            pool.resize(name, 8 * MIB).expect_err("resize"),
            pool.path(name).expect_err("path"),
            pool.create_volume(name, MIB, VolumeFormat::Qcow2)
                .expect_err("create"),
        ] {
            assert!(
                matches!(err, StorageError::PathEscape { .. }),
                "{name}: {err}"
            );
        }
    }
    assert!(matches!(
        pool.images().get("passwd"),
        Err(StorageError::PathEscape { .. })
    ));
    assert!(matches!(
        pool.delete_image("passwd"),
        Err(StorageError::PathEscape { .. })
    ));
    // The listing refuses too, rather than reporting a file outside the pool.
    assert!(matches!(pool.list(), Err(StorageError::PathEscape { .. })));
    assert_eq!(std::fs::read(&outside).expect("read"), before);
    assert!(std::fs::metadata("/etc/passwd").expect("passwd").len() > 0);

    // A pool whose volumes/ is a symlink out of the pool cannot be opened.
    let root2 = tmp.path().join("pool2");
    std::fs::create_dir(&root2).expect("mkdir");
    std::os::unix::fs::symlink(tmp.path(), root2.join("volumes")).expect("symlink");
    let err = DirBackend::open(&root2, Arc::new(SystemRunner)).expect_err("escaping volumes/");
    assert!(matches!(err, StorageError::PathEscape { .. }), "{err}");
}

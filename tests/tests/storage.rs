//! Storage end to end: an ext4 image imported through kctl, VMs booted with it as their
//! disk (direct kernel boot, root on /dev/vda), writes that survive a reboot, clones that
//! do not see each other's writes, data disks, volume listing, image-in-use protection,
//! deletion with and without --keep-disks, and imports that must fail cleanly.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kcore_tests::{Daemon, guest};

const BOOT: Duration = Duration::from_secs(90);

/// An ext4 filesystem image (qcow2) holding /hello.txt, built with mkfs.ext4 -d.
fn ext4_image(dir: &Path) -> PathBuf {
    let content = dir.join("rootfs");
    std::fs::create_dir_all(&content).expect("mkdir");
    std::fs::write(content.join("hello.txt"), "hello-from-the-image\n").expect("write");
    let raw = dir.join("root.raw");
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&content)
        .arg(&raw)
        .arg("64M")
        .output()
        .expect("mkfs.ext4 (apt-get install e2fsprogs)");
    assert!(
        out.status.success(),
        "mkfs.ext4: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let qcow = dir.join("root.qcow2");
    let out = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&qcow)
        .output()
        .expect("qemu-img (apt-get install qemu-utils)");
    assert!(
        out.status.success(),
        "qemu-img: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    qcow
}

/// A test-guest VM whose first disk is a clone of the image "rootfs", mounted on /mnt.
fn create_from_image(d: &Daemon, name: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--image", "rootfs"];
    args.extend_from_slice(extra);
    d.create_guest(name, "kcore.root=/dev/vda kcore.echo=off", &args)
}

fn volumes(d: &Daemon) -> Vec<serde_json::Value> {
    d.kctl(&["-o", "json", "volume", "list"])
        .expect_ok("volume list")
        .json()["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn vms_boot_from_disks_cloned_from_an_imported_image() {
    let d = Daemon::start();
    let img = ext4_image(d.dir.path());
    let sha = {
        let out = Command::new("sha256sum")
            .arg(&img)
            .output()
            .expect("sha256sum");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .expect("hash")
            .to_string()
    };
    let imported = d
        .kctl(&[
            "-o",
            "json",
            "image",
            "import",
            "rootfs",
            img.to_str().expect("utf8"),
            "--sha256",
            &sha,
        ])
        .expect_ok("image import")
        .json();
    assert_eq!(imported["format"], "qcow2", "{imported}");
    assert_eq!(imported["sha256"], sha.as_str());
    let pools = d
        .kctl(&["-o", "json", "pool", "list"])
        .expect_ok("pool list")
        .json();
    assert_eq!(pools["pools"][0]["name"], "default", "{pools}");

    // A VM whose first disk is a clone of the image, plus a 1 GiB data disk.
    let vm = create_from_image(&d, "disk-a", &["--disk", "default:1"]);
    assert_eq!(vm["status"], "VM_STATUS_RUNNING", "{vm}");
    let disks = vm["disks"].as_array().expect("disks");
    assert_eq!(disks.len(), 2, "{vm}");
    assert_eq!(disks[0]["image"], "rootfs");
    assert_eq!(disks[1]["device"], "vdb");
    assert_eq!(
        vm["storage_gb"], 2,
        "64 MiB root rounds up to 1 GiB, plus 1 GiB: {vm}"
    );
    d.wait_console("disk-a", "KCORE-ROOT-MOUNTED /dev/vda", 1, BOOT);
    d.type_in(
        "disk-a",
        "cat /mnt/hello.txt; [ -b /dev/vdb ] && echo has-data-disk",
    );
    d.wait_console("disk-a", "hello-from-the-image", 1, Duration::from_secs(20));
    d.wait_console("disk-a", "has-data-disk", 1, Duration::from_secs(20));
    // Write, reboot, and the file is still there.
    d.type_in(
        "disk-a",
        "echo persisted-$((1+1)) > /mnt/note; sync; echo synced-ok",
    );
    d.wait_console("disk-a", "synced-ok", 1, Duration::from_secs(20));
    d.kctl(&["vm", "reboot", "disk-a"]).expect_ok("reboot");
    d.wait_console("disk-a", "KCORE-ROOT-MOUNTED /dev/vda", 2, BOOT);
    d.type_in("disk-a", "cat /mnt/note");
    d.wait_console("disk-a", "persisted-2", 1, Duration::from_secs(20));

    // A second VM from the same image does not see the first one's write.
    create_from_image(&d, "disk-b", &[]);
    d.wait_console("disk-b", "KCORE-ROOT-MOUNTED /dev/vda", 1, BOOT);
    d.type_in("disk-b", "cat /mnt/note 2>/dev/null || echo no-note-here");
    d.wait_console("disk-b", "no-note-here", 1, Duration::from_secs(20));

    // Volumes show their VM and their backing image.
    let vols = volumes(&d);
    let root_a = vols
        .iter()
        .find(|v| v["name"] == "disk-a-root")
        .expect("disk-a-root");
    assert_eq!(root_a["vm"], "disk-a", "{root_a}");
    assert_eq!(root_a["backing"], "rootfs", "{root_a}");
    assert!(
        vols.iter()
            .any(|v| v["name"] == "disk-a-disk1" && v["vm"] == "disk-a")
    );

    // The image cannot go while volumes use it.
    d.kctl(&["image", "delete", "rootfs"]).expect_err(
        "delete image in use",
        &["disk-a-root", "FailedPrecondition"],
    );

    // Delete removes the VM's volumes; --keep-disks keeps them, without a VM.
    d.kctl(&["vm", "delete", "disk-a", "--force"])
        .expect_ok("delete");
    d.kctl(&["vm", "delete", "disk-b", "--force", "--keep-disks"])
        .expect_ok("delete keep");
    let vols = volumes(&d);
    assert!(
        !vols
            .iter()
            .any(|v| v["name"].as_str().is_some_and(|n| n.starts_with("disk-a"))),
        "{vols:?}"
    );
    let kept = vols
        .iter()
        .find(|v| v["name"] == "disk-b-root")
        .expect("kept volume");
    assert_eq!(kept["vm"], "", "{kept}");
}

/// Serve `body` once on 127.0.0.1; with `cut`, close after half of it.
fn serve_once(body: Vec<u8>, cut: bool) -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let n = if cut { body.len() / 2 } else { body.len() };
            let _ = s.write_all(&body[..n]);
        }
    });
    format!("http://{addr}/image.qcow2")
}

#[test]
fn bad_storage_input_is_refused_and_leaves_nothing() {
    let d = Daemon::start();
    let img = ext4_image(d.dir.path());
    let bytes = std::fs::read(&img).expect("read image");
    let images = |d: &Daemon| {
        d.kctl(&["-o", "json", "image", "list"])
            .expect_ok("image list")
            .json()["images"]
            .as_array()
            .map(|a| a.len())
            .unwrap_or(0)
    };
    let image_files = |d: &Daemon| {
        std::fs::read_dir(d.data_dir().join("pools/default/images"))
            .map(|r| r.count())
            .unwrap_or(0)
    };

    // Over http, with a wrong checksum: refused, nothing left.
    let url = serve_once(bytes.clone(), false);
    d.kctl(&["image", "import", "web", &url, "--sha256", &"0".repeat(64)])
        .expect_err("sha mismatch", &["sha256", "InvalidArgument"]);
    // Cut mid-way: refused, nothing left.
    let url = serve_once(bytes.clone(), true);
    d.kctl(&["image", "import", "web", &url])
        .expect_err("cut download", &["download", "Unavailable"]);
    // Not a disk image.
    let txt = d.dir.path().join("notes.txt");
    std::fs::write(&txt, "just text\n").expect("write");
    d.kctl(&["image", "import", "text", txt.to_str().expect("utf8")])
        .expect_err("text file", &["not a disk image", "InvalidArgument"]);
    // Names that try to leave the pool.
    d.kctl(&["image", "import", "../evil", img.to_str().expect("utf8")])
        .expect_err("bad name", &["InvalidArgument"]);
    assert_eq!(images(&d), 0);
    assert_eq!(image_files(&d), 0, "no half image left");

    // A good http import works.
    let url = serve_once(bytes, false);
    d.kctl(&["image", "import", "rootfs", &url])
        .expect_ok("http import");
    assert_eq!(images(&d), 1);

    let g = guest();
    let k = g.kernel.to_str().expect("utf8");
    let create = |extra: &[&str]| {
        let mut a = vec![
            "vm", "create", "bad", "--vcpu", "1", "--memory", "128", "--kernel", k,
        ];
        a.extend_from_slice(extra);
        d.kctl(&a)
    };
    create(&["--image", "nosuch"]).expect_err("unknown image", &["nosuch", "NotFound"]);
    create(&["--disk", "nopool:1"]).expect_err("unknown pool", &["nopool", "NotFound"]);
    create(&["--disk", "default:0"]).expect_err("size 0", &["InvalidArgument"]);
    create(&["--disk", "default:60000"]).expect_err("beyond free space", &["ResourceExhausted"]);
    create(&["--disk", "default:100000"])
        .expect_err("beyond the 64 TiB cap", &["64 TiB", "InvalidArgument"]);
    // A failure after the boot disk was cloned removes that clone too.
    create(&["--image", "rootfs", "--disk", "nopool:1"]).expect_err("late failure", &["NotFound"]);
    assert!(volumes(&d).is_empty(), "no volume left: {:?}", volumes(&d));
    let list = d
        .kctl(&["-o", "json", "vm", "list"])
        .expect_ok("list")
        .json();
    assert_eq!(list["vms"].as_array().map(|v| v.len()), Some(0), "{list}");
}

#[test]
fn a_vm_without_a_kernel_boots_through_seabios_from_its_image() {
    let d = Daemon::start();
    let disk = kcore_tests::boot_disk();
    d.kctl(&["image", "import", "bootable", disk.to_str().expect("utf8")])
        .expect_ok("import boot disk");
    let vm = d
        .kctl(&[
            "-o",
            "json",
            "vm",
            "create",
            "bios",
            "--vcpu",
            "1",
            "--memory",
            "128",
            "--image",
            "bootable",
            "--disk-size",
            "1",
            "--ready-pattern",
            "BOOTED-FROM-DISK",
        ])
        .expect_ok("create from a bootable image")
        .json();
    assert_eq!(vm["status"], "VM_STATUS_RUNNING", "{vm}");
    let id = vm["id"].as_str().expect("id");
    let argv = std::fs::read_to_string(d.run_dir().join("vms").join(id).join("qemu.argv"))
        .expect("qemu.argv");
    assert!(
        !argv.contains("-kernel") && !argv.contains("-bios"),
        "SeaBIOS, no kernel: {argv}"
    );
    assert!(argv.contains("bootindex=1"), "{argv}");
    // SeaBIOS -> syslinux from the disk -> the guest, whose cmdline came from the disk.
    d.wait_console("bios", "SYSLINUX", 1, BOOT);
    d.wait_console("bios", "BOOTED-FROM-DISK", 1, BOOT);
    let vm = d.vm("bios");
    let phases: Vec<&str> = vm["timeline"]["phases"]
        .as_array()
        .map(|p| p.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(phases.contains(&"guest_ready"), "{vm}");
    assert_eq!(vm["storage_gb"], 1, "{vm}");
}

//! bzImages made the way the kernel's build makes them: a set-up header, the payload
//! compressed by the same tools in the same formats as `scripts/Makefile.lib` and
//! `scripts/xz_wrap.sh` (lz4's legacy frame, xz with the x86 BCJ filter and CRC32; lower
//! levels than the kernel's, for speed), and the uncompressed size appended. The
//! compressors are the real ones (gzip, xz-utils, zstd, lz4, bzip2 must be installed:
//! `scripts/deps.sh` installs them). The real Debian kernel boots this way in
//! tests/tests/profiles.rs.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

use super::*;

/// A minimal x86-64 ELF image: a header, one PT_NOTE program header, the notes
/// (a Xen PHYS32_ENTRY note when `pvh`), then `filler` bytes of kernel-like data.
fn elf(pvh: bool, filler: usize) -> Vec<u8> {
    let mut notes = Vec::new();
    let mut note = |name: &[u8], kind: u32, desc: &[u8]| {
        notes.extend_from_slice(&(name.len() as u32).to_le_bytes());
        notes.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        notes.extend_from_slice(&kind.to_le_bytes());
        notes.extend_from_slice(name);
        notes.resize(notes.len().div_ceil(4) * 4, 0);
        notes.extend_from_slice(desc);
        notes.resize(notes.len().div_ceil(4) * 4, 0);
    };
    note(b"Xen\0", 6, b"linux\0");
    note(b"GNU\0", 3, &[0xab; 20]);
    if pvh {
        note(b"Xen\0", 18, &0x0100_0000_u32.to_le_bytes());
    }
    let mut e = vec![0u8; 64];
    e[..4].copy_from_slice(b"\x7fELF");
    e[4] = 2; // 64-bit
    e[5] = 1; // little-endian
    e[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
    e[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
    e[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
    e[56..58].copy_from_slice(&1u16.to_le_bytes()); // phnum
    let mut ph = vec![0u8; 56];
    ph[..4].copy_from_slice(&4u32.to_le_bytes()); // PT_NOTE
    ph[8..16].copy_from_slice(&120u64.to_le_bytes()); // offset: after the header
    ph[32..40].copy_from_slice(&(notes.len() as u64).to_le_bytes());
    e.extend_from_slice(&ph);
    e.extend_from_slice(&notes);
    // Compressible but not trivial, like code.
    let mut x = 0x2545_f491_u32;
    e.extend((0..filler).map(|i| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        if i % 3 == 0 {
            (x & 0x0f) as u8
        } else {
            (i / 7) as u8
        }
    }));
    e
}

/// `data` through one of the kernel's compressors, as `scripts/Makefile.lib` runs it.
fn compress(format: &str, data: &[u8]) -> Vec<u8> {
    let (tool, args, package): (&str, &[&str], &str) = match format {
        "gzip" => ("gzip", &["-n", "-f", "-9"], "gzip"),
        "xz" => (
            "xz",
            &["--check=crc32", "--x86", "--lzma2=,dict=32MiB"],
            "xz-utils",
        ),
        "zstd" => ("zstd", &["-19", "-q", "-c"], "zstd"),
        "lz4" => ("lz4", &["-l", "-9", "--favor-decSpeed", "-q", "-c"], "lz4"),
        "bzip2" => ("bzip2", &["-9"], "bzip2"),
        other => panic!("no compressor for {other}"),
    };
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {tool} ({e}): install the {package} package"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("compressor output");
    writer
        .join()
        .expect("writer")
        .expect("write to the compressor");
    assert!(out.status.success(), "{tool} failed");
    out.stdout
}

/// A bzImage around `payload`: 4 set-up sectors of header (boot protocol 2.15), then the
/// payload after 0x40 bytes of "decompressor", then the appended size.
fn bzimage(payload: &[u8], size: usize) -> Vec<u8> {
    let mut img = vec![0u8; 5 * 512];
    img[0x1f1] = 4;
    img[0x202..0x206].copy_from_slice(b"HdrS");
    img[0x206..0x208].copy_from_slice(&0x020f_u16.to_le_bytes());
    img[0x248..0x24c].copy_from_slice(&0x40_u32.to_le_bytes());
    img[0x24c..0x250].copy_from_slice(&(payload.len() as u32 + 4).to_le_bytes());
    img.extend_from_slice(&[0x90; 0x40]);
    img.extend_from_slice(payload);
    img.extend_from_slice(&(size as u32).to_le_bytes());
    img.extend_from_slice(&[0; 300]); // the rest of the decompressor, BSS pad
    img
}

fn cache() -> (tempfile::TempDir, KernelCache) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = KernelCache::new(dir.path().join("kernels"));
    (dir, cache)
}

fn read_all(mut f: File) -> Vec<u8> {
    let mut v = Vec::new();
    f.read_to_end(&mut v).expect("read the image");
    v
}

#[test]
fn every_kernel_compression_unpacks_to_the_same_elf() {
    let small = elf(true, 200_000);
    // lz4 gets more than one 8 MiB block.
    let large = elf(true, 9 << 20);
    for (format, want) in [
        ("gzip", &small),
        ("xz", &small),
        ("zstd", &small),
        ("lz4", &large),
    ] {
        let (dir, cache) = cache();
        let k = dir.path().join(format!("vmlinuz-{format}"));
        std::fs::write(&k, bzimage(&compress(format, want), want.len())).expect("write");
        let got = cache.pvh(&k).unwrap_or_else(|e| panic!("{format}: {e}"));
        assert!(
            read_all(got) == *want,
            "{format}: the unpacked kernel differs"
        );
    }
}

#[test]
fn the_image_is_made_once_and_keeps_the_kernels_owner_and_mode() {
    let (dir, cache) = cache();
    let k = dir.path().join("vmlinuz");
    let want = elf(true, 50_000);
    std::fs::write(&k, bzimage(&compress("gzip", &want), want.len())).expect("write");
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    cache.pvh(&k).expect("first");
    let entries: Vec<_> = std::fs::read_dir(dir.path().join("kernels"))
        .expect("cache dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let made = std::fs::metadata(&entries[0]).expect("stat");
    let src = std::fs::metadata(&k).expect("stat");
    assert_eq!(made.mode() & 0o777, 0o640);
    assert_eq!((made.uid(), made.gid()), (src.uid(), src.gid()));
    let ino = made.ino();
    // Again: the same file, not made anew.
    let again = cache.pvh(&k).expect("second");
    assert_eq!(again.metadata().expect("stat").ino(), ino);
}

#[test]
fn a_kernel_replaced_in_place_gets_a_new_image_and_the_old_one_goes() {
    let (dir, cache) = cache();
    let k = dir.path().join("vmlinuz");
    let one = elf(true, 10_000);
    std::fs::write(&k, bzimage(&compress("gzip", &one), one.len())).expect("write");
    assert!(read_all(cache.pvh(&k).expect("one")) == one);
    let two = elf(true, 20_000);
    std::fs::write(&k, bzimage(&compress("gzip", &two), two.len())).expect("rewrite");
    assert!(read_all(cache.pvh(&k).expect("two")) == two);
    let n = std::fs::read_dir(dir.path().join("kernels"))
        .expect("cache dir")
        .count();
    assert_eq!(n, 1, "the first contents' image is removed");
}

#[test]
fn kernels_without_a_pvh_image_say_why() {
    let (dir, cache) = cache();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).expect("write");
        p
    };
    // An ELF vmlinux: QEMU boots it as it is.
    let p = write("vmlinux", &elf(true, 1000));
    assert_eq!(cache.pvh(&p).expect_err("refused"), NoPvh::NotBzImage);
    // Too short to hold a header.
    let p = write("tiny", b"MZ");
    assert_eq!(cache.pvh(&p).expect_err("refused"), NoPvh::NotBzImage);
    // bzip2, which kernels may still use and kcore does not unpack.
    let e = elf(true, 1000);
    let p = write("vmlinuz-bzip2", &bzimage(&compress("bzip2", &e), e.len()));
    assert_eq!(
        cache.pvh(&p).expect_err("refused").to_string(),
        "its payload is compressed with bzip2, which kcore does not unpack"
    );
    // A kernel built without CONFIG_PVH.
    let e = elf(false, 1000);
    let p = write("vmlinuz-nopvh", &bzimage(&compress("gzip", &e), e.len()));
    assert_eq!(cache.pvh(&p).expect_err("refused"), NoPvh::NoEntry);
    // A damaged payload.
    let mut z = compress("zstd", &elf(true, 100_000));
    let mid = z.len() / 2;
    z[mid..mid + 64].fill(0xff);
    let p = write("vmlinuz-bad", &bzimage(&z, 100_000));
    let err = cache.pvh(&p).expect_err("refused");
    assert!(
        matches!(err, NoPvh::Corrupt { format: "zstd", .. }),
        "{err:?}"
    );
    // A missing file.
    let err = cache.pvh(&dir.path().join("nope")).expect_err("refused");
    assert!(err.to_string().contains("nope"), "{err}");
    // None of them left anything in the cache.
    let left = std::fs::read_dir(dir.path().join("kernels"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0);
}

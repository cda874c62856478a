//! Where the fast profile's boot time comes from: bare QEMU boots of the same guest
//! (kernel, initrd, command line, 1 vCPU, TCG), one variant after the other in every
//! round, from QEMU's exec to the ready marker on the serial console. The variants add
//! what `--profile fast` does one step at a time, against libvirt's default machine and
//! firmware (q35 + SeaBIOS) and kcore's standard one (q35 + qboot):
//!
//! - `microvm`: the kernel as given (a bzImage), with `tsc_early_khz` like every kcore
//!   microvm;
//! - `+ PVH image`: the uncompressed kernel kcore unpacks (`kcore_vmm::kernel`);
//! - `+ cryptomgr.notests`, then `+ noreplace-smp`: the profile's kernel parameters;
//!   with both (and `x-option-roms=off`) it is what the fast profile runs.
//!
//! No daemon, no network, no disk: only the guest's own boot. `scripts/bench-boot.sh`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use kcore_vmm::kernel::KernelCache;

const MARKER: &str = "KCORE-GUEST-READY";

#[derive(Parser)]
#[command(about = "Bare QEMU boots of the test guest: what each step of --profile fast saves")]
struct Args {
    /// Counted rounds (each boots every variant once; one more warms the caches).
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// The test guest (vmlinuz, initrd.img): scripts/build-test-guest.sh.
    #[arg(
        long,
        env = "KCORE_GUEST_DIR",
        default_value = "/var/cache/kcore/test-guest"
    )]
    guest: PathBuf,
    #[arg(long, default_value = "qemu-system-x86_64")]
    qemu: String,
    /// qboot, kcore's firmware for direct kernel boots on q35/pc.
    #[arg(long, default_value = "/usr/share/qemu/qboot.rom")]
    qboot: PathBuf,
    #[arg(long, default_value_t = 128)]
    memory: u32,
    /// The guest's command line, as a user would give it.
    #[arg(long, default_value = "console=ttyS0 quiet panic=-1")]
    cmdline: String,
    /// Seconds a boot may take before the run fails.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

struct Variant {
    name: &'static str,
    machine: &'static str,
    bios: Option<PathBuf>,
    kernel: PathBuf,
    cmdline: String,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let kernel = a.guest.join("vmlinuz");
    let initrd = a.guest.join("initrd.img");
    for f in [&kernel, &initrd, &a.qboot] {
        if !f.is_file() {
            bail!(
                "{} is missing (scripts/build-test-guest.sh makes the guest; qboot is in qemu-system-x86)",
                f.display()
            );
        }
    }
    let work = tempfile::tempdir()?;
    let pvh = pvh_image(&kernel, work.path())?;
    let tsc = kcore_vmm::host::host_tsc_khz()
        .map(|k| format!(" tsc_early_khz={k}"))
        .unwrap_or_default();
    let base = &a.cmdline;
    let v = |name, machine, bios: Option<&Path>, kernel: &Path, cmdline: String| Variant {
        name,
        machine,
        bios: bios.map(Path::to_path_buf),
        kernel: kernel.to_path_buf(),
        cmdline,
    };
    let variants = [
        v(
            "q35 + SeaBIOS (libvirt's default)",
            "q35",
            None,
            &kernel,
            base.clone(),
        ),
        v(
            "q35 + qboot (kcore standard)",
            "q35",
            Some(&a.qboot),
            &kernel,
            base.clone(),
        ),
        v(
            "microvm, kernel as given",
            "microvm",
            None,
            &kernel,
            format!("{base}{tsc}"),
        ),
        v(
            "  + PVH image",
            "microvm",
            None,
            &pvh,
            format!("{base}{tsc}"),
        ),
        v(
            "  + cryptomgr.notests",
            "microvm",
            None,
            &pvh,
            format!("{base}{tsc} cryptomgr.notests"),
        ),
        v(
            "  + noreplace-smp (= fast)",
            "microvm,x-option-roms=off",
            None,
            &pvh,
            format!("{base}{tsc} cryptomgr.notests noreplace-smp"),
        ),
    ];
    let timeout = Duration::from_secs(a.timeout);
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for round in 0..=a.rounds {
        for i in 0..variants.len() {
            // Rotate the order, so no variant always follows the same one.
            let i = (i + round) % variants.len();
            let ms = boot(&a, &variants[i], &initrd, timeout)
                .with_context(|| format!("round {round}: {}", variants[i].name))?;
            if round > 0 {
                times[i].push(ms);
            }
        }
        eprintln!("round {round}/{} done", a.rounds);
    }
    report(&a, &variants, &times);
    Ok(())
}

/// The PVH image kcore would boot, made by kcore's own code into `work`.
fn pvh_image(kernel: &Path, work: &Path) -> anyhow::Result<PathBuf> {
    let dir = work.join("kernels");
    KernelCache::new(dir.clone())
        .pvh(kernel)
        .map_err(|e| anyhow::anyhow!("{}: no PVH image: {e}", kernel.display()))?;
    let image = std::fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "vmlinux"))
        .context("the PVH image is not in the cache")?;
    Ok(image)
}

/// Kills QEMU however the boot ends.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One boot: exec -> the marker on the console, in ms.
fn boot(a: &Args, v: &Variant, initrd: &Path, timeout: Duration) -> anyhow::Result<f64> {
    let mut cmd = Command::new(&a.qemu);
    cmd.args(["-machine", &format!("{},accel=tcg", v.machine)])
        .args(["-m", &format!("{}M", a.memory), "-smp", "1"])
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-serial", "stdio"])
        .arg("-kernel")
        .arg(&v.kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", &v.cmdline])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(b) = &v.bios {
        cmd.arg("-bios").arg(b);
    }
    let t0 = Instant::now();
    let mut q = Qemu(
        cmd.spawn()
            .with_context(|| format!("cannot run {}", a.qemu))?,
    );
    let out = q.0.stdout.take().context("QEMU's stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            match line {
                Ok(l) if l.contains(MARKER) => {
                    let _ = tx.send(Ok(t0.elapsed()));
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
        }
        let _ = tx.send(Err("QEMU exited before the guest was ready".into()));
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(d)) => Ok(d.as_secs_f64() * 1000.0),
        Ok(Err(e)) => bail!("{e}"),
        Err(_) => bail!("no {MARKER} within {timeout:?}"),
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn report(a: &Args, variants: &[Variant], times: &[Vec<f64>]) {
    let med: Vec<f64> = times.iter().map(|t| median(t)).collect();
    println!(
        "kcore-bench-boot: {} rounds (+1 warm-up), bare QEMU, TCG, 1 vCPU, {} MiB, \
         exec -> {MARKER}; medians",
        a.rounds, a.memory
    );
    println!(
        "{:<36} {:>8} {:>8} {:>8} {:>12} {:>12}",
        "variant", "ms", "min", "max", "/ SeaBIOS", "/ microvm"
    );
    for (i, v) in variants.iter().enumerate() {
        let t = &times[i];
        let min = t.iter().copied().fold(f64::INFINITY, f64::min);
        let max = t.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        println!(
            "{:<36} {:>8.0} {:>8.0} {:>8.0} {:>12.2} {:>12.2}",
            v.name,
            med[i],
            min,
            max,
            med[i] / med[0],
            med[i] / med[2]
        );
    }
}

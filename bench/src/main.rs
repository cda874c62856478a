//! `kcore-bench`: how long kcore takes from the API call to a running guest, against bare
//! QEMU started with the very same argv in the same run.
//!
//! For each of N rounds (kcore and bare QEMU alternate, so background noise hits both):
//! - kcore: `CreateVM` over the local socket of an all-in-one daemon the bench starts in a
//!   temp dir; create -> RUNNING is the RPC's wall time (it returns when the vCPUs run),
//!   create -> guest-ready comes from the VM's boot timeline (the ready pattern on the
//!   console). Then the VM is deleted.
//! - bare QEMU: the argv kcore used (its `qemu.argv`), spawned by the bench with its own
//!   pre-bound QMP and console sockets; exec -> running is greeting + `qmp_capabilities` +
//!   `cont`; exec -> guest-ready is the ready marker on the console.
//!
//! Prints medians, the difference and the ratio. Run: `scripts/bench.sh` (release build).

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use kcore_bench::{DaemonGuard, dial, median};
use kcore_proto::v1 as pb;
use kcore_proto::v1::kcore_service_client::KcoreServiceClient;
use kcore_vmm::qmp::{QmpClient, QmpOptions};
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

#[derive(Parser, Debug)]
#[command(about = "kcore create -> running / guest-ready vs bare QEMU")]
struct Args {
    /// Rounds (each: one kcore VM and one bare QEMU).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    #[arg(long, default_value = "/var/cache/kcore/test-guest/vmlinuz")]
    kernel: PathBuf,
    #[arg(long, default_value = "/var/cache/kcore/test-guest/initrd.img")]
    initrd: PathBuf,
    #[arg(long, default_value_t = 128)]
    memory: u32,
    /// q35, pc or microvm.
    #[arg(long, default_value = "q35")]
    machine: String,
    /// auto, kvm or tcg (tcg where nested KVM is broken).
    #[arg(long, default_value = "tcg")]
    accel: String,
    /// Boot every VM with a disk cloned from this image (qcow2 or raw), imported once:
    /// measures create-from-image. The bare QEMU run uses the same disk.
    #[arg(long)]
    image: Option<PathBuf>,
    /// The kcored binary (default: next to this one).
    #[arg(long)]
    kcored: Option<PathBuf>,
}

const READY: &str = "KCORE-GUEST-READY";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let kcored = match &args.kcored {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("bench binary dir")?
            .join("kcored"),
    };
    let dir = tempfile::Builder::new().prefix("kcore-bench-").tempdir()?;
    let run_dir = dir.path().join("run");
    let sock = run_dir.join("kcore.sock");
    let child = Command::new(&kcored)
        .args(["all-in-one", "--accel", &args.accel])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--run-dir")
        .arg(&run_dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("start {}", kcored.display()))?;
    let _guard = DaemonGuard(child);
    let t0 = Instant::now();
    while UnixStream::connect(&sock).await.is_err() {
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("kcored did not come up");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut api = KcoreServiceClient::new(dial(sock).await?);
    let machine = match args.machine.as_str() {
        "pc" => pb::MachineType::Pc,
        "microvm" => pb::MachineType::Microvm,
        _ => pb::MachineType::Q35,
    };
    if let Some(img) = &args.image {
        let mut stream = api
            .import_image(pb::ImportImageRequest {
                name: "bench".into(),
                source: std::fs::canonicalize(img)?.to_string_lossy().into_owned(),
                ..Default::default()
            })
            .await?
            .into_inner();
        while let Some(p) = stream.message().await? {
            if p.image.is_some() {
                break;
            }
        }
    }
    let spec = pb::VmSpec {
        image: if args.image.is_some() {
            "bench".into()
        } else {
            String::new()
        },
        vcpu: 1,
        memory_mb: args.memory,
        machine: machine as i32,
        kernel: args.kernel.to_string_lossy().into_owned(),
        initrd: args.initrd.to_string_lossy().into_owned(),
        cmdline: "console=ttyS0 quiet panic=-1".into(),
        ready_pattern: READY.into(),
        restart_policy: 0,
        ..Default::default()
    };
    let (mut k_run, mut k_ready, mut b_run, mut b_ready, mut b_greet) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut k_exec, mut k_qmp, mut k_vcpus) = (vec![], vec![], vec![]);
    for i in 0..args.runs + 1 {
        let name = format!("bench-{i}");
        // kcore
        let t = Instant::now();
        let vm = api
            .create_vm(pb::CreateVmRequest {
                name: name.clone(),
                spec: Some(spec.clone()),
                ..Default::default()
            })
            .await?
            .into_inner();
        let running = t.elapsed().as_secs_f64() * 1000.0;
        let phase = |vm: &pb::Vm, name: &str| {
            vm.timeline
                .as_ref()
                .and_then(|t| t.phases.iter().find(|p| p.name == name))
                .map(|p| p.offset_ms)
                .unwrap_or(f64::NAN)
        };
        let (exec, qmp, vcpus) = (
            phase(&vm, "qemu_exec"),
            phase(&vm, "qmp_ready"),
            phase(&vm, "vcpus_running"),
        );
        let ready = loop {
            let vm = api
                .get_vm(pb::GetVmRequest { name: name.clone() })
                .await?
                .into_inner();
            if let Some(p) = vm
                .timeline
                .as_ref()
                .and_then(|t| t.phases.iter().find(|p| p.name == "guest_ready"))
            {
                break p.offset_ms;
            }
            if t.elapsed() > Duration::from_secs(120) {
                bail!("{name} never became ready");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let argv_file = run_dir.join("vms").join(&vm.id).join("qemu.argv");
        let argv: Vec<String> = std::fs::read_to_string(&argv_file)?
            .lines()
            .map(str::to_string)
            .collect();
        // The files kcore handed QEMU as descriptors: bare QEMU gets the same ones.
        let spec: kcore_vmm::spec::VmSpec = serde_json::from_slice(&std::fs::read(
            dir.path().join("data/vms").join(&vm.id).join("spec.json"),
        )?)?;
        let files = added_fds(&argv, &spec)?;
        // Stop (its disk stays until the delete), run bare QEMU on the same argv, delete.
        api.stop_vm(pb::StopVmRequest {
            name: name.clone(),
            force: true,
            ..Default::default()
        })
        .await?;
        let (greet, run, rdy) = bare_qemu(&argv, &files, dir.path()).await?;
        api.delete_vm(pb::DeleteVmRequest {
            name: name.clone(),
            force: true,
            keep_disks: false,
        })
        .await?;
        // Round 0 warms the page cache for both; it is not counted.
        if i > 0 {
            k_run.push(running);
            k_exec.push(exec);
            k_qmp.push(qmp - exec);
            k_vcpus.push(vcpus);
            k_ready.push(ready);
            b_greet.push(greet);
            b_run.push(run);
            b_ready.push(rdy);
        }
        eprintln!(
            "round {i}: kcore running {running:.1} ms ready {ready:.1} ms | bare greeting {greet:.1} running {run:.1} ready {rdy:.1} ms"
        );
    }
    let (kr, kd, br, bd, bg) = (
        median(&mut k_run),
        median(&mut k_ready),
        median(&mut b_run),
        median(&mut b_ready),
        median(&mut b_greet),
    );
    println!(
        "\nkcore-bench: {} runs, machine {}, accel {}, {} MiB{} (medians)",
        args.runs,
        args.machine,
        args.accel,
        args.memory,
        if args.image.is_some() {
            ", boot disk cloned from an image"
        } else {
            ""
        }
    );
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>7}",
        "", "kcore ms", "bare ms", "diff ms", "ratio"
    );
    println!(
        "{:<28} {:>10.1} {:>10.1} {:>+10.1} {:>7.3}",
        "create -> vCPUs running",
        kr,
        br,
        kr - br,
        kr / br
    );
    println!(
        "{:<28} {:>10.1} {:>10.1} {:>+10.1} {:>7.3}",
        "create -> guest ready",
        kd,
        bd,
        kd - bd,
        kd / bd
    );
    println!(
        "{:<28} {:>10.1} {:>10.1}",
        "exec -> QMP ready",
        median(&mut k_qmp),
        bg
    );
    println!(
        "\nkcore timeline (server side, medians): request -> qemu_exec {:.1} ms, \
         request -> vcpus_running {:.1} ms",
        median(&mut k_exec),
        median(&mut k_vcpus)
    );
    Ok(())
}

/// The files behind the argv's `-add-fd fd=N,set=S,opaque=O` (O: a disk's id, `<id>-base`
/// for its image, `uefi-vars`), opened as kcore opens them, with their fd numbers.
fn added_fds(
    argv: &[String],
    spec: &kcore_vmm::spec::VmSpec,
) -> anyhow::Result<Vec<(std::fs::File, i32)>> {
    let mut out = Vec::new();
    for pair in argv.windows(2).filter(|w| w[0] == "-add-fd") {
        let field = |key: &str| {
            pair[1]
                .split(',')
                .find_map(|kv| kv.strip_prefix(key))
                .map(str::to_string)
        };
        let fd: i32 = field("fd=").context("-add-fd without fd=")?.parse()?;
        let opaque = field("opaque=").context("-add-fd without opaque=")?;
        let (path, write) = if opaque == "uefi-vars" {
            (spec.uefi_vars.clone().context("no UEFI vars")?, true)
        } else if let Some(id) = opaque.strip_suffix("-base") {
            let d = spec.disks.iter().find(|d| d.id == id).context("disk")?;
            (
                d.backing.as_ref().context("no backing")?.path.clone(),
                false,
            )
        } else {
            let d = spec.disks.iter().find(|d| d.id == opaque).context("disk")?;
            (d.path.clone(), true)
        };
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .open(&path)
            .with_context(|| format!("open {}", path.display()))?;
        out.push((f, fd));
    }
    Ok(out)
}

/// Spawn QEMU with `argv` (fd 3 = QMP, fd 4 = console, and the files of `-add-fd`, as
/// kcore passes them), then measure exec -> greeting, -> running (after `cont`) and ->
/// ready marker, in ms.
async fn bare_qemu(
    argv: &[String],
    files: &[(std::fs::File, i32)],
    dir: &Path,
) -> anyhow::Result<(f64, f64, f64)> {
    let qmp_path = dir.join("bare-qmp.sock");
    let con_path = dir.join("bare-con.sock");
    let _ = std::fs::remove_file(&qmp_path);
    let _ = std::fs::remove_file(&con_path);
    let qmp_l = std::os::unix::net::UnixListener::bind(&qmp_path)?;
    let con_l = std::os::unix::net::UnixListener::bind(&con_path)?;
    let log = std::fs::File::create(dir.join("bare-qemu.log"))?;
    let t = Instant::now();
    let mut fds = vec![(qmp_l.as_raw_fd(), 3), (con_l.as_raw_fd(), 4)];
    fds.extend(files.iter().map(|(f, n)| (f.as_raw_fd(), *n)));
    let pid = kcore_vmm::process::spawn_detached(argv, &log, &fds, None)?;
    let pidfd = kcore_vmm::process::PidFd::open(pid)?;
    let mut con = UnixStream::connect(&con_path).await?;
    let qmp_conn = UnixStream::connect(&qmp_path).await?;
    drop(qmp_l);
    drop(con_l);
    let (qmp, _events) = QmpClient::connect(qmp_conn, QmpOptions::default()).await?;
    // connect() includes qmp_capabilities; the greeting itself came just before it.
    let greet = t.elapsed().as_secs_f64() * 1000.0;
    qmp.cont().await?;
    let running = t.elapsed().as_secs_f64() * 1000.0;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let ready = loop {
        let n = tokio::time::timeout(Duration::from_secs(120), con.read(&mut buf)).await??;
        if n == 0 {
            bail!("bare QEMU console closed before the marker");
        }
        seen.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&seen).contains(READY) {
            break t.elapsed().as_secs_f64() * 1000.0;
        }
    };
    let _ = pidfd.signal(nix::sys::signal::Signal::SIGKILL);
    pidfd.exited().await;
    Ok((greet, running, ready))
}

//! The report: medians (ms, MiB) and ratios, as docs/benchmarks.md shows them.

use crate::stats::{Stats, num, ratio, row};

pub struct Run<'a> {
    pub st: &'a Stats,
    pub rounds: usize,
    pub machines: &'a [String],
    pub concurrent: usize,
    pub concurrent_rounds: usize,
    pub memory: u32,
    pub devices: bool,
    /// Machines libvirt refused, and its answer.
    pub libvirt_cannot: &'a [(String, String)],
    pub fast: bool,
    /// None: this kctl has no templates; Some(Err): they failed.
    pub templates: Option<&'a Result<(), String>>,
}

fn cols(st: &Stats, a: &str, b: &str, c: &str, d: usize) -> Vec<String> {
    let (x, y, z) = (st.med(a), st.med(b), st.med(c));
    vec![num(x, d), num(y, d), num(z, d), ratio(x, y), ratio(x, z)]
}

pub fn print(r: &Run) {
    let st = r.st;
    println!(
        "\nkcore-bench-startup: {} rounds (+1 warm-up) per machine, TCG, 1 vCPU, {} MiB, {}; \
         medians",
        r.rounds,
        r.memory,
        if r.devices {
            "an empty 1 GiB qcow2 data disk and a virtio NIC on a bridge"
        } else {
            "no disk, no NIC"
        }
    );
    let head = |t: &str| {
        row(
            t,
            &["kcore", "libvirt", "bare QEMU", "kcore/libv", "kcore/bare"].map(String::from),
        )
    };
    for m in r.machines {
        println!();
        head(&format!("{m} (ms)"));
        let k = |s: &str, what: &str| format!("{m}/{s}/{what}");
        for (label, what, d) in [
            ("create -> vCPUs running", "running", 1),
            ("create -> guest ready", "ready", 0),
            ("stop --force", "stop", 1),
            ("stop --force -> QEMU exited", "exit", 1),
        ] {
            row(
                label,
                &cols(
                    st,
                    &k("kcore", what),
                    &k("libvirt", what),
                    &k("bare", what),
                    d,
                ),
            );
        }
        if let Some((_, why)) = r.libvirt_cannot.iter().find(|(x, _)| x == m) {
            // virsh's own words are on the last line.
            println!(
                "  libvirt cannot run {m}: {}",
                why.lines().last().unwrap_or("")
            );
        }
        println!(
            "  kcore's own share (its timeline): kctl spawn -> request {} ms, request -> \
             taps ready {} ms, -> qemu exec {} ms, -> vCPUs running {} ms",
            num(st.med(&k("kcore", "kctl_to_request")), 1),
            num(st.med(&k("kcore", "network_ready")), 1),
            num(st.med(&k("kcore", "qemu_exec")), 1),
            num(st.med(&k("kcore", "vcpus_running")), 1)
        );
        if m == "q35" {
            let seabios = st.med("q35/libvirt-seabios/ready");
            println!(
                "  libvirt with its default firmware (SeaBIOS): create -> running {} ms, -> \
                 ready {} ms; kcore / that: {}",
                num(st.med("q35/libvirt-seabios/running"), 1),
                num(seabios, 0),
                ratio(st.med("q35/kcore/ready"), seabios)
            );
            if r.fast {
                let machines = st.keys_under("fast-machine/");
                let fast = st.med("q35/kcore-fast/ready");
                println!(
                    "  kcore --profile fast ({}): create -> running {} ms, -> ready {} ms; / \
                     libvirt SeaBIOS {}, / libvirt same firmware {}, / kcore q35 {}",
                    machines.join(", "),
                    num(st.med("q35/kcore-fast/running"), 1),
                    num(fast, 0),
                    ratio(fast, seabios),
                    ratio(fast, st.med("q35/libvirt/ready")),
                    ratio(fast, st.med("q35/kcore/ready"))
                );
            } else {
                println!("  fast profile: skipped: this kctl has no --profile");
            }
        }
        if m == "microvm" {
            println!(
                "  kcore microvm create -> ready / libvirt pc create -> ready: {}",
                ratio(st.med("microvm/kcore/ready"), st.med("pc/libvirt/ready"))
            );
        }
    }
    println!(
        "\nA CLI call's own cost (median of 5): kctl vm list {} ms, virsh list {} ms",
        num(st.med("cli/kctl"), 1),
        num(st.med("cli/virsh"), 1)
    );

    println!();
    head(&format!(
        "{} at once on {} ({} rounds)",
        r.concurrent,
        r.machines.first().map_or("", String::as_str),
        r.concurrent_rounds
    ));
    let c = |s: &str, what: &str| format!("conc/{s}/{what}");
    row(
        "create -> all ready (ms)",
        &cols(
            st,
            &c("kcore", "all_ready"),
            &c("libvirt", "all_ready"),
            &c("bare", "all_ready"),
            0,
        ),
    );
    row(
        "guests' summed PSS (MiB)",
        &cols(
            st,
            &c("kcore", "pss"),
            &c("libvirt", "pss"),
            &c("bare", "pss"),
            1,
        ),
    );
    let (kc, lc) = (
        st.med(&c("kcore", "daemon_cpu")),
        st.med(&c("libvirt", "daemon_cpu")),
    );
    println!(
        "  daemons' own CPU from the first create to all ready: kcored {} ms, libvirtd + \
         virtlogd {} ms (kcored's includes answering the benchmark's GetVM every 250 ms per \
         VM, which it reads readiness from)",
        num(kc, 0),
        num(lc, 0)
    );

    println!();
    row(
        "daemon RSS (MiB)",
        &["kcored", "libvirtd+vlogd", "ratio"].map(String::from),
    );
    let daemon = |label: &str, k: f64, l: f64, d: usize| {
        row(label, &[num(k, d), num(l, d), ratio(k, l)]);
    };
    let (ki, li) = (st.med("rss/after/kcored"), st.med("rss/after/libvirt"));
    daemon(
        "idle, fresh",
        st.med("rss/fresh/kcored"),
        st.med("rss/fresh/libvirt"),
        1,
    );
    daemon("idle, after the rounds", ki, li, 1);
    let (kn, ln) = (
        st.med("conc/kcore/daemon_rss"),
        st.med("conc/libvirt/daemon_rss"),
    );
    daemon(&format!("with {} VMs", r.concurrent), kn, ln, 1);
    let n = r.concurrent as f64;
    daemon(
        "per VM (KiB)",
        (kn - ki) * 1024.0 / n,
        (ln - li) * 1024.0 / n,
        0,
    );
    println!(
        "  (libvirtd alone: {} MiB idle after the rounds)",
        num(st.med("rss/after/libvirtd"), 1)
    );

    println!();
    match r.templates {
        None => println!("templates: skipped: this kctl has no templates"),
        Some(Err(e)) => println!("templates: FAILED: {e}"),
        Some(Ok(())) => {
            row(
                "template (q35, ms / MiB)",
                &["clone", "cold kcore", "ratio", "libv SeaBIOS", "ratio"].map(String::from),
            );
            let seabios = |what: &str| st.med(&format!("q35/libvirt-seabios/{what}"));
            for (label, clone, cold, lv, d) in [
                (
                    "start -> vCPUs running",
                    st.med("tpl/running"),
                    st.med("q35/kcore/running"),
                    seabios("running"),
                    1,
                ),
                (
                    "start -> guest ready",
                    st.med("tpl/ready"),
                    st.med("q35/kcore/ready"),
                    seabios("ready"),
                    0,
                ),
                (
                    "stop --force",
                    st.med("tpl/stop"),
                    st.med("q35/kcore/stop"),
                    seabios("stop"),
                    1,
                ),
            ] {
                row(
                    label,
                    &[
                        num(clone, d),
                        num(cold, d),
                        ratio(clone, cold),
                        num(lv, d),
                        ratio(clone, lv),
                    ],
                );
            }
            let (ca, ka) = (
                st.med(&c("kcore-clone", "all_ready")),
                st.med(&c("kcore", "all_ready")),
            );
            row(
                &format!("{} at once -> all ready", r.concurrent),
                &[num(ca, 0), num(ka, 0), ratio(ca, ka)],
            );
            let (cp, kp) = (st.med(&c("kcore-clone", "pss")), st.med(&c("kcore", "pss")));
            row(
                &format!("{} guests' summed PSS (MiB)", r.concurrent),
                &[num(cp, 1), num(kp, 1), ratio(cp, kp)],
            );
            println!(
                "  template create --from-vm --stop-source: {} ms",
                num(st.med("tpl/create"), 0)
            );
        }
    }
}

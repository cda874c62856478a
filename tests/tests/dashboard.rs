//! The dashboard and the metrics against a real all-in-one daemon with VMs and a nat
//! network (in a network namespace of the test's own): headless chromium loads every view
//! through a dashboard that holds a viewer certificate, and the rendered DOM is checked
//! (VM names and states, node capacity, the boot timeline's bars, leases, charts); a
//! screenshot of each view is kept in target/tmp/dashboard-screenshots/. Every method but
//! GET is 405 and changes nothing. `/metrics` is parsed by PyPI's prometheus-client (both
//! its Prometheus text and OpenMetrics parsers) and its figures move as the VM runs and
//! as RPCs are made. A dashboard without a certificate, or with a revoked one, shows a
//! page that says so.

use std::time::Duration;

use kcore_tests::dashboard::{
    Browser, Dashboard, curl, dashboard_env, http, issue_viewer, samples, scrape, state_snapshot,
    until, value, viewer_env,
};
use kcore_tests::{Daemon, NetNs, free_port};

const BOOT: Duration = Duration::from_secs(60);
const API_PORT: u16 = 29090;
const METRICS_PORT: u16 = 29100;
const DASH_PORT: u16 = 28080;

#[test]
fn dashboard_views_read_only_and_metrics() {
    let ns = NetNs::create();
    let d = Daemon::start_in_netns_with(
        &ns,
        &[
            "--listen",
            &format!("127.0.0.1:{API_PORT}"),
            "--metrics-listen",
            &format!("127.0.0.1:{METRICS_PORT}"),
            "--stats-interval",
            "1",
            "--cpus",
            "2",
            "--memory",
            "4096",
        ],
    );
    d.kctl(&[
        "network",
        "create",
        "default",
        "--mode",
        "nat",
        "--subnet",
        "10.131.0.0/24",
    ])
    .expect_ok("network create");
    d.create_guest(
        "web",
        "kcore.echo=off kcore.dhcp=eth0",
        &["--nic", "default", "--disk", "default:1"],
    );
    d.create_guest("idle", "", &["--start=false"]);
    let web_ip = {
        let mut ip = String::new();
        until("web's lease", BOOT, || {
            ip = d.vm("web")["nics"][0]["ip"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            !ip.is_empty()
        });
        ip
    };
    d.wait_console("web", "KCORE-GUEST-READY", 1, BOOT);
    let viewer = viewer_env(&d, "dash", API_PORT);
    let dash = Dashboard::start(Some(&ns), DASH_PORT, &viewer, d.dir.path());
    let browser = Browser::new(Some(&ns));
    // A few samples of web for its charts (every second).
    std::thread::sleep(Duration::from_secs(3));

    // Every view, as a browser renders it.
    let desktop = (1280, 1400);
    let dom = browser.load(&dash.url("/"), "overview", desktop);
    assert!(
        dom.contains("Read-only view of")
            && dom.contains("the viewer certificate CN=dash (OU=viewer)"),
        "{dom}"
    );
    assert!(
        dom.contains(r#"data-node="node1" data-state="READY""#),
        "{dom}"
    );
    assert!(
        dom.contains("cpu: 1 / 2 vCPUs"),
        "web runs with 1 vCPU of 2: {dom}"
    );
    assert!(dom.contains("memory: 128 MiB / 4.0 GiB"), "{dom}");
    assert!(
        dom.contains(r#"data-state="RUNNING""#) && dom.contains(r#"data-state="STOPPED""#),
        "{dom}"
    );
    assert!(dom.contains("vm.created"), "recent events: {dom}");
    browser.load(&dash.url("/"), "overview-phone", (390, 1400));

    let dom = browser.load(&dash.url("/vms"), "vms", desktop);
    assert!(
        dom.contains(r#"<tr data-vm="idle" data-status="STOPPED">"#),
        "{dom}"
    );
    assert!(
        dom.contains(r#"<tr data-vm="web" data-status="RUNNING">"#),
        "{dom}"
    );
    assert!(dom.contains(&web_ip), "web's address in the list: {dom}");
    assert!(
        dom.find("data-vm=\"idle\"") < dom.find("data-vm=\"web\""),
        "by name"
    );
    let dom = browser.load(
        &dash.url("/vms?state=RUNNING&sort=name&order=desc"),
        "vms-running",
        desktop,
    );
    assert!(
        dom.contains(r#"data-vm="web""#) && !dom.contains(r#"data-vm="idle""#),
        "{dom}"
    );
    assert!(dom.contains(r#"data-shown="1" data-total="2""#), "{dom}");
    browser.load(&dash.url("/vms"), "vms-phone", (390, 1000));

    let dom = browser.load(&dash.url("/vms/web"), "vm-web", (1280, 2400));
    for phase in [
        "request_received",
        "qemu_exec",
        "qmp_ready",
        "vcpus_running",
        "first_console_byte",
        "guest_ready",
    ] {
        assert!(
            dom.contains(&format!(r#"class="tl-bar" data-phase="{phase}""#)),
            "timeline bar {phase}: {dom}"
        );
    }
    assert!(
        dom.contains(&format!(r#"<td class="lease">{web_ip}</td>"#)),
        "lease: {dom}"
    );
    assert!(
        dom.contains(r#"<tr data-device="vda">"#),
        "the data disk: {dom}"
    );
    assert!(
        dom.contains(r#"id="cpu-chart""#) && dom.contains(r#"id="memory-chart""#),
        "{dom}"
    );
    assert!(
        !dom.contains(r#"id="cpu-chart" data-points="0""#),
        "CPU samples: {dom}"
    );
    assert!(dom.contains("<polyline"), "a line on the charts: {dom}");
    assert!(dom.contains("KCORE-GUEST-READY"), "console tail: {dom}");
    assert!(
        !dom.contains("stats-error"),
        "GetVMStats works with a viewer certificate: {dom}"
    );
    let dom = browser.load(&dash.url("/vms/idle"), "vm-idle", desktop);
    assert!(
        dom.contains(r#"<h1 data-vm="idle">"#) && dom.contains("not started yet"),
        "{dom}"
    );

    let dom = browser.load(&dash.url("/nodes"), "nodes", desktop);
    assert!(
        dom.contains(r#"data-cpus="2" data-memory-mb="4096""#),
        "node capacity: {dom}"
    );
    assert!(dom.contains("2 cpus, 4.0 GiB"), "{dom}");
    let dom = browser.load(&dash.url("/networks"), "networks", desktop);
    assert!(
        dom.contains(r#"data-network="default""#) && dom.contains("10.131.0.0/24"),
        "{dom}"
    );
    assert!(
        dom.contains(&web_ip),
        "the lease on the network page: {dom}"
    );
    let dom = browser.load(&dash.url("/storage"), "storage", desktop);
    assert!(dom.contains(r#"<tr data-pool="default">"#), "{dom}");
    assert!(
        dom.contains(r#"<a href="/vms/web">web</a>"#),
        "web's volume: {dom}"
    );
    let dom = browser.load(&dash.url("/events"), "events", desktop);
    assert!(
        dom.contains(r#"data-kind="vm.created""#) && dom.contains(r#"data-kind="node.ready""#),
        "{dom}"
    );

    // Live: the event stream follows WatchEvents.
    let stream = std::thread::scope(|s| {
        let h = s.spawn(|| {
            curl(
                Some(&ns),
                &["-s", "-N", "--max-time", "6", &dash.url("/events/stream")],
            )
        });
        std::thread::sleep(Duration::from_secs(2));
        d.kctl(&["vm", "pause", "web"]).expect_ok("pause");
        d.kctl(&["vm", "resume", "web"]).expect_ok("resume");
        h.join().expect("curl thread")
    });
    assert!(
        stream.stdout.contains("event: kcore") && stream.stdout.contains("PAUSED"),
        "SSE: {}",
        stream.stdout
    );

    // Read-only: every other method is 405 on every path, and nothing changes.
    let before = state_snapshot(&d);
    for path in [
        "/",
        "/vms",
        "/vms/web",
        "/vms/idle?start=1",
        "/events/stream",
        "/nope",
    ] {
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let (code, body) = http(Some(&ns), method, &dash.url(path));
            assert_eq!(code, 405, "{method} {path}: {body}");
        }
    }
    let r = curl(
        Some(&ns),
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "-d",
            "name=x",
            &dash.url("/vms"),
        ],
    );
    assert_eq!(r.stdout, "405");
    assert_eq!(state_snapshot(&d), before, "a POST changed something");
    assert_eq!(d.vm("idle")["status"], "VM_STATUS_STOPPED");
    let (code, _) = http(Some(&ns), "GET", &dash.url("/no/such/page"));
    assert_eq!(code, 404);

    // /metrics: parsed by a real Prometheus text parser, with the expected series.
    let url = format!("http://127.0.0.1:{METRICS_PORT}/metrics");
    let m1 = scrape(Some(&ns), &url, "prometheus");
    assert!(
        m1["content_type"]
            .as_str()
            .unwrap_or_default()
            .starts_with("text/plain; version=0.0.4"),
        "{}",
        m1["content_type"]
    );
    let web = [("vm", "web"), ("node", "node1")];
    let cpu1 = value(
        &m1,
        "kcore_vm_cpu_seconds",
        "kcore_vm_cpu_seconds_total",
        &web,
    );
    assert_eq!(m1["families"]["kcore_vm_cpu_seconds"]["type"], "counter");
    assert!(
        value(
            &m1,
            "kcore_vm_memory_rss_bytes",
            "kcore_vm_memory_rss_bytes",
            &web
        ) > 10e6
    );
    assert_eq!(
        value(
            &m1,
            "kcore_vm_state",
            "kcore_vm_state",
            &[("vm", "web"), ("state", "RUNNING")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m1,
            "kcore_vm_state",
            "kcore_vm_state",
            &[("vm", "idle"), ("state", "STOPPED")]
        ),
        1.0
    );
    assert!(
        value(
            &m1,
            "kcore_vm_boot_ready_seconds",
            "kcore_vm_boot_ready_seconds",
            &web
        ) > 0.0
    );
    assert!(
        value(
            &m1,
            "kcore_vm_boot_running_seconds",
            "kcore_vm_boot_running_seconds",
            &web
        ) > 0.0
    );
    assert_eq!(
        value(&m1, "kcore_vm_restarts", "kcore_vm_restarts_total", &web),
        0.0
    );
    let rx1 = value(
        &m1,
        "kcore_vm_network_receive_bytes",
        "kcore_vm_network_receive_bytes_total",
        &[("vm", "web"), ("nic", "net0")],
    );
    assert!(rx1 > 0.0, "the DHCP offer reached web");
    value(
        &m1,
        "kcore_vm_disk_read_operations",
        "kcore_vm_disk_read_operations_total",
        &[("vm", "web"), ("device", "vda")],
    );
    assert_eq!(
        value(
            &m1,
            "kcore_node_cpus",
            "kcore_node_cpus",
            &[("node", "node1")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &m1,
            "kcore_node_memory_bytes",
            "kcore_node_memory_bytes",
            &[("node", "node1")]
        ),
        4096.0 * 1048576.0
    );
    assert_eq!(
        value(
            &m1,
            "kcore_node_allocated_vcpus",
            "kcore_node_allocated_vcpus",
            &[("node", "node1")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m1,
            "kcore_node_vms",
            "kcore_node_vms",
            &[("node", "node1"), ("state", "RUNNING")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m1,
            "kcore_node_vms",
            "kcore_node_vms",
            &[("node", "node1"), ("state", "STOPPED")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m1,
            "kcore_node_ready",
            "kcore_node_ready",
            &[("node", "node1")]
        ),
        1.0
    );
    assert!(
        !samples(
            &m1,
            "kcore_qmp_command_duration_seconds",
            "kcore_qmp_command_duration_seconds_count",
            &[("command", "query-blockstats"), ("outcome", "ok")]
        )
        .is_empty()
    );
    assert!(
        value(
            &m1,
            "kcore_qmp_command_duration_seconds",
            "kcore_qmp_command_duration_seconds_count",
            &[("command", "cont"), ("outcome", "ok")]
        ) >= 1.0
    );
    let hb1 = value(
        &m1,
        "kcore_node_heartbeats",
        "kcore_node_heartbeats_total",
        &[("node", "node1")],
    );
    assert!(
        value(
            &m1,
            "kcore_reconcile_runs",
            "kcore_reconcile_runs_total",
            &[("node", "node1")]
        ) >= 1.0
    );
    let list = [
        ("grpc_service", "kcore.v1.KcoreService"),
        ("grpc_method", "ListVMs"),
        ("grpc_code", "OK"),
    ];
    let lists1 = value(
        &m1,
        "kcore_grpc_server_handled",
        "kcore_grpc_server_handled_total",
        &list,
    );
    assert!(
        value(
            &m1,
            "kcore_grpc_server_handled",
            "kcore_grpc_server_handled_total",
            &[("grpc_method", "CreateVM"), ("grpc_code", "OK")]
        ) >= 2.0
    );
    assert!(
        value(
            &m1,
            "kcore_grpc_server_handling_seconds",
            "kcore_grpc_server_handling_seconds_count",
            &[("grpc_method", "DefineVM")]
        ) >= 2.0
    );
    // The dashboard's POSTs never reached kcored; its GETs did (a viewer calling GetVMStats).
    assert!(
        value(
            &m1,
            "kcore_grpc_server_handled",
            "kcore_grpc_server_handled_total",
            &[("grpc_method", "GetVMStats"), ("grpc_code", "OK")]
        ) >= 1.0
    );

    // The figures move: web burns CPU, our calls are counted, heartbeats come.
    for _ in 0..3 {
        d.kctl(&["vm", "list"]).expect_ok("vm list");
    }
    d.kctl(&["vm", "get", "nope"])
        .expect_err("get nope", &["nope"]);
    std::thread::sleep(Duration::from_secs(3));
    let m2 = scrape(Some(&ns), &url, "openmetrics");
    assert!(
        m2["content_type"]
            .as_str()
            .unwrap_or_default()
            .starts_with("application/openmetrics-text"),
        "{}",
        m2["content_type"]
    );
    let cpu2 = value(
        &m2,
        "kcore_vm_cpu_seconds",
        "kcore_vm_cpu_seconds_total",
        &web,
    );
    assert!(cpu2 > cpu1, "web's CPU time grows: {cpu1} -> {cpu2}");
    let lists2 = value(
        &m2,
        "kcore_grpc_server_handled",
        "kcore_grpc_server_handled_total",
        &list,
    );
    assert!(
        lists2 >= lists1 + 3.0,
        "ListVMs counted: {lists1} -> {lists2}"
    );
    assert!(
        value(
            &m2,
            "kcore_grpc_server_handled",
            "kcore_grpc_server_handled_total",
            &[("grpc_method", "GetVM"), ("grpc_code", "NotFound")]
        ) >= 1.0
    );
    let hb2 = value(
        &m2,
        "kcore_node_heartbeats",
        "kcore_node_heartbeats_total",
        &[("node", "node1")],
    );
    assert!(hb2 > hb1, "heartbeats: {hb1} -> {hb2}");
    assert_eq!(
        value(
            &m2,
            "kcore_vm_state",
            "kcore_vm_state",
            &[("vm", "web"), ("state", "RUNNING")]
        ),
        1.0
    );
    drop(dash);
    drop(d);
}

#[test]
fn dashboard_without_a_good_certificate_says_so() {
    // No network here: the daemon's TLS port is on the host's loopback.
    let api_port = free_port();
    let d = Daemon::start_with(&["--listen", &format!("127.0.0.1:{api_port}")]);
    let out = d.dir.path().join("certs");
    issue_viewer(&d, "good", &out);
    issue_viewer(&d, "gone", &out);
    d.kctl(&["cert", "revoke", "gone"]).expect_ok("revoke");
    let env = |name: Option<&str>| dashboard_env(api_port, &out, name);
    let browser = Browser::new(None);

    let good = Dashboard::start(None, free_port(), &env(Some("good")), d.dir.path());
    let (code, body) = http(None, "GET", &good.url("/vms"));
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("the viewer certificate CN=good (OU=viewer)"),
        "{body}"
    );

    let none = Dashboard::start(None, free_port(), &env(None), d.dir.path());
    let (code, body) = http(None, "GET", &none.url("/"));
    assert_eq!(code, 502, "{body}");
    assert!(
        body.contains("kcored refused the dashboard&#39;s identity")
            || body.contains("kcored refused the dashboard's identity"),
        "{body}"
    );
    assert!(
        body.contains("a client certificate signed by the cluster CA is required"),
        "{body}"
    );
    assert!(
        body.contains("no client certificate over TLS"),
        "the identity line: {body}"
    );
    let dom = browser.load(&none.url("/vms"), "error-no-certificate", (1024, 700));
    assert!(dom.contains(r#"data-kind="refused""#), "{dom}");

    let revoked = Dashboard::start(None, free_port(), &env(Some("gone")), d.dir.path());
    let (code, body) = http(None, "GET", &revoked.url("/nodes"));
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("was revoked"), "{body}");
    let dom = browser.load(&revoked.url("/"), "error-revoked", (1024, 700));
    assert!(
        dom.contains(r#"data-kind="refused""#) && dom.contains("was revoked"),
        "{dom}"
    );
    // Still serving after all that.
    assert_eq!(
        http(None, "GET", &revoked.url("/static/dashboard.css")).0,
        200
    );
    assert_eq!(http(None, "POST", &revoked.url("/")).0, 405);

    // kcored gone: a page that says it cannot be reached, not a crash.
    drop(d);
    let (code, body) = http(None, "GET", &good.url("/"));
    assert!(code == 503 || code == 502, "{code}: {body}");
    assert!(body.contains("id=\"error\""), "{body}");
}

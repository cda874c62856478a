//! kcore-mcp driven by the official Python MCP SDK (`mcp` from PyPI, fetched by
//! `scripts/fetch-mcp.sh`; the session is tests/python/mcp_session.py) against a real
//! all-in-one daemon with real guests: over stdio on the local socket, and over Streamable
//! HTTP with client certificates (mutual TLS to kcored). What is offered follows the flags
//! and, above them, the certificate's role; errors are tool errors with kcored's message and
//! code, and the server keeps serving; every change is an audit line in kcore-mcp's log and
//! an event of kcored's naming the caller and kcore-mcp.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kcore_tests::{Daemon, bin, free_port, guest};
use serde_json::{Value, json};

const READ: &[&str] = &[
    "list_vms",
    "get_vm",
    "wait_vm_ready",
    "console_tail",
    "vm_stats",
    "list_nodes",
    "recent_events",
    "list_networks",
    "list_pools",
    "list_images",
    "list_templates",
    "list_volumes",
    "qmp_query",
];
const WRITE: &[&str] = &[
    "create_vm",
    "start_vm",
    "stop_vm",
    "reboot_vm",
    "pause_vm",
    "resume_vm",
    "import_image",
    "cordon_node",
];
const DESTRUCTIVE: &[&str] = &["force_stop_vm", "delete_vm", "drain_node", "qmp_execute"];

/// What a session printed: the driver's JSON and the stderr (kcore-mcp's log, on stdio).
struct Session {
    out: Value,
    stderr: String,
}

impl Session {
    fn result(&self, i: usize) -> &Value {
        &self.out["results"][i]
    }
}

/// Run one MCP session (`plan`, see tests/python/mcp_session.py), bounded to 3 minutes.
fn session(plan: Value) -> Session {
    let py = kcore_tests::mcp_python();
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/mcp_session.py");
    let mut child = Command::new(&py)
        .arg(&driver)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", py.display()));
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(plan.to_string().as_bytes())
            .expect("write the plan");
    }
    // Its output is read while it runs: a listing is larger than a pipe holds.
    let out = kcore_tests::wait_bounded(child, Duration::from_secs(180), "the MCP session");
    let stderr = out.stderr;
    assert!(out.ok, "the MCP session failed:\n{stderr}{}", out.stdout);
    let out: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", out.stdout));
    assert_eq!(out["mcp"], "2.3.0", "the SDK scripts/fetch-mcp.sh installs");
    assert_eq!(out["server"]["name"], "kcore-mcp", "{}", out["server"]);
    Session { out, stderr }
}

/// A plan for kcore-mcp on stdio with `args` and `env`.
fn stdio(args: &[&str], env: Value, steps: Value) -> Value {
    json!({
        "transport": "stdio",
        "command": bin("kcore-mcp"),
        "args": args,
        "env": env,
        "steps": steps,
    })
}

fn call(tool: &str, args: Value) -> Value {
    json!({"op": "call", "tool": tool, "args": args})
}

/// The names a list_tools step returned, sorted.
fn names(result: &Value) -> Vec<String> {
    let mut v: Vec<String> = result["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("not a tool list: {result}"))
        .iter()
        .map(|t| t["name"].as_str().expect("name").to_string())
        .collect();
    v.sort();
    v
}

fn set(groups: &[&[&str]]) -> Vec<String> {
    let mut v: Vec<String> = groups
        .iter()
        .flat_map(|g| g.iter())
        .map(|s| s.to_string())
        .collect();
    v.sort();
    v
}

fn tool<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["tools"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

/// Panic unless `r` is a successful tool result; returns its structured content.
fn ok(r: &Value) -> &Value {
    assert_eq!(r["is_error"], false, "{r}");
    &r["structured"]
}

/// Panic unless `r` is a tool error with `code` whose text has each of `needles`.
fn tool_error(r: &Value, code: &str, needles: &[&str]) {
    assert_eq!(r["is_error"], true, "{r}");
    assert_eq!(r["structured"]["error"]["code"], code, "{r}");
    let text = r["text"].as_str().expect("text");
    assert!(text.ends_with(&format!(" ({code})")), "{text}");
    for n in needles {
        assert!(text.contains(n), "{n:?} not in {text:?}");
    }
}

/// create_vm's arguments for the test guest.
fn guest_vm(name: &str) -> Value {
    let g = guest();
    json!({
        "name": name,
        "vcpu": 1,
        "memory_mb": 128,
        "kernel": g.kernel,
        "initrd": g.initrd,
        "cmdline": "console=ttyS0 quiet panic=-1",
        "ready_pattern": "KCORE-GUEST-READY",
    })
}

/// The steps of a VM's life through MCP: list, create, wait until ready, console tail (tool
/// and resource), get, resource use, delete, list again. Indexes: see `check_life`.
fn life_steps(vm: &str) -> Vec<Value> {
    vec![
        call("list_vms", json!({})),
        call("create_vm", guest_vm(vm)),
        call("wait_vm_ready", json!({"name": vm, "timeout_secs": 120})),
        call("console_tail", json!({"name": vm, "lines": 20})),
        json!({"op": "read_resource", "uri": format!("kcore://vm/{vm}/console")}),
        call("get_vm", json!({"name": vm})),
        call("vm_stats", json!({"name": vm, "since_secs": 600})),
        call("delete_vm", json!({"name": vm, "force": true})),
        call("list_vms", json!({})),
    ]
}

/// Check the results of `life_steps` starting at step `at`.
fn check_life(s: &Session, at: usize, vm: &str) {
    assert_eq!(ok(s.result(at))["vms"], json!([]), "{}", s.result(at));
    let created = ok(s.result(at + 1));
    assert_eq!(created["name"], vm);
    assert_eq!(created["status"], "RUNNING", "{created}");
    let ready = ok(s.result(at + 2));
    assert_eq!(ready["vm"]["guest_ready"], true, "{ready}");
    let phases: Vec<&str> = ready["vm"]["boot_timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|p| p["name"].as_str().expect("phase"))
        .collect();
    assert!(
        phases.contains(&"qemu_exec") && phases.last() == Some(&"guest_ready"),
        "{phases:?}"
    );
    let tail = s.result(at + 3);
    let lines = ok(tail)["lines"].as_array().expect("lines");
    assert!(!lines.is_empty() && lines.len() <= 20, "{tail}");
    let console = s.result(at + 4)["contents"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no console resource: {}", s.result(at + 4)));
    assert!(console.contains("KCORE-GUEST-READY"), "{console}");
    assert_eq!(ok(s.result(at + 5))["status"], "RUNNING");
    // The guest booted: its QEMU burnt CPU and holds memory.
    let stats = ok(s.result(at + 6));
    assert_eq!(stats["vm"], vm, "{stats}");
    assert!(
        stats["current"]["cpu_seconds"].as_f64() > Some(0.0),
        "{stats}"
    );
    assert!(
        stats["current"]["rss_bytes"].as_u64() > Some(1 << 20),
        "{stats}"
    );
    assert_eq!(ok(s.result(at + 7))["deleted"], vm);
    assert_eq!(ok(s.result(at + 8))["vms"], json!([]));
}

#[test]
fn over_stdio_on_the_local_socket() {
    let d = Daemon::start();
    let env = json!({ "KCORE_ENDPOINT": format!("unix://{}", d.socket().display()) });

    // No flags: the read-only tools, and a direct call of another is refused.
    let s = session(stdio(
        &[],
        env.clone(),
        json!([
            {"op": "list_tools"},
            call("list_vms", json!({})),
            call("create_vm", guest_vm("nope")),
            call("delete_vm", json!({"name": "nope"})),
        ]),
    ));
    let listed = s.result(0);
    assert_eq!(names(listed), set(&[READ]));
    for t in listed["tools"].as_array().expect("tools") {
        let a = &t["annotations"];
        assert_eq!(a["read_only_hint"], true, "{t}");
        assert_eq!(a["destructive_hint"], false, "{t}");
        assert!(t["output_schema"].is_object(), "{t}");
    }
    assert_eq!(ok(s.result(1))["vms"], json!([]));
    tool_error(
        s.result(2),
        "PERMISSION_DENIED",
        &["create_vm", "--allow-write"],
    );
    tool_error(
        s.result(3),
        "PERMISSION_DENIED",
        &["delete_vm", "--allow-write"],
    );
    assert!(
        s.out["instructions"]
            .as_str()
            .is_some_and(|i| i.contains("--allow-write")),
        "{}",
        s.out["instructions"]
    );

    // --allow-write: and the write tools; destructive ones still refused.
    let s = session(stdio(
        &["--allow-write"],
        env.clone(),
        json!([{"op": "list_tools"}, call("force_stop_vm", json!({"name": "nope"}))]),
    ));
    assert_eq!(names(s.result(0)), set(&[READ, WRITE]));
    tool_error(s.result(1), "PERMISSION_DENIED", &["--allow-destructive"]);

    // Everything: a VM's whole life, bad input on the way, and the server keeps serving.
    let mut steps = vec![json!({"op": "list_tools"})];
    steps.extend(life_steps("web"));
    steps.extend([
        call(
            "create_vm",
            json!({"name": "Bad_Name", "vcpu": 1, "memory_mb": 128}),
        ),
        call(
            "create_vm",
            json!({"name": "x", "vcpu": "two", "memory_mb": 128}),
        ),
        call("get_vm", json!({"name": "web", "colour": "blue"})),
        call("get_vm", json!({"name": "gone"})),
        call("no_such_tool", json!({})),
        call("qmp_query", json!({"name": "gone", "command": "stop"})),
        call("list_nodes", json!({})),
        call("recent_events", json!({"vm": "web", "limit": 50})),
        json!({"op": "get_prompt", "name": "troubleshoot_vm", "args": {"name": "web"}}),
        call("list_templates", json!({})),
    ]);
    let s = session(stdio(
        &["--allow-write", "--allow-destructive"],
        env,
        Value::Array(steps),
    ));
    let listed = s.result(0);
    assert_eq!(names(listed), set(&[READ, WRITE, DESTRUCTIVE]));
    let create = tool(listed, "create_vm");
    assert_eq!(create["annotations"]["read_only_hint"], false);
    assert_eq!(create["annotations"]["destructive_hint"], false);
    assert_eq!(create["annotations"]["idempotent_hint"], false);
    let required = create["input_schema"]["required"]
        .as_array()
        .expect("required");
    assert_eq!(required.len(), 3, "{create}");
    assert!(
        create["input_schema"]["properties"]["memory_mb"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("MiB")),
        "{create}"
    );
    let delete = tool(listed, "delete_vm");
    assert_eq!(delete["annotations"]["destructive_hint"], true);
    assert_eq!(
        tool(listed, "import_image")["annotations"]["open_world_hint"],
        true
    );
    check_life(&s, 1, "web");

    // Bad input: kcored's own message and code; the schema's refusal before any call.
    tool_error(
        s.result(10),
        "INVALID_ARGUMENT",
        &["invalid VM name \"Bad_Name\""],
    );
    tool_error(
        s.result(11),
        "INVALID_ARGUMENT",
        &["invalid arguments", "expected u32"],
    );
    tool_error(
        s.result(12),
        "INVALID_ARGUMENT",
        &["unknown field `colour`"],
    );
    tool_error(s.result(13), "NOT_FOUND", &["no VM named \"gone\""]);
    assert!(
        s.result(14)["exception"]
            .as_str()
            .is_some_and(|e| e.contains("no tool named \"no_such_tool\"")),
        "{}",
        s.result(14)
    );
    tool_error(s.result(15), "INVALID_ARGUMENT", &["only query-*"]);
    let nodes = ok(s.result(16));
    assert_eq!(nodes["nodes"][0]["name"], "node1", "{nodes}");
    assert_eq!(nodes["nodes"][0]["state"], "READY", "{nodes}");

    // The changes name who asked, through what, in kcored's events (and so through MCP).
    let via = format!(
        "by uid 0 (root) on the local socket via kcore-mcp/{}",
        env!("CARGO_PKG_VERSION")
    );
    let events = ok(s.result(17))["events"]
        .as_array()
        .expect("events")
        .clone();
    for kind in ["vm.created", "vm.deleted"] {
        assert!(
            events
                .iter()
                .any(|e| e["kind"] == kind
                    && e["message"].as_str().is_some_and(|m| m.contains(&via))),
            "no {kind} {via:?} in {events:?}"
        );
    }
    let kctl_events = d
        .kctl(&["events", "--vm", "web"])
        .expect_ok("events")
        .stdout;
    assert!(
        kctl_events.contains(&format!("on node node1 {via}")),
        "{kctl_events}"
    );
    let prompt = &s.result(18)["messages"][0]["content"]["text"];
    assert!(
        prompt.as_str().is_some_and(|p| p.contains("console_tail")),
        "{}",
        s.result(18)
    );
    let templates = ok(s.result(19));
    assert_eq!(templates["templates"], json!([]), "{templates}");

    // One audit line per call of a tool that changes something, with its outcome.
    let audit: Vec<&str> = s
        .stderr
        .lines()
        .filter(|l| l.contains("kcore_mcp::audit"))
        .collect();
    assert_eq!(audit.len(), 4, "{audit:#?}");
    assert!(
        audit[0].contains("tool=\"create_vm\"")
            && audit[0].contains("\"name\":\"web\"")
            && audit[0].contains("caller=the local socket")
            && audit[0].contains("outcome=ok"),
        "{}",
        audit[0]
    );
    assert!(
        audit[1].contains("tool=\"delete_vm\"") && audit[1].contains("outcome=ok"),
        "{}",
        audit[1]
    );
    assert!(
        audit[2].contains("\"name\":\"Bad_Name\"")
            && audit[2].contains("outcome=error INVALID_ARGUMENT"),
        "{}",
        audit[2]
    );
}

/// A kcore-mcp serving Streamable HTTP, killed when dropped.
struct HttpMcp {
    child: Child,
    url: String,
    log: PathBuf,
}

impl HttpMcp {
    fn start(dir: &Path, name: &str, env: &[(&str, PathBuf)], args: &[&str]) -> HttpMcp {
        let port = free_port();
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log");
        let mut cmd = Command::new(bin("kcore-mcp"));
        cmd.args(args)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env_remove("KCORE_ENDPOINT")
            .env("XDG_CONFIG_HOME", dir.join("no-config"))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup"))
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn kcore-mcp");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "kcore-mcp exited ({st}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "kcore-mcp did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        HttpMcp {
            child,
            url: format!("http://127.0.0.1:{port}/mcp"),
            log,
        }
    }

    fn session(&self, steps: Value) -> Session {
        session(json!({"transport": "http", "url": self.url, "steps": steps}))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for HttpMcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn over_http_with_client_certificates() {
    let g = guest();
    let guest_dir = g.kernel.parent().expect("guest dir");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let d = Daemon::start_with(&[
        "--listen",
        &listen,
        "--import-dir",
        guest_dir.to_str().expect("utf-8"),
    ]);
    let pki = d.data_dir().join("pki");
    let certs = d.dir.path().join("certs");
    d.kctl(&[
        "cert",
        "issue",
        "agent",
        "--role",
        "viewer",
        "--out",
        certs.to_str().expect("utf-8"),
    ])
    .expect_ok("cert issue --role viewer");
    let endpoint = |cert: PathBuf, key: PathBuf| {
        vec![
            ("KCORE_ENDPOINT", PathBuf::from(format!("https://{listen}"))),
            ("KCORE_CA_CERT", pki.join("ca.crt")),
            ("KCORE_CLIENT_CERT", cert),
            ("KCORE_CLIENT_KEY", key),
        ]
    };

    // A viewer certificate is the ceiling: with every flag, nothing that changes anything
    // (nor QMP, which a viewer may not call) is offered, and a direct call is refused.
    let viewer = HttpMcp::start(
        d.dir.path(),
        "viewer",
        &endpoint(certs.join("agent.crt"), certs.join("agent.key")),
        &["--allow-write", "--allow-destructive"],
    );
    let s = viewer.session(json!([
        {"op": "list_tools"},
        call("list_vms", json!({})),
        call("create_vm", guest_vm("nope")),
        call("qmp_query", json!({"name": "nope", "command": "query-status"})),
        call("list_nodes", json!({})),
    ]));
    let read_for_viewer: Vec<&str> = READ.iter().copied().filter(|t| *t != "qmp_query").collect();
    assert_eq!(names(s.result(0)), set(&[&read_for_viewer]));
    assert_eq!(ok(s.result(1))["vms"], json!([]));
    tool_error(
        s.result(2),
        "PERMISSION_DENIED",
        &["create_vm", "role viewer"],
    );
    tool_error(s.result(3), "PERMISSION_DENIED", &["qmp_query", "ExecQMP"]);
    assert_eq!(ok(s.result(4))["nodes"][0]["name"], "node1");
    assert!(
        s.out["instructions"]
            .as_str()
            .is_some_and(|i| i.contains("role viewer")),
        "{}",
        s.out["instructions"]
    );
    assert!(
        viewer.log().contains("kcore_mcp::audit"),
        "{}",
        viewer.log()
    );
    drop(viewer);

    // An admin certificate with every flag: a VM's whole life over HTTP.
    let admin = HttpMcp::start(
        d.dir.path(),
        "admin",
        &endpoint(pki.join("admin.crt"), pki.join("admin.key")),
        &["--allow-write", "--allow-destructive"],
    );
    let mut steps = vec![json!({"op": "list_tools"})];
    steps.extend(life_steps("agent-vm"));
    steps.push(call("recent_events", json!({"vm": "agent-vm"})));
    let s = admin.session(Value::Array(steps));
    assert_eq!(names(s.result(0)), set(&[READ, WRITE, DESTRUCTIVE]));
    check_life(&s, 1, "agent-vm");
    let events = ok(s.result(10))["events"]
        .as_array()
        .expect("events")
        .clone();
    let via = format!(
        "(admin certificate) via kcore-mcp/{}",
        env!("CARGO_PKG_VERSION")
    );
    for kind in ["vm.created", "vm.deleted"] {
        assert!(
            events
                .iter()
                .any(|e| e["kind"] == kind
                    && e["message"].as_str().is_some_and(|m| m.contains(&via))),
            "no {kind} {via:?} in {events:?}"
        );
    }
    let log = admin.log();
    let audit: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("kcore_mcp::audit"))
        .collect();
    assert_eq!(audit.len(), 2, "{log}");
    assert!(
        audit[0].contains("tool=\"create_vm\"")
            && audit[0].contains("(role admin)")
            && audit[0].contains("outcome=ok"),
        "{log}"
    );
}

//! 2. Node failure detection: NotReady and READY again after kill -9 / SIGSTOP.

use super::*;

/// One event from WatchEvents with when the benchmark received it.
struct Seen {
    at: Instant,
    kind: String,
    node: String,
    message: String,
}

pub(crate) struct NodeResult {
    heartbeat: f64,
    timeout: f64,
    join_ms: f64,
    kill_nr: Vec<f64>,
    startup: Vec<f64>,
    restart_ready: Vec<f64>,
    stop_nr: Vec<f64>,
    cont_ready: Vec<f64>,
    /// ListNodes lag behind the events, ms (max over all transitions).
    lag_max: f64,
    reasons: BTreeSet<String>,
    /// Node events that came when none was expected.
    unexpected: Vec<String>,
}

/// The cluster under test: controller and node processes, dirs, clients.
struct Cluster {
    kcored: PathBuf,
    dir: PathBuf,
    ctl_port: u16,
    node_port: u16,
    api: Api,
    events: tokio::sync::mpsc::UnboundedReceiver<Seen>,
    unexpected: Vec<String>,
}

impl Cluster {
    fn ctl_pki(&self, f: &str) -> PathBuf {
        self.dir.join("ctl/data/pki").join(f)
    }

    fn node_log(&self) -> PathBuf {
        self.dir.join("node/kcored.log")
    }

    fn ctl_log(&self) -> PathBuf {
        self.dir.join("ctl/kcored.log")
    }

    /// `kcored node --name n1` joined to the controller (with the token on the first start).
    fn spawn_node(&self, token: Option<&str>) -> anyhow::Result<DaemonGuard> {
        let nd = self.dir.join("node");
        let mut argv: Vec<OsString> = vec![
            "node".into(),
            "--accel".into(),
            "tcg".into(),
            "--name".into(),
            "n1".into(),
            "--controller".into(),
            format!("127.0.0.1:{}", self.ctl_port).into(),
            "--ca-cert".into(),
            self.ctl_pki("ca.crt").into(),
            "--listen".into(),
            format!("127.0.0.1:{}", self.node_port).into(),
            "--data-dir".into(),
            nd.join("data").into(),
            "--run-dir".into(),
            nd.join("run").into(),
        ];
        if let Some(t) = token {
            argv.extend(["--join-token".into(), t.into()]);
        }
        spawn_kcored(&self.kcored, &argv, &self.node_log(), "info")
    }

    /// Wait for the event `kind` about node n1; other node events are noted as unexpected.
    async fn wait_event(&mut self, kind: &str, timeout: Duration) -> anyhow::Result<Seen> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ev)) if ev.kind == kind && ev.node == "n1" => return Ok(ev),
                Ok(Some(ev)) => {
                    if is_flap(&ev) {
                        self.unexpected.push(format!(
                            "{} {} ({}) while waiting for {kind}",
                            ev.kind, ev.node, ev.message
                        ));
                    }
                }
                Ok(None) => bail!("the WatchEvents stream ended"),
                Err(_) => {
                    let state = self
                        .state()
                        .await
                        .map_or_else(|e| format!("ListNodes failed: {e:#}"), |s| format!("{s:?}"));
                    bail!(
                        "no {kind} event for n1 within {:.1} s; ListNodes shows n1 {state}\n\
                         controller log:\n{}\nnode log:\n{}",
                        timeout.as_secs_f64(),
                        tail(&self.ctl_log(), 15),
                        tail(&self.node_log(), 15)
                    );
                }
            }
        }
    }

    /// Drop events received so far, noting node events as unexpected.
    fn drain(&mut self) {
        while let Ok(ev) = self.events.try_recv() {
            if is_flap(&ev) {
                self.unexpected.push(format!(
                    "{} {} ({}) while idle",
                    ev.kind, ev.node, ev.message
                ));
            }
        }
    }

    async fn state(&self) -> anyhow::Result<Option<pb::NodeState>> {
        let nodes = self
            .api
            .clone()
            .list_nodes(pb::ListNodesRequest::default())
            .await?
            .into_inner()
            .nodes;
        Ok(nodes
            .iter()
            .find(|n| n.name == "n1")
            .map(|n| pb::NodeState::try_from(n.state).unwrap_or(pb::NodeState::Unspecified)))
    }

    /// Poll ListNodes every 2 ms until n1 is `want`; ms from `since`.
    async fn wait_state(&self, want: pb::NodeState, since: Instant) -> anyhow::Result<f64> {
        loop {
            if self.state().await? == Some(want) {
                return Ok(ms_since(since));
            }
            if since.elapsed() > Duration::from_secs(10) {
                bail!("ListNodes does not show n1 {want:?} 10 s after the event");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// A readiness change of a node (node.joined and the like are not).
fn is_flap(ev: &Seen) -> bool {
    ev.kind == "node.ready" || ev.kind == "node.not_ready"
}

/// A KcoreService client over TCP with mutual TLS, as the controller's admin.
async fn admin_client(port: u16, pki: &Path) -> anyhow::Result<Api> {
    let read = |f: &str| {
        std::fs::read(pki.join(f)).with_context(|| format!("read {}", pki.join(f).display()))
    };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.crt")?))
        .identity(Identity::from_pem(read("admin.crt")?, read("admin.key")?))
        .domain_name("localhost");
    let ch = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("connect to the controller at 127.0.0.1:{port} (mTLS)"))?;
    Ok(KcoreServiceClient::new(ch))
}

/// Follow WatchEvents; each event is passed on with the instant it arrived.
async fn watch(api: &Api) -> anyhow::Result<tokio::sync::mpsc::UnboundedReceiver<Seen>> {
    let mut stream = api
        .clone()
        .watch_events(pb::WatchEventsRequest {
            follow: true,
            history: 0,
            ..Default::default()
        })
        .await?
        .into_inner();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(ev)) = stream.message().await {
            let seen = Seen {
                at: Instant::now(),
                kind: ev.kind,
                node: ev.node,
                message: ev.message,
            };
            if tx.send(seen).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

pub(crate) async fn node_bench(
    args: &Args,
    kcored: &Path,
    heartbeat: f64,
    timeout: f64,
) -> anyhow::Result<NodeResult> {
    let dir = tempfile::Builder::new()
        .prefix("kcore-bench-cluster-")
        .tempdir()?;
    // The daemons are gone when this returns (their guards dropped), whatever the outcome.
    let r = node_cluster(args, kcored, heartbeat, timeout, dir.path()).await;
    let left = processes_under(dir.path());
    if !left.is_empty() {
        for &pid in &left {
            let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
        bail!(
            "processes left behind in {}: {left:?}",
            dir.path().display()
        );
    }
    r
}

/// Controller and node in `dir`, then the rounds.
async fn node_cluster(
    args: &Args,
    kcored: &Path,
    heartbeat: f64,
    timeout: f64,
    dir: &Path,
) -> anyhow::Result<NodeResult> {
    let ctl_port = free_port()?;
    let cd = dir.join("ctl");
    std::fs::create_dir_all(&cd)?;
    std::fs::create_dir_all(dir.join("node"))?;
    let argv: Vec<OsString> = vec![
        "controller".into(),
        "--listen".into(),
        format!("127.0.0.1:{ctl_port}").into(),
        "--data-dir".into(),
        cd.join("data").into(),
        "--run-dir".into(),
        cd.join("run").into(),
        "--heartbeat-interval".into(),
        heartbeat.to_string().into(),
        "--node-timeout".into(),
        timeout.to_string().into(),
    ];
    let ctl_log = cd.join("kcored.log");
    let mut ctl = spawn_kcored(kcored, &argv, &ctl_log, "info")?;
    wait_for_socket(
        &mut ctl,
        &cd.join("run/kcore.sock"),
        &ctl_log,
        Duration::from_secs(30),
    )
    .await?;
    let api = admin_client(ctl_port, &cd.join("data/pki")).await?;
    let token = api
        .clone()
        .create_join_token(pb::CreateJoinTokenRequest { ttl_seconds: 600 })
        .await
        .context("CreateJoinToken")?
        .into_inner()
        .token;
    let events = watch(&api).await?;
    let mut c = Cluster {
        kcored: kcored.to_path_buf(),
        dir: dir.to_path_buf(),
        ctl_port,
        node_port: free_port()?,
        api,
        events,
        unexpected: Vec::new(),
    };
    node_rounds(&mut c, args, heartbeat, timeout, &token).await
}

async fn node_rounds(
    c: &mut Cluster,
    args: &Args,
    heartbeat: f64,
    timeout: f64,
    token: &str,
) -> anyhow::Result<NodeResult> {
    let limit = Duration::from_secs_f64(timeout * 3.0 + 30.0);
    let node_sock = c.dir.join("node/run/node.sock");
    let t = Instant::now();
    let mut node = c.spawn_node(Some(token))?;
    wait_for_socket(
        &mut node,
        &node_sock,
        &c.node_log(),
        Duration::from_secs(30),
    )
    .await?;
    let ev = c.wait_event("node.ready", limit).await?;
    let join_ms = ev.at.duration_since(t).as_secs_f64() * 1000.0;
    let mut lag_max = c.wait_state(pb::NodeState::Ready, ev.at).await?;
    eprintln!("  n1 joined and READY after {join_ms:.0} ms");
    let mut r = NodeResult {
        heartbeat,
        timeout,
        join_ms,
        kill_nr: Vec::new(),
        startup: Vec::new(),
        restart_ready: Vec::new(),
        stop_nr: Vec::new(),
        cont_ready: Vec::new(),
        lag_max: 0.0,
        reasons: BTreeSet::new(),
        unexpected: Vec::new(),
    };
    // Stop at evenly spread points of the heartbeat cycle: after a settle of one heartbeat
    // interval, plus (i + 0.5) / runs of another.
    let settle =
        |i: usize| Duration::from_secs_f64(heartbeat * (1.0 + (i as f64 + 0.5) / args.runs as f64));
    for i in 0..args.runs {
        // (a) kill -9 -> NotReady; restart -> READY.
        tokio::time::sleep(settle(i)).await;
        c.drain();
        let t = Instant::now();
        node.0.kill().context("kill -9 the node")?;
        node.0.wait()?;
        let ev = c.wait_event("node.not_ready", limit).await?;
        let kill_ms = ev.at.duration_since(t).as_secs_f64() * 1000.0;
        r.reasons.insert(format!("kill -9: {}", ev.message));
        lag_max = lag_max.max(c.wait_state(pb::NodeState::NotReady, ev.at).await?);
        let t = Instant::now();
        node = c.spawn_node(None)?;
        wait_for_socket(
            &mut node,
            &node_sock,
            &c.node_log(),
            Duration::from_secs(30),
        )
        .await?;
        let startup = ms_since(t);
        let ev = c.wait_event("node.ready", limit).await?;
        let ready_ms = ev.at.duration_since(t).as_secs_f64() * 1000.0;
        lag_max = lag_max.max(c.wait_state(pb::NodeState::Ready, ev.at).await?);
        // (b) SIGSTOP -> NotReady; SIGCONT -> READY.
        tokio::time::sleep(settle(i)).await;
        c.drain();
        let t = Instant::now();
        kill(node.pid(), Signal::SIGSTOP).context("SIGSTOP the node")?;
        let ev = c.wait_event("node.not_ready", limit).await?;
        let stop_ms = ev.at.duration_since(t).as_secs_f64() * 1000.0;
        r.reasons.insert(format!("SIGSTOP: {}", ev.message));
        lag_max = lag_max.max(c.wait_state(pb::NodeState::NotReady, ev.at).await?);
        if args.stop_hold > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(args.stop_hold)).await;
        }
        let t = Instant::now();
        kill(node.pid(), Signal::SIGCONT).context("SIGCONT the node")?;
        let ev = c.wait_event("node.ready", limit).await?;
        let cont_ms = ev.at.duration_since(t).as_secs_f64() * 1000.0;
        lag_max = lag_max.max(c.wait_state(pb::NodeState::Ready, ev.at).await?);
        eprintln!(
            "  round {i}: kill -9 -> NotReady {kill_ms:.1} ms, restart -> READY {ready_ms:.1} ms \
             (node up {startup:.1} ms) | SIGSTOP -> NotReady {stop_ms:.1} ms, SIGCONT -> READY \
             {cont_ms:.1} ms"
        );
        r.kill_nr.push(kill_ms);
        r.startup.push(startup);
        r.restart_ready.push(ready_ms);
        r.stop_nr.push(stop_ms);
        r.cont_ready.push(cont_ms);
    }
    drop(node);
    r.lag_max = lag_max;
    r.unexpected = std::mem::take(&mut c.unexpected);
    Ok(r)
}

/// A ratio with 3 significant digits or so.
fn ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.1}")
    } else if r >= 0.1 {
        format!("{r:.3}")
    } else {
        format!("{r:.4}")
    }
}

/// A result line: name, samples, baseline (what, ms).
type Row<'a> = (&'a str, &'a mut Vec<f64>, Option<(String, f64)>);

impl NodeResult {
    pub(crate) fn print(mut self, args: &Args) {
        println!(
            "\nNode failure detection: controller + 1 joined node over TCP/mTLS, heartbeat {} s, \
             node timeout {} s, {} rounds (ms; event = WatchEvents node.not_ready / node.ready)",
            self.heartbeat, self.timeout, args.runs
        );
        println!(
            "{:<26} {:>9} {:>9} {:>9} {:>24} {:>8}",
            "", "median", "min", "max", "baseline", "ratio"
        );
        let to_ms = self.timeout * 1000.0;
        let mut startup = self.startup.clone();
        let startup_med = median(&mut startup);
        let rows: [Row<'_>; 4] = [
            (
                "kill -9 -> NotReady",
                &mut self.kill_nr,
                Some(("node timeout".into(), to_ms)),
            ),
            (
                "restart -> READY",
                &mut self.restart_ready,
                Some(("node up (node.sock)".into(), startup_med)),
            ),
            (
                "SIGSTOP -> NotReady",
                &mut self.stop_nr,
                Some(("node timeout".into(), to_ms)),
            ),
            (
                if args.stop_hold > 0.0 {
                    "SIGCONT (held) -> READY"
                } else {
                    "SIGCONT -> READY"
                },
                &mut self.cont_ready,
                None,
            ),
        ];
        for (name, v, base) in rows {
            let med = median(v);
            let (min, max) = (
                v.first().copied().unwrap_or(f64::NAN),
                v.last().copied().unwrap_or(f64::NAN),
            );
            match base {
                Some((what, b)) => println!(
                    "{name:<26} {med:>9.1} {min:>9.1} {max:>9.1} {:>24} {:>8}",
                    format!("{what} {b:.1}"),
                    ratio(med / b)
                ),
                None => println!("{name:<26} {med:>9.1} {min:>9.1} {max:>9.1}"),
            }
        }
        if args.stop_hold > 0.0 {
            println!(
                "SIGCONT came {} s after NotReady (--stop-hold)",
                args.stop_hold
            );
        }
        println!(
            "first join (spawn with token -> READY) {:.1} ms; ListNodes agreed with the events \
             within {:.1} ms",
            self.join_ms, self.lag_max
        );
        for why in &self.reasons {
            println!("  NotReady reason, {why}");
        }
        if self.unexpected.is_empty() {
            println!("  no unexpected node events");
        }
        for u in &self.unexpected {
            println!("  unexpected: {u}");
        }
    }
}

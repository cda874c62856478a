//! `kctl events`.

use super::common::texts::*;
use super::common::*;

#[test]
fn events_table_and_json_lines() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["events", "--vm", "web", "--history", "5"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("AT "), "{out}");
    assert_eq!(
        lines[1],
        format!(
            "2025-01-10 12:00:00.002  vm.created    web               CREATING   {}",
            VM_CREATED.fill(&["node-1", &LOCAL_CALLER.fill(&["1000", "alice"])])
        )
    );
    assert_eq!(
        lines[3].trim_end(),
        "2025-01-10 12:00:00.041  vm.status     web               RUNNING"
    );
    let out = ok(&server.kctl(&["events", "-o", "json"]));
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(events.len(), 5);
    assert_eq!(events[0]["kind"], "node.ready");
    assert_eq!(events[1]["kind"], "vm.created");
    let watches = recorded(&server.records.watches);
    assert_eq!(
        watches
            .iter()
            .map(|w| (w.vm.as_str(), w.history, w.follow))
            .collect::<Vec<_>>(),
        [("web", 5, false), ("", 0, false)]
    );
}

#[test]
fn events_follow_until_ctrl_c() {
    let server = Server::unix();
    let mut child = server
        .command(&["events", "--follow", "--history", "1", "--vm", "db"])
        .spawn()
        .expect("spawn");
    let rx = stdout_watcher(&mut child);
    let reason = GUEST_POWERED_OFF.fill(&[]);
    let seen = wait_for(&rx, &reason);
    assert_eq!(
        seen.lines().count(),
        2,
        "the header and db's last event: {seen}"
    );
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let output = wait(child, std::time::Duration::from_secs(20));
    assert!(output.status.success(), "{:?}", output.status);
    let watches = recorded(&server.records.watches);
    assert_eq!(
        watches
            .iter()
            .map(|w| (w.vm.as_str(), w.history, w.follow))
            .collect::<Vec<_>>(),
        [("db", 1, true)]
    );
}

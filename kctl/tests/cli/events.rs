//! `kctl events`.

use super::common::*;

#[test]
fn events_table_and_json_lines() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["events", "--vm", "web", "--history", "5"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("AT "), "{out}");
    assert!(
        lines[2].starts_with(
            "2025-01-10 12:00:00.041  vm.status     web               RUNNING    history=5 vm=web"
        ),
        "{out}"
    );
    let out = ok(&server.kctl(&["events", "-o", "json"]));
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["kind"], "vm.created");
}

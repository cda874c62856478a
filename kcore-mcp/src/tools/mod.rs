//! Every tool kcore-mcp has, in the order they are listed: VMs ([`vm`]), their resource
//! use ([`stats`]), then nodes, events, networks and storage ([`cluster`]), then QMP
//! ([`qmp`]).

pub mod cluster;
pub mod qmp;
pub mod stats;
pub mod vm;

use crate::registry::ToolDef;

/// The longest grace a stop or drain may give a guest, in seconds.
pub const TIMEOUT_CAP: u32 = 300;

/// Every tool, offered or not.
pub fn all() -> Vec<ToolDef> {
    let mut tools = vm::tools();
    tools.extend(stats::tools());
    tools.extend(cluster::tools());
    tools.extend(qmp::tools());
    tools
}

/// A console log as lines: UTF-8 (lossy), without terminal escape sequences, carriage
/// returns or other control characters (tabs stay); a last line without its newline counts.
pub fn lines_of(log: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(log);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // ESC [ params final-byte (CSI), ESC ] ... BEL or ESC \ (OSC), or ESC + one char.
            '\u{1b}' => match chars.next() {
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' || (c == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    let mut lines: Vec<String> = out.split('\n').map(str::to_string).collect();
    if lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Access, VIEWER_METHODS};

    #[test]
    fn console_lines_lose_escapes_and_controls() {
        let log =
            b"\x1b[0;32mOK\x1b[0m boot\r\nKCORE-GUEST-READY\n\x1b]0;title\x07tab\there\x00\nlast";
        assert_eq!(
            lines_of(log),
            ["OK boot", "KCORE-GUEST-READY", "tab\there", "last"]
        );
        assert!(lines_of(b"").is_empty());
        assert_eq!(lines_of(b"a\n\nb\n"), ["a", "", "b"]);
        assert_eq!(lines_of(&[0xff, b'x', b'\n']), ["\u{fffd}x"]);
    }

    #[test]
    fn every_tool_is_well_formed() {
        let tools = all();
        let mut names = std::collections::HashSet::new();
        for t in &tools {
            let m = &t.meta;
            assert!(names.insert(m.name), "{} twice", m.name);
            assert!(
                m.name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{}",
                m.name
            );
            assert!(!m.methods.is_empty(), "{} calls nothing?", m.name);
            assert!(m.description.len() > 40, "{}: describe it", m.name);
            let a = t.tool.annotations.as_ref().expect("annotations");
            assert_eq!(
                a.read_only_hint,
                Some(m.access == Access::Read),
                "{}",
                m.name
            );
            assert_eq!(
                a.destructive_hint,
                Some(m.access == Access::Destructive),
                "{}",
                m.name
            );
            assert!(a.idempotent_hint.is_some() && a.open_world_hint.is_some());
            assert!(t.tool.output_schema.is_some(), "{}", m.name);
            assert_eq!(t.tool.input_schema.get("type"), Some(&"object".into()));
            // Every argument is described for the model.
            if let Some(props) = t
                .tool
                .input_schema
                .get("properties")
                .and_then(|p| p.as_object())
            {
                for (arg, schema) in props {
                    let described = schema.get("description").is_some()
                        || schema.get("$ref").is_some()
                        || schema.get("anyOf").is_some();
                    assert!(described, "{}: argument {arg} has no description", m.name);
                }
            }
            // Reads call only reads, except QMP's query-* (a viewer cannot call ExecQMP).
            if m.access == Access::Read && m.name != "qmp_query" {
                assert!(
                    m.methods.iter().all(|x| VIEWER_METHODS.contains(x)),
                    "{}",
                    m.name
                );
            }
        }
        for expected in [
            "list_vms",
            "get_vm",
            "create_vm",
            "start_vm",
            "stop_vm",
            "reboot_vm",
            "delete_vm",
            "console_tail",
            "wait_vm_ready",
            "list_nodes",
            "list_networks",
            "list_images",
            "list_pools",
            "list_volumes",
            "recent_events",
            "import_image",
            "qmp_query",
            "qmp_execute",
        ] {
            assert!(names.contains(expected), "no {expected}");
        }
    }
}

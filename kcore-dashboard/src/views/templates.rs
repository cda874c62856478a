//! Memory-snapshot templates (ListTemplates): where each is, what its clones get, which
//! VMs were cloned from it, and when it was taken.

use kcore_proto::v1 as pb;
use maud::{Markup, html};

use super::{age, bytes, machine, mib, scroll};

pub fn render(templates: &[pb::Template], now: chrono::DateTime<chrono::Utc>) -> Markup {
    html! {
        h1 { "Templates" }
        (scroll(html! {
            table #template-table {
                thead { tr {
                    th { "Template" } th { "Node" } th { "From VM" } th { "vCPUs" } th { "Memory" }
                    th { "Machine" } th { "Disks" } th { "Size" } th { "Clones" } th { "Created" }
                } }
                tbody { @for t in templates {
                    tr id=(format!("template-{}", t.name)) data-template=(t.name) data-clones=(t.clones.len()) {
                        td { (t.name) }
                        td { a href=(format!("/vms?node={}", t.node)) { (t.node) } }
                        td { (t.source_vm) }
                        td.num { (t.vcpu) }
                        td.num { (mib(u64::from(t.memory_mb))) }
                        td { (machine(t.machine)) }
                        td.num { (t.disks) }
                        td.num { (bytes(t.size_bytes)) }
                        td.clones {
                            (t.clones.len())
                            @for c in &t.clones { " " a href=(format!("/vms/{c}")) { (c) } }
                        }
                        td { time datetime=(t.created_at) { (t.created_at) } " (" (age(&t.created_at, now)) " ago)" }
                    }
                } }
            }
        }))
        @if templates.is_empty() {
            p.muted #no-templates { "no templates: kctl template create NAME --from-vm VM takes one (docs/templates.md)" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A template as kcored answers ListTemplates.
    #[test]
    fn templates_list_their_clones() {
        let t = pb::Template {
            name: "tpl".into(),
            node: "node1".into(),
            source_vm: "gold".into(),
            vcpu: 1,
            memory_mb: 128,
            machine: pb::MachineType::Q35 as i32,
            created_at: "2026-11-29T09:30:00Z".into(),
            size_bytes: 3 << 20,
            disks: 0,
            clones: vec!["kid".into()],
        };
        let html = render(&[t], chrono::Utc::now()).into_string();
        assert!(
            html.contains(r#"data-template="tpl" data-clones="1""#),
            "{html}"
        );
        assert!(html.contains(r#"<a href="/vms/kid">kid</a>"#), "{html}");
        assert!(html.contains("128 MiB") && html.contains("q35"), "{html}");
        let empty = render(&[], chrono::Utc::now()).into_string();
        assert!(empty.contains("no templates"), "{empty}");
    }
}

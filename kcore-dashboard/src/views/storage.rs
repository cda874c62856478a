//! Images, pools and volumes, on every node.

use kcore_proto::v1 as pb;
use maud::{Markup, html};

use super::{bytes, scroll};
use crate::charts::bar;

pub fn render(pools: &[pb::Pool], images: &[pb::Image], volumes: &[pb::Volume]) -> Markup {
    html! {
        h1 { "Storage" }
        h2 #pools { "Pools" }
        (scroll(html! {
            table #pool-table {
                thead { tr { th { "Pool" } th { "Node" } th { "Type" } th { "Source" } th { "Free" } th { "Use" } } }
                tbody { @for p in pools {
                    @let used = p.total_bytes - p.free_bytes.min(p.total_bytes);
                    tr data-pool=(p.name) {
                        td { (p.name) } td { (p.node) } td { (p.r#type) } td { code { (p.source) } }
                        td.num { (bytes(p.free_bytes)) " of " (bytes(p.total_bytes)) }
                        td { (bar(used as f64, p.total_bytes as f64, &bytes(used), "used")) }
                    }
                } }
            }
        }))
        h2 #images { "Images" }
        (scroll(html! {
            table #image-table {
                thead { tr { th { "Image" } th { "Node" } th { "Pool" } th { "Format" } th { "Size" } th { "On disk" } th { "sha256" } } }
                tbody { @for i in images {
                    tr data-image=(i.name) {
                        td { (i.name) } td { (i.node) } td { (i.pool) } td { (i.format) }
                        td.num { (bytes(i.virtual_size)) } td.num { (bytes(i.actual_size)) }
                        td { code.hash { (i.sha256.get(..16).unwrap_or(&i.sha256)) } }
                    }
                } }
            }
        }))
        @if images.is_empty() { p.muted { "no images" } }
        h2 #volumes { "Volumes" }
        (scroll(html! {
            table #volume-table {
                thead { tr { th { "Volume" } th { "Node" } th { "Pool" } th { "VM" } th { "Format" } th { "Size" } th { "On disk" } th { "Backing image" } } }
                tbody { @for v in volumes {
                    tr data-volume=(v.name) {
                        td { (v.name) } td { (v.node) } td { (v.pool) }
                        td { @if v.vm.is_empty() { span.muted { "none" } } @else { a href=(format!("/vms/{}", v.vm)) { (v.vm) } } }
                        td { (v.format) } td.num { (bytes(v.virtual_size)) } td.num { (bytes(v.actual_size)) } td { (v.backing) }
                    }
                } }
            }
        }))
        @if volumes.is_empty() { p.muted { "no volumes" } }
    }
}

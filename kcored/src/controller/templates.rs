//! Template calls of the public API. Templates live on their nodes (a directory each, the
//! node is the truth, as for images and volumes): the controller finds the node, asks it,
//! and sends a clone to its template's node.

use kcore_types::TemplateName;

use super::Controller;
use crate::caller::Requester;
use crate::error::{ApiError, ApiResult};
use crate::model::{Boot, TemplateView, VmRequest};

impl Controller {
    /// The templates of `node` (empty: every ready node).
    pub async fn list_templates(&self, node: &str) -> ApiResult<Vec<TemplateView>> {
        let mut out = Vec::new();
        for mut l in self.nodes_for(node)? {
            out.extend(l.client.list_templates().await?);
        }
        out.sort_by(|a, b| (&a.name, &a.node).cmp(&(&b.name, &b.node)));
        Ok(out)
    }

    /// Template `name`, wherever it is.
    pub async fn get_template(&self, name: &str) -> ApiResult<TemplateView> {
        let name = TemplateName::parse(name)?;
        self.list_templates("")
            .await?
            .into_iter()
            .find(|t| t.name == name.as_str())
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "no template {name} on any ready node (kctl template list)"
                ))
            })
    }

    /// Take template `name` of VM `from_vm` for `by`, on the VM's node.
    pub async fn create_template(
        &self,
        by: &Requester,
        name: &str,
        from_vm: &str,
        stop_source: bool,
    ) -> ApiResult<TemplateView> {
        let name = TemplateName::parse(name)?;
        let row = self.get_row(from_vm)?;
        if let Ok(t) = self.get_template(&name).await {
            return Err(ApiError::AlreadyExists(format!(
                "template {name} exists (on node {})",
                t.node
            )));
        }
        let mut client = self.nodes.client(&row.node)?;
        let t = client.create_template(&name, &row.id, stop_source).await?;
        self.emit(
            "template.created",
            Some(&row),
            format!(
                "template {name} on node {} by {by}{}",
                row.node,
                if stop_source { " (source stopped)" } else { "" }
            ),
        );
        Ok(t)
    }

    /// Delete template `name` for `by`; its node refuses while clones exist.
    pub async fn delete_template(&self, by: &Requester, name: &str) -> ApiResult<()> {
        let t = self.get_template(name).await?;
        let mut client = self.nodes.client(&t.node)?;
        client.delete_template(&t.name).await?;
        self.emit_node("template.deleted", &t.node, format!("{} by {by}", t.name));
        Ok(())
    }

    /// A clone's request completed from its template: its vCPUs and memory (0: the
    /// template's; another value is refused), and the node it must go to.
    pub(super) async fn resolve_template(
        &self,
        spec: &mut VmRequest,
        wanted: Option<&str>,
    ) -> ApiResult<Option<String>> {
        let Boot::Template(name) = &spec.boot else {
            return Ok(wanted.map(str::to_string));
        };
        let t = self.get_template(name).await?;
        for (what, asked, has) in [
            ("memory (MiB)", &mut spec.memory_mib, t.memory_mib),
            ("vCPUs", &mut spec.vcpus, t.vcpus),
        ] {
            if *asked == 0 {
                *asked = has;
            } else if *asked != has {
                return Err(ApiError::InvalidArgument(format!(
                    "template {name} has {what} {has}, not {asked}: a clone has its \
                     template's (leave it out)"
                )));
            }
        }
        if let Some(w) = wanted.filter(|w| *w != t.node) {
            return Err(ApiError::InvalidArgument(format!(
                "template {name} is on node {}: its clones run there, not on node {w}",
                t.node
            )));
        }
        Ok(Some(t.node))
    }
}

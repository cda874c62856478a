//! UpdateVM: a VM's vCPUs and memory (while it is STOPPED), its cloud-init data and its
//! autostart, changed in place. The change is checked whole first, as a create is (the
//! request's validation, the node's room), then made by the node; only when the node has
//! made it does the store take it: a refusal anywhere leaves the VM as it was.

use super::Controller;
use super::store::VmRow;
use crate::caller::Requester;
use crate::error::ApiResult;
use crate::model::request::resize_needs_stop;
use crate::model::{VmStatus, VmUpdate};

impl Controller {
    /// Change VM `name` (name or id) as `u` says, for `by`; an event (`vm.updated`) says
    /// what changed and who asked.
    pub async fn update_vm(&self, by: &Requester, name: &str, u: VmUpdate) -> ApiResult<VmRow> {
        let row = self.get_row(name)?;
        let changes = u.changes(&row.spec);
        if changes.is_empty() {
            return Ok(row);
        }
        let mut spec = row.spec.clone();
        u.apply(&mut spec);
        spec.validate(None)?;
        if u.resizes(row.spec.vcpus, row.spec.memory_mib) {
            if row.status != VmStatus::Stopped {
                return Err(resize_needs_stop(&row.name, row.status.as_str()));
            }
            // As a create: nothing else is placed on the node while its room is checked.
            let _place = self.place_lock.lock().await;
            self.check_room_to_resize(&row.node, &spec)?;
        }
        let _busy = self.busy(&row.id);
        let nv = self.nodes.client(&row.node)?.update(&row.id, &u).await?;
        self.store.update_spec(&row.id, |s| u.apply(s))?;
        self.apply_node_vm(&nv)?;
        let row = self.get_row(&row.id)?;
        self.emit(
            "vm.updated",
            Some(&row),
            format!("{}; by {by}", changes.join("; ")),
        );
        Ok(row)
    }
}

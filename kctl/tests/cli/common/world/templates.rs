//! Templates of the mock world, answered as kcored answers (kcored/src/controller/
//! templates.rs, kcored/src/node/templates/mod.rs).

use kcore_proto::v1::*;
use tonic::Status;

use super::super::texts::{
    NO_TEMPLATE, TEMPLATE_EXISTS, TEMPLATE_HAS_CLONES, TEMPLATE_NOT_RUNNING,
};
use super::{MIB, NODE, World};

/// The world's templates: `web-tpl` (taken of web, with a clone) and `spare` (none).
pub fn default_templates() -> Vec<Template> {
    vec![
        Template {
            name: "web-tpl".into(),
            node: NODE.into(),
            source_vm: "web".into(),
            vcpu: 2,
            memory_mb: 512,
            machine: MachineType::Q35 as i32,
            created_at: "2025-01-10T12:00:00.000Z".into(),
            size_bytes: 180 * MIB,
            disks: 1,
            clones: vec!["web-2".into()],
        },
        Template {
            name: "spare".into(),
            node: NODE.into(),
            source_vm: "db".into(),
            vcpu: 1,
            memory_mb: 128,
            machine: MachineType::Pc as i32,
            created_at: "2025-01-10T12:01:00.000Z".into(),
            size_bytes: 40 * MIB,
            disks: 0,
            clones: Vec::new(),
        },
    ]
}

impl World {
    pub fn list_templates(&self, node: &str) -> Vec<Template> {
        self.templates
            .iter()
            .filter(|t| node.is_empty() || t.node == node)
            .cloned()
            .collect()
    }

    pub fn get_template(&self, name: &str) -> Result<Template, Status> {
        self.templates
            .iter()
            .find(|t| t.name == name)
            .cloned()
            .ok_or_else(|| Status::not_found(NO_TEMPLATE.fill(&[name])))
    }

    pub fn create_template(&self, r: &CreateTemplateRequest) -> Result<Template, Status> {
        let vm = self.vm(&r.from_vm)?;
        if let Ok(t) = self.get_template(&r.name) {
            return Err(Status::already_exists(
                TEMPLATE_EXISTS.fill(&[&r.name, &t.node]),
            ));
        }
        if vm.status != VmStatus::Running as i32 {
            let state = VmStatus::try_from(vm.status)
                .map(|s| s.as_str_name().trim_start_matches("VM_STATUS_").to_string())
                .unwrap_or_default();
            return Err(Status::failed_precondition(
                TEMPLATE_NOT_RUNNING.fill(&[&vm.name, &state]),
            ));
        }
        let spec = vm.spec.clone().unwrap_or_default();
        Ok(Template {
            name: r.name.clone(),
            node: vm.node.clone(),
            source_vm: vm.name.clone(),
            vcpu: spec.vcpu,
            memory_mb: spec.memory_mb,
            machine: spec.machine,
            created_at: "2025-01-10T12:10:00.000Z".into(),
            size_bytes: 200 * MIB,
            disks: vm.disks.len() as u32,
            clones: Vec::new(),
        })
    }

    pub fn delete_template(&self, name: &str) -> Result<(), Status> {
        let t = self.get_template(name)?;
        if !t.clones.is_empty() {
            return Err(Status::failed_precondition(TEMPLATE_HAS_CLONES.fill(&[
                name,
                &t.node,
                &t.clones.join(", "),
            ])));
        }
        Ok(())
    }
}

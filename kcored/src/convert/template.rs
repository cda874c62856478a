//! Templates between the proto and the domain.

use kcore_proto::v1 as pb;

use super::spec::{machine_from_pb, machine_to_pb};
use crate::model::TemplateView;

pub fn template_to_pb(t: &TemplateView) -> pb::Template {
    pb::Template {
        name: t.name.clone(),
        node: t.node.clone(),
        source_vm: t.source_vm.clone(),
        vcpu: t.vcpus,
        memory_mb: t.memory_mib,
        machine: machine_to_pb(Some(t.machine)) as i32,
        created_at: t.created_at.clone(),
        size_bytes: t.size_bytes,
        disks: t.disks,
        clones: t.clones.clone(),
    }
}

pub fn template_from_pb(t: &pb::Template) -> TemplateView {
    TemplateView {
        name: t.name.clone(),
        node: t.node.clone(),
        source_vm: t.source_vm.clone(),
        vcpus: t.vcpu,
        memory_mib: t.memory_mb,
        machine: machine_from_pb(t.machine).unwrap_or_default(),
        created_at: t.created_at.clone(),
        size_bytes: t.size_bytes,
        disks: t.disks,
        clones: t.clones.clone(),
    }
}

#[cfg(test)]
mod tests {
    use kcore_vmm::spec::MachineType;

    use super::*;

    #[test]
    fn templates_round_trip() {
        let t = TemplateView {
            name: "web".into(),
            node: "n1".into(),
            source_vm: "golden".into(),
            vcpus: 1,
            memory_mib: 128,
            machine: MachineType::Pc,
            created_at: "2026-01-01T00:00:00Z".into(),
            size_bytes: 42,
            disks: 1,
            clones: vec!["a".into()],
        };
        assert_eq!(template_from_pb(&template_to_pb(&t)), t);
    }
}

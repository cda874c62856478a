//! `kctl template create|list|get|delete`: memory-snapshot templates (docs/templates.md).

use anyhow::Result;
use kcore_proto::v1::{
    CreateTemplateRequest, DeleteTemplateRequest, GetTemplateRequest, ListTemplatesRequest,
    MachineType, Template,
};

use crate::endpoint::Client;
use crate::output::{self, Format};

/// `kctl template create NAME --from-vm VM [--stop-source]`.
pub async fn create(
    client: &Client,
    format: Format,
    name: String,
    from_vm: String,
    stop_source: bool,
) -> Result<()> {
    let t = client
        .api()
        .create_template(CreateTemplateRequest {
            name,
            from_vm: from_vm.clone(),
            stop_source,
        })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    if format != Format::Table {
        return output::print_structured(format, &t);
    }
    println!(
        "Created template {} from VM {from_vm} on {} ({} vCPU, {}, {} on disk){}",
        t.name,
        t.node,
        t.vcpu,
        output::mib(t.memory_mb),
        output::bytes(t.size_bytes),
        if stop_source {
            "; the VM is stopped"
        } else {
            ""
        }
    );
    Ok(())
}

/// `kctl template list`.
pub async fn list(client: &Client, format: Format, node: Option<String>) -> Result<()> {
    let response = client
        .api()
        .list_templates(ListTemplatesRequest {
            node: node.unwrap_or_default(),
        })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    if format != Format::Table {
        return output::print_structured(format, &response);
    }
    output::print_table(&table(&response.templates))
}

/// `kctl template get NAME`.
pub async fn get(client: &Client, format: Format, name: String) -> Result<()> {
    let t = client
        .api()
        .get_template(GetTemplateRequest { name })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    if format != Format::Table {
        return output::print_structured(format, &t);
    }
    let clones = if t.clones.is_empty() {
        "-".to_string()
    } else {
        t.clones.join(", ")
    };
    for (k, v) in [
        ("Name", t.name.clone()),
        ("Node", t.node.clone()),
        ("From VM", t.source_vm.clone()),
        ("Machine", machine(t.machine)),
        ("vCPU", t.vcpu.to_string()),
        ("Memory", output::mib(t.memory_mb)),
        ("Disks", t.disks.to_string()),
        ("On disk", output::bytes(t.size_bytes)),
        ("Created", t.created_at.clone()),
        ("Clones", clones),
    ] {
        println!("{:<9}{v}", format!("{k}:"));
    }
    Ok(())
}

/// `kctl template delete NAME`.
pub async fn delete(client: &Client, name: String) -> Result<()> {
    client
        .api()
        .delete_template(DeleteTemplateRequest { name: name.clone() })
        .await
        .map_err(|s| client.error(s))?;
    println!("Deleted template {name}");
    Ok(())
}

fn machine(m: i32) -> String {
    match MachineType::try_from(m).unwrap_or_default() {
        MachineType::Pc => "pc",
        MachineType::Microvm => "microvm",
        MachineType::Q35 | MachineType::Unspecified => "q35",
    }
    .to_string()
}

/// NAME, NODE, FROM VM, VCPU, MEMORY, DISKS, SIZE, CLONES.
pub fn table(templates: &[Template]) -> comfy_table::Table {
    let mut t = output::table(&[
        "NAME", "NODE", "FROM VM", "VCPU", "MEMORY", "DISKS", "SIZE", "CLONES",
    ]);
    output::align_right(&mut t, &[3, 4, 5, 6, 7]);
    for tpl in templates {
        t.add_row(vec![
            tpl.name.clone(),
            output::or_dash(&tpl.node),
            output::or_dash(&tpl.source_vm),
            tpl.vcpu.to_string(),
            output::mib(tpl.memory_mb),
            tpl.disks.to_string(),
            output::bytes(tpl.size_bytes),
            tpl.clones.len().to_string(),
        ]);
    }
    t
}

//! Compiles kcore/v1/*.proto with tonic-prost-build, keeps the descriptor set for server
//! reflection, and generates serde impls (proto JSON mapping, proto field names) with pbjson.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor = out.join("kcore_descriptor.bin");
    let protos = ["kcore/v1/kcore.proto", "kcore/v1/node.proto"];
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor)
        .compile_protos(&protos, &["."])?;
    let bytes = std::fs::read(&descriptor)?;
    pbjson_build::Builder::new()
        .register_descriptors(&bytes)?
        .preserve_proto_field_names()
        .emit_fields()
        .build(&[".kcore"])?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}

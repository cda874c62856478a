//! Every public element of kcore's proto files is documented: each service, rpc, message,
//! field, oneof, enum and enum value carries a comment (leading or trailing), read from the
//! descriptor set protoc made with source info (prost-build asks for it). Generated
//! clients in other languages (Go, TypeScript, Python, ...) take their docs from these
//! comments. And each file says where its code goes in other languages (package options).

use prost::Message;
use prost_types::{FileDescriptorProto, FileDescriptorSet};

/// Paths (as in `SourceCodeInfo.Location.path`) and names of every element of `file`.
fn elements(file: &FileDescriptorProto) -> Vec<(Vec<i32>, String)> {
    // Field numbers of FileDescriptorProto, DescriptorProto, ... (descriptor.proto).
    const MESSAGE: i32 = 4;
    const ENUM: i32 = 5;
    const SERVICE: i32 = 6;
    const FIELD: i32 = 2;
    const NESTED: i32 = 3;
    const NESTED_ENUM: i32 = 4;
    const ONEOF: i32 = 8;
    const VALUE: i32 = 2;
    const METHOD: i32 = 2;
    let idx = |i: usize| i32::try_from(i).expect("index");

    fn message(
        out: &mut Vec<(Vec<i32>, String)>,
        path: Vec<i32>,
        name: String,
        m: &prost_types::DescriptorProto,
    ) {
        let idx = |i: usize| i32::try_from(i).expect("index");
        for (i, f) in m.field.iter().enumerate() {
            let mut p = path.clone();
            p.extend([FIELD, idx(i)]);
            out.push((p, format!("{name}.{}", f.name())));
        }
        for (i, o) in m.oneof_decl.iter().enumerate() {
            // The oneof protoc makes for a proto3 `optional` field has no source.
            let synthetic = m
                .field
                .iter()
                .any(|f| f.oneof_index == Some(idx(i)) && f.proto3_optional.unwrap_or(false));
            if synthetic {
                continue;
            }
            let mut p = path.clone();
            p.extend([ONEOF, idx(i)]);
            out.push((p, format!("{name}.{} (oneof)", o.name())));
        }
        for (i, e) in m.enum_type.iter().enumerate() {
            let mut p = path.clone();
            p.extend([NESTED_ENUM, idx(i)]);
            enumeration(out, p, format!("{name}.{}", e.name()), e);
        }
        for (i, n) in m.nested_type.iter().enumerate() {
            let mut p = path.clone();
            p.extend([NESTED, idx(i)]);
            let nested = format!("{name}.{}", n.name());
            out.push((p.clone(), nested.clone()));
            message(out, p, nested, n);
        }
    }

    fn enumeration(
        out: &mut Vec<(Vec<i32>, String)>,
        path: Vec<i32>,
        name: String,
        e: &prost_types::EnumDescriptorProto,
    ) {
        out.push((path.clone(), name.clone()));
        for (i, v) in e.value.iter().enumerate() {
            let mut p = path.clone();
            p.extend([VALUE, i32::try_from(i).expect("index")]);
            out.push((p, format!("{name}.{}", v.name())));
        }
    }

    let mut out = Vec::new();
    for (i, m) in file.message_type.iter().enumerate() {
        out.push((vec![MESSAGE, idx(i)], m.name().to_string()));
        message(&mut out, vec![MESSAGE, idx(i)], m.name().to_string(), m);
    }
    for (i, e) in file.enum_type.iter().enumerate() {
        enumeration(&mut out, vec![ENUM, idx(i)], e.name().to_string(), e);
    }
    for (i, s) in file.service.iter().enumerate() {
        out.push((vec![SERVICE, idx(i)], s.name().to_string()));
        for (j, m) in s.method.iter().enumerate() {
            out.push((
                vec![SERVICE, idx(i), METHOD, idx(j)],
                format!("{}.{}", s.name(), m.name()),
            ));
        }
    }
    out
}

fn kcore_files() -> Vec<FileDescriptorProto> {
    let set = FileDescriptorSet::decode(kcore_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let files: Vec<FileDescriptorProto> = set
        .file
        .into_iter()
        .filter(|f| f.name().starts_with("kcore/"))
        .collect();
    assert_eq!(files.len(), 2, "kcore.proto and node.proto");
    files
}

#[test]
fn every_public_element_has_a_comment() {
    let mut missing = Vec::new();
    let mut checked = 0;
    for file in kcore_files() {
        let info = file
            .source_code_info
            .as_ref()
            .expect("the descriptor set has source info");
        for (path, name) in elements(&file) {
            checked += 1;
            let documented = info.location.iter().any(|l| {
                l.path == path
                    && (!l.leading_comments().trim().is_empty()
                        || !l.trailing_comments().trim().is_empty())
            });
            if !documented {
                missing.push(format!("{}: {name}", file.name()));
            }
        }
    }
    assert!(checked > 300, "only {checked} elements?");
    assert!(
        missing.is_empty(),
        "{} element(s) of the proto files have no comment (a // line above it, or after it \
         on its line):\n{}",
        missing.len(),
        missing.join("\n")
    );
}

#[test]
fn files_say_where_their_code_goes_in_other_languages() {
    for file in kcore_files() {
        let o = file.options.clone().unwrap_or_default();
        let name = file.name().to_string();
        assert!(o.go_package().ends_with(";kcorev1"), "{name}: go_package");
        assert_eq!(o.java_package(), "dev.kcore.v1", "{name}");
        assert!(o.java_multiple_files(), "{name}: java_multiple_files");
        assert_eq!(o.csharp_namespace(), "Kcore.V1", "{name}");
        assert_eq!(o.php_namespace(), "Kcore\\V1", "{name}");
        assert_eq!(o.ruby_package(), "Kcore::V1", "{name}");
    }
}

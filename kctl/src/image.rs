//! `kctl image import|list|delete`.
//!
//! `import` streams ImportImage: progress messages (done/total bytes) drive a progress bar
//! on stderr when it is a terminal; the last message carries the image, printed as
//! `Imported image NAME (qcow2, 2.0 GiB virtual, sha256 0123456789ab...)` or, with `-o
//! json|yaml`, as the Image object.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use kcore_proto::v1::{DeleteImageRequest, Image, ImportImageRequest, ListImagesRequest};

use crate::cli::ImportArgs;
use crate::endpoint::Client;
use crate::output::{self, Format};
use crate::progress::Progress;

/// Builds the ImportImage request, resolving SOURCE (see [`resolve_source`]).
pub fn import_request(args: &ImportArgs) -> Result<ImportImageRequest> {
    Ok(ImportImageRequest {
        name: args.name.clone(),
        source: resolve_source(&args.source)?,
        sha256: args.sha256.clone().unwrap_or_default(),
        node: args.node.clone().unwrap_or_default(),
        pool: args.pool.clone().unwrap_or_default(),
        // The controller says who we are.
        caller: None,
    })
}

/// SOURCE as the node should see it: URLs (anything with `://`) unchanged; a path that
/// exists here canonicalized (the all-in-one daemon runs on this machine); any other path
/// made absolute against the current directory, as `--kernel` is, for the node to find or
/// reject.
pub fn resolve_source(source: &str) -> Result<String> {
    if source.is_empty() {
        bail!("SOURCE is empty: give a path on the node or an http(s) URL");
    }
    if source.contains("://") {
        return Ok(source.to_string());
    }
    let path = Path::new(source);
    let resolved = match path.canonicalize() {
        Ok(found) => found,
        Err(_) => std::path::absolute(path)
            .with_context(|| format!("making {} absolute", path.display()))?,
    };
    resolved
        .into_os_string()
        .into_string()
        .map_err(|p| anyhow!("path {} is not UTF-8", p.display()))
}

/// `kctl image import`.
pub async fn import(client: &Client, format: Format, request: ImportImageRequest) -> Result<()> {
    let name = request.name.clone();
    let mut progress = Progress::new(format!("Importing {name}"), std::io::stderr().is_terminal())?;
    let mut stream = client
        .api()
        .import_image(request)
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    let image = loop {
        match stream.message().await {
            Ok(Some(message)) => match message.image {
                Some(image) => break image,
                None => progress.update(message.done_bytes, message.total_bytes),
            },
            Ok(None) => bail!("the server ended the import of {name} without the image"),
            Err(status) => return Err(client.error(status).into()),
        }
    };
    drop(progress);
    if format != Format::Table {
        return output::print_structured(format, &image);
    }
    output::write_stdout(imported_summary(&image).as_bytes())
}

/// `Imported image debian (qcow2, 2.0 GiB virtual, sha256 0123456789ab...)`.
pub fn imported_summary(image: &Image) -> String {
    let mut details = vec![
        output::or_dash(&image.format),
        format!("{} virtual", output::bytes(image.virtual_size)),
    ];
    if !image.sha256.is_empty() {
        details.push(format!("sha256 {}...", output::short_sha(&image.sha256)));
    }
    format!("Imported image {} ({})\n", image.name, details.join(", "))
}

/// `kctl image list`.
pub async fn list(client: &Client, format: Format, node: Option<String>) -> Result<()> {
    let response = client
        .api()
        .list_images(ListImagesRequest {
            node: node.unwrap_or_default(),
        })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    if format != Format::Table {
        return output::print_structured(format, &response);
    }
    output::print_table(&list_table(&response.images))
}

/// NAME, NODE, POOL, FORMAT, VIRTUAL, ACTUAL, SHA256 (first 12 digits).
pub fn list_table(images: &[Image]) -> comfy_table::Table {
    let mut table = output::table(&[
        "NAME", "NODE", "POOL", "FORMAT", "VIRTUAL", "ACTUAL", "SHA256",
    ]);
    output::align_right(&mut table, &[4, 5]);
    for image in images {
        table.add_row(vec![
            image.name.clone(),
            output::or_dash(&image.node),
            output::or_dash(&image.pool),
            output::or_dash(&image.format),
            output::bytes(image.virtual_size),
            output::bytes(image.actual_size),
            output::short_sha(&image.sha256),
        ]);
    }
    table
}

/// `kctl image delete`.
pub async fn delete(
    client: &Client,
    format: Format,
    name: String,
    node: Option<String>,
    pool: Option<String>,
) -> Result<()> {
    client
        .api()
        .delete_image(DeleteImageRequest {
            name: name.clone(),
            node: node.unwrap_or_default(),
            pool: pool.unwrap_or_default(),
        })
        .await
        .map_err(|s| client.error(s))?;
    match format {
        Format::Table => output::write_stdout(format!("Deleted image {name}\n").as_bytes()),
        Format::Json | Format::Yaml => output::write_stdout(b"{}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Image {
        Image {
            name: "debian-12".into(),
            node: "node-1".into(),
            pool: "default".into(),
            format: "qcow2".into(),
            virtual_size: 2 << 30,
            actual_size: 700 << 20,
            sha256: "0123456789abcdef".repeat(4),
        }
    }

    #[test]
    fn summary_line() {
        assert_eq!(
            imported_summary(&sample()),
            "Imported image debian-12 (qcow2, 2.0 GiB virtual, sha256 0123456789ab...)\n"
        );
        let raw = Image {
            format: "raw".into(),
            sha256: String::new(),
            ..sample()
        };
        assert_eq!(
            imported_summary(&raw),
            "Imported image debian-12 (raw, 2.0 GiB virtual)\n"
        );
    }

    #[test]
    fn image_table() {
        let text = list_table(&[sample()]).trim_fmt();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "NAME       NODE    POOL     FORMAT  VIRTUAL     ACTUAL  SHA256",
                "debian-12  node-1  default  qcow2   2.0 GiB  700.0 MiB  0123456789ab",
            ]
        );
    }

    #[test]
    fn json_keeps_sizes_as_strings() {
        let value = serde_json::to_value(sample()).expect("json");
        assert_eq!(value["virtual_size"], "2147483648");
        assert_eq!(value["sha256"], "0123456789abcdef".repeat(4));
    }

    #[test]
    fn sources() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("d.qcow2");
        std::fs::write(&file, b"x").expect("write");
        let canonical = file.canonicalize().expect("canonical");
        // An existing path, given with a detour, comes out canonical.
        let detour = dir.path().join(".").join("d.qcow2");
        assert_eq!(
            resolve_source(&detour.to_string_lossy()).expect("source"),
            canonical.to_string_lossy()
        );
        for url in ["https://example.com/d.qcow2", "http://h/x.img"] {
            assert_eq!(resolve_source(url).expect("url"), url);
        }
        assert_eq!(
            resolve_source("/srv/images/d.qcow2").expect("node path"),
            "/srv/images/d.qcow2"
        );
        let relative = resolve_source("no/such/image.qcow2").expect("relative");
        assert!(Path::new(&relative).is_absolute(), "{relative}");
        assert!(relative.ends_with("/no/such/image.qcow2"), "{relative}");
        assert!(resolve_source("").is_err());
    }
}

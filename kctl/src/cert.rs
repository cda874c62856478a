//! `kctl cert issue`: a client certificate from the controller's CA, written to files.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use kcore_proto::v1::IssueCertificateRequest;

use crate::cli::CertRole;
use crate::endpoint::Client;
use crate::output::{self, Format};

/// `kctl cert issue NAME --role viewer|admin [--out DIR]`: writes `NAME.crt`, `NAME.key`
/// (0600) and `ca.crt` into `out`. Existing certificate or key files are never replaced; an
/// existing `ca.crt` must be the cluster CA.
pub async fn issue(
    client: &Client,
    format: Format,
    name: String,
    role: CertRole,
    out: PathBuf,
) -> Result<()> {
    let cert_path = out.join(format!("{name}.crt"));
    let key_path = out.join(format!("{name}.key"));
    let ca_path = out.join("ca.crt");
    for p in [&cert_path, &key_path] {
        if p.exists() {
            bail!("{} exists: remove it or choose another --out", p.display());
        }
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let issued = client
        .api()
        .issue_certificate(IssueCertificateRequest {
            name,
            role: role.as_str().to_string(),
        })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    match std::fs::read(&ca_path) {
        Ok(existing) if existing == issued.ca_pem.as_bytes() => {}
        Ok(_) => bail!(
            "{} exists and is not this cluster's CA: remove it or choose another --out",
            ca_path.display()
        ),
        Err(_) => write_new(&ca_path, issued.ca_pem.as_bytes(), 0o644)?,
    }
    write_new(&key_path, issued.key_pem.as_bytes(), 0o600)?;
    write_new(&cert_path, issued.cert_pem.as_bytes(), 0o644)?;
    if format != Format::Table {
        return output::print_structured(
            format,
            &serde_json::json!({
                "cert": cert_path,
                "key": key_path,
                "ca": ca_path,
            }),
        );
    }
    let text = format!(
        "{}\n{}\n{}\n",
        cert_path.display(),
        key_path.display(),
        ca_path.display()
    );
    output::write_stdout(text.as_bytes())
}

/// Create `path` with `mode`; fails if it exists.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))
}

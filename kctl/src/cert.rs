//! `kctl cert issue | list | revoke`: client certificates from the controller's CA, written
//! to files; the list of what the controller issued; revocation.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use kcore_proto::v1::{
    CertificateInfo, IssueCertificateRequest, ListCertificatesRequest, RevokeCertificateRequest,
};

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

/// SERIAL, NAME, ROLE, EXPIRES, REVOKED.
pub fn table(certs: &[CertificateInfo]) -> comfy_table::Table {
    let mut table = output::table(&["SERIAL", "NAME", "ROLE", "EXPIRES", "REVOKED"]);
    for c in certs {
        table.add_row(vec![
            c.serial.clone(),
            c.name.clone(),
            c.role.clone(),
            output::short_time(&c.not_after),
            if c.revoked_at.is_empty() {
                "-".to_string()
            } else {
                output::short_time(&c.revoked_at)
            },
        ]);
    }
    table
}

/// `kctl cert list`.
pub async fn list(client: &Client, format: Format) -> Result<()> {
    let reply = client
        .api()
        .list_certificates(ListCertificatesRequest {})
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    if format != Format::Table {
        return output::print_structured(format, &reply);
    }
    output::print_table(&table(&reply.certificates))
}

/// `kctl cert revoke NAME | --serial HEX`.
pub async fn revoke(
    client: &Client,
    format: Format,
    name: Option<String>,
    serial: Option<String>,
) -> Result<()> {
    let reply = client
        .api()
        .revoke_certificate(RevokeCertificateRequest {
            name: name.unwrap_or_default(),
            serial: serial.unwrap_or_default(),
        })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    if format != Format::Table {
        return output::print_structured(format, &reply);
    }
    let text: String = reply
        .certificates
        .iter()
        .map(|c| {
            format!(
                "Revoked {} certificate {} of {}\n",
                c.role, c.serial, c.name
            )
        })
        .collect();
    output::write_stdout(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_table() {
        let certs = [
            CertificateInfo {
                serial: "1f2e".into(),
                name: "alice".into(),
                role: "viewer".into(),
                not_after: "2027-11-28T10:00:00.000Z".into(),
                issued_at: "2026-11-28T10:00:00.000Z".into(),
                revoked_at: String::new(),
            },
            CertificateInfo {
                serial: "0a".into(),
                name: "n1".into(),
                role: "node".into(),
                not_after: "2027-11-28T10:00:00.000Z".into(),
                issued_at: "2026-11-28T10:00:00.000Z".into(),
                revoked_at: "2026-11-28T12:00:00.000Z".into(),
            },
        ];
        let text = table(&certs).trim_fmt();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["SERIAL", "NAME", "ROLE", "EXPIRES", "REVOKED"]
        );
        assert!(
            lines[1].starts_with("1f2e") && lines[1].trim_end().ends_with('-'),
            "{text}"
        );
        assert!(
            lines[2].contains("n1") && lines[2].contains("2026-11-28 12:00"),
            "{text}"
        );
    }
}

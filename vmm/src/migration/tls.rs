//! A migration's TLS credentials: QEMU's `tls-creds-x509` reads PEM files from a
//! directory by path, so they are written for the VM's QEMU uid only, loaded, and removed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::{TLS_ID, TlsFiles};
use crate::VmmError;
use crate::qmp::QmpClient;
use crate::vm::Vm;

fn tls_dir(vm: &Vm, role: &str) -> PathBuf {
    let run_dir = vm
        .paths()
        .dir
        .parent()
        .and_then(|vms| vms.parent())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    run_dir
        .join("migration-tls")
        .join(format!("{}-{role}", vm.id()))
}

/// Write the PEM files QEMU's `tls-creds-x509` reads, readable by the VM's QEMU uid only,
/// `object-add` the credentials, and remove the files again whatever happened.
pub(crate) async fn add_tls_creds(
    vm: &Vm,
    qmp: &QmpClient,
    tls: &TlsFiles,
    server: bool,
) -> Result<(), VmmError> {
    let role = if server { "server" } else { "client" };
    let dir = tls_dir(vm, role);
    let written = write_tls_files(vm, &dir, tls, role);
    let r = match written {
        Ok(()) => qmp
            .execute(
                "object-add",
                Some(json!({
                    "qom-type": "tls-creds-x509",
                    "id": TLS_ID,
                    "dir": dir.to_string_lossy(),
                    "endpoint": role,
                    "verify-peer": true,
                })),
            )
            .await
            .map(drop),
        Err(e) => Err(e),
    };
    if let Err(e) = std::fs::remove_dir_all(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove migration TLS files");
    }
    r
}

fn write_tls_files(vm: &Vm, dir: &Path, tls: &TlsFiles, role: &str) -> Result<(), VmmError> {
    let parent = dir.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent).map_err(|e| VmmError::io("create", parent, e))?;
    // Traversable, not listable or writable: QEMU reads the files it is told of and can
    // plant nothing.
    for d in [parent, dir] {
        if d == dir {
            match std::fs::create_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(VmmError::io("create", d, e)),
            }
        }
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| VmmError::io("chmod", d, e))?;
    }
    let uid = vm.run_as().map(|r| r.uid);
    for (name, pem) in [
        ("ca-cert.pem", &tls.ca_pem),
        (&format!("{role}-cert.pem") as &str, &tls.cert_pem),
        (&format!("{role}-key.pem") as &str, &tls.key_pem),
    ] {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let mut opts = std::fs::OpenOptions::new();
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o400);
        let mut f = opts
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| VmmError::io("create", &path, e))?;
        std::io::Write::write_all(&mut f, pem.as_bytes())
            .map_err(|e| VmmError::io("write", &path, e))?;
        if let Some(uid) = uid {
            std::os::unix::fs::fchown(&f, Some(uid), None)
                .map_err(|e| VmmError::io("chown", &path, e))?;
        }
    }
    Ok(())
}

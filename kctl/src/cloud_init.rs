//! The cloud-init data of `vm create` and `vm set`, from the files given and the shorthands:
//! `--ssh-key FILE` writes the user-data (a `#cloud-config` with `ssh_authorized_keys`),
//! `--hostname H` the meta-data (`local-hostname: H`). The server checks the files (YAML,
//! sizes); kctl only reads them and builds what the shorthands stand for.

use std::path::Path;

use anyhow::{Context, Result, bail};
use kcore_proto::v1::CloudInit;

use crate::cli::CloudInitArgs;

/// The files the options give (None: that file was not given).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Given {
    pub user_data: Option<String>,
    pub meta_data: Option<String>,
    pub network_config: Option<String>,
}

impl Given {
    pub fn is_empty(&self) -> bool {
        self.user_data.is_none() && self.meta_data.is_none() && self.network_config.is_none()
    }
}

fn read(option: &str, path: &Path) -> Result<String> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading {option} {}", path.display()))?;
    String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{option} {}: not UTF-8 text", path.display()))
}

/// The keys of an authorized_keys-style file: one a line, blank lines and `#` comments
/// skipped; each must at least look like `TYPE BASE64 [COMMENT]`.
fn read_keys(path: &Path) -> Result<Vec<String>> {
    let text = read("--ssh-key", path)?;
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.split_whitespace().count() < 2 {
            bail!(
                "--ssh-key {}: line {} is not an SSH public key (TYPE KEY [COMMENT])",
                path.display(),
                n + 1
            );
        }
        keys.push(line.to_string());
    }
    if keys.is_empty() {
        bail!("--ssh-key {}: no key in the file", path.display());
    }
    Ok(keys)
}

/// A `#cloud-config` that authorizes `keys` for the guest's default user.
pub fn ssh_cloud_config(keys: &[String]) -> String {
    let mut text = String::from("#cloud-config\nssh_authorized_keys:\n");
    for k in keys {
        // A JSON string is a YAML double-quoted scalar.
        text.push_str(&format!(
            "  - {}\n",
            serde_json::to_string(k).unwrap_or_default()
        ));
    }
    text
}

/// An RFC 1123 host name: dot-separated labels of letters, digits and `-` (not first or
/// last), 1-63 characters each, 253 in all.
fn check_hostname(h: &str) -> Result<()> {
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if h.len() > 253 || !h.split('.').all(ok_label) {
        bail!(
            "--hostname {h:?} is not a host name (letters, digits and '-', dot-separated \
             labels of at most 63)"
        );
    }
    Ok(())
}

/// Read the files and apply the shorthands.
pub fn given(args: &CloudInitArgs) -> Result<Given> {
    let file = |option: &str, p: &Option<std::path::PathBuf>| -> Result<Option<String>> {
        p.as_deref().map(|p| read(option, p)).transpose()
    };
    let mut g = Given {
        user_data: file("--cloud-init-user-data", &args.cloud_init_user_data)?,
        meta_data: file("--cloud-init-meta-data", &args.cloud_init_meta_data)?,
        network_config: file(
            "--cloud-init-network-config",
            &args.cloud_init_network_config,
        )?,
    };
    if let Some(path) = &args.ssh_key {
        g.user_data = Some(ssh_cloud_config(&read_keys(path)?));
    }
    if let Some(h) = &args.hostname {
        check_hostname(h)?;
        g.meta_data = Some(format!("local-hostname: {h}\n"));
    }
    Ok(g)
}

/// What `vm create` sends: None when no cloud-init option was given.
pub fn for_create(args: &CloudInitArgs) -> Result<Option<CloudInit>> {
    let mut g = given(args)?;
    if g.is_empty() {
        return Ok(None);
    }
    if args.hostname.is_some() {
        // A minimal #cloud-config beside the hostname's meta-data.
        g.user_data.get_or_insert_with(|| "#cloud-config\n".into());
    }
    Ok(Some(CloudInit {
        user_data: g.user_data.unwrap_or_default(),
        meta_data: g.meta_data.unwrap_or_default(),
        network_config: g.network_config.unwrap_or_default(),
    }))
}

/// What `vm set` sends: the VM's `current` files with the given ones in their place.
pub fn merged(current: Option<&CloudInit>, g: Given) -> CloudInit {
    let current = current.cloned().unwrap_or_default();
    CloudInit {
        user_data: g.user_data.unwrap_or(current.user_data),
        meta_data: g.meta_data.unwrap_or(current.meta_data),
        network_config: g.network_config.unwrap_or(current.network_config),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorthands_make_the_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("id.pub");
        std::fs::write(&key, "# mine\nssh-ed25519 AAAAC3 me@host\n\n").expect("write");
        let args = CloudInitArgs {
            ssh_key: Some(key.clone()),
            hostname: Some("web-1.example".into()),
            ..Default::default()
        };
        let ci = for_create(&args).expect("ok").expect("some");
        assert_eq!(
            ci.user_data,
            "#cloud-config\nssh_authorized_keys:\n  - \"ssh-ed25519 AAAAC3 me@host\"\n"
        );
        assert_eq!(ci.meta_data, "local-hostname: web-1.example\n");
        assert_eq!(ci.network_config, "");
        assert_eq!(for_create(&CloudInitArgs::default()).expect("ok"), None);
        let bad = CloudInitArgs {
            hostname: Some("-bad_".into()),
            ..Default::default()
        };
        assert!(for_create(&bad).is_err());
        std::fs::write(&key, "not-a-key\n").expect("write");
        let e = for_create(&args).expect_err("bad key").to_string();
        assert!(e.contains("line 1 is not an SSH public key"), "{e}");
    }

    #[test]
    fn set_replaces_only_what_is_given() {
        let current = CloudInit {
            user_data: "#!/bin/sh\n".into(),
            meta_data: "local-hostname: a\n".into(),
            network_config: "version: 2\n".into(),
        };
        let g = Given {
            meta_data: Some("local-hostname: b\n".into()),
            ..Default::default()
        };
        let m = merged(Some(&current), g);
        assert_eq!(m.user_data, "#!/bin/sh\n");
        assert_eq!(m.meta_data, "local-hostname: b\n");
        assert_eq!(m.network_config, "version: 2\n");
    }
}

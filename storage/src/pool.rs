//! Pool configuration (`NAME=dir:PATH`, `NAME=lvm:VG`, `NAME=lvm:VG/THINPOOL`) and
//! opening a pool from it.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use crate::lvm::validate_lvm_name;
use crate::runner::Runner;
use crate::{Backend, DirBackend, ImageStore, LvmBackend, LvmConfig, StorageError, name};

/// One configured pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    pub name: String,
    pub kind: PoolKind,
}

/// What a pool is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolKind {
    /// A directory (absolute path) holding `volumes/` and `images/`.
    Dir { path: PathBuf },
    /// An LVM volume group, optionally with a thin pool for thin volumes.
    Lvm {
        vg: String,
        thin_pool: Option<String>,
    },
}

impl FromStr for PoolConfig {
    type Err = StorageError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| StorageError::InvalidPoolSpec {
            spec: spec.to_string(),
            reason,
        };
        let (pool_name, rest) = spec
            .split_once('=')
            .ok_or_else(|| fail("expected NAME=dir:PATH or NAME=lvm:VG[/THINPOOL]".into()))?;
        name::validate("pool", pool_name).map_err(|e| fail(e.to_string()))?;
        let (kind, arg) = rest
            .split_once(':')
            .ok_or_else(|| fail("expected dir:PATH or lvm:VG[/THINPOOL] after '='".into()))?;
        let kind = match kind {
            "dir" => {
                if arg.is_empty() {
                    return Err(fail("dir: needs a path".into()));
                }
                let path = PathBuf::from(arg);
                if !path.is_absolute() {
                    return Err(fail(format!("dir path {arg:?} must be absolute")));
                }
                PoolKind::Dir { path }
            }
            "lvm" => {
                let (vg, thin_pool) = match arg.split_once('/') {
                    Some((vg, tp)) => (vg, Some(tp)),
                    None => (arg, None),
                };
                validate_lvm_name("volume group", vg).map_err(|e| fail(e.to_string()))?;
                if let Some(tp) = thin_pool {
                    validate_lvm_name("thin pool", tp).map_err(|e| fail(e.to_string()))?;
                }
                PoolKind::Lvm {
                    vg: vg.to_string(),
                    thin_pool: thin_pool.map(str::to_string),
                }
            }
            other => {
                return Err(fail(format!(
                    "unknown pool kind {other:?}: expected dir or lvm"
                )));
            }
        };
        Ok(PoolConfig {
            name: pool_name.to_string(),
            kind,
        })
    }
}

impl std::fmt::Display for PoolConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            PoolKind::Dir { path } => write!(f, "{}=dir:{}", self.name, path.display()),
            PoolKind::Lvm {
                vg,
                thin_pool: None,
            } => write!(f, "{}=lvm:{vg}", self.name),
            PoolKind::Lvm {
                vg,
                thin_pool: Some(tp),
            } => write!(f, "{}=lvm:{vg}/{tp}", self.name),
        }
    }
}

/// An open pool.
#[derive(Debug)]
pub enum Pool {
    Dir(DirBackend),
    Lvm(LvmBackend),
}

impl Pool {
    /// Open the pool `cfg` describes (lvm pools with device-mapper in use).
    pub fn open(cfg: &PoolConfig, runner: Arc<dyn Runner>) -> Result<Pool, StorageError> {
        match &cfg.kind {
            PoolKind::Dir { path } => Ok(Pool::Dir(DirBackend::open(path, runner)?)),
            PoolKind::Lvm { vg, thin_pool } => Ok(Pool::Lvm(LvmBackend::new(
                LvmConfig {
                    vg: vg.clone(),
                    thin_pool: thin_pool.clone(),
                    driver_loaded: true,
                },
                runner,
            )?)),
        }
    }

    pub fn backend(&self) -> &dyn Backend {
        match self {
            Pool::Dir(d) => d,
            Pool::Lvm(l) => l,
        }
    }

    /// The pool's image store, for pools that have one (dir).
    pub fn images(&self) -> Option<&ImageStore> {
        match self {
            Pool::Dir(d) => Some(d.images()),
            Pool::Lvm(_) => None,
        }
    }

    /// The pool directory, for dir pools.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Pool::Dir(d) => Some(d.root()),
            Pool::Lvm(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<PoolConfig, StorageError> {
        s.parse()
    }

    #[test]
    fn parses_good_specs() {
        let d = parse("default=dir:/var/lib/kcore/pools/default").expect("dir");
        assert_eq!(d.name, "default");
        assert_eq!(
            d.kind,
            PoolKind::Dir {
                path: "/var/lib/kcore/pools/default".into()
            }
        );
        let l = parse("fast=lvm:vg0").expect("lvm");
        assert_eq!(
            l.kind,
            PoolKind::Lvm {
                vg: "vg0".into(),
                thin_pool: None
            }
        );
        let t = parse("thin=lvm:vg0/tp").expect("thin");
        assert_eq!(
            t.kind,
            PoolKind::Lvm {
                vg: "vg0".into(),
                thin_pool: Some("tp".into())
            }
        );
        for s in ["default=dir:/srv/p", "fast=lvm:vg0", "thin=lvm:vg0/tp"] {
            assert_eq!(parse(s).expect(s).to_string(), s);
        }
    }

    #[test]
    fn refuses_bad_specs_with_a_reason() {
        for (spec, why) in [
            ("nopool", "expected NAME=dir:PATH"),
            ("=dir:/x", "invalid pool name"),
            ("Bad=dir:/x", "invalid pool name"),
            ("p=dir", "expected dir:PATH"),
            ("p=dir:", "needs a path"),
            ("p=dir:relative/path", "must be absolute"),
            ("p=zfs:tank", "unknown pool kind \"zfs\""),
            ("p=lvm:", "invalid volume group name"),
            ("p=lvm:vg/", "invalid thin pool name"),
            ("p=lvm:vg/a/b", "invalid thin pool name"),
            ("p=lvm:-vg", "invalid volume group name"),
        ] {
            let err = parse(spec).expect_err(spec).to_string();
            assert!(err.contains(why), "{spec}: {err}");
            assert!(err.contains(spec), "{spec}: {err}");
        }
    }
}

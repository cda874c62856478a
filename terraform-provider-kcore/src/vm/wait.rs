//! Waiting for a VM after it runs: `wait_for { ready, ipv4, timeout }`. `ready` is the
//! `guest_ready` phase of the VM's boot timeline (its console matched the ready pattern),
//! `ipv4` the first NIC's leased address.

use std::time::{Duration, Instant};

use kcore_client::Client;
use kcore_proto::v1 as pb;

use super::state::{VmState, status_name};
use crate::duration;
use crate::schema::list;
use tf_provider::value::Value;

/// The default of `wait_for.timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// What to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub ready: bool,
    pub ipv4: bool,
    pub timeout: Duration,
}

impl Wait {
    /// The `wait_for` block of a state (nothing to wait for without one).
    pub fn of(state: &VmState) -> Result<Wait, String> {
        let Some(w) = list(&state.wait_for).into_iter().next() else {
            return Ok(Wait {
                ready: false,
                ipv4: false,
                timeout: DEFAULT_TIMEOUT,
            });
        };
        let timeout = match &w.timeout {
            Value::Value(t) => duration::parse(t).map_err(|e| format!("wait_for.timeout: {e}"))?,
            _ => DEFAULT_TIMEOUT,
        };
        Ok(Wait {
            ready: matches!(w.ready, Value::Value(true)),
            ipv4: matches!(w.ipv4, Value::Value(true)),
            timeout,
        })
    }

    fn nothing(&self) -> bool {
        !self.ready && !self.ipv4
    }
}

/// Whether the VM's last start reached `guest_ready`.
pub fn is_ready(vm: &pb::Vm) -> bool {
    vm.timeline
        .as_ref()
        .is_some_and(|t| t.phases.iter().any(|p| p.name == "guest_ready"))
}

/// The first NIC's leased address, if any.
pub fn first_ip(vm: &pb::Vm) -> Option<&str> {
    vm.nics
        .first()
        .map(|n| n.ip.as_str())
        .filter(|ip| !ip.is_empty())
}

/// Polls GetVM until what `wait` asks for holds; the VM as last seen, or an error saying
/// what was missing (and why, when the VM stopped running).
pub async fn until(client: &Client, key: &str, wait: Wait) -> Result<pb::Vm, String> {
    let deadline = Instant::now() + wait.timeout;
    loop {
        let vm = client
            .api()
            .get_vm(pb::GetVmRequest {
                name: key.to_string(),
            })
            .await
            .map_err(|s| client.error(s).to_string())?
            .into_inner();
        let ready = !wait.ready || is_ready(&vm);
        let ip = !wait.ipv4 || first_ip(&vm).is_some();
        if wait.nothing() || (ready && ip) {
            return Ok(vm);
        }
        let status = pb::VmStatus::try_from(vm.status).unwrap_or(pb::VmStatus::Unspecified);
        if matches!(
            status,
            pb::VmStatus::Stopped | pb::VmStatus::Crashed | pb::VmStatus::Error
        ) {
            return Err(format!(
                "VM {} is {} while waiting for it{}",
                vm.name,
                status_name(vm.status),
                if vm.status_reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", vm.status_reason)
                }
            ));
        }
        if Instant::now() >= deadline {
            let mut missing = Vec::new();
            if !ready {
                missing.push("ready (no guest_ready phase in its boot timeline: the console never matched the ready pattern)");
            }
            if !ip {
                missing.push("ipv4 (its first NIC has leased no address)");
            }
            return Err(format!(
                "VM {} is not {} after {:?} (status {})",
                vm.name,
                missing.join(" nor "),
                wait.timeout,
                status_name(vm.status)
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::WaitFor;
    use super::*;

    #[test]
    fn wait_for_block() {
        let none = Wait::of(&VmState::default()).expect("no block");
        assert!(none.nothing());
        let st = VmState {
            wait_for: Value::Value(vec![WaitFor {
                ready: Value::Value(true),
                ipv4: Value::Null,
                timeout: Value::Value("90s".into()),
            }]),
            ..Default::default()
        };
        let w = Wait::of(&st).expect("block");
        assert!(w.ready && !w.ipv4);
        assert_eq!(w.timeout, Duration::from_secs(90));
        let vm = pb::Vm {
            timeline: Some(pb::BootTimeline {
                phases: vec![pb::BootPhase {
                    name: "guest_ready".into(),
                    ..Default::default()
                }],
            }),
            ..Default::default()
        };
        assert!(is_ready(&vm));
        assert_eq!(first_ip(&vm), None);
    }
}

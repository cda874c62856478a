//! `kcore_vm`: a VM made with CreateVM. vcpu, memory_mb, cloud_init and autostart change
//! in place through UpdateVM (vcpu and memory need the VM stopped: a running VM is
//! stopped gracefully, updated and started again); `running` starts or stops it; any other
//! change of the spec replaces the VM. `wait_for` waits after a start for the guest's
//! ready pattern and the first NIC's lease. Read sees a VM deleted (gone from the state)
//! or stopped (`running = false`) behind Terraform's back.

mod plan;
mod schema;
mod state;
mod wait;

use std::time::Duration;

use async_trait::async_trait;
use kcore_client::Client;
use kcore_proto::v1 as pb;
use tf_provider::schema::Schema;
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, Resource};

use crate::diag;
use crate::duration;
use crate::provider::Shared;
use crate::schema::list;
use schema::vm_schema;
pub use state::{VmState, from_vm, machine_name, profile_name, status_name};

/// The `kcore_vm` resource.
pub struct VmResource(pub Shared);

/// Defaults of `timeouts { create, update, delete }`.
const CREATE_TIMEOUT: Duration = Duration::from_secs(20 * 60);
const UPDATE_TIMEOUT: Duration = Duration::from_secs(20 * 60);
const DELETE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Clone, Copy)]
enum Op {
    Create,
    Update,
    Delete,
}

fn op_timeout(state: &VmState, op: Op) -> Result<Duration, String> {
    let t = list(&state.timeouts).into_iter().next().unwrap_or_default();
    let (value, default, name) = match op {
        Op::Create => (t.create, CREATE_TIMEOUT, "create"),
        Op::Update => (t.update, UPDATE_TIMEOUT, "update"),
        Op::Delete => (t.delete, DELETE_TIMEOUT, "delete"),
    };
    match value {
        Value::Value(text) => duration::parse(&text).map_err(|e| format!("timeouts.{name}: {e}")),
        _ => Ok(default),
    }
}

/// `planned` with every unknown value taken from `actual` (what the server reports after
/// the change): known planned values stay as planned, as Terraform requires.
fn fill_unknowns(planned: &VmState, actual: &VmState) -> VmState {
    fn f<T: Clone>(p: &Value<T>, a: &Value<T>) -> Value<T> {
        if p.is_unknown() { a.clone() } else { p.clone() }
    }
    let mut out = planned.clone();
    out.id = f(&planned.id, &actual.id);
    out.node = f(&planned.node, &actual.node);
    out.vcpu = f(&planned.vcpu, &actual.vcpu);
    out.memory_mb = f(&planned.memory_mb, &actual.memory_mb);
    out.machine = f(&planned.machine, &actual.machine);
    out.profile = f(&planned.profile, &actual.profile);
    out.running = f(&planned.running, &actual.running);
    out.status = f(&planned.status, &actual.status);
    out.pid = f(&planned.pid, &actual.pid);
    out.ipv4 = f(&planned.ipv4, &actual.ipv4);
    let actual_nics = list(&actual.nic);
    if let Value::Value(nics) = &mut out.nic {
        for (i, n) in nics.iter_mut().enumerate() {
            let a = actual_nics.get(i).cloned().unwrap_or_default();
            n.mac = f(&n.mac, &a.mac);
            n.model = f(&n.model, &a.model);
            n.ipv4 = f(&n.ipv4, &a.ipv4);
            n.tap = f(&n.tap, &a.tap);
        }
    }
    out
}

async fn get(client: &Client, key: &str) -> Result<pb::Vm, kcore_client::ClientError> {
    client
        .api()
        .get_vm(pb::GetVmRequest {
            name: key.to_string(),
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| client.error(s))
}

async fn stop(client: &Client, key: &str) -> Result<(), kcore_client::ClientError> {
    client
        .api()
        .stop_vm(pb::StopVmRequest {
            name: key.to_string(),
            force: false,
            timeout_secs: None,
            no_wait: false,
        })
        .await
        .map(|_| ())
        .map_err(|s| client.error(s))
}

async fn start(client: &Client, key: &str) -> Result<(), kcore_client::ClientError> {
    client
        .api()
        .start_vm(pb::StartVmRequest {
            name: key.to_string(),
            no_wait: false,
        })
        .await
        .map(|_| ())
        .map_err(|s| client.error(s))
}

impl VmResource {
    /// Creates the VM and waits; `Err` with the state to record (if the VM exists) and
    /// the error.
    async fn do_create(
        &self,
        client: &Client,
        planned: &VmState,
        diags: &mut Diagnostics,
    ) -> Option<VmState> {
        let name = crate::schema::s(&planned.name);
        let request = match state::create_request(planned) {
            Ok(r) => r,
            Err(e) => {
                diags.root_error(format!("cannot create VM {name}"), e);
                return None;
            }
        };
        let wait = match wait::Wait::of(planned) {
            Ok(w) => w,
            Err(e) => {
                diag::attr(diags, "wait_for", e);
                return None;
            }
        };
        let vm = match client.api().create_vm(request).await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                // The server undoes a create that fails: nothing to record.
                diag::api(diags, format!("creating VM {name}"), &client.error(status));
                return None;
            }
        };
        tracing::info!(vm = %vm.name, id = %vm.id, "created");
        let vm = if planned.want_running() {
            match wait::until(client, &vm.id, wait).await {
                Ok(vm) => vm,
                Err(e) => {
                    diags.root_error(format!("waiting for VM {name}"), e);
                    // Recorded (Terraform taints it), so a retry replaces it.
                    let last = get(client, &vm.id).await.unwrap_or(vm);
                    return Some(fill_unknowns(planned, &from_vm(&last, planned)));
                }
            }
        } else {
            vm
        };
        Some(fill_unknowns(planned, &from_vm(&vm, planned)))
    }

    async fn do_update(
        &self,
        client: &Client,
        prior: &VmState,
        planned: &VmState,
        diags: &mut Diagnostics,
    ) -> Option<VmState> {
        let changes = plan::changes(prior, planned);
        let key = prior.key();
        let name = crate::schema::s(&prior.name);
        let vm = match get(client, &key).await {
            Ok(vm) => vm,
            Err(e) => {
                diag::api(diags, format!("reading VM {name}"), &e);
                return None;
            }
        };
        let running_now = state::is_running(vm.status);
        let mut stopped_it = false;
        if changes.needs_stop() && running_now {
            tracing::info!(vm = %name, "stopping for a vcpu/memory change");
            if let Err(e) = stop(client, &key).await {
                diag::api(
                    diags,
                    format!("stopping VM {name} to change vcpu/memory"),
                    &e,
                );
                return None;
            }
            stopped_it = true;
        }
        if changes.needs_update_vm() {
            let request = pb::UpdateVmRequest {
                name: key.clone(),
                vcpu: changes.vcpu,
                memory_mb: changes.memory_mb,
                cloud_init: changes
                    .cloud_init
                    .then(|| state::cloud_init_pb(planned).unwrap_or_default()),
                autostart: changes.autostart,
            };
            if let Err(status) = client.api().update_vm(request).await {
                diag::api(diags, format!("updating VM {name}"), &client.error(status));
                if stopped_it {
                    // Leave it running, as it was.
                    if let Err(e) = start(client, &key).await {
                        diag::api(diags, format!("starting VM {name} again"), &e);
                    }
                }
                return None;
            }
        }
        let mut started = false;
        if changes.running && (!running_now || stopped_it) {
            if let Err(e) = start(client, &key).await {
                diag::api(diags, format!("starting VM {name}"), &e);
                return get(client, &key)
                    .await
                    .ok()
                    .map(|vm| fill_unknowns(planned, &from_vm(&vm, planned)));
            }
            started = true;
        } else if !changes.running
            && running_now
            && !stopped_it
            && let Err(e) = stop(client, &key).await
        {
            diag::api(diags, format!("stopping VM {name}"), &e);
            return None;
        }
        let vm = if started {
            let wait = wait::Wait::of(planned).unwrap_or(wait::Wait {
                ready: false,
                ipv4: false,
                timeout: wait::DEFAULT_TIMEOUT,
            });
            match wait::until(client, &key, wait).await {
                Ok(vm) => vm,
                Err(e) => {
                    diags.root_error(format!("waiting for VM {name}"), e);
                    get(client, &key).await.ok()?
                }
            }
        } else {
            match get(client, &key).await {
                Ok(vm) => vm,
                Err(e) => {
                    diag::api(diags, format!("reading VM {name}"), &e);
                    return None;
                }
            }
        };
        Some(fill_unknowns(planned, &from_vm(&vm, planned)))
    }
}

#[async_trait]
impl Resource for VmResource {
    type State<'a> = VmState;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(vm_schema())
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::State<'a>) -> Option<()> {
        for (path, message) in plan::config_errors(&config) {
            diag::attr(diags, path, message);
        }
        if let Err(e) = wait::Wait::of(&config) {
            diag::attr(diags, "wait_for", e);
        }
        for op in [Op::Create, Op::Update, Op::Delete] {
            if let Err(e) = op_timeout(&config, op) {
                diag::attr(diags, "timeouts", e);
            }
        }
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Self::State<'a>,
        private_state: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.0.client(diags)?;
        match get(&client, &state.key()).await {
            Ok(vm) => Some((from_vm(&vm, &state), private_state)),
            Err(e) if diag::is_not_found(&e) => {
                tracing::info!(vm = %state.key(), "gone: Terraform will create it again");
                None
            }
            Err(e) => {
                diag::api(
                    diags,
                    format!("reading VM {}", crate::schema::s(&state.name)),
                    &e,
                );
                Some((state, private_state))
            }
        }
    }

    async fn plan_create<'a>(
        &self,
        _diags: &mut Diagnostics,
        proposed: Self::State<'a>,
        config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let mut planned = proposed;
        if config.running.is_null() {
            planned.running = Value::Value(true);
        }
        planned.id = Value::Unknown;
        if planned.node.is_null() {
            planned.node = Value::Unknown;
        }
        // What the server settles: a clone's vCPUs and memory (its template's), the
        // profile (standard when left out) and the machine a given profile picks.
        for n in [&mut planned.vcpu, &mut planned.memory_mb] {
            if n.is_null() {
                *n = Value::Unknown;
            }
        }
        if planned.profile.is_null() {
            planned.profile = Value::Unknown;
        }
        if planned.machine.is_null() && !config.profile.is_null() {
            planned.machine = Value::Unknown;
        }
        if let Value::Value(nics) = &mut planned.nic {
            for n in nics {
                if n.mac.is_null() {
                    n.mac = Value::Unknown;
                }
                if n.model.is_null() {
                    n.model = Value::Unknown;
                }
            }
        }
        plan::unknown_after_change(&mut planned);
        Some((planned, ValueEmpty::default()))
    }

    async fn plan_update<'a>(
        &self,
        _diags: &mut Diagnostics,
        prior: Self::State<'a>,
        proposed: Self::State<'a>,
        config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>, Vec<AttributePath>)> {
        let mut planned = proposed;
        if config.running.is_null() {
            planned.running = Value::Value(true);
        }
        let replace = plan::replace_paths(&prior, &config);
        if !replace.is_empty() || plan::changes(&prior, &planned).touches_server() {
            plan::unknown_after_change(&mut planned);
        }
        let paths = replace.into_iter().map(AttributePath::new).collect();
        Some((planned, private, paths))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::PrivateState<'a>> {
        Some(private)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.0.client(diags)?;
        let limit = op_timeout(&planned, Op::Create).unwrap_or(CREATE_TIMEOUT);
        let name = crate::schema::s(&planned.name);
        match tokio::time::timeout(limit, self.do_create(&client, &planned, diags)).await {
            Ok(state) => state.map(|s| (s, private)),
            Err(_) => {
                diags.root_error(
                    format!("creating VM {name}"),
                    format!("timed out after {limit:?} (timeouts.create)"),
                );
                // Record it if it exists, so that it is not left behind unknown.
                let vm = get(&client, &name).await.ok()?;
                Some((fill_unknowns(&planned, &from_vm(&vm, &planned)), private))
            }
        }
    }

    async fn update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        if !plan::changes(&prior, &planned).touches_server() {
            // wait_for or timeouts only: Terraform's own.
            return Some((planned, private));
        }
        let client = self.0.client(diags)?;
        let limit = op_timeout(&planned, Op::Update).unwrap_or(UPDATE_TIMEOUT);
        let updated =
            match tokio::time::timeout(limit, self.do_update(&client, &prior, &planned, diags))
                .await
            {
                Ok(state) => state,
                Err(_) => {
                    diags.root_error(
                        format!("updating VM {}", crate::schema::s(&prior.name)),
                        format!("timed out after {limit:?} (timeouts.update)"),
                    );
                    None
                }
            };
        // A failed update records the VM as it is now (Terraform needs a state back).
        let state = match updated {
            Some(state) => state,
            None => match get(&client, &prior.key()).await {
                Ok(vm) => from_vm(&vm, &prior),
                Err(_) => prior,
            },
        };
        Some((state, private))
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Self::State<'a>,
        _private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<()> {
        let client = self.0.client(diags)?;
        let limit = op_timeout(&state, Op::Delete).unwrap_or(DELETE_TIMEOUT);
        let name = crate::schema::s(&state.name);
        let mut api = client.api();
        let call = api.delete_vm(pb::DeleteVmRequest {
            name: state.key(),
            force: true,
            keep_disks: false,
        });
        match tokio::time::timeout(limit, call).await {
            Ok(result) => diag::deleted(diags, &client, format!("deleting VM {name}"), result),
            Err(_) => {
                diags.root_error(
                    format!("deleting VM {name}"),
                    format!("timed out after {limit:?} (timeouts.delete)"),
                );
                None
            }
        }
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        id: String,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.0.client(diags)?;
        match get(&client, &id).await {
            Ok(vm) => Some((from_vm(&vm, &VmState::default()), ValueEmpty::default())),
            Err(e) => {
                diag::api(diags, format!("importing VM {id}"), &e);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_timeouts() {
        let mut st = VmState::default();
        assert_eq!(op_timeout(&st, Op::Create), Ok(CREATE_TIMEOUT));
        st.timeouts = Value::Value(vec![state::Timeouts {
            delete: Value::Value("90s".into()),
            ..Default::default()
        }]);
        assert_eq!(op_timeout(&st, Op::Delete), Ok(Duration::from_secs(90)));
        assert_eq!(op_timeout(&st, Op::Update), Ok(UPDATE_TIMEOUT));
    }
}

//! Placement: which node gets a new VM. A node fits when it is ready and not cordoned,
//! has the memory, the vCPUs (up to the overcommit ratio), each pool the VM's disks go to
//! with room for the new volumes (the node's one pool-space rule: a request's new volumes
//! must fit in the pool's free space, whatever the pool kind), every network its NICs join
//! and the image its boot disk is cloned from. Starting a stopped VM checks the memory and
//! vCPUs of its node again ([`capacity_misfit`]).
//! Among the nodes that fit, the least loaded by memory wins (spread), then the one with
//! fewer VMs, then by name, so placement is predictable.

use super::Controller;
use crate::error::{ApiError, ApiResult};
use crate::model::{PoolView, VmRequest};

const GIB: u64 = 1 << 30;

/// One node as placement sees it.
#[derive(Debug, Clone, Default)]
pub struct Candidate {
    pub name: String,
    pub ready: bool,
    pub cordoned: bool,
    pub cpus: u32,
    pub memory_mb: u32,
    pub vm_count: u32,
    pub allocated_vcpu: u32,
    pub allocated_memory_mb: u32,
    pub pools: Vec<PoolView>,
    pub networks: Vec<String>,
    pub images: Vec<String>,
}

/// Why `c` cannot take the VM, or None when it can.
fn misfit(spec: &VmRequest, c: &Candidate, overcommit: f64) -> Option<String> {
    if !c.ready {
        return Some("not ready".into());
    }
    if c.cordoned {
        return Some("cordoned".into());
    }
    if let Some(why) = capacity_misfit(spec, c, overcommit) {
        return Some(why);
    }
    for (pool, bytes) in spec.new_bytes_per_pool() {
        match c.pools.iter().find(|p| p.name == pool) {
            None => return Some(format!("no pool {pool}")),
            Some(p) if p.free_bytes < bytes => {
                return Some(format!(
                    "pool {pool} has {:.1} GiB free, {} GiB asked",
                    p.free_bytes as f64 / GIB as f64,
                    bytes / GIB
                ));
            }
            Some(_) => {}
        }
    }
    for nic in &spec.nics {
        if !c.networks.iter().any(|n| nic.network == n.as_str()) {
            return Some(format!("no network {}", nic.network));
        }
    }
    if let Some(i) = spec.boot.image()
        && !c.images.iter().any(|n| i.image == n.as_str())
    {
        return Some(format!("no image {}", i.image));
    }
    None
}

/// Why `c` has no room for the VM's memory or vCPUs beside what is placed there already,
/// or None when it has.
pub fn capacity_misfit(spec: &VmRequest, c: &Candidate, overcommit: f64) -> Option<String> {
    let free_mem = i64::from(c.memory_mb) - i64::from(c.allocated_memory_mb);
    if i64::from(spec.memory_mib) > free_mem {
        return Some(format!(
            "{} MiB of memory free, {} asked",
            free_mem.max(0),
            spec.memory_mib
        ));
    }
    let max_vcpu = (f64::from(c.cpus) * overcommit).floor() as u64;
    if u64::from(c.allocated_vcpu) + u64::from(spec.vcpus) > max_vcpu {
        return Some(format!(
            "{} of {max_vcpu} vCPUs placed ({} cpus x {overcommit} overcommit), {} asked",
            c.allocated_vcpu, c.cpus, spec.vcpus
        ));
    }
    None
}

/// Lower is better: memory in use after placing the VM, as a fraction, then VM count.
fn load(spec: &VmRequest, c: &Candidate) -> (f64, u32) {
    let used = f64::from(c.allocated_memory_mb) + f64::from(spec.memory_mib);
    (used / f64::from(c.memory_mb.max(1)), c.vm_count)
}

/// Pick a node for `spec`: `wanted` if given (and it fits), else the least loaded node
/// that fits.
pub fn place(
    spec: &VmRequest,
    wanted: &str,
    nodes: &[Candidate],
    overcommit: f64,
) -> ApiResult<String> {
    if !wanted.is_empty() {
        let c = nodes
            .iter()
            .find(|c| c.name == wanted)
            .ok_or_else(|| ApiError::NotFound(format!("no node named {wanted:?}")))?;
        return match misfit(spec, c, overcommit) {
            None => Ok(c.name.clone()),
            Some(_) if !c.ready => {
                Err(ApiError::Unavailable(format!("node {wanted} is not ready")))
            }
            Some(_) if c.cordoned => Err(ApiError::FailedPrecondition(format!(
                "node {wanted} is cordoned (kctl node uncordon {wanted})"
            ))),
            Some(why) => Err(ApiError::ResourceExhausted(format!(
                "node {wanted} cannot take the VM: {why}"
            ))),
        };
    }
    if nodes.is_empty() {
        return Err(ApiError::Unavailable("no nodes".into()));
    }
    // Bigger than any node could ever be: the request is wrong, not the cluster full.
    let max_mem = nodes.iter().map(|c| c.memory_mb).max().unwrap_or(0);
    if spec.memory_mib > max_mem {
        return Err(ApiError::InvalidArgument(format!(
            "memory {} MiB is more than any node has (largest: {max_mem} MiB)",
            spec.memory_mib
        )));
    }
    let max_cpus = nodes.iter().map(|c| c.cpus).max().unwrap_or(0);
    if spec.vcpus > max_cpus {
        return Err(ApiError::InvalidArgument(format!(
            "vcpu {} is more than any node has (largest: {max_cpus})",
            spec.vcpus
        )));
    }
    if let Some(i) = spec.boot.image()
        && !nodes
            .iter()
            .any(|c| c.images.iter().any(|n| i.image == n.as_str()))
    {
        return Err(ApiError::NotFound(format!(
            "no node has an image named {:?} (kctl image import)",
            i.image.as_str()
        )));
    }
    for pool in spec.new_bytes_per_pool().into_keys() {
        if !nodes.iter().any(|c| c.pools.iter().any(|p| p.name == pool)) {
            return Err(ApiError::NotFound(format!(
                "no node has a pool named {pool:?}"
            )));
        }
    }
    let mut best: Option<(&Candidate, (f64, u32))> = None;
    let mut reasons = Vec::new();
    for c in nodes {
        if let Some(why) = misfit(spec, c, overcommit) {
            reasons.push(format!("{}: {why}", c.name));
            continue;
        }
        let l = load(spec, c);
        if best.is_none_or(|(_, b)| l.partial_cmp(&b) == Some(std::cmp::Ordering::Less)) {
            best = Some((c, l));
        }
    }
    match best {
        Some((c, _)) => Ok(c.name.clone()),
        None => Err(ApiError::ResourceExhausted(format!(
            "no node fits the VM ({} vCPU, {} MiB): {}",
            spec.vcpus,
            spec.memory_mib,
            reasons.join("; ")
        ))),
    }
}

impl Controller {
    /// Place a new VM; see [`place`].
    pub fn schedule(&self, wanted: &str, spec: &VmRequest) -> ApiResult<String> {
        let mut nodes = Vec::new();
        for l in self.nodes.all() {
            nodes.push(self.candidate(l)?);
        }
        place(spec, wanted, &nodes, self.tuning.cpu_overcommit)
    }

    fn candidate(&self, l: super::nodes::NodeLink) -> ApiResult<Candidate> {
        let (vm_count, allocated_vcpu, allocated_memory_mb) = self.allocation(&l.name)?;
        Ok(Candidate {
            cordoned: self.store.is_cordoned(&l.name)?,
            ready: l.ready,
            cpus: l.info.cpus,
            memory_mb: l.info.memory_mb,
            vm_count,
            allocated_vcpu,
            allocated_memory_mb,
            pools: l.pools,
            networks: l.networks,
            images: l.images,
            name: l.name,
        })
    }

    /// Before a stopped VM starts again: its node must still have room for it beside the
    /// VMs that run there now (RESOURCE_EXHAUSTED otherwise).
    pub fn check_room_to_start(&self, node: &str, spec: &VmRequest) -> ApiResult<()> {
        let c = self.candidate(self.nodes.get(node)?)?;
        match capacity_misfit(spec, &c, self.tuning.cpu_overcommit) {
            None => Ok(()),
            Some(why) => Err(ApiError::ResourceExhausted(format!(
                "node {node} has no room to start the VM: {why}"
            ))),
        }
    }

    /// Before a stopped VM gets more vCPUs or memory (UpdateVM): its node must have room
    /// for it at its new size, as a create placed there would (RESOURCE_EXHAUSTED).
    pub fn check_room_to_resize(&self, node: &str, spec: &VmRequest) -> ApiResult<()> {
        let c = self.candidate(self.nodes.get(node)?)?;
        match capacity_misfit(spec, &c, self.tuning.cpu_overcommit) {
            None => Ok(()),
            Some(why) => Err(ApiError::ResourceExhausted(format!(
                "node {node} has no room for the VM at its new size: {why}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use kcore_proto::v1 as pb;

    use super::*;

    fn node(name: &str, mem: u32, used: u32) -> Candidate {
        Candidate {
            name: name.into(),
            ready: true,
            cpus: 2,
            memory_mb: mem,
            allocated_memory_mb: used,
            pools: vec![PoolView {
                name: "default".into(),
                kind: "lvm".into(),
                source: "vg0".into(),
                free_bytes: 10 * GIB,
                ..Default::default()
            }],
            networks: vec!["lan".into()],
            images: vec!["debian".into()],
            ..Default::default()
        }
    }

    /// The domain request of an API spec (as the gRPC edge makes it).
    fn r(s: &pb::VmSpec) -> VmRequest {
        crate::convert::request_from_pb(s).expect("a request")
    }

    fn vm(vcpu: u32, mem: u32) -> pb::VmSpec {
        pb::VmSpec {
            vcpu,
            memory_mb: mem,
            ..Default::default()
        }
    }

    #[test]
    fn spreads_to_the_least_loaded_node_then_fewest_vms_then_name() {
        let nodes = [
            node("a", 1024, 512),
            node("b", 4096, 1024),
            node("c", 1024, 0),
        ];
        assert_eq!(place(&r(&vm(1, 128)), "", &nodes, 4.0).expect("fits"), "c");
        let same = [node("x", 1024, 0), node("w", 1024, 0)];
        assert_eq!(place(&r(&vm(1, 128)), "", &same, 4.0).expect("fits"), "x");
        let mut fewer = same.clone();
        fewer[0].vm_count = 1;
        assert_eq!(place(&r(&vm(1, 128)), "", &fewer, 4.0).expect("fits"), "w");
    }

    #[test]
    fn every_resource_is_checked_and_named_in_the_refusal() {
        let mut nodes = [
            node("mem", 1024, 1000),
            node("cpu", 1024, 0),
            node("pool", 1024, 0),
            node("net", 1024, 0),
            node("img", 1024, 0),
            node("down", 1024, 0),
            node("fenced", 1024, 0),
        ];
        nodes[1].allocated_vcpu = 8;
        nodes[2].pools[0].free_bytes = GIB;
        nodes[3].networks.clear();
        nodes[4].images.clear();
        nodes[5].ready = false;
        nodes[6].cordoned = true;
        let spec = pb::VmSpec {
            image: "debian".into(),
            disk_size_gb: 2,
            nics: vec![pb::NicRequest {
                network: "lan".into(),
                ..Default::default()
            }],
            ..vm(1, 128)
        };
        let e = place(&r(&spec), "", &nodes, 4.0).expect_err("nothing fits");
        let ApiError::ResourceExhausted(msg) = &e else {
            panic!("{e:?}")
        };
        for want in [
            "mem: 24 MiB of memory free",
            "cpu: 8 of 8 vCPUs placed",
            "pool: pool default has 1.0 GiB free, 2 GiB asked",
            "net: no network lan",
            "img: no image debian",
            "down: not ready",
            "fenced: cordoned",
        ] {
            assert!(msg.contains(want), "{want:?} missing from {msg}");
        }
        // A pool the node does not have at all.
        let other = pb::VmSpec {
            disks: vec![pb::DiskRequest {
                pool: "fast".into(),
                size_gb: 1,
                volume: String::new(),
            }],
            ..vm(1, 128)
        };
        let e = place(&r(&other), "", &nodes[1..2], 8.0).expect_err("no pool");
        assert!(
            matches!(&e, ApiError::NotFound(m) if m.contains("\"fast\"")),
            "{e:?}"
        );
        let mut with_fast = nodes[0].clone();
        with_fast.name = "fast".into();
        with_fast.pools[0].name = "fast".into();
        with_fast.ready = false;
        let e = place(&r(&other), "", &[nodes[1].clone(), with_fast], 8.0).expect_err("no pool");
        assert!(e.to_string().contains("cpu: no pool fast"), "{e}");
        // One pool-space rule whatever the pool kind: new volumes fit in the free space.
        for (ty, source) in [("dir", "/var/lib/kcore/pools/default"), ("lvm", "vg0/thin")] {
            let mut n = nodes[2].clone();
            n.pools[0].kind = ty.into();
            n.pools[0].source = source.into();
            let e = place(&r(&spec), "", &[n.clone()], 4.0).expect_err("no room");
            assert!(e.to_string().contains("1.0 GiB free, 2 GiB asked"), "{e}");
            n.pools[0].free_bytes = 2 * GIB;
            assert_eq!(place(&r(&spec), "", &[n], 4.0).expect("fits"), "pool");
        }
        // An existing volume takes no new space.
        let reuse = pb::VmSpec {
            disks: vec![pb::DiskRequest {
                pool: "default".into(),
                size_gb: 0,
                volume: "kept".into(),
            }],
            ..vm(1, 128)
        };
        let mut full = node("ok", 1024, 0);
        full.pools[0].free_bytes = 0;
        assert_eq!(place(&r(&reuse), "", &[full], 4.0).expect("fits"), "ok");
    }

    #[test]
    fn impossible_requests_are_invalid_and_a_named_node_must_fit() {
        let nodes = [node("a", 1024, 0), node("b", 2048, 2000)];
        let e = place(&r(&vm(1, 4096)), "", &nodes, 4.0).expect_err("too big");
        assert!(matches!(e, ApiError::InvalidArgument(_)), "{e:?}");
        let e = place(&r(&vm(3, 128)), "", &nodes, 4.0).expect_err("too many cpus");
        assert!(matches!(e, ApiError::InvalidArgument(_)), "{e:?}");
        assert_eq!(place(&r(&vm(1, 128)), "a", &nodes, 4.0).expect("a"), "a");
        let e = place(&r(&vm(1, 128)), "b", &nodes, 4.0).expect_err("b is full");
        assert!(
            matches!(&e, ApiError::ResourceExhausted(m) if m.contains("node b cannot take")),
            "{e:?}"
        );
        let nowhere = pb::VmSpec {
            image: "nosuch".into(),
            ..vm(1, 128)
        };
        let e = place(&r(&nowhere), "", &nodes, 4.0).expect_err("unknown image");
        assert!(
            matches!(&e, ApiError::NotFound(m) if m.contains("nosuch")),
            "{e:?}"
        );
        let e = place(&r(&vm(1, 128)), "zz", &nodes, 4.0).expect_err("unknown");
        assert!(matches!(e, ApiError::NotFound(_)), "{e:?}");
        let e = place(&r(&vm(1, 128)), "", &[], 4.0).expect_err("no nodes");
        assert!(matches!(e, ApiError::Unavailable(_)), "{e:?}");
    }
}

//! What the controller knows of a VM beyond its request: its status, and what its node
//! reports (the boot timeline, the disks and NICs as the node made them), and the events
//! the controller keeps. The store writes these as JSON with serde (its own schema); the
//! numbers of [`VmStatus`] are the ones the store has always kept.

use serde::{Deserialize, Deserializer, Serialize};

use super::VmRequest;

/// A VM's status, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(i32)]
pub enum VmStatus {
    #[default]
    Unspecified = 0,
    Pending = 1,
    Creating = 2,
    Stopped = 3,
    Starting = 4,
    Running = 5,
    Paused = 6,
    Stopping = 7,
    Crashed = 8,
    Error = 9,
    /// The node cannot be reached, or its QEMU does not answer: it may well run.
    Unknown = 10,
}

impl VmStatus {
    /// From the number the store (and the proto) keep; an unknown number is `Unknown`.
    pub fn from_i32(n: i32) -> VmStatus {
        use VmStatus::*;
        match n {
            0 => Unspecified,
            1 => Pending,
            2 => Creating,
            3 => Stopped,
            4 => Starting,
            5 => Running,
            6 => Paused,
            7 => Stopping,
            8 => Crashed,
            9 => Error,
            _ => Unknown,
        }
    }

    /// The name users see (RUNNING).
    pub fn as_str(self) -> &'static str {
        use VmStatus::*;
        match self {
            Unspecified => "UNSPECIFIED",
            Pending => "PENDING",
            Creating => "CREATING",
            Stopped => "STOPPED",
            Starting => "STARTING",
            Running => "RUNNING",
            Paused => "PAUSED",
            Stopping => "STOPPING",
            Crashed => "CRASHED",
            Error => "ERROR",
            Unknown => "UNKNOWN",
        }
    }
}

impl std::fmt::Display for VmStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the time of a VM's last start went: phases with their offset from the request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Timeline {
    #[serde(default)]
    pub phases: Vec<TimelinePhase>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TimelinePhase {
    pub name: String,
    #[serde(default)]
    pub offset_ms: f64,
    #[serde(default)]
    pub at: String,
}

impl Timeline {
    /// When the guest was ready (offset, RFC 3339), if it was.
    pub fn guest_ready(&self) -> Option<(f64, &str)> {
        self.phases
            .iter()
            .find(|p| p.name == "guest_ready")
            .map(|p| (p.offset_ms, p.at.as_str()))
    }
}

/// A disk of a VM as its node made it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DiskView {
    pub volume: String,
    pub pool: String,
    /// Guest device: vda, vdb, ...
    #[serde(default)]
    pub device: String,
    /// (Older stores wrote it as a string: the proto's JSON for 64-bit numbers.)
    #[serde(default, deserialize_with = "u64_lenient")]
    pub size_bytes: u64,
    #[serde(default)]
    pub format: String,
    /// The image it was cloned from, if any.
    #[serde(default)]
    pub image: String,
}

/// A NIC of a VM as its node made it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NicView {
    pub id: String,
    pub network: String,
    pub mac: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub tap: String,
    /// The address the guest leased on a nat network (empty: none yet).
    #[serde(default)]
    pub ip: String,
}

/// What a node says of one of its VMs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VmReport {
    pub id: String,
    pub name: String,
    pub status: VmStatus,
    pub reason: String,
    pub pid: i32,
    /// Empty when the node does not know the last start's (it restarted meanwhile).
    pub timeline: Option<Timeline>,
    /// Grows with every change of the VM on the node: stale news are dropped.
    pub seq: u64,
    pub disks: Vec<DiskView>,
    pub nics: Vec<NicView>,
    /// What the node runs, described as a request (only in full listings, for a VM the
    /// store does not know).
    pub defined: Option<VmRequest>,
}

/// What a node's heartbeat says of its VMs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeVms {
    /// The node's sequence number when it made the heartbeat.
    pub seq: u64,
    /// VMs being defined right now.
    pub defining: Vec<String>,
    /// (id, name, status) of every VM it has.
    pub vms: Vec<(String, String, VmStatus)>,
}

/// Something that happened, as the event log keeps it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    pub id: i64,
    pub at: String,
    /// vm.created, vm.status, node.ready, ...
    pub kind: String,
    pub vm_id: String,
    pub vm_name: String,
    pub status: VmStatus,
    pub node: String,
    pub message: String,
}

pub(super) fn u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        N(u64),
        S(String),
    }
    match Num::deserialize(d)? {
        Num::N(n) => Ok(n),
        Num::S(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_keep_their_numbers() {
        for n in 0..=10 {
            assert_eq!(VmStatus::from_i32(n) as i32, n);
        }
        assert_eq!(VmStatus::from_i32(99), VmStatus::Unknown);
        assert_eq!(VmStatus::Running.to_string(), "RUNNING");
    }

    #[test]
    fn disks_stored_by_older_versions_are_read() {
        let old = r#"[{"volume":"v","pool":"default","device":"vda","size_bytes":"1073741824","format":"qcow2","image":""}]"#;
        let d: Vec<DiskView> = serde_json::from_str(old).expect("old JSON");
        assert_eq!(d[0].size_bytes, 1 << 30);
        let new = serde_json::to_string(&d).expect("json");
        assert_eq!(serde_json::from_str::<Vec<DiskView>>(&new).expect("new"), d);
    }
}

//! What kcored says, as its source says it. The mock answers with these texts only, filled
//! in the way kcored fills them; `every_text_is_in_kcoreds_source` checks that each is still
//! in the file it names, so a message changed or moved in kcored fails here instead of
//! leaving the mock behind: update the entry. What kcored only passes on comes from where
//! kcored gets it: QEMU's QMP replies (world/vms.rs, exec_qmp), the OS's error strings
//! (`std::io::Error`), serde_json's parse errors and tonic's "transport error".

/// A message template as it stands in a source file of this repository.
pub struct Text {
    /// The file, from the repository root, with the function that sends it.
    pub file: &'static str,
    /// A `format!` (or `#[error]`) string: `{...}` are placeholders, `{{` and `}}` braces.
    /// Otherwise a plain literal.
    pub format: bool,
    /// The text (as a Rust string value, i.e. unescaped).
    pub template: &'static str,
}

impl Text {
    /// The message with its placeholders filled, in order: `{x:?}` quotes its value the way
    /// Rust's `Debug` does; any other placeholder (`{}`, `{x}`, `{x:.1}`) takes the value as
    /// given, already formatted by the caller.
    #[track_caller]
    pub fn fill(&self, args: &[&str]) -> String {
        if !self.format {
            assert!(args.is_empty(), "{} takes no values", self.template);
            return self.template.to_string();
        }
        let mut out = String::new();
        let mut args = args.iter();
        let mut chars = self.template.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    out.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    out.push('}');
                }
                '{' => {
                    let spec: String = chars.by_ref().take_while(|c| *c != '}').collect();
                    let value = args.next().unwrap_or_else(|| {
                        panic!("{:?} needs more values than given", self.template)
                    });
                    if spec.ends_with(":?") {
                        out.push_str(&format!("{value:?}"));
                    } else {
                        out.push_str(value);
                    }
                }
                c => out.push(c),
            }
        }
        assert!(
            args.next().is_none(),
            "{:?} takes fewer values than given",
            self.template
        );
        out
    }

    /// The text as it is written between quotes in the source.
    fn in_source(&self) -> String {
        self.template.replace('\\', "\\\\").replace('"', "\\\"")
    }
}

macro_rules! texts {
    ($($name:ident = $file:literal, $kind:ident $template:literal;)*) => {
        $(
            #[doc = concat!("`", $template, "` (", $file, ")")]
            pub const $name: Text = Text {
                file: $file,
                format: texts!(@$kind),
                template: $template,
            };
        )*
        /// Every text above, by name.
        pub const ALL: &[(&str, &Text)] = &[$((stringify!($name), &$name)),*];
    };
    (@format) => { true };
    (@literal) => { false };
}

texts! {
    // VMs
    NO_VM = "kcored/src/controller/vms.rs, get_row", format "no VM named {name:?}";
    VM_EXISTS = "kcored/src/controller/vms.rs, create_vm", format "a VM named {:?} already exists";
    VM_CANNOT_START = "kcored/src/controller/vms.rs, start_vm", format "VM {} is {}: cannot start";
    VM_DELETE_ACTIVE = "kcored/src/controller/vms.rs, delete_vm",
        format "VM {} is {}: stop it first, or delete with force";
    VM_CREATED = "kcored/src/controller/vms.rs, create_vm", format "on node {node} by {by}";
    LOCAL_CALLER = "kcored/src/caller.rs, Caller::fmt", format "uid {uid} ({u}) on the local socket";
    RESIZE_NEEDS_STOP = "kcored/src/model/request.rs, resize_needs_stop",
        format "VM {name} is {state}: its vcpu and memory change only while it is STOPPED (kctl vm stop {name}, then kctl vm set again); nothing was changed";
    WRONG_STATE = "vmm/src/error.rs, VmmError::WrongState", format "VM is {state}: cannot {op}";
    INVALID_SPEC = "vmm/src/error.rs, VmmError::InvalidSpec", format "invalid VM spec: {0}";
    NO_BOOT_SOURCE = "vmm/src/spec.rs, VmSpec::validate_planned",
        literal "no boot source: give a kernel (direct kernel boot) or an image";
    GUEST_POWERED_OFF = "vmm/src/vm/exit.rs, classify_exit", literal "guest powered off";
    HOST_FILE_UNREADABLE = "kcored/src/hostpath.rs, HostPaths::refused", format "{what} {path}: {e}";
    CONSOLE_FIRST = "kcored/src/controller/grpc/streams.rs, console_relay",
        literal "console: the first message must name the VM";
    CONSOLE_NOT_LIVE = "kcored/src/node/grpc/streams.rs, console",
        format "VM {} is {state}: its console is live only while it runs (kctl vm console {} --tail N prints its log)";
    QMP_NOT_JSON = "kcored/src/controller/vms.rs, qmp_command_name",
        format "QMP command is not valid JSON: {e}";
    QMP_NOT_A_COMMAND = "kcored/src/controller/vms.rs, qmp_command_name",
        literal "QMP command must be an object like {\"execute\":\"query-status\"}";
    NO_DISK = "kcored/src/node/disks.rs, find_disk", format "no disk {which:?} on this VM (disks: {})";
    DISK_ENTRY = "kcored/src/node/disks.rs, find_disk", format "vd{} {}";
    DISK_SIZE_AT_LEAST_1 = "kcored/src/node/disks.rs, attach_disk",
        literal "disk size must be at least 1 GiB";
    SHRINK_REFUSED = "storage/src/error.rs, StorageError::ShrinkRefused",
        format "refusing to shrink {name} from {current} to {requested} bytes: volumes can only grow";
    // Placement and the node's disk plan
    NO_IMAGE_ANYWHERE = "kcored/src/controller/schedule.rs, place",
        format "no node has an image named {:?} (kctl image import)";
    NO_POOL_ANYWHERE = "kcored/src/controller/schedule.rs, place", format "no node has a pool named {pool:?}";
    PLANNED_DISK_SIZE = "kcored/src/model/request.rs, VmRequest::validate and check_disk_size",
        format "{what}: size must be at least 1 GiB";
    // Nodes, events
    NO_NODE = "kcored/src/controller/nodes.rs, Nodes::get", format "no node named {name:?}";
    NODE_NOT_READY = "kcored/src/controller/nodes.rs, Nodes::client", format "node {name} is not ready";
    NODE_UNREACHABLE = "kcored/src/controller/nodes.rs, mark_unknown", format "node {node} is not reachable";
    HEARTBEAT_RECEIVED = "kcored/src/controller/nodes.rs, follow_node", literal "heartbeat received";
    BAD_NODE_ADDRESS = "kcored/src/controller/nodes.rs, register_node",
        format "address {address:?}: expected host:port";
    LOCAL_NODE = "kcored/src/controller/nodes.rs, register_node",
        format "node {name} is a local node of this controller";
    CANNOT_REACH_NODE = "kcored/src/controller/nodes.rs, register_node",
        format "cannot reach node {name} at {address}: {e:#}";
    OWN_NODE = "kcored/src/controller/certs.rs, remove_node",
        format "node {name} is this daemon's own node: it cannot be removed";
    // Certificates, roles
    NAME_OR_SERIAL = "kcored/src/controller/certs.rs, revoke",
        literal "give a certificate name or a serial (one of them)";
    NO_CERT_NAMED = "kcored/src/controller/certs.rs, revoke", format "no valid certificate issued to {name:?}";
    NO_CERT_SERIAL = "kcored/src/controller/certs.rs, revoke", format "no valid certificate with serial {serial}";
    CONTROLLER_CERT = "kcored/src/controller/certs.rs, revoke",
        format "certificate {} is the controller's own: it cannot be revoked";
    UNKNOWN_ROLE = "kcored/src/auth.rs, Role::from_str",
        format "unknown role {other:?}: use admin, viewer, node or controller";
    ROLE_NOT_ISSUED = "kcored/src/controller/ops.rs, Controller::issue_certificate",
        format "role {role} cannot be issued: use viewer or admin (nodes join with a join token)";
    ONLY_NODES_RENEW = "kcored/src/controller/ops.rs, Controller::renew_node_certificate",
        literal "only a node renews a node certificate, with its own";
    CERT_REQUIRED = "kcored/src/auth.rs, check_with",
        literal "a client certificate signed by the cluster CA is required";
    ROLE_MAY_NOT = "kcored/src/auth.rs, authorize", format "role {role} may not call {what}";
    // Storage
    NO_POOL_ON_NODE = "kcored/src/node/storage.rs, NodeStorage::pool",
        format "no pool named {name:?} on node {} (pools: {})";
    NOT_AN_IMAGE_POOL = "kcored/src/node/storage.rs, NodeStorage::image_store",
        format "pool {pool_name} is not a dir pool: images live in dir pools";
    NO_IMAGES_IN_POOL = "kcored/src/node/storage.rs, NodeStorage::delete_image",
        format "pool {pool_name} is not a dir pool: it holds no images";
    IMAGE_EXISTS = "kcored/src/node/storage.rs, NodeStorage::import_image",
        format "an image named {:?} already exists in pool {pool}";
    SOURCE_REQUIRED = "kcored/src/controller/storage.rs, import_image",
        literal "source is required: a path on the node or an http(s) URL";
    NO_SUCH = "storage/src/error.rs, StorageError::NotFound", format "no such {kind} {name}";
    IMAGE_IN_USE = "storage/src/error.rs, StorageError::ImageInUse", format "image {image} is in use by volume(s): {}";
    SHA256_MISMATCH = "storage/src/error.rs, StorageError::ChecksumMismatch",
        format "sha256 mismatch for {name}: expected {expected}, got {actual}";
    DOWNLOAD_FAILED = "storage/src/error.rs, StorageError::Download", format "download of {url} failed: {reason}";
    HTTP_STATUS = "storage/src/source.rs, Source::open", format "HTTP {code} {}";
    IMAGE_REFUSED = "storage/src/error.rs, StorageError::ImageRefused", format "image {name} refused: {reason}";
    RAW_TOO_SMALL = "storage/src/image.rs, check_image",
        format "not a disk image: a raw image must be at least one 512-byte sector, this file has {len} bytes";
    RAW_NOT_SECTORS = "storage/src/image.rs, check_image",
        format "not a disk image: a raw image must be a multiple of 512 bytes, this file has {len} bytes";
    NEW_VOLUME_SIZE = "kcored/src/controller/storage.rs, create_volume",
        literal "a new volume needs a size of at least 1 GiB";
    ALREADY_EXISTS = "storage/src/error.rs, StorageError::AlreadyExists", format "{kind} {name} already exists";
    NO_VOLUME_ANYWHERE = "kcored/src/controller/storage.rs, delete_volume",
        format "no volume {name} in pool {pool} on any ready node (kctl volume list)";
    VOLUME_IN_USE = "kcored/src/node/storage.rs, NodeStorage::delete_volume",
        format "volume {volume} in pool {pool} is a disk of VM {vm}: detach it first (kctl vm disk detach {vm} {volume})";
    VOLUME_USED = "kcored/src/node/storage.rs, NodeStorage::existing_disk",
        format "volume {volume} in pool {pool} is a disk of VM {vm}";
    // Networks and NICs
    NO_NETWORK = "kcored/src/controller/networks.rs, get_network", format "no network named {name:?}";
    NETWORK_EXISTS = "kcored/src/controller/networks.rs, create_network",
        format "a network named {:?} already exists";
    BRIDGE_TAKEN = "kcored/src/controller/networks.rs, create_network", format "bridge {} is network {}'s already";
    SUBNET_OVERLAP = "kcored/src/controller/networks.rs, create_network",
        format "subnet {ours} overlaps network {} ({theirs})";
    NETWORK_IN_USE = "kcored/src/controller/networks.rs, delete_network",
        format "network {name} is in use by VM(s) {}: delete them or detach their NICs first";
    NO_NETWORK_FOR_NIC = "kcored/src/controller/networks.rs, assign_macs",
        format "no network named {:?} (see kctl network list)";
    MAC_TAKEN = "kcored/src/controller/networks.rs, assign_macs", format "MAC {m} is already used by VM {owner}";
    UPLINK_MISSING = "kcored/src/node/network.rs, NodeNetworks::make",
        format "uplink {uplink:?} does not exist on node {}";
    NO_NIC = "kcored/src/node/nics.rs, find_nic", format "no NIC {which:?} on this VM (NICs: {})";
    NIC_ENTRY = "kcored/src/node/nics.rs, find_nic", format "{} {} on {}";
    // Templates
    NO_TEMPLATE = "kcored/src/controller/templates.rs, get_template",
        format "no template {name} on any ready node (kctl template list)";
    TEMPLATE_EXISTS = "kcored/src/controller/templates.rs, create_template",
        format "template {name} exists (on node {})";
    TEMPLATE_NOT_RUNNING = "kcored/src/node/templates/mod.rs, check_source",
        format "VM {} is {state}: a template is taken from a RUNNING VM";
    TEMPLATE_HAS_CLONES = "kcored/src/node/templates/mod.rs, delete_template",
        format "template {name} has clones on node {}: {}; delete them first (their disks read through its frozen base)";
}

/// The repository's root (kctl's parent).
fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("kctl is in the repository")
        .to_path_buf()
}

#[test]
fn every_text_is_in_kcoreds_source() {
    // A string continued with `\` at the end of a line goes on after the next line's
    // indentation: join such lines as the compiler does.
    let continuation = regex::Regex::new(r"\\\n\s*").expect("regex");
    let mut missing = Vec::new();
    for (name, text) in ALL {
        let path = text.file.split(',').next().unwrap_or(text.file);
        let source = std::fs::read_to_string(repo().join(path))
            .unwrap_or_else(|e| panic!("{name}: reading {path}: {e}"));
        let source = continuation.replace_all(&source, "");
        if !source.contains(&text.in_source()) {
            missing.push(format!("{name}: {:?} is not in {path}", text.template));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn the_viewer_role_is_kcoreds() {
    let source = std::fs::read_to_string(repo().join("kcored/src/auth.rs")).expect("auth.rs");
    let list = source
        .split_once("pub const READ_METHODS: &[&str] = &[")
        .and_then(|(_, rest)| rest.split_once("];"))
        .map(|(list, _)| list)
        .expect("READ_METHODS in kcored/src/auth.rs");
    let methods: Vec<&str> = list.split('"').skip(1).step_by(2).collect();
    assert_eq!(methods, super::server::VIEWER_METHODS);
}

#[test]
fn fill_formats_like_rust() {
    assert_eq!(
        NO_VM.fill(&["web \"1\""]),
        format!("no VM named {:?}", "web \"1\"")
    );
    assert_eq!(
        QMP_NOT_A_COMMAND.fill(&[]),
        "QMP command must be an object like {\"execute\":\"query-status\"}"
    );
    let t = Text {
        file: "",
        format: true,
        template: "{{a}} {x:.1} {}",
    };
    assert_eq!(t.fill(&["1.5", "y"]), "{a} 1.5 y");
}

//! Property tests of the VM spec's validators against their documented rules: vCPUs
//! 1..=min(host cpus, 512), memory 16 MiB..=host memory, a kernel command line of at most
//! 2048 bytes without NUL or newline, NIC ids `[A-Za-z0-9_-]+` and MACs (a `MacAddr`:
//! six hex octets, unicast, not all-zero). What the rule allows is accepted, what is accepted fits the
//! rule, and no input panics.

use kcore_vmm::spec::{HostLimits, MAX_CMDLINE_LEN, MAX_VCPUS, MIN_MEMORY_MIB, VmSpec};
use proptest::prelude::*;
use regex::Regex;
use serde_json::json;

/// A spec that boots a kernel (a real file, so only the fields under test can fail).
fn spec(kernel: &std::path::Path, vcpus: u32, memory: u32) -> VmSpec {
    serde_json::from_value(json!({
        "id": "00000000-0000-4000-8000-000000000001",
        "name": "p",
        "vcpus": vcpus,
        "memory_mib": memory,
        "kernel": kernel,
    }))
    .expect("spec")
}

fn kernel() -> tempfile::NamedTempFile {
    tempfile::NamedTempFile::new().expect("temp kernel")
}

fn count() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..=600, any::<u32>()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn vcpus_and_memory_fit_the_host(
        vcpus in count(),
        memory in prop_oneof![0u32..64, any::<u32>()],
        cpus in 1u32..1024,
        host_mib in prop_oneof![16u32..4096, any::<u32>()],
    ) {
        let k = kernel();
        let host = HostLimits { cpus, memory_mib: host_mib };
        let ok = (1..=cpus.min(MAX_VCPUS)).contains(&vcpus)
            && (MIN_MEMORY_MIB..=host_mib).contains(&memory);
        let r = spec(k.path(), vcpus, memory).validate(&host);
        prop_assert_eq!(r.is_ok(), ok, "{} vcpus, {} MiB on {:?}: {:?}", vcpus, memory, host, r);
    }

    #[test]
    fn cmdlines_are_short_and_single_line(cmdline in prop_oneof![
        "[a-z=. ]{0,40}",
        "\\PC{0,40}",
        any::<String>(),
        (2040usize..2060).prop_map(|n| "x".repeat(n)),
    ]) {
        let k = kernel();
        let mut s = spec(k.path(), 1, 64);
        s.cmdline = Some(cmdline.clone());
        let host = HostLimits { cpus: 4, memory_mib: 1024 };
        let ok = cmdline.len() <= MAX_CMDLINE_LEN && !cmdline.contains(['\0', '\n']);
        prop_assert_eq!(s.validate(&host).is_ok(), ok, "{:?}", cmdline);
    }

    #[test]
    fn nic_ids_and_macs_follow_the_rule(
        id in prop_oneof!["[A-Za-z0-9_-]{1,12}", "[a-z0-9.:/ _-]{0,8}", any::<String>()],
        mac in prop_oneof![
            any::<[u8; 6]>().prop_map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")),
            "[0-9a-fA-F:-]{0,20}",
            any::<String>(),
        ],
    ) {
        let mut s = spec(std::path::Path::new("/k"), 1, 64);
        // The MAC is a `MacAddr`: a spec holds only unicast, non-zero, well-formed ones.
        let mac_rule = Regex::new("^[0-9a-fA-F]{2}((:[0-9a-fA-F]{2}){5}|(-[0-9a-fA-F]{2}){5})$")
            .expect("regex");
        let first = u8::from_str_radix(mac.get(..2).unwrap_or("01"), 16).unwrap_or(1);
        let zero = mac.chars().all(|c| c == '0' || c == ':' || c == '-');
        let mac_ok = mac_rule.is_match(&mac) && first & 1 == 0 && !zero;
        let nics: Result<Vec<kcore_vmm::spec::Nic>, _> =
            serde_json::from_value(json!([{"id": id, "mac": mac}]));
        prop_assert_eq!(nics.is_ok(), mac_ok, "mac {:?}", mac);
        let Ok(nics) = nics else { return Ok(()) };
        s.nics = nics;
        let id_rule = Regex::new("^[A-Za-z0-9_-]+$").expect("regex");
        prop_assert_eq!(s.validate_nics().is_ok(), id_rule.is_match(&id), "id {:?}", id);
    }
}

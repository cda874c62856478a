//! Property tests of kctl's argument parsers against their documented forms: `--memory`
//! (`N`, `NM`, `NMiB`, `NG`, `NGiB`: MiB, fitting a u32), `--disk POOL:SIZE_GB`, `--sha256`
//! (64 hex digits, lowercased) and `--nic NETWORK[,mac=MAC][,model=MODEL]`. What has the
//! form is parsed to its value, what does not is refused, and no input panics (bounds are
//! the server's to check).

use proptest::prelude::*;

use crate::network::parse_nic;
use crate::parse::{parse_disk, parse_mib, parse_sha256};

const MIB_UNITS: [(&str, u64); 10] = [
    ("", 1),
    ("M", 1),
    ("m", 1),
    ("MiB", 1),
    ("MB", 1),
    ("G", 1024),
    ("g", 1024),
    ("GiB", 1024),
    ("GB", 1024),
    (" G", 1024),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn memory_sizes_are_mib(n in prop_oneof![0u64..10_000, any::<u32>().prop_map(u64::from), any::<u64>()],
                            unit in 0usize..MIB_UNITS.len()) {
        let (suffix, factor) = MIB_UNITS[unit];
        let text = format!("{n}{suffix}");
        let want = n.checked_mul(factor).and_then(|v| u32::try_from(v).ok());
        prop_assert_eq!(parse_mib(&text).ok(), want, "{:?}", text);
    }

    #[test]
    fn memory_text_without_digits_is_refused(s in prop_oneof!["[a-zA-Z .+-]{0,10}", "\\PC{0,10}"]) {
        if !s.chars().any(|c| c.is_ascii_digit()) {
            prop_assert!(parse_mib(&s).is_err(), "{:?}", s);
        }
    }

    #[test]
    fn disks_are_pool_colon_gib(pool in "[^:]{1,20}", size in any::<u32>(), junk in any::<String>()) {
        let d = parse_disk(&format!("{pool}:{size}")).expect("POOL:SIZE");
        prop_assert_eq!(&d.pool, &pool);
        prop_assert_eq!(d.size_gb, size);
        let no_pool = parse_disk(&format!(":{size}"));
        prop_assert!(no_pool.is_err());
        prop_assert!(parse_disk(&pool).is_err(), "no colon: {:?}", pool);
        let _ = parse_disk(&junk);
    }

    #[test]
    fn sha256_is_64_hex_digits(s in prop_oneof!["[0-9a-fA-F]{62,66}", "[0-9a-gA-G]{64}", any::<String>()]) {
        let want = (s.trim().len() == 64 && s.trim().chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| s.trim().to_ascii_lowercase());
        prop_assert_eq!(parse_sha256(&s).ok(), want, "{:?}", s);
    }

    #[test]
    fn nics_are_network_then_options(
        net in "[a-z][a-z0-9-]{0,20}",
        mac in prop::option::of("[0-9a-f:]{0,17}"),
        model in prop::option::of("[a-z0-9]{0,8}"),
        junk in any::<String>(),
    ) {
        let mut text = net.clone();
        if let Some(m) = &mac {
            text.push_str(&format!(",mac={m}"));
        }
        if let Some(m) = &model {
            text.push_str(&format!(",model={m}"));
        }
        let nic = parse_nic(&text).expect("NETWORK[,mac=..][,model=..]");
        prop_assert_eq!(&nic.network, &net);
        prop_assert_eq!(nic.mac, mac.clone().unwrap_or_default());
        prop_assert_eq!(nic.model, model.clone().unwrap_or_default());
        let unknown = parse_nic(&format!("{net},speed=10"));
        prop_assert!(unknown.is_err());
        let no_network = parse_nic(&format!(",mac={}", mac.unwrap_or_default()));
        prop_assert!(no_network.is_err());
        let _ = parse_nic(&junk);
    }
}

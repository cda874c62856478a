//! Property tests of the storage crate's input validators against their documented rules:
//! pool, volume and image names (`[a-z0-9][a-z0-9._-]{0,62}`), LVM VG/LV names
//! (`[A-Za-z0-9+_.-]{1,127}`, not starting with `-`, not `.` or `..`), sizes (`parse_size`:
//! a number with an optional K/M/G/T suffix and an optional B, binary units; `check_size`:
//! 1 byte to 64 TiB). What matches the rule is accepted, what is accepted matches it, and
//! no input panics.

use kcore_storage::lvm::validate_lvm_name;
use kcore_storage::{MAX_VOLUME_BYTES, check_size, parse_size, validate_name};
use proptest::prelude::*;
use regex::Regex;

fn names() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9][a-z0-9._-]{0,62}",
        "[a-z0-9._-]{60,66}",
        "[a-zA-Z0-9._/+ -]{0,70}",
        "\\PC{0,20}",
        any::<String>(),
    ]
}

fn lvm_names() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9+_.-]{1,127}",
        "[A-Za-z0-9+_.-]{120,130}",
        "[a-z0-9./ -]{0,5}",
        any::<String>(),
    ]
}

const UNITS: [(&str, u32); 9] = [
    ("", 0),
    ("K", 10),
    ("k", 10),
    ("M", 20),
    ("m", 20),
    ("G", 30),
    ("g", 30),
    ("T", 40),
    ("t", 40),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn names_follow_the_rule(name in names()) {
        let rule = Regex::new("^[a-z0-9][a-z0-9._-]{0,62}$").expect("regex");
        let r = validate_name("volume", &name);
        prop_assert_eq!(r.is_ok(), rule.is_match(&name), "{:?}: {:?}", name, r);
        // Whatever is accepted is one safe path component.
        if r.is_ok() {
            prop_assert!(!name.contains('/') && name != "." && name != ".." && !name.starts_with('.'));
        }
    }

    #[test]
    fn lvm_names_follow_the_rule(name in lvm_names()) {
        let rule = Regex::new("^[A-Za-z0-9+_.-]{1,127}$").expect("regex");
        let want = rule.is_match(&name) && !name.starts_with('-') && name != "." && name != "..";
        prop_assert_eq!(validate_lvm_name("volume group", &name).is_ok(), want, "{:?}", name);
    }

    #[test]
    fn sizes_parse_by_their_unit(
        n in prop_oneof![0u64..5000, any::<u64>()],
        unit in 0usize..UNITS.len(),
        b in prop_oneof![Just(""), Just("B"), Just("b")],
        pad in prop_oneof![Just(""), Just(" ")],
    ) {
        let (suffix, shift) = UNITS[unit];
        let text = format!("{pad}{n}{suffix}{b}{pad}");
        let want = n.checked_mul(1u64 << shift);
        prop_assert_eq!(parse_size(&text).ok(), want, "{:?}", text);
    }

    #[test]
    fn any_size_text_is_refused_or_a_number(s in prop_oneof!["[0-9kKmMgGtTbB .+-]{0,12}", any::<String>()]) {
        if let Ok(v) = parse_size(&s) {
            // Only digits, an optional sign, unit letters and blanks can make a size.
            prop_assert!(s.chars().any(|c| c.is_ascii_digit()), "{:?} -> {}", s, v);
        }
    }

    #[test]
    fn volume_sizes_are_1_byte_to_64_tib(n in prop_oneof![0u64..4, any::<u64>(), (MAX_VOLUME_BYTES - 2)..(MAX_VOLUME_BYTES + 2)]) {
        prop_assert_eq!(check_size(n).is_ok(), (1..=MAX_VOLUME_BYTES).contains(&n));
    }
}

//! Names of VMs, nodes, networks, pools, volumes and images.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::TypeError;

/// The longest name of any kind.
pub const MAX_NAME_LEN: usize = 63;

/// `[a-z0-9][a-z0-9-]{0,62}`
fn dns_label(kind: &'static str, name: &str) -> Result<(), TypeError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    ok.then_some(()).ok_or_else(|| TypeError::InvalidName {
        kind,
        name: name.to_string(),
        reason: "use 1-63 characters a-z, 0-9 and '-', starting with a letter or digit",
    })
}

/// `[a-z][a-z0-9-]{0,62}`
fn letter_first(kind: &'static str, name: &str) -> Result<(), TypeError> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase()) && dns_label(kind, name).is_ok();
    ok.then_some(()).ok_or_else(|| TypeError::InvalidName {
        kind,
        name: name.to_string(),
        reason: "use 1-63 characters a-z, 0-9 and '-', starting with a letter",
    })
}

/// `[a-z0-9][a-z0-9._-]{0,62}`: one path component that is never `.`, `..` or hidden.
fn path_component(kind: &'static str, name: &str) -> Result<(), TypeError> {
    let fail = |reason| {
        Err(TypeError::InvalidName {
            kind,
            name: name.to_string(),
            reason,
        })
    };
    let mut chars = name.chars();
    match chars.next() {
        None => return fail("empty"),
        Some(c) if !(c.is_ascii_lowercase() || c.is_ascii_digit()) => {
            return fail("must start with a lowercase letter or a digit");
        }
        Some(_) => {}
    }
    if name.len() > MAX_NAME_LEN {
        return fail("longer than 63 characters");
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c)) {
        return fail("only a-z, 0-9, '.', '_' and '-' are allowed");
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $kind:literal, $check:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        impl $ty {
            /// What the error messages call this kind of name.
            pub const KIND: &'static str = $kind;

            /// The only way to get one.
            pub fn parse(name: &str) -> Result<Self, TypeError> {
                $check($kind, name)?;
                Ok(Self(name.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $ty {
            type Err = TypeError;
            fn from_str(s: &str) -> Result<Self, TypeError> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = TypeError;
            fn try_from(s: String) -> Result<Self, TypeError> {
                $check($kind, &s)?;
                Ok(Self(s))
            }
        }

        impl From<$ty> for String {
            fn from(n: $ty) -> String {
                n.0
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $ty {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

name_type!(
    /// A VM's name, unique in the cluster: `[a-z0-9][a-z0-9-]{0,62}`.
    VmName,
    "VM",
    dns_label
);
name_type!(
    /// A node's name, unique in the cluster: `[a-z0-9][a-z0-9-]{0,62}`.
    NodeName,
    "node",
    dns_label
);
name_type!(
    /// A network's name: `[a-z][a-z0-9-]{0,62}` (it names an nftables table, which needs a
    /// letter first).
    NetworkName,
    "network",
    letter_first
);
name_type!(
    /// A storage pool's name: `[a-z0-9][a-z0-9._-]{0,62}`.
    PoolName,
    "pool",
    path_component
);
name_type!(
    /// A volume's name in its pool: `[a-z0-9][a-z0-9._-]{0,62}`, a file name in dir pools.
    VolumeName,
    "volume",
    path_component
);
name_type!(
    /// An image's name: `[a-z0-9][a-z0-9._-]{0,62}`, a file name in its pool.
    ImageName,
    "image",
    path_component
);
name_type!(
    /// A template's name, unique in the cluster: `[a-z0-9][a-z0-9-]{0,62}` (its directory
    /// on its node).
    TemplateName,
    "template",
    dns_label
);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn names_follow_their_rules() {
        for ok in ["a", "web-1", "0", &"a".repeat(63)] {
            VmName::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            NodeName::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "Bad_Name",
            "../x",
            "-a",
            "a b",
            &"a".repeat(64),
            "é",
            "a.b",
        ] {
            assert!(VmName::parse(bad).is_err(), "{bad:?}");
        }
        let e = VmName::parse("Bad").expect_err("upper case");
        assert_eq!(
            e.to_string(),
            "invalid VM name \"Bad\": use 1-63 characters a-z, 0-9 and '-', starting with a \
             letter or digit"
        );
        assert!(NetworkName::parse("lan-1").is_ok());
        let e = NetworkName::parse("1lan").expect_err("digit first");
        assert!(e.to_string().contains("starting with a letter"), "{e}");
        for ok in ["debian-12.qcow2", "vm_1-root", "0"] {
            VolumeName::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "-x", "_x", "A"] {
            assert!(ImageName::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            PoolName::parse(".x").expect_err("dot").to_string(),
            "invalid pool name \".x\": must start with a lowercase letter or a digit"
        );
    }

    #[test]
    fn serde_goes_through_the_parser() {
        let n: VmName = serde_json::from_str("\"web\"").expect("valid");
        assert_eq!(n, "web");
        assert_eq!(serde_json::to_string(&n).expect("json"), "\"web\"");
        assert!(serde_json::from_str::<VmName>("\"../x\"").is_err());
        assert!(serde_json::from_str::<NetworkName>("\"9lan\"").is_err());
    }

    proptest! {
        #[test]
        fn vm_names_are_exactly_the_rule(name in "[a-z0-9._A-Z/ -]{0,70}") {
            let rule = regex::Regex::new("^[a-z0-9][a-z0-9-]{0,62}$").expect("regex");
            prop_assert_eq!(VmName::parse(&name).is_ok(), rule.is_match(&name));
            prop_assert_eq!(NodeName::parse(&name).is_ok(), rule.is_match(&name));
            let net = regex::Regex::new("^[a-z][a-z0-9-]{0,62}$").expect("regex");
            prop_assert_eq!(NetworkName::parse(&name).is_ok(), net.is_match(&name));
            let path = regex::Regex::new("^[a-z0-9][a-z0-9._-]{0,62}$").expect("regex");
            prop_assert_eq!(VolumeName::parse(&name).is_ok(), path.is_match(&name));
        }

        #[test]
        fn names_never_panic(name in "\\PC{0,80}") {
            let _ = VmName::parse(&name);
            let _ = NetworkName::parse(&name);
            let _ = ImageName::parse(&name);
        }
    }
}

//! cloud-init data a VM is given ([`CloudInit`]): the three files of a NoCloud seed, which
//! the node writes on a small read-only disk labelled `cidata` (`node/seed.rs`).
//!
//! [`CloudInit::validate`] is the one check, made with the rest of a request before
//! anything is placed or made: sizes ([`MAX_FILE_BYTES`] a file, [`MAX_TOTAL_BYTES`] in
//! all), meta-data and network-config YAML mappings, a user-data that starts with
//! `#cloud-config` a YAML mapping too. YAML is parsed with libyaml's grammar (the parser
//! cloud-init's PyYAML uses), and a file that does not parse is refused with its line and
//! column. Other user-data formats (`#!` scripts, `#include`, MIME multipart, ...) go on
//! the seed as they are.

use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value};

use crate::error::{ApiError, ApiResult};

/// The largest file of a seed, in bytes.
pub const MAX_FILE_BYTES: usize = 512 * 1024;
/// The largest seed: its files together, in bytes.
pub const MAX_TOTAL_BYTES: usize = 1024 * 1024;

/// The first lines cloud-init recognises in user-data (anything else it ignores, so it is
/// refused here rather than silently doing nothing in the guest).
const USER_DATA_HEADERS: &[&str] = &["#", "Content-Type:"];

/// The files of a NoCloud seed, as given (empty: not given).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CloudInit {
    /// `user-data`: `#cloud-config` YAML, a `#!` script, or another cloud-init format.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_data: String,
    /// `meta-data`: a YAML mapping; the node adds `instance-id` (the VM's id) and
    /// `local-hostname` (its name) when they are missing.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub meta_data: String,
    /// `network-config` (version 1 or 2): a YAML mapping; empty: none on the seed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network_config: String,
}

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

/// `1.5 KiB`, `12 B`.
fn size(bytes: usize) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

/// Parse `text` as YAML; refuse it with `file`, the line and the column when it does not.
fn parse_yaml(file: &str, text: &str) -> ApiResult<Value> {
    serde_yaml_ng::from_str::<Value>(text).map_err(|e| {
        let mut msg = e.to_string();
        if let Some(at) = e.location()
            && !msg.contains(" at line ")
        {
            msg.push_str(&format!(" at line {} column {}", at.line(), at.column()));
        }
        ApiError::InvalidArgument(format!("cloud-init {file} is not valid YAML: {msg}"))
    })
}

/// `text` must be a YAML mapping (`key: value` lines).
fn mapping(file: &str, text: &str) -> ApiResult<Mapping> {
    match parse_yaml(file, text)? {
        Value::Mapping(m) => Ok(m),
        other => Err(ApiError::InvalidArgument(format!(
            "cloud-init {file} must be a YAML mapping (key: value lines), not {}",
            kind(&other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

impl CloudInit {
    /// No file given: no seed.
    pub fn is_empty(&self) -> bool {
        blank(&self.user_data) && blank(&self.meta_data) && blank(&self.network_config)
    }

    /// The files as the seed names them, with their text (empty when not given).
    pub fn files(&self) -> [(&'static str, &str); 3] {
        [
            ("user-data", &self.user_data),
            ("meta-data", &self.meta_data),
            ("network-config", &self.network_config),
        ]
    }

    /// The one check: sizes, then each file's format (see the module's doc).
    pub fn validate(&self) -> ApiResult<()> {
        let mut total = 0;
        for (file, text) in self.files() {
            if text.len() > MAX_FILE_BYTES {
                return Err(ApiError::InvalidArgument(format!(
                    "cloud-init {file} is {}: a file may be at most {} KiB",
                    size(text.len()),
                    MAX_FILE_BYTES / 1024
                )));
            }
            total += text.len();
        }
        if total > MAX_TOTAL_BYTES {
            return Err(ApiError::InvalidArgument(format!(
                "cloud-init files are {} together: a seed may hold at most {} KiB",
                size(total),
                MAX_TOTAL_BYTES / 1024
            )));
        }
        if !blank(&self.user_data) {
            let first = self.user_data.lines().next().unwrap_or("").trim_end();
            if !USER_DATA_HEADERS.iter().any(|h| first.starts_with(h)) {
                return Err(ApiError::InvalidArgument(
                    "cloud-init user-data must start with a cloud-init header: #cloud-config, \
                     a #! script, #include, ... or a MIME multipart (cloud-init ignores \
                     anything else)"
                        .into(),
                ));
            }
            if first == "#cloud-config" {
                match parse_yaml("user-data", &self.user_data)? {
                    Value::Mapping(_) | Value::Null => {}
                    other => {
                        return Err(ApiError::InvalidArgument(format!(
                            "cloud-init user-data (#cloud-config) must be a YAML mapping, \
                             not {}",
                            kind(&other)
                        )));
                    }
                }
            }
        }
        if !blank(&self.meta_data) {
            mapping("meta-data", &self.meta_data)?;
        }
        if !blank(&self.network_config) {
            mapping("network-config", &self.network_config)?;
        }
        Ok(())
    }

    /// The seed's `meta-data` for VM `id` named `name`: as given, with `instance-id: <id>`
    /// and `local-hostname: <name>` added when it lacks them (all of it when none is given).
    pub fn seed_meta_data(&self, id: &str, name: &str) -> ApiResult<String> {
        if blank(&self.meta_data) {
            return Ok(format!("instance-id: {id}\nlocal-hostname: {name}\n"));
        }
        let mut m = mapping("meta-data", &self.meta_data)?;
        let mut added = false;
        for (key, value) in [("instance-id", id), ("local-hostname", name)] {
            let key = Value::String(key.into());
            if !m.contains_key(&key) {
                m.insert(key, Value::String(value.into()));
                added = true;
            }
        }
        if !added {
            return Ok(self.meta_data.clone());
        }
        serde_yaml_ng::to_string(&Value::Mapping(m))
            .map_err(|e| ApiError::Internal(format!("cloud-init meta-data: {e}")))
    }

    /// What the VM has, for events: `user-data 1.2 KiB, meta-data 40 B`.
    pub fn summary(&self) -> String {
        let given: Vec<String> = self
            .files()
            .iter()
            .filter(|(_, t)| !blank(t))
            .map(|(f, t)| format!("{f} {}", size(t.len())))
            .collect();
        given.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ci(user: &str, meta: &str, net: &str) -> CloudInit {
        CloudInit {
            user_data: user.into(),
            meta_data: meta.into(),
            network_config: net.into(),
        }
    }

    fn err(c: &CloudInit) -> String {
        c.validate().expect_err("invalid").to_string()
    }

    #[test]
    fn formats_are_checked() {
        ci("#cloud-config\nusers: [a]\n", "", "")
            .validate()
            .expect("ok");
        ci("#cloud-config\n", "", "")
            .validate()
            .expect("empty cloud-config");
        // A script, an include and MIME pass as they are, whatever YAML says of them.
        ci("#!/bin/sh\necho: [:\n", "", "")
            .validate()
            .expect("script");
        ci("#include\nhttp://x/y\n", "", "")
            .validate()
            .expect("include");
        ci("Content-Type: multipart/mixed; boundary=x\n", "", "")
            .validate()
            .expect("mime");
        ci("", "instance-id: x\n", "version: 2\nethernets: {}\n")
            .validate()
            .expect("meta and network");
        let e = err(&ci("users: [a]\n", "", ""));
        assert!(e.contains("must start with a cloud-init header"), "{e}");
        let e = err(&ci("#cloud-config\n- a\n- b\n", "", ""));
        assert!(e.contains("must be a YAML mapping, not a list"), "{e}");
        let e = err(&ci("", "just words", ""));
        assert!(
            e.contains("cloud-init meta-data must be a YAML mapping") && e.contains("a string"),
            "{e}"
        );
    }

    #[test]
    fn bad_yaml_names_the_file_line_and_column() {
        let e = err(&ci("#cloud-config\nusers:\n  - name: a\n bad: [\n", "", ""));
        assert!(
            e.starts_with("cloud-init user-data is not valid YAML: "),
            "{e}"
        );
        assert!(e.contains("line 4 column 2"), "{e}");
        let e = err(&ci("", "", "version: 2\n  ethernets: x\n"));
        assert!(
            e.starts_with("cloud-init network-config is not valid YAML"),
            "{e}"
        );
        assert!(e.contains("line 2 column"), "{e}");
        // An error on the very first character still says where.
        let e = err(&ci("", "@x", ""));
        assert!(e.contains("line 1 column 1"), "{e}");
    }

    #[test]
    fn sizes_are_bounded() {
        let big = format!("#!/bin/sh\n{}", "x".repeat(MAX_FILE_BYTES));
        let e = err(&ci(&big, "", ""));
        assert!(e.contains("at most 512 KiB"), "{e}");
        assert!(e.starts_with("cloud-init user-data is 512.0 KiB"), "{e}");
        let half = format!("#!/bin/sh\n{}", "x".repeat(MAX_FILE_BYTES - 20));
        let meta = format!("a: {}\n", "y".repeat(MAX_FILE_BYTES - 20));
        let net = format!("b: {}\n", "z".repeat(100));
        let e = err(&ci(&half, &meta, &net));
        assert!(e.contains("a seed may hold at most 1024 KiB"), "{e}");
        ci(&half, "", &net).validate().expect("under both limits");
    }

    #[test]
    fn meta_data_gets_its_defaults() {
        assert_eq!(
            ci("", "", "").seed_meta_data("id-1", "web").expect("meta"),
            "instance-id: id-1\nlocal-hostname: web\n"
        );
        let given = "instance-id: mine\nlocal-hostname: h\n";
        assert_eq!(
            ci("", given, "")
                .seed_meta_data("id-1", "web")
                .expect("meta"),
            given
        );
        let m = ci("", "local-hostname: h # comment\n", "")
            .seed_meta_data("id-1", "web")
            .expect("meta");
        assert_eq!(m, "local-hostname: h\ninstance-id: id-1\n");
        assert_eq!(
            ci("#!/bin/sh\n", "", "net: 1\n").summary(),
            "user-data 10 B, network-config 7 B"
        );
        assert!(ci(" \n", "", "").is_empty());
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        fn texts() -> impl Strategy<Value = String> {
            prop_oneof![
                "#cloud-config\n[a-z: \\[\\]{}\n-]{0,80}",
                "[a-z]{1,8}: [a-z0-9]{0,8}(\n[a-z]{1,8}: [a-z0-9]{0,8}){0,5}\n",
                "#![a-z/ ]{0,20}\n\\PC{0,40}",
                "\\PC{0,60}",
                any::<String>(),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// What is accepted follows the rule: a #cloud-config user-data, the meta-data
            /// and the network-config parse as YAML mappings; a refusal of bad YAML says
            /// where; no input panics.
            #[test]
            fn accepted_files_follow_the_rule(user in texts(), meta in texts(), net in texts()) {
                let c = CloudInit { user_data: user, meta_data: meta, network_config: net };
                match c.validate() {
                    Ok(()) => {
                        let is_map = |t: &str| matches!(
                            serde_yaml_ng::from_str::<Value>(t),
                            Ok(Value::Mapping(_))
                        );
                        if c.user_data.lines().next().map(str::trim_end) == Some("#cloud-config") {
                            prop_assert!(matches!(
                                serde_yaml_ng::from_str::<Value>(&c.user_data),
                                Ok(Value::Mapping(_) | Value::Null)
                            ));
                        }
                        prop_assert!(blank(&c.meta_data) || is_map(&c.meta_data));
                        prop_assert!(blank(&c.network_config) || is_map(&c.network_config));
                        prop_assert!(c.seed_meta_data("id", "vm").is_ok());
                    }
                    Err(e) => {
                        // Where the parser knows the place, the refusal says it.
                        let e = e.to_string();
                        for (file, text) in c.files() {
                            if e.starts_with(&format!("cloud-init {file} is not valid YAML"))
                                && let Err(y) = serde_yaml_ng::from_str::<Value>(text)
                                && let Some(at) = y.location()
                            {
                                prop_assert!(
                                    e.contains(&format!("line {} column {}", at.line(), at.column())),
                                    "{}", e
                                );
                            }
                        }
                    }
                }
            }

            /// Generated key: value lines (each key once) are always a valid meta-data and
            /// network-config.
            #[test]
            fn key_value_lines_are_accepted(
                pairs in proptest::collection::btree_map("[a-z][a-z-]{0,10}", "[a-z0-9]{1,10}", 1..6)
            ) {
                let text: String = pairs.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
                let c = CloudInit { meta_data: text.clone(), network_config: text, ..Default::default() };
                prop_assert!(c.validate().is_ok(), "{:?}", c);
            }
        }
    }
}

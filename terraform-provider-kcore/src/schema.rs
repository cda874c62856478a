//! Small builders for tf-provider schemas, and the conversions between Terraform values
//! and the API's plain strings and numbers.

use std::collections::HashMap;

use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, NestedBlock,
};
use tf_provider::value::Value;

/// An attribute of `ty` with `constraint` and a description.
pub fn attr(ty: AttributeType, constraint: AttributeConstraint, description: &str) -> Attribute {
    Attribute {
        attr_type: ty,
        description: Description::plain(description),
        constraint,
        sensitive: false,
        deprecated: false,
    }
}

pub fn required(ty: AttributeType, description: &str) -> Attribute {
    attr(ty, AttributeConstraint::Required, description)
}

pub fn optional(ty: AttributeType, description: &str) -> Attribute {
    attr(ty, AttributeConstraint::Optional, description)
}

pub fn optional_computed(ty: AttributeType, description: &str) -> Attribute {
    attr(ty, AttributeConstraint::OptionalComputed, description)
}

pub fn computed(ty: AttributeType, description: &str) -> Attribute {
    attr(ty, AttributeConstraint::Computed, description)
}

/// A block made of `attributes` and nested `blocks`.
pub fn block(
    description: &str,
    attributes: Vec<(&str, Attribute)>,
    blocks: Vec<(&str, NestedBlock)>,
) -> Block {
    Block {
        version: 1,
        attributes: attributes
            .into_iter()
            .map(|(n, a)| (n.to_string(), a))
            .collect::<HashMap<_, _>>(),
        blocks: blocks
            .into_iter()
            .map(|(n, b)| (n.to_string(), b))
            .collect::<HashMap<_, _>>(),
        description: Description::plain(description),
        deprecated: false,
    }
}

/// An object type for computed lists (`nodes`, `images`).
pub fn object(fields: &[(&str, AttributeType)]) -> AttributeType {
    AttributeType::Object(
        fields
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect(),
    )
}

/// A string the API answers with: null when empty and the prior value is null (the user
/// left the attribute out), else the value.
pub fn str_like(server: &str, prior: &Value<String>) -> Value<String> {
    if server.is_empty() && !matches!(prior, Value::Value(p) if p.is_empty()) {
        Value::Null
    } else {
        Value::Value(server.to_string())
    }
}

/// A number the API answers with: null when 0 and the prior value is null, else the value.
pub fn num_like(server: u32, prior: &Value<i64>) -> Value<i64> {
    if server == 0 && !matches!(prior, Value::Value(0)) {
        Value::Null
    } else {
        Value::Value(i64::from(server))
    }
}

/// A bool the API answers with: null when false and the prior value is null.
pub fn bool_like(server: bool, prior: &Value<bool>) -> Value<bool> {
    if !server && !matches!(prior, Value::Value(false)) {
        Value::Null
    } else {
        Value::Value(server)
    }
}

/// The string of a known value, or "" (null, unknown).
pub fn s(v: &Value<String>) -> String {
    match v {
        Value::Value(s) => s.clone(),
        _ => String::new(),
    }
}

/// A known number as a u32 (0 for null or unknown; a negative or huge one is an error).
pub fn u32_of(v: &Value<i64>, what: &str) -> Result<u32, String> {
    match v {
        Value::Value(n) => {
            u32::try_from(*n).map_err(|_| format!("{what} must be between 0 and {}", u32::MAX))
        }
        _ => Ok(0),
    }
}

/// The elements of a list value (none for null or unknown).
pub fn list<T: Clone>(v: &Value<Vec<T>>) -> Vec<T> {
    match v {
        Value::Value(items) => items.clone(),
        _ => Vec::new(),
    }
}

/// The attribute paths among `pairs` (name, prior, config) whose configured value differs
/// from the prior one (a config left out, null, does not count when `skip_null`).
pub fn changed(
    pairs: &[(&'static str, &Value<String>, &Value<String>)],
    skip_null: bool,
) -> Vec<tf_provider::AttributePath> {
    pairs
        .iter()
        .filter(|(_, p, c)| c.is_unknown() || (!(skip_null && c.is_null()) && s(p) != s(c)))
        .map(|(n, _, _)| tf_provider::AttributePath::new(*n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_defaults_stay_null_when_left_out() {
        assert_eq!(str_like("", &Value::Null), Value::Null);
        assert_eq!(
            str_like("", &Value::Value(String::new())),
            Value::Value(String::new())
        );
        assert_eq!(str_like("x", &Value::Null), Value::Value("x".to_string()));
        assert_eq!(num_like(0, &Value::Null), Value::Null);
        assert_eq!(num_like(0, &Value::Value(0)), Value::Value(0));
        assert_eq!(num_like(5, &Value::Null), Value::Value(5));
        assert_eq!(bool_like(false, &Value::Null), Value::Null);
        assert_eq!(bool_like(true, &Value::Null), Value::Value(true));
        assert_eq!(
            u32_of(&Value::Value(-1), "vcpu").expect_err("negative"),
            "vcpu must be between 0 and 4294967295"
        );
    }
}

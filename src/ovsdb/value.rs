//! The RFC 7047 value notation: how OVSDB spells uuids, sets and maps in
//! JSON, and how to read them back out of `select` rows.
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A reference to a row that exists already.
pub fn uuid(u: &str) -> Value {
    json!(["uuid", u])
}

/// A reference to a row inserted earlier in the same transaction.
pub fn named_uuid(name: &str) -> Value {
    json!(["named-uuid", name])
}

/// A set of atoms (`["set", [...]]`). A one-element set may also be written
/// as the bare atom, but the explicit form is always accepted.
pub fn set(items: impl IntoIterator<Item = Value>) -> Value {
    json!(["set", items.into_iter().collect::<Vec<_>>()])
}

/// A string-to-string map (`["map", [[k, v], ...]]`).
pub fn map<'a>(pairs: impl IntoIterator<Item = (&'a String, &'a String)>) -> Value {
    let pairs: Vec<Value> = pairs.into_iter().map(|(k, v)| json!([k, v])).collect();
    json!(["map", pairs])
}

/// Members of a set column. The server writes a one-element set as the bare
/// atom and an empty optional column as `["set", []]`.
pub fn set_items(v: &Value) -> Vec<Value> {
    match v.as_array().map(Vec::as_slice) {
        Some([tag, Value::Array(items)]) if tag == "set" => items.clone(),
        _ if v.is_null() => Vec::new(),
        _ => vec![v.clone()],
    }
}

/// The uuid string out of `["uuid", "..."]`.
pub fn uuid_of(v: &Value) -> Option<String> {
    match v.as_array().map(Vec::as_slice) {
        Some([tag, Value::String(u)]) if tag == "uuid" => Some(u.clone()),
        _ => None,
    }
}

/// All uuids of a set-of-references column (e.g. `Bridge.ports`).
pub fn uuids(v: &Value) -> Vec<String> {
    set_items(v).iter().filter_map(uuid_of).collect()
}

/// An optional integer column (`min: 0, max: 1`).
pub fn opt_int(v: &Value) -> Option<i64> {
    set_items(v).first().and_then(Value::as_i64)
}

/// An optional string column.
pub fn opt_str(v: &Value) -> Option<String> {
    set_items(v)
        .first()
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Integers of a set column (e.g. `Port.trunks`).
pub fn ints(v: &Value) -> Vec<i64> {
    set_items(v).iter().filter_map(Value::as_i64).collect()
}

/// A string map column.
pub fn string_map(v: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some([tag, Value::Array(pairs)]) = v.as_array().map(Vec::as_slice)
        && tag == "map"
    {
        for p in pairs {
            if let Some([Value::String(k), Value::String(val)]) = p.as_array().map(Vec::as_slice) {
                out.insert(k.clone(), val.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_in_both_spellings() {
        assert_eq!(ints(&json!(10)), vec![10]);
        assert_eq!(ints(&json!(["set", [10, 20]])), vec![10, 20]);
        assert_eq!(opt_int(&json!(["set", []])), None);
        assert_eq!(uuids(&json!(["uuid", "a"])), vec!["a".to_string()]);
        assert_eq!(
            uuids(&json!(["set", [["uuid", "a"], ["uuid", "b"]]])),
            vec!["a".to_string(), "b".to_string()]
        );
        assert_eq!(opt_str(&json!("x")), Some("x".into()));
    }

    #[test]
    fn maps_round_trip() {
        let mut m = BTreeMap::new();
        m.insert("k".to_string(), "v".to_string());
        assert_eq!(string_map(&map(&m)), m);
        assert!(string_map(&json!(["map", []])).is_empty());
    }
}

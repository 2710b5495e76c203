//! `config/kprox.toml` is the file users copy: it must set every option, and to its default.

use kprox_config::{RawConfig, load, parse_toml, validate};

const DOCUMENTED: &str = include_str!("../../../config/kprox.toml");

fn no_default(_: &str) -> String {
    "built-in default".to_owned()
}

/// Lists the keys a serialized value leaves unset (`null`), by dotted path.
fn unset_keys(value: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Null => out.push(path.to_owned()),
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                unset_keys(child, &child_path, out);
            }
        }
        _ => {}
    }
}

/// Every key a raw config can hold, found by serializing one with every section present and
/// every field `null` (serde's `skip_serializing_if` is bypassed by building JSON directly).
fn every_key() -> Vec<String> {
    let sections = [
        "listen",
        "filter",
        "www",
        "kubeconfig",
        "upstream",
        "log",
        "admin",
        "passthrough",
    ];
    let mut keys = Vec::new();
    for section in sections {
        // An unknown field is refused, so probing a field name tells whether it exists; instead
        // of guessing, read the field list from the error figment gives for an unknown key.
        let text = format!("[{section}]\nno_such_key_probe = 1\n");
        let error = parse_toml("probe.toml", &text).expect_err("probe key is unknown");
        let list = error
            .fix
            .strip_prefix("remove it or use one of: ")
            .and_then(|rest| rest.strip_suffix(" (see config/kprox.toml)"))
            .expect("fix lists the keys");
        keys.extend(list.split(", ").map(|key| format!("{section}.{key}")));
    }
    keys
}

#[test]
fn documented_file_sets_every_option() {
    let raw = parse_toml("config/kprox.toml", DOCUMENTED).expect("documented file parses");
    let json = serde_json::to_value(&raw).expect("serializes");
    for key in every_key() {
        let mut node = &json;
        for part in key.split('.') {
            node = &node[part];
        }
        assert!(
            !node.is_null(),
            "config/kprox.toml does not document `{key}`"
        );
    }
    let mut unset = Vec::new();
    unset_keys(&json, "", &mut unset);
    assert!(unset.is_empty(), "unset keys: {unset:?}");
}

#[test]
fn documented_file_equals_the_built_in_defaults() {
    let raw = parse_toml("config/kprox.toml", DOCUMENTED).expect("documented file parses");
    let documented = validate(&raw, &no_default).expect("documented file is valid");
    let defaults = validate(&RawConfig::default(), &no_default).expect("defaults are valid");
    assert_eq!(documented, defaults);
}

#[test]
fn documented_file_loads_through_the_real_loader() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/kprox.toml");
    let config = load(&kprox_config::Sources {
        file: Some(&path),
        ..Default::default()
    })
    .expect("loads");
    assert_eq!(config.listen.port, 8001);
}

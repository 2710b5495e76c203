//! Server-side printing: kubectl asks for `meta.k8s.io/v1` `Table`s and prints their rows. The
//! columns of each type are in [`crate::resource_types`]; ages are computed when asked.

use serde_json::{Value, json};

use crate::store::Resource;

/// Whether the client's Accept header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept.contains("as=Table")
}

/// A Table of `objects`, each row carrying the object's metadata.
pub fn table(resource: Resource, objects: &[Value], resource_version: u64) -> Value {
    table_with(resource, objects, resource_version, "Metadata")
}

/// A Table with `includeObject` as asked: `Object` (kubectl `--sort-by` and custom columns
/// read fields from it), `Metadata` (the default) or `None`.
pub fn table_with(
    resource: Resource,
    objects: &[Value],
    resource_version: u64,
    include: &str,
) -> Value {
    let columns: Vec<Value> = resource
        .columns
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": if c.format == "date" { "string" } else { c.format },
                   "format": if c.name == "Name" { "name" } else { "" },
                   "description": c.name, "priority": c.priority})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells: Vec<Value> = resource.columns.iter().map(|c| (c.cell)(o)).collect();
            let object = match include {
                "Object" => o.clone(),
                "None" => Value::Null,
                _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                            "metadata": o["metadata"].clone()}),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version.to_string()},
        "columnDefinitions": columns, "rows": rows
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_pod_has_an_age_in_seconds() {
        let pod = crate::store::running_pod("web-0", json!({}), "10.0.0.9");
        let mut pod = pod;
        pod["metadata"]["creationTimestamp"] = json!(crate::clock::now());
        let t = table(Resource::PODS, &[pod], 7);
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names[..5], ["Name", "Ready", "Status", "Restarts", "Age"]);
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[1], "1/1");
        assert_eq!(cells[2], "Running");
        assert!(
            cells[4].as_str().is_some_and(|age| age.ends_with('s')),
            "{cells}"
        );
        assert_eq!(cells[5], "10.0.0.9");
    }
}

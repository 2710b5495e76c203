//! Server-side printing: kubectl asks for `meta.k8s.io/v1` `Table`s and prints their rows.

use serde_json::{Value, json};

use crate::store::Resource;

/// Whether the client's Accept header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept.contains("as=Table")
}

/// A Table of `objects`.
pub fn table(resource: Resource, objects: &[Value], resource_version: u64) -> Value {
    let columns: Vec<Value> = columns(resource)
        .iter()
        .map(|(name, kind)| {
            json!({"name": name, "type": kind, "format": if *name == "Name" { "name" } else { "" },
                   "description": name, "priority": 0})
        })
        .collect();
    let rows: Vec<Value> = objects.iter().map(|o| row(resource, o)).collect();
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version.to_string()},
        "columnDefinitions": columns, "rows": rows
    })
}

fn columns(resource: Resource) -> &'static [(&'static str, &'static str)] {
    match resource {
        Resource::Pods => &[
            ("Name", "string"),
            ("Ready", "string"),
            ("Status", "string"),
            ("Restarts", "string"),
            ("Age", "string"),
        ],
        Resource::ConfigMaps => &[("Name", "string"), ("Data", "integer"), ("Age", "string")],
        Resource::Namespaces => &[("Name", "string"), ("Status", "string"), ("Age", "string")],
        Resource::EndpointSlices => &[
            ("Name", "string"),
            ("AddressType", "string"),
            ("Age", "string"),
        ],
    }
}

fn row(resource: Resource, object: &Value) -> Value {
    let meta = &object["metadata"];
    let name = meta["name"].clone();
    let age = "<unknown>";
    let cells = match resource {
        Resource::Pods => {
            let phase = object["status"]["phase"].as_str().unwrap_or("Pending");
            let ready = if phase == "Running" { "1/1" } else { "0/1" };
            json!([name, ready, phase, "0", age])
        }
        Resource::ConfigMaps => {
            let data = object["data"].as_object().map_or(0, |d| d.len());
            json!([name, data, age])
        }
        Resource::Namespaces => json!([name, object["status"]["phase"].clone(), age]),
        Resource::EndpointSlices => json!([name, object["addressType"].clone(), age]),
    };
    json!({
        "cells": cells,
        "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta.clone()}
    })
}

//! Just enough of the Kubernetes protobuf encoding to accept what kubectl sends for the kinds
//! the fake stores: kubectl 1.32 creates built-in objects (`kubectl create configmap`) with
//! `Content-Type: application/vnd.kubernetes.protobuf`, as a real apiserver accepts.
//!
//! The envelope is the magic `k8s\0` followed by a `runtime.Unknown` message whose `raw` field
//! holds the object. Only ConfigMap fields (metadata name/namespace/labels/annotations, data)
//! are decoded; anything else is refused with 415 by the caller.

use serde_json::{Map, Value, json};

/// The media type kubectl uses.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

pub(crate) const MAGIC: &[u8] = b"k8s\0";

/// Decodes a protobuf-encoded object into its JSON form, or says why not.
pub fn decode_object(body: &[u8]) -> Result<Value, String> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or("missing the k8s protobuf magic")?;
    let mut kind = String::new();
    let mut api_version = String::new();
    let mut raw: &[u8] = &[];
    for field in Fields::new(envelope) {
        match field? {
            (1, Wire::Bytes(type_meta)) => {
                for f in Fields::new(type_meta) {
                    match f? {
                        (1, Wire::Bytes(v)) => api_version = utf8(v)?,
                        (2, Wire::Bytes(v)) => kind = utf8(v)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(bytes)) => raw = bytes,
            _ => {}
        }
    }
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "ConfigMap") => config_map(raw),
        _ => Err(format!(
            "protobuf decoding of {api_version}/{kind} is not supported by the fake"
        )),
    }
}

fn config_map(raw: &[u8]) -> Result<Value, String> {
    let mut metadata = Map::new();
    let mut data = Map::new();
    for field in Fields::new(raw) {
        match field? {
            (1, Wire::Bytes(meta)) => metadata = object_meta(meta)?,
            (2, Wire::Bytes(entry)) => {
                let (k, v) = map_entry(entry)?;
                data.insert(k, Value::String(v));
            }
            _ => {}
        }
    }
    Ok(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}))
}

pub(crate) fn object_meta(raw: &[u8]) -> Result<Map<String, Value>, String> {
    let mut meta = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    for field in Fields::new(raw) {
        match field? {
            (1, Wire::Bytes(v)) => {
                meta.insert("name".into(), Value::String(utf8(v)?));
            }
            (3, Wire::Bytes(v)) => {
                meta.insert("namespace".into(), Value::String(utf8(v)?));
            }
            (6, Wire::Bytes(v)) => {
                meta.insert("resourceVersion".into(), Value::String(utf8(v)?));
            }
            (11, Wire::Bytes(entry)) => {
                let (k, v) = map_entry(entry)?;
                labels.insert(k, Value::String(v));
            }
            (12, Wire::Bytes(entry)) => {
                let (k, v) = map_entry(entry)?;
                annotations.insert(k, Value::String(v));
            }
            _ => {}
        }
    }
    if !labels.is_empty() {
        meta.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    Ok(meta)
}

fn map_entry(raw: &[u8]) -> Result<(String, String), String> {
    let (mut key, mut value) = (String::new(), String::new());
    for field in Fields::new(raw) {
        match field? {
            (1, Wire::Bytes(v)) => key = utf8(v)?,
            (2, Wire::Bytes(v)) => value = utf8(v)?,
            _ => {}
        }
    }
    Ok((key, value))
}

pub(crate) fn utf8(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "a string field is not UTF-8".to_owned())
}

pub(crate) enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Iterates over the top-level fields of one message.
pub(crate) struct Fields<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(rest: &'a [u8]) -> Self {
        Self {
            rest,
            failed: false,
        }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.rest.split_first().ok_or("truncated varint")?;
            self.rest = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint too long".into())
    }

    fn next_field(&mut self) -> Result<(u64, Wire<'a>), String> {
        let key = self.varint()?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.rest = self.rest.get(8..).ok_or("truncated fixed64")?;
                Wire::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
                if len > self.rest.len() {
                    return Err("truncated length-delimited field".into());
                }
                let (bytes, rest) = self.rest.split_at(len);
                self.rest = rest;
                Wire::Bytes(bytes)
            }
            5 => {
                self.rest = self.rest.get(4..).ok_or("truncated fixed32")?;
                Wire::Fixed
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        Ok((key >> 3, wire))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Wire<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let item = self.next_field();
        self.failed = item.is_err();
        Some(item)
    }
}

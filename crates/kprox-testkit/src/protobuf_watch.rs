//! The fake's protobuf answers, for clients whose `Accept` puts
//! `application/vnd.kubernetes.protobuf` first (kubelets, controllers): watch streams, and
//! ConfigMap objects and lists. An object or a list is the envelope: the 4 bytes `k8s\0`, then
//! a `runtime.Unknown` {1: TypeMeta {1: apiVersion, 2: kind}, 2: the message}; a list message
//! is {1: ListMeta {2: resourceVersion}, 2: items}. A watch stream is a sequence of frames, each
//! a 4-byte big-endian length and a `meta.v1.WatchEvent` {1: type, 2: RawExtension {1: the
//! envelope of the object}}.
//!
//! Every kind the fake serves is encoded whole, as far as the fake keeps it (metadata: name 1,
//! namespace 3, uid 5, resourceVersion 6, creationTimestamp 8, labels 11, annotations 12; a
//! ConfigMap's data; a Pod's containers, node, phase, IP and container statuses — kubectl exec,
//! attach, logs and port-forward read the Pod they ask for in protobuf; a Namespace's phase; an
//! EndpointSlice's endpoints, ports and address type).

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::protobuf::{Fields, MAGIC, Wire, object_meta, utf8};

/// The media type of a protobuf watch stream.
pub const STREAM_CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(u8::try_from(value & 0x7f).unwrap_or(0) | 0x80);
        value >>= 7;
    }
    out.push(u8::try_from(value).unwrap_or(0));
}

fn bytes_field(out: &mut Vec<u8>, tag: u64, bytes: &[u8]) {
    varint(out, tag << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn string_map(out: &mut Vec<u8>, tag: u64, map: &Value) {
    if let Some(map) = map.as_object() {
        for (key, value) in map {
            let mut entry = Vec::new();
            bytes_field(&mut entry, 1, key.as_bytes());
            bytes_field(&mut entry, 2, value.as_str().unwrap_or_default().as_bytes());
            bytes_field(out, tag, &entry);
        }
    }
}

/// `ObjectMeta`: the fields the fake keeps.
fn encode_metadata(meta: &Value) -> Vec<u8> {
    let mut encoded = Vec::new();
    for (tag, key) in [
        (1, "name"),
        (3, "namespace"),
        (5, "uid"),
        (6, "resourceVersion"),
    ] {
        if let Some(text) = meta[key].as_str() {
            bytes_field(&mut encoded, tag, text.as_bytes());
        }
    }
    time_field(&mut encoded, 8, &meta["creationTimestamp"]);
    string_map(&mut encoded, 11, &meta["labels"]);
    string_map(&mut encoded, 12, &meta["annotations"]);
    encoded
}

fn encode_object(object: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    if object["kind"] == "Status" {
        for (tag, key) in [(2, "status"), (3, "message"), (4, "reason")] {
            bytes_field(
                &mut out,
                tag,
                object[key].as_str().unwrap_or_default().as_bytes(),
            );
        }
        varint(&mut out, 6 << 3);
        varint(&mut out, object["code"].as_u64().unwrap_or(0));
        return out;
    }
    bytes_field(&mut out, 1, &encode_metadata(&object["metadata"]));
    match object["kind"].as_str() {
        Some("ConfigMap") => string_map(&mut out, 2, &object["data"]),
        Some("Pod") => {
            bytes_field(&mut out, 2, &encode_pod_spec(&object["spec"]));
            bytes_field(&mut out, 3, &encode_pod_status(&object["status"]));
        }
        Some("EndpointSlice") => {
            for endpoint in object["endpoints"].as_array().into_iter().flatten() {
                let mut encoded = Vec::new();
                for address in endpoint["addresses"].as_array().into_iter().flatten() {
                    string_field(&mut encoded, 1, address);
                }
                let mut conditions = Vec::new();
                for (tag, key) in [(1, "ready"), (2, "serving"), (3, "terminating")] {
                    bool_field(&mut conditions, tag, &endpoint["conditions"][key]);
                }
                bytes_field(&mut encoded, 2, &conditions);
                string_field(&mut encoded, 6, &endpoint["nodeName"]);
                bytes_field(&mut out, 2, &encoded);
            }
            for port in object["ports"].as_array().into_iter().flatten() {
                let mut encoded = Vec::new();
                string_field(&mut encoded, 1, &port["name"]);
                string_field(&mut encoded, 2, &port["protocol"]);
                int_field(&mut encoded, 3, &port["port"]);
                bytes_field(&mut out, 3, &encoded);
            }
            string_field(&mut out, 4, &object["addressType"]);
        }
        Some("Namespace") => {
            let mut status = Vec::new();
            string_field(&mut status, 1, &object["status"]["phase"]);
            bytes_field(&mut out, 2, &[]);
            bytes_field(&mut out, 3, &status);
        }
        _ => {}
    }
    out
}

/// A string field, when the JSON value is a string.
fn string_field(out: &mut Vec<u8>, tag: u64, value: &Value) {
    if let Some(text) = value.as_str() {
        bytes_field(out, tag, text.as_bytes());
    }
}

fn bool_field(out: &mut Vec<u8>, tag: u64, value: &Value) {
    if let Some(flag) = value.as_bool() {
        varint(out, tag << 3);
        varint(out, u64::from(flag));
    }
}

fn int_field(out: &mut Vec<u8>, tag: u64, value: &Value) {
    if let Some(n) = value.as_u64() {
        varint(out, tag << 3);
        varint(out, n);
    }
}

/// `meta.v1.Time` {1: seconds}.
fn time_field(out: &mut Vec<u8>, tag: u64, value: &Value) {
    if let Some(seconds) = value.as_str().and_then(crate::clock::parse) {
        let mut time = Vec::new();
        varint(&mut time, 1 << 3);
        varint(&mut time, u64::try_from(seconds).unwrap_or(0));
        bytes_field(out, tag, &time);
    }
}

/// `PodSpec`: containers (2: name 1, image 2, command 3, args 4) and nodeName (10).
fn encode_pod_spec(spec: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    for container in spec["containers"].as_array().into_iter().flatten() {
        let mut encoded = Vec::new();
        string_field(&mut encoded, 1, &container["name"]);
        string_field(&mut encoded, 2, &container["image"]);
        for (tag, key) in [(3, "command"), (4, "args")] {
            for part in container[key].as_array().into_iter().flatten() {
                string_field(&mut encoded, tag, part);
            }
        }
        bytes_field(&mut out, 2, &encoded);
    }
    string_field(&mut out, 10, &spec["nodeName"]);
    out
}

/// `PodStatus`: phase 1, podIP 6, containerStatuses 8 (name 1, state 2 {running 2 {startedAt
/// 1}}, ready 4, restartCount 5, image 6, imageID 7, started 9).
fn encode_pod_status(status: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    string_field(&mut out, 1, &status["phase"]);
    string_field(&mut out, 6, &status["podIP"]);
    for container in status["containerStatuses"].as_array().into_iter().flatten() {
        let mut encoded = Vec::new();
        string_field(&mut encoded, 1, &container["name"]);
        if container["state"]["running"].is_object() {
            let mut running = Vec::new();
            time_field(&mut running, 1, &container["state"]["running"]["startedAt"]);
            let mut state = Vec::new();
            bytes_field(&mut state, 2, &running);
            bytes_field(&mut encoded, 2, &state);
        }
        bool_field(&mut encoded, 4, &container["ready"]);
        int_field(&mut encoded, 5, &container["restartCount"]);
        string_field(&mut encoded, 6, &container["image"]);
        string_field(&mut encoded, 7, &container["imageID"]);
        bool_field(&mut encoded, 9, &container["started"]);
        bytes_field(&mut out, 8, &encoded);
    }
    out
}

/// The media type of protobuf objects and lists.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Whether objects of `kind` are encoded whole, so that their lists and objects may be
/// answered in protobuf.
pub fn encodes_whole(kind: &str) -> bool {
    matches!(kind, "ConfigMap" | "Pod" | "Namespace" | "EndpointSlice")
}

/// `k8s\0` and a `runtime.Unknown` around `message`.
fn envelope(api_version: &str, kind: &str, message: &[u8]) -> Vec<u8> {
    let mut type_meta = Vec::new();
    bytes_field(&mut type_meta, 1, api_version.as_bytes());
    bytes_field(&mut type_meta, 2, kind.as_bytes());
    let mut unknown = Vec::new();
    bytes_field(&mut unknown, 1, &type_meta);
    bytes_field(&mut unknown, 2, message);
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&unknown);
    out
}

fn object_envelope(object: &Value) -> Vec<u8> {
    envelope(
        object["apiVersion"].as_str().unwrap_or("v1"),
        object["kind"].as_str().unwrap_or_default(),
        &encode_object(object),
    )
}

/// One object, as a protobuf response body.
pub fn encode_object_body(object: &Value) -> Bytes {
    object_envelope(object).into()
}

/// A list (`kind` such as `ConfigMapList`) of `items` at `resource_version`, as a body.
pub fn encode_list_body(
    api_version: &str,
    kind: &str,
    items: &[Value],
    resource_version: u64,
) -> Bytes {
    let mut list_meta = Vec::new();
    bytes_field(&mut list_meta, 2, resource_version.to_string().as_bytes());
    let mut list = Vec::new();
    bytes_field(&mut list, 1, &list_meta);
    for item in items {
        bytes_field(&mut list, 2, &encode_object(item));
    }
    envelope(api_version, kind, &list).into()
}

/// A decoded protobuf list (for clients in tests and benchmarks).
#[derive(Clone, Debug, PartialEq)]
pub struct ListBody {
    pub kind: String,
    pub resource_version: String,
    /// Each item's metadata as JSON.
    pub items: Vec<Map<String, Value>>,
}

/// Opens an envelope: the kind its TypeMeta names, and the message inside.
fn open_envelope(bytes: &[u8]) -> Result<(String, &[u8]), String> {
    let unknown = bytes
        .strip_prefix(MAGIC)
        .ok_or("missing the k8s protobuf magic")?;
    let (mut kind, mut message) = (String::new(), &[][..]);
    for field in Fields::new(unknown) {
        match field? {
            (1, Wire::Bytes(type_meta)) => {
                for f in Fields::new(type_meta) {
                    if let (2, Wire::Bytes(v)) = f? {
                        kind = utf8(v)?;
                    }
                }
            }
            (2, Wire::Bytes(v)) => message = v,
            _ => {}
        }
    }
    Ok((kind, message))
}

/// Reads a protobuf list body.
pub fn decode_list_body(body: &[u8]) -> Result<ListBody, String> {
    let (kind, message) = open_envelope(body)?;
    let mut list = ListBody {
        kind,
        resource_version: String::new(),
        items: Vec::new(),
    };
    for field in Fields::new(message) {
        match field? {
            (1, Wire::Bytes(meta)) => {
                for f in Fields::new(meta) {
                    if let (2, Wire::Bytes(v)) = f? {
                        list.resource_version = utf8(v)?;
                    }
                }
            }
            (2, Wire::Bytes(item)) => {
                for f in Fields::new(item) {
                    if let (1, Wire::Bytes(meta)) = f? {
                        list.items.push(object_meta(meta)?);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(list)
}

/// One watch event as a length-prefixed frame.
pub fn encode_event(kind: &str, object: &Value) -> Bytes {
    let envelope = object_envelope(object);
    let mut raw_extension = Vec::new();
    bytes_field(&mut raw_extension, 1, &envelope);
    let mut event = Vec::new();
    bytes_field(&mut event, 1, kind.as_bytes());
    bytes_field(&mut event, 2, &raw_extension);
    let mut frame = u32::try_from(event.len())
        .unwrap_or(u32::MAX)
        .to_be_bytes()
        .to_vec();
    frame.extend_from_slice(&event);
    frame.into()
}

/// One decoded event of a protobuf watch stream (for tests that read one).
#[derive(Clone, Debug, PartialEq)]
pub struct WatchFrame {
    pub kind: String,
    /// The object's kind (`Pod`, `Status`).
    pub object_kind: String,
    /// The object's metadata (name, namespace, resourceVersion, labels, annotations) as JSON.
    pub metadata: Map<String, Value>,
    /// A `Status` object's code.
    pub code: Option<u64>,
}

fn decode_event(event: &[u8]) -> Result<WatchFrame, String> {
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for field in Fields::new(event) {
        match field? {
            (1, Wire::Bytes(v)) => kind = utf8(v)?,
            (2, Wire::Bytes(extension)) => {
                for f in Fields::new(extension) {
                    if let (1, Wire::Bytes(v)) = f? {
                        raw = v;
                    }
                }
            }
            _ => {}
        }
    }
    let (object_kind, object) = open_envelope(raw)?;
    let mut frame = WatchFrame {
        kind,
        object_kind,
        metadata: Map::new(),
        code: None,
    };
    if frame.object_kind == "Status" {
        for field in Fields::new(object) {
            if let (6, Wire::Varint(code)) = field? {
                frame.code = Some(code);
            }
        }
    } else {
        for field in Fields::new(object) {
            if let (1, Wire::Bytes(meta)) = field? {
                frame.metadata = object_meta(meta)?;
            }
        }
    }
    Ok(frame)
}

/// Splits a protobuf watch stream into its events; an error names the first bad frame (a
/// frame cut short counts as bad).
pub fn decode_stream(mut stream: &[u8]) -> Result<Vec<WatchFrame>, String> {
    let mut frames = Vec::new();
    while !stream.is_empty() {
        let prefix: [u8; 4] = stream
            .get(..4)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| format!("frame {}: truncated length", frames.len()))?;
        let len = usize::try_from(u32::from_be_bytes(prefix)).map_err(|e| e.to_string())?;
        let event = stream
            .get(4..4 + len)
            .ok_or_else(|| format!("frame {}: cut short", frames.len()))?;
        frames.push(decode_event(event).map_err(|e| format!("frame {}: {e}", frames.len()))?);
        stream = &stream[4 + len..];
    }
    Ok(frames)
}

/// Takes the first complete frame off the front of `buffer` (a stream being read), if there
/// is one; an error when that frame does not decode.
pub fn take_frame(buffer: &mut Vec<u8>) -> Option<Result<WatchFrame, String>> {
    let prefix: [u8; 4] = buffer.get(..4)?.try_into().ok()?;
    let len = usize::try_from(u32::from_be_bytes(prefix)).ok()?;
    let event = buffer.get(4..4 + len)?;
    let frame = decode_event(event);
    buffer.drain(..4 + len);
    Some(frame)
}

//! Protobuf watch streams, as the apiserver sends them to kubelets and controllers that ask
//! for `application/vnd.kubernetes.protobuf`: each event a 4-byte big-endian length and a
//! `meta.v1.WatchEvent` {1: type, 2: RawExtension {1: raw}}, `raw` the `k8s\0` envelope around
//! a `runtime.Unknown` {1: TypeMeta {1: apiVersion, 2: kind}, 2: the object}.
//!
//! The fake encodes only what it stores of an object's metadata (name 1, namespace 3, uid 5,
//! resourceVersion 6, labels 11, annotations 12) and, for a `Status`, its status (2), message
//! (3), reason (4) and code (6); spec and status of other objects are left out. Enough for
//! anything that follows versions and bookmarks; not a full Pod codec.

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
    let meta = &object["metadata"];
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
    string_map(&mut encoded, 11, &meta["labels"]);
    string_map(&mut encoded, 12, &meta["annotations"]);
    bytes_field(&mut out, 1, &encoded);
    out
}

/// One watch event as a length-prefixed frame.
pub fn encode_event(kind: &str, object: &Value) -> Bytes {
    let mut type_meta = Vec::new();
    bytes_field(
        &mut type_meta,
        1,
        object["apiVersion"].as_str().unwrap_or("v1").as_bytes(),
    );
    bytes_field(
        &mut type_meta,
        2,
        object["kind"].as_str().unwrap_or_default().as_bytes(),
    );
    let mut unknown = Vec::new();
    bytes_field(&mut unknown, 1, &type_meta);
    bytes_field(&mut unknown, 2, &encode_object(object));
    let mut envelope = MAGIC.to_vec();
    envelope.extend_from_slice(&unknown);
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
    let unknown = raw
        .strip_prefix(MAGIC)
        .ok_or("missing the k8s protobuf magic")?;
    let (mut object_kind, mut object) = (String::new(), &[][..]);
    for field in Fields::new(unknown) {
        match field? {
            (1, Wire::Bytes(type_meta)) => {
                for f in Fields::new(type_meta) {
                    if let (2, Wire::Bytes(v)) = f? {
                        object_kind = utf8(v)?;
                    }
                }
            }
            (2, Wire::Bytes(v)) => object = v,
            _ => {}
        }
    }
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

//! Protobuf watch streams (`application/vnd.kubernetes.protobuf;stream=watch`): the framing,
//! and the few fields of each event that resume reads (REFERENCE.md §4).
//!
//! A stream is a sequence of frames, each a 4-byte big-endian length and a `meta.v1.WatchEvent`
//! {1: type, 2: object (RawExtension {1: raw})}. `raw` is the envelope: `k8s\0`, then a
//! `runtime.Unknown` {1: typeMeta {1: apiVersion, 2: kind}, 2: raw (the object)}. Every
//! built-in object has its `ObjectMeta` in field 1 (resourceVersion 6, annotations 12); a
//! `Status` (ERROR events) has its code in field 6 and its causes in details (5) → causes (4)
//! → reason (1). prost's derive decodes these messages and skips every other field; no
//! generated Kubernetes types are needed.

use std::collections::HashMap;

use bytes::Bytes;
use prost::Message;

use crate::watch_event::{EventHead, EventType, INITIAL_EVENTS_END, RESOURCE_VERSION_TOO_LARGE};

/// The magic that starts a Kubernetes protobuf envelope.
const MAGIC: &[u8] = b"k8s\0";

/// The length of a frame's length prefix.
pub const LENGTH_PREFIX: usize = 4;

#[derive(Clone, PartialEq, Message)]
struct WatchEvent {
    #[prost(string, tag = "1")]
    kind: String,
    #[prost(message, optional, tag = "2")]
    object: Option<RawExtension>,
}

#[derive(Clone, PartialEq, Message)]
struct RawExtension {
    #[prost(bytes = "bytes", tag = "1")]
    raw: Bytes,
}

#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "bytes", tag = "2")]
    raw: Bytes,
}

#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, tag = "1")]
    api_version: String,
    #[prost(string, tag = "2")]
    kind: String,
}

/// Any built-in object: only its metadata.
#[derive(Clone, PartialEq, Message)]
struct WithMetadata {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
}

#[derive(Clone, PartialEq, Message)]
struct ObjectMeta {
    #[prost(string, tag = "6")]
    resource_version: String,
    #[prost(map = "string, string", tag = "12")]
    annotations: HashMap<String, String>,
}

#[derive(Clone, PartialEq, Message)]
struct Status {
    #[prost(message, optional, tag = "5")]
    details: Option<StatusDetails>,
    #[prost(int32, tag = "6")]
    code: i32,
}

#[derive(Clone, PartialEq, Message)]
struct StatusDetails {
    #[prost(message, repeated, tag = "4")]
    causes: Vec<StatusCause>,
}

#[derive(Clone, PartialEq, Message)]
struct StatusCause {
    #[prost(string, tag = "1")]
    reason: String,
}

/// The length of the first frame in `buffer`, prefix included, once the prefix is there.
pub fn frame_len(buffer: &[u8]) -> Option<usize> {
    let prefix: [u8; LENGTH_PREFIX] = buffer.get(..LENGTH_PREFIX)?.try_into().ok()?;
    usize::try_from(u32::from_be_bytes(prefix))
        .ok()
        .map(|len| len + LENGTH_PREFIX)
}

/// Reads one frame (prefix included); `None` when it is not a watch event kprox can read.
pub fn event_head(frame: &[u8]) -> Option<EventHead> {
    let event = WatchEvent::decode(frame.get(LENGTH_PREFIX..)?).ok()?;
    let kind = EventType::parse(&event.kind);
    let envelope = event.object?.raw;
    let unknown = Unknown::decode(envelope.strip_prefix(MAGIC)?).ok()?;
    let is_status = unknown
        .type_meta
        .as_ref()
        .is_some_and(|t| t.kind == "Status");
    let mut head = EventHead {
        kind,
        resource_version: None,
        initial_events_end: false,
        error_code: None,
        too_large_resource_version: false,
    };
    if is_status {
        let status = Status::decode(unknown.raw).ok()?;
        if kind == EventType::Error {
            head.error_code = u16::try_from(status.code).ok();
            head.too_large_resource_version = status.details.is_some_and(|d| {
                d.causes
                    .iter()
                    .any(|c| c.reason == RESOURCE_VERSION_TOO_LARGE)
            });
        }
        return Some(head);
    }
    let metadata = WithMetadata::decode(unknown.raw).ok()?.metadata?;
    head.initial_events_end = kind == EventType::Bookmark
        && metadata
            .annotations
            .get(INITIAL_EVENTS_END)
            .is_some_and(|v| v == "true");
    head.resource_version = Some(metadata.resource_version).filter(|v| !v.is_empty());
    Some(head)
}

/// Encodes an `ERROR` event carrying a `Status` with `code`, `reason` and `message` (for a
/// client of a protobuf watch that kprox must tell to start over).
pub fn error_frame(code: u16, reason: &str, message: &str) -> Bytes {
    #[derive(Clone, PartialEq, Message)]
    struct FullStatus {
        #[prost(message, optional, tag = "1")]
        metadata: Option<Empty>,
        #[prost(string, tag = "2")]
        status: String,
        #[prost(string, tag = "3")]
        message: String,
        #[prost(string, tag = "4")]
        reason: String,
        #[prost(int32, tag = "6")]
        code: i32,
    }
    #[derive(Clone, PartialEq, Message)]
    struct Empty {}
    let status = FullStatus {
        metadata: Some(Empty {}),
        status: "Failure".into(),
        message: message.into(),
        reason: reason.into(),
        code: i32::from(code),
    };
    frame("ERROR", "Status", &status.encode_to_vec()).into()
}

/// A length-prefixed `WatchEvent` of `event_type` around an object of `kind` (`message` is the
/// object's own encoding).
fn frame(event_type: &str, kind: &str, message: &[u8]) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: "v1".into(),
            kind: kind.into(),
        }),
        raw: Bytes::copy_from_slice(message),
    };
    let mut envelope = MAGIC.to_vec();
    // Encoding into a Vec cannot run out of room.
    unknown.encode(&mut envelope).unwrap_or_default();
    let event = WatchEvent {
        kind: event_type.into(),
        object: Some(RawExtension {
            raw: envelope.into(),
        }),
    };
    let body = event.encode_to_vec();
    let mut out = u32::try_from(body.len())
        .unwrap_or(u32::MAX)
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A frame for an event of `kind` whose object has `resource_version` and `annotations`.
    pub(crate) fn frame(
        kind: &str,
        resource_version: &str,
        annotations: &[(&str, &str)],
    ) -> Vec<u8> {
        let object = WithMetadata {
            metadata: Some(ObjectMeta {
                resource_version: resource_version.into(),
                annotations: annotations
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            }),
        };
        super::frame(kind, "Pod", &object.encode_to_vec())
    }

    #[test]
    fn frames_are_read_for_their_version_and_bookmark() {
        let added = frame("ADDED", "42", &[]);
        assert_eq!(frame_len(&added), Some(added.len()));
        assert_eq!(frame_len(&added[..3]), None);
        let head = event_head(&added).expect("event");
        assert_eq!(head.kind, EventType::Added);
        assert_eq!(head.resource_version.as_deref(), Some("42"));
        let end = event_head(&frame("BOOKMARK", "50", &[(INITIAL_EVENTS_END, "true")]))
            .expect("bookmark");
        assert!(end.initial_events_end);
    }

    #[test]
    fn an_error_frame_reads_back_as_an_error_with_its_code() {
        let frame = error_frame(410, "Expired", "start over");
        let head = event_head(&frame).expect("error");
        assert_eq!(head.kind, EventType::Error);
        assert_eq!(head.error_code, Some(410));
        assert_eq!(frame_len(&frame), Some(frame.len()));
    }

    #[test]
    fn garbage_is_not_an_event() {
        assert_eq!(event_head(b"\0\0\0\x03abc"), None);
        assert_eq!(event_head(b""), None);
    }
}

//! What watch resume needs to know of one watch event, whatever its encoding: its type, the
//! resourceVersion of its object, whether it is the bookmark that ends a WatchList's initial
//! events, and for an `ERROR` the `Status` code and whether it means "too large resource
//! version" (a lagging replica). Reads only those fields, from a JSON line here and from a
//! protobuf frame in `watch_protobuf.rs`.

use serde::Deserialize;

/// The annotation on the bookmark that ends the initial events of a WatchList.
pub const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// The `Status` cause reason of a "too large resource version" answer.
pub const RESOURCE_VERSION_TOO_LARGE: &str = "ResourceVersionTooLarge";

/// The type of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
    Bookmark,
    Error,
    /// A type this version of kprox does not know: passed on, never interpreted.
    Other,
}

impl EventType {
    pub fn parse(text: &str) -> Self {
        match text {
            "ADDED" => Self::Added,
            "MODIFIED" => Self::Modified,
            "DELETED" => Self::Deleted,
            "BOOKMARK" => Self::Bookmark,
            "ERROR" => Self::Error,
            _ => Self::Other,
        }
    }
}

/// The few fields of an event that resume reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventHead {
    pub kind: EventType,
    /// The object's `metadata.resourceVersion` (for a Table watch, that of its row's object).
    pub resource_version: Option<String>,
    /// A bookmark annotated `k8s.io/initial-events-end: "true"`.
    pub initial_events_end: bool,
    /// For an `ERROR`: the `Status` code.
    pub error_code: Option<u16>,
    /// For an `ERROR`: a cause `ResourceVersionTooLarge` (the replica is behind).
    pub too_large_resource_version: bool,
}

#[derive(Deserialize)]
struct JsonEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    object: JsonObject,
}

#[derive(Deserialize, Default)]
struct JsonObject {
    #[serde(default)]
    metadata: JsonMetadata,
    /// Table watches (kubectl get -w) carry the object in their rows.
    #[serde(default)]
    rows: Vec<JsonRow>,
    /// A `Status` (ERROR events).
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    details: Option<JsonDetails>,
}

#[derive(Deserialize, Default)]
struct JsonRow {
    #[serde(default)]
    object: JsonRowObject,
}

#[derive(Deserialize, Default)]
struct JsonRowObject {
    #[serde(default)]
    metadata: JsonMetadata,
}

#[derive(Deserialize, Default)]
struct JsonMetadata {
    #[serde(rename = "resourceVersion", default)]
    resource_version: Option<String>,
    #[serde(default)]
    annotations: Option<std::collections::HashMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct JsonDetails {
    #[serde(default)]
    causes: Vec<JsonCause>,
}

#[derive(Deserialize, Default)]
struct JsonCause {
    #[serde(default)]
    reason: String,
}

/// Reads one JSON watch event (one line); `None` when it is not one.
pub fn json_event_head(line: &[u8]) -> Option<EventHead> {
    let event: JsonEvent<'_> = serde_json::from_slice(line).ok()?;
    let kind = EventType::parse(event.kind);
    let object = event.object;
    let initial_events_end = kind == EventType::Bookmark
        && object
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(INITIAL_EVENTS_END))
            .is_some_and(|v| v == "true");
    let too_large_resource_version = object.details.as_ref().is_some_and(|d| {
        d.causes
            .iter()
            .any(|c| c.reason == RESOURCE_VERSION_TOO_LARGE)
    });
    let resource_version = object.metadata.resource_version.or_else(|| {
        object
            .rows
            .into_iter()
            .next()
            .and_then(|r| r.object.metadata.resource_version)
    });
    Some(EventHead {
        kind,
        resource_version,
        initial_events_end,
        error_code: (kind == EventType::Error).then_some(object.code).flatten(),
        too_large_resource_version: kind == EventType::Error && too_large_resource_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_of_every_type_are_read() {
        let added = json_event_head(
            br#"{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"a","resourceVersion":"7"}}}"#,
        )
        .expect("event");
        assert_eq!(added.kind, EventType::Added);
        assert_eq!(added.resource_version.as_deref(), Some("7"));
        assert!(!added.initial_events_end);

        let end = json_event_head(
            br#"{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"9","annotations":{"k8s.io/initial-events-end":"true"}}}}"#,
        )
        .expect("event");
        assert!(end.initial_events_end);
        assert_eq!(end.resource_version.as_deref(), Some("9"));

        let table = json_event_head(
            br#"{"type":"MODIFIED","object":{"kind":"Table","rows":[{"object":{"metadata":{"resourceVersion":"11"}}}]}}"#,
        )
        .expect("event");
        assert_eq!(table.resource_version.as_deref(), Some("11"));

        let lagging = json_event_head(
            br#"{"type":"ERROR","object":{"kind":"Status","code":504,"reason":"Timeout","details":{"causes":[{"reason":"ResourceVersionTooLarge","message":"Too large resource version"}]}}}"#,
        )
        .expect("event");
        assert_eq!(lagging.error_code, Some(504));
        assert!(lagging.too_large_resource_version);

        assert_eq!(json_event_head(b"not json"), None);
        assert_eq!(
            json_event_head(br#"{"type":"SOMETHING","object":{}}"#).map(|e| e.kind),
            Some(EventType::Other)
        );
    }
}

//! Label and field selectors, as the apiserver reads them from `labelSelector` and
//! `fieldSelector`: `app=web,tier!=db`, `env in (prod,staging)`, `!canary`,
//! `involvedObject.name=web-0,metadata.namespace=default`.

use serde_json::Value;

use crate::query;

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    Absent(String),
}

/// Why a selector was refused (the apiserver answers 400).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement: {0}")]
pub struct SelectorError(String);

/// The selectors of one request; empty matches everything.
#[derive(Clone, Debug, Default)]
pub struct Selectors {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

impl Selectors {
    /// Reads `labelSelector` and `fieldSelector` from a raw query string.
    pub fn from_query(raw_query: &str) -> Result<Self, SelectorError> {
        let labels = match query::value(raw_query, "labelSelector") {
            Some(text) => parse(&text, true)?,
            None => Vec::new(),
        };
        let fields = match query::value(raw_query, "fieldSelector") {
            Some(text) => parse(&text, false)?,
            None => Vec::new(),
        };
        Ok(Self { labels, fields })
    }

    /// Whether `object` is selected.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let label = |key: &str| labels.get(key).and_then(Value::as_str).map(str::to_owned);
        let field = |path: &str| Some(field_text(object, path));
        self.labels.iter().all(|r| holds(r, &label)) && self.fields.iter().all(|r| holds(r, &field))
    }
}

/// A field's value as a selector compares it: a string, a number or a bool as text, else "".
fn field_text(object: &Value, path: &str) -> String {
    let mut at = object;
    for part in path.split('.') {
        at = &at[part];
    }
    match at {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

fn holds(requirement: &Requirement, value_of: &dyn Fn(&str) -> Option<String>) -> bool {
    match requirement {
        Requirement::Equals(k, v) => value_of(k).as_deref() == Some(v),
        Requirement::NotEquals(k, v) => value_of(k).as_deref() != Some(v),
        Requirement::In(k, vs) => value_of(k).is_some_and(|x| vs.contains(&x)),
        Requirement::NotIn(k, vs) => value_of(k).is_none_or(|x| !vs.contains(&x)),
        Requirement::Exists(k) => value_of(k).is_some(),
        Requirement::Absent(k) => value_of(k).is_none(),
    }
}

/// Splits on commas outside parentheses.
fn terms(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

fn parse(text: &str, set_based: bool) -> Result<Vec<Requirement>, SelectorError> {
    let mut out = Vec::new();
    for term in terms(text) {
        let term = term.trim();
        if term.is_empty() {
            continue;
        }
        let invalid = || SelectorError(term.to_owned());
        let requirement = if let Some((k, v)) = term.split_once("!=") {
            Requirement::NotEquals(k.trim().to_owned(), v.trim().to_owned())
        } else if let Some((k, v)) = term.split_once("==") {
            Requirement::Equals(k.trim().to_owned(), v.trim().to_owned())
        } else if let Some((k, v)) = term.split_once('=') {
            Requirement::Equals(k.trim().to_owned(), v.trim().to_owned())
        } else if !set_based {
            return Err(invalid());
        } else if let Some(key) = term.strip_prefix('!') {
            Requirement::Absent(key.trim().to_owned())
        } else if let Some((key, rest)) = split_set(term, " notin ") {
            Requirement::NotIn(key, values(rest).ok_or_else(invalid)?)
        } else if let Some((key, rest)) = split_set(term, " in ") {
            Requirement::In(key, values(rest).ok_or_else(invalid)?)
        } else if term.contains(' ') || term.contains('(') {
            return Err(invalid());
        } else {
            Requirement::Exists(term.to_owned())
        };
        out.push(requirement);
    }
    Ok(out)
}

fn split_set<'a>(term: &'a str, operator: &str) -> Option<(String, &'a str)> {
    let (key, rest) = term.split_once(operator)?;
    Some((key.trim().to_owned(), rest.trim()))
}

fn values(set: &str) -> Option<Vec<String>> {
    let inner = set.strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "web-0", "namespace": "default", "labels": labels},
               "spec": {"nodeName": "node-a"}, "status": {"phase": "Running"}})
    }

    fn selects(query: &str, object: &Value) -> bool {
        Selectors::from_query(query)
            .expect("parses")
            .matches(object)
    }

    #[test]
    fn label_selectors_of_every_form() {
        let web = pod(json!({"app": "web", "env": "prod"}));
        assert!(selects("labelSelector=app%3Dweb", &web));
        assert!(selects("labelSelector=app%3D%3Dweb%2Cenv%3Dprod", &web));
        assert!(!selects("labelSelector=app%3Ddb", &web));
        assert!(selects("labelSelector=app!%3Ddb", &web));
        assert!(selects("labelSelector=env+in+(prod%2Cstaging)", &web));
        assert!(!selects("labelSelector=env%20notin%20(prod)", &web));
        assert!(selects("labelSelector=app", &web));
        assert!(selects("labelSelector=!canary", &web));
        assert!(!selects("labelSelector=!app", &web));
        assert!(selects("", &web));
        assert!(Selectors::from_query("labelSelector=app+is+web").is_err());
    }

    #[test]
    fn field_selectors_compare_dotted_paths() {
        let web = pod(json!({}));
        assert!(selects("fieldSelector=metadata.name%3Dweb-0", &web));
        assert!(selects(
            "fieldSelector=spec.nodeName%3Dnode-a,status.phase!%3DPending",
            &web
        ));
        assert!(!selects(
            "fieldSelector=metadata.namespace%3Dkube-system",
            &web
        ));
        assert!(Selectors::from_query("fieldSelector=metadata.name").is_err());
    }
}

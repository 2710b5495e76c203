//! Query strings as the apiserver reads them: `name=value` pairs, percent-decoded, `+` a space.

/// The first value of `name`, decoded.
pub fn value(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

/// Every value of `name` (`command=echo&command=hi`), decoded.
pub fn values(query: &str, name: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
        .collect()
}

/// A boolean parameter as apimachinery converts it: absent, `0` or `false` is false; anything
/// else, the empty value included, is true.
pub fn flag(query: &str, name: &str) -> bool {
    value(query, name).is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// Decodes `%XX` escapes and `+`; a malformed escape is kept as written.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(b) = hex {
                    out.push(b);
                    i += 3;
                } else {
                    out.push(b'%');
                    i += 1;
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_decoded() {
        let q = "labelSelector=app%3Dweb&command=echo&command=hi+there&follow=true&x";
        assert_eq!(value(q, "labelSelector").as_deref(), Some("app=web"));
        assert_eq!(values(q, "command"), ["echo", "hi there"]);
        assert!(flag(q, "follow"));
        assert!(flag(q, "x"));
        assert!(!flag("follow=false", "follow"));
        assert_eq!(value(q, "x").as_deref(), Some(""));
        assert_eq!(percent_decode("50%"), "50%");
        assert_eq!(percent_decode("%2f%zz%41"), "/%zzA");
    }
}

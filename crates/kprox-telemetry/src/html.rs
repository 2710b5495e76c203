//! Text made safe for HTML, for the status page and its charts.

/// `text` with the characters HTML gives meaning to escaped.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

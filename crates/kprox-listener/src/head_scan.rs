//! A look at each request head as it arrives, before hyper parses it, for what hyper's parser
//! forgives or answers without an explanation:
//!
//! - a bare LF (an LF not preceded by CR) as a line ending: a smuggler relies on another parser
//!   reading such a head differently, so the connection closes;
//! - a `Content-Length` beside `Transfer-Encoding`, or two `Content-Length`s, which hyper
//!   resolves by the RFC and hides from the handler: the request is answered 400;
//! - more header fields than `listen.limits.max_headers`: answered 431 with a `Status` body
//!   here, so that hyper's own ceiling can stay at its default of 100, where it parses a head
//!   into arrays on the stack instead of zeroing two heap arrays per request.
//!
//! Lines are counted, not fields: a head has at least as many lines as fields, so a head this
//! scan lets through never has more fields than the limit.

/// What a head's bytes held so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scanned {
    Fine,
    /// A bare LF: the connection closes.
    BareLf,
    /// More field lines than the limit have ended.
    TooManyFields,
}

/// The scan of one request head at a time.
#[derive(Debug)]
pub(crate) struct HeadScan {
    /// The byte before the ones being fed, whatever part of the stream it belonged to.
    pub(crate) prev: u8,
    /// The current line has no byte other than CR yet.
    line_empty: bool,
    /// The start line has ended: an empty line now ends the head.
    seen_line: bool,
    /// The head has ended; what follows is body or the next request.
    done: bool,
    /// The start of the current line, lower-cased (long enough for the names below).
    line: [u8; 18],
    line_len: u8,
    content_lengths: u8,
    transfer_encodings: u8,
    /// Field lines ended so far, and how many a head may have.
    fields: u32,
    max_fields: u32,
}

impl HeadScan {
    /// A scan that lets a head have `max_fields` header fields.
    pub(crate) fn new(max_fields: usize) -> Self {
        Self {
            prev: 0,
            line_empty: true,
            seen_line: false,
            done: false,
            line: [0; 18],
            line_len: 0,
            content_lengths: 0,
            transfer_encodings: 0,
            fields: 0,
            max_fields: u32::try_from(max_fields).unwrap_or(u32::MAX),
        }
    }

    /// Ready for the next request head.
    pub(crate) fn restart(&mut self) {
        *self = Self {
            prev: self.prev,
            ..Self::new(self.max_fields as usize)
        };
    }

    /// The head has ended.
    pub(crate) fn done(&self) -> bool {
        self.done
    }

    /// Feeds bytes of a request head, up to its end: `BareLf` at once, `TooManyFields` once the
    /// head so far has more field lines than the limit (after all of `bytes` is scanned, so
    /// [`HeadScan::done`] says whether the head's end was among them).
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Scanned {
        for &byte in bytes {
            if self.done {
                break;
            }
            match byte {
                b'\n' if self.prev != b'\r' => return Scanned::BareLf,
                b'\n' => {
                    if !self.line_empty {
                        if self.seen_line {
                            self.fields = self.fields.saturating_add(1);
                        }
                        self.seen_line = true;
                        let line = &self.line[..usize::from(self.line_len)];
                        if line.starts_with(b"content-length:") {
                            self.content_lengths = self.content_lengths.saturating_add(1);
                        } else if line.starts_with(b"transfer-encoding:") {
                            self.transfer_encodings = self.transfer_encodings.saturating_add(1);
                        }
                    } else if self.seen_line {
                        self.done = true;
                    }
                    self.line_empty = true;
                    self.line_len = 0;
                }
                b'\r' => {}
                _ => {
                    self.line_empty = false;
                    if usize::from(self.line_len) < self.line.len() {
                        self.line[usize::from(self.line_len)] = byte.to_ascii_lowercase();
                        self.line_len += 1;
                    }
                }
            }
            self.prev = byte;
        }
        if let Some(&last) = bytes.last() {
            self.prev = last;
        }
        if self.fields > self.max_fields {
            Scanned::TooManyFields
        } else {
            Scanned::Fine
        }
    }

    /// How many header fields a head may have.
    pub(crate) fn max_fields(&self) -> u32 {
        self.max_fields
    }

    /// The finished head framed its body ambiguously.
    pub(crate) fn ambiguous(&self) -> bool {
        self.done
            && (self.content_lengths > 1
                || (self.content_lengths > 0 && self.transfer_encodings > 0))
    }
}

#[cfg(test)]
mod tests {
    use super::{HeadScan, Scanned};

    fn scan() -> HeadScan {
        HeadScan::new(100)
    }

    #[test]
    fn crlf_heads_pass_and_the_scan_stops_at_their_end() {
        let mut scan = scan();
        assert_eq!(scan.feed(b"GET / HTTP/1.1\r\nHost: a\r"), Scanned::Fine);
        assert_eq!(scan.feed(b"\n\r\nbody\nwith bare LFs\n"), Scanned::Fine);
        assert!(scan.done());
    }

    #[test]
    fn a_bare_lf_anywhere_in_the_head_is_refused() {
        let bare = Scanned::BareLf;
        assert_eq!(scan().feed(b"GET / HTTP/1.1\nHost: a\r\n\r\n"), bare);
        assert_eq!(scan().feed(b"GET / HTTP/1.1\r\nHost: a\n\r\n"), bare);
        let mut split = scan();
        assert_eq!(split.feed(b"GET / HTTP/1.1\r\nX: y"), Scanned::Fine);
        assert_eq!(split.feed(b"\n"), bare);
    }

    #[test]
    fn ambiguous_framing_is_seen_in_the_raw_head() {
        let mut both = scan();
        both.feed(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(both.ambiguous());
        let mut twice = scan();
        twice.feed(b"POST / HTTP/1.1\r\ncontent-length: 5\r\nCONTENT-LENGTH: 5\r\n\r\n");
        assert!(twice.ambiguous());
        let mut fine = scan();
        fine.feed(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nX-Content-Length: 1\r\n\r\n12345");
        assert!(!fine.ambiguous());
    }

    #[test]
    fn leading_empty_lines_do_not_end_the_head() {
        let mut scan = scan();
        assert_eq!(scan.feed(b"\r\nGET / HTTP/1.1\r\n"), Scanned::Fine);
        assert!(!scan.done());
        assert_eq!(scan.feed(b"Host: a\n"), Scanned::BareLf);
    }

    #[test]
    fn the_field_past_the_limit_is_caught_as_its_line_ends_in_any_split() {
        let head: String = std::iter::once("GET / HTTP/1.1\r\n".to_owned())
            .chain((0..4).map(|i| format!("X-{i}: {i}\r\n")))
            .chain(std::iter::once("\r\n".to_owned()))
            .collect();
        let mut at_limit = HeadScan::new(4);
        assert_eq!(at_limit.feed(head.as_bytes()), Scanned::Fine);
        assert!(at_limit.done());
        let mut whole = HeadScan::new(3);
        assert_eq!(whole.feed(head.as_bytes()), Scanned::TooManyFields);
        assert!(
            whole.done(),
            "the rest of the bytes is still scanned for the head's end"
        );
        for split in 1..head.len() {
            let mut over = HeadScan::new(3);
            let (first, second) = head.as_bytes().split_at(split);
            let verdicts = [over.feed(first), over.feed(second)];
            assert!(
                verdicts.contains(&Scanned::TooManyFields),
                "split at {split}: {verdicts:?}"
            );
        }
    }

    #[test]
    fn the_count_starts_over_for_the_next_head() {
        let mut scan = HeadScan::new(1);
        assert_eq!(
            scan.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Scanned::Fine
        );
        scan.restart();
        assert_eq!(
            scan.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Scanned::Fine
        );
    }
}

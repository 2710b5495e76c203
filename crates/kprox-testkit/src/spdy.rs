//! A SPDY/3.1 server session, enough for what kubectl speaks to a kubelet through the apiserver:
//! streams opened by the client (SYN_STREAM, answered by SYN_REPLY), data both ways with FIN,
//! RST_STREAM, PING and GOAWAY. Header blocks are zlib-compressed with the SPDY/3 dictionary,
//! one compression context per direction for the whole session. No flow control is enforced
//! (Kubernetes' spdystream does not use it).

use std::collections::HashMap;

use bytes::{Buf, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Control frame types.
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;

/// Frame flag: the sender is done with the stream.
pub const FLAG_FIN: u8 = 0x01;

/// Header names the SPDY/3 dictionary lists, each written with a 32-bit length before it.
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// Common values the SPDY/3 dictionary ends with, written as they are.
const DICTIONARY_TAIL: &str = "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505\
203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden\
404 Not Found500 Internal Server Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept \
Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,\
application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch\
charset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

/// The SPDY/3 header compression dictionary (1423 bytes).
pub fn dictionary() -> Vec<u8> {
    let mut dict = Vec::with_capacity(1423);
    for word in DICTIONARY_WORDS {
        dict.extend_from_slice(&u32::try_from(word.len()).unwrap_or(0).to_be_bytes());
        dict.extend_from_slice(word.as_bytes());
    }
    dict.extend_from_slice(DICTIONARY_TAIL.as_bytes());
    dict
}

/// What the client did.
#[derive(Debug)]
pub enum Event {
    /// A new stream with its headers (already answered with SYN_REPLY).
    Open {
        id: u32,
        headers: HashMap<String, String>,
    },
    /// Bytes on a stream; `fin` when the client is done sending on it.
    Data { id: u32, data: Bytes, fin: bool },
    /// The client reset a stream.
    Reset { id: u32 },
    /// The session is over (GOAWAY, EOF or an error).
    End,
}

/// Reads frames from the client side of a session.
pub struct Reader<R> {
    io: R,
    inflate: Decompress,
    dictionary: Vec<u8>,
}

/// Writes frames to the client.
pub struct Writer<W> {
    io: W,
    deflate: Compress,
}

/// Splits an I/O object into a reader and writer of SPDY frames.
pub fn session<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    read: R,
    write: W,
) -> (Reader<R>, Writer<W>) {
    let dictionary = dictionary();
    let mut deflate = Compress::new(Compression::default(), true);
    // A fresh compressor always accepts its dictionary; failure would be a flate2 bug.
    let _ = deflate.set_dictionary(&dictionary);
    (
        Reader {
            io: read,
            inflate: Decompress::new(true),
            dictionary,
        },
        Writer { io: write, deflate },
    )
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// The next event that matters to a handler; PINGs are reported as `Data` on stream 0 for
    /// the caller to echo with [`Writer::pong`].
    pub async fn next(&mut self) -> Event {
        match self.read_frame().await {
            Ok(event) => event,
            Err(error) => {
                tracing::debug!(%error, "SPDY session ended");
                Event::End
            }
        }
    }

    async fn read_frame(&mut self) -> std::io::Result<Event> {
        loop {
            let mut head = [0u8; 8];
            self.io.read_exact(&mut head).await?;
            let flags = head[4];
            let length =
                usize::from(head[5]) << 16 | usize::from(head[6]) << 8 | usize::from(head[7]);
            if length > 16 * 1024 * 1024 {
                return Err(std::io::Error::other("SPDY frame too large"));
            }
            let mut payload = vec![0u8; length];
            self.io.read_exact(&mut payload).await?;
            let fin = flags & FLAG_FIN != 0;
            if head[0] & 0x80 == 0 {
                let id = u32::from_be_bytes([head[0] & 0x7f, head[1], head[2], head[3]]);
                return Ok(Event::Data {
                    id,
                    data: Bytes::from(payload),
                    fin,
                });
            }
            let kind = u16::from_be_bytes([head[2], head[3]]);
            let mut body = &payload[..];
            match kind {
                SYN_STREAM if body.len() >= 10 => {
                    let id = body.get_u32() & 0x7fff_ffff;
                    body.advance(6); // associated stream, priority, slot
                    let headers = self.headers(body)?;
                    return Ok(Event::Open { id, headers });
                }
                RST_STREAM if body.len() >= 8 => {
                    return Ok(Event::Reset {
                        id: body.get_u32() & 0x7fff_ffff,
                    });
                }
                PING if body.len() >= 4 => {
                    return Ok(Event::Data {
                        id: 0,
                        data: Bytes::copy_from_slice(&body[..4]),
                        fin: false,
                    });
                }
                GOAWAY => return Ok(Event::End),
                _ => {} // SETTINGS, WINDOW_UPDATE, HEADERS, NOOP: nothing to do
            }
        }
    }

    fn headers(&mut self, compressed: &[u8]) -> std::io::Result<HashMap<String, String>> {
        let block = self.inflate_block(compressed)?;
        let mut data = &block[..];
        let mut headers = HashMap::new();
        let bad = || std::io::Error::other("malformed SPDY header block");
        if data.len() < 4 {
            return Err(bad());
        }
        let pairs = data.get_u32();
        for _ in 0..pairs {
            let mut field = || -> std::io::Result<String> {
                if data.len() < 4 {
                    return Err(bad());
                }
                let len = data.get_u32() as usize;
                if data.len() < len {
                    return Err(bad());
                }
                let text = String::from_utf8_lossy(&data[..len]).into_owned();
                data.advance(len);
                Ok(text)
            };
            let name = field()?;
            let value = field()?;
            headers.insert(name.to_ascii_lowercase(), value);
        }
        Ok(headers)
    }

    fn inflate_block(&mut self, mut input: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let mut buffer = [0u8; 4096];
        loop {
            let before_in = self.inflate.total_in();
            let before_out = self.inflate.total_out();
            let result = self
                .inflate
                .decompress(input, &mut buffer, FlushDecompress::Sync);
            let consumed = usize::try_from(self.inflate.total_in() - before_in).unwrap_or(0);
            let produced = usize::try_from(self.inflate.total_out() - before_out).unwrap_or(0);
            out.extend_from_slice(&buffer[..produced]);
            input = &input[consumed.min(input.len())..];
            match result {
                Ok(_) if input.is_empty() && produced < buffer.len() => return Ok(out),
                Ok(_) => {}
                Err(error) if error.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(&self.dictionary)
                        .map_err(std::io::Error::other)?;
                }
                Err(error) => return Err(std::io::Error::other(error)),
            }
        }
    }
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    fn deflate_block(&mut self, pairs: &[(&str, &str)]) -> std::io::Result<Vec<u8>> {
        let mut block = BytesMut::new();
        block.extend_from_slice(&u32::try_from(pairs.len()).unwrap_or(0).to_be_bytes());
        for (name, value) in pairs {
            for text in [name, value] {
                block.extend_from_slice(&u32::try_from(text.len()).unwrap_or(0).to_be_bytes());
                block.extend_from_slice(text.as_bytes());
            }
        }
        let mut out = Vec::with_capacity(block.len() + 64);
        let mut input = &block[..];
        let mut buffer = [0u8; 4096];
        loop {
            let before_in = self.deflate.total_in();
            let before_out = self.deflate.total_out();
            let status = self
                .deflate
                .compress(input, &mut buffer, FlushCompress::Sync)
                .map_err(std::io::Error::other)?;
            let consumed = usize::try_from(self.deflate.total_in() - before_in).unwrap_or(0);
            let produced = usize::try_from(self.deflate.total_out() - before_out).unwrap_or(0);
            out.extend_from_slice(&buffer[..produced]);
            input = &input[consumed.min(input.len())..];
            if input.is_empty() && produced < buffer.len() && status != Status::BufError {
                return Ok(out);
            }
        }
    }

    async fn control(&mut self, kind: u16, flags: u8, payload: &[u8]) -> std::io::Result<()> {
        let len = u32::try_from(payload.len()).unwrap_or(0).to_be_bytes();
        let mut frame = Vec::with_capacity(8 + payload.len());
        frame.extend_from_slice(&[0x80, 0x03]);
        frame.extend_from_slice(&kind.to_be_bytes());
        frame.push(flags);
        frame.extend_from_slice(&len[1..]);
        frame.extend_from_slice(payload);
        self.io.write_all(&frame).await?;
        self.io.flush().await
    }

    /// Accepts a stream the client opened.
    pub async fn reply(&mut self, id: u32) -> std::io::Result<()> {
        let mut payload = (id & 0x7fff_ffff).to_be_bytes().to_vec();
        payload.extend_from_slice(&self.deflate_block(&[])?);
        self.control(SYN_REPLY, 0, &payload).await
    }

    /// Sends data on a stream; `fin` ends the server's side of it.
    pub async fn data(&mut self, id: u32, data: &[u8], fin: bool) -> std::io::Result<()> {
        for (i, chunk) in data.chunks(16 * 1024).enumerate() {
            let last = (i + 1) * 16 * 1024 >= data.len();
            self.data_frame(id, chunk, fin && last).await?;
        }
        if data.is_empty() {
            self.data_frame(id, &[], fin).await?;
        }
        Ok(())
    }

    async fn data_frame(&mut self, id: u32, chunk: &[u8], fin: bool) -> std::io::Result<()> {
        let len = u32::try_from(chunk.len()).unwrap_or(0).to_be_bytes();
        let mut frame = Vec::with_capacity(8 + chunk.len());
        frame.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
        frame.push(if fin { FLAG_FIN } else { 0 });
        frame.extend_from_slice(&len[1..]);
        frame.extend_from_slice(chunk);
        self.io.write_all(&frame).await?;
        self.io.flush().await
    }

    /// Answers a PING.
    pub async fn pong(&mut self, ping: &[u8]) -> std::io::Result<()> {
        self.control(PING, 0, ping).await
    }

    /// Ends the session politely.
    pub async fn goaway(&mut self, last_stream: u32) -> std::io::Result<()> {
        let mut payload = (last_stream & 0x7fff_ffff).to_be_bytes().to_vec();
        payload.extend_from_slice(&0u32.to_be_bytes());
        self.control(GOAWAY, 0, &payload).await?;
        self.io.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adler32(bytes: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for byte in bytes {
            a = (a + u32::from(*byte)) % 65_521;
            b = (b + a) % 65_521;
        }
        (b << 16) | a
    }

    #[test]
    fn the_dictionary_is_the_spdy3_one() {
        let dict = dictionary();
        assert_eq!(dict.len(), 1423);
        // The checksum every SPDY/3 peer (Go's spdystream included) asks for.
        assert_eq!(adler32(&dict), 0xe3c6_a7c2);
    }

    #[tokio::test]
    async fn header_blocks_survive_a_round_trip_across_several_frames() {
        let (client_side, server_side) = tokio::io::duplex(64 * 1024);
        let (read, _) = tokio::io::split(server_side);
        let (_, write) = tokio::io::split(client_side);
        let (mut reader, _) = session(read, tokio::io::sink());
        let (_, mut writer) = session(tokio::io::empty(), write);
        for id in [1u32, 3, 5] {
            let mut payload = id.to_be_bytes().to_vec();
            payload.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
            payload.extend_from_slice(
                &writer
                    .deflate_block(&[("streamtype", "stdout"), ("port", "80")])
                    .expect("deflate"),
            );
            writer
                .control(SYN_STREAM, 0, &payload)
                .await
                .expect("write");
        }
        for id in [1u32, 3, 5] {
            match reader.next().await {
                Event::Open {
                    id: got, headers, ..
                } => {
                    assert_eq!(got, id);
                    assert_eq!(
                        headers.get("streamtype").map(String::as_str),
                        Some("stdout")
                    );
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

//! SPDY/3.1 framing, as much of it as kubectl's `port-forward` speaks: kubectl 1.30+ tunnels a
//! SPDY/3.1 session inside a WebSocket (the `SPDY/3.1+portforward.k8s.io` subprotocol, each
//! binary message a run of the session's bytes), and opens two streams per forwarded
//! connection. Frames: SYN_STREAM, SYN_REPLY, RST_STREAM, PING, GOAWAY, HEADERS and data; the
//! others (SETTINGS, WINDOW_UPDATE) are read and set aside. Header blocks are compressed with
//! one zlib stream per direction, the peer's seeded with the SPDY/3 dictionary (draft 3,
//! section 2.6.10.1).
//!
//! Pure: bytes in, frames out, and back; the session is in [`super::portforward`].

use std::sync::LazyLock;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// The SPDY version this speaks.
const VERSION: u16 = 3;
/// The largest frame accepted (SPDY's own limit is 16 MiB; kubectl sends 32 KiB at most).
const MAX_FRAME: usize = 1 << 24;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
/// The FIN flag of a data or stream frame: the sender is done with the stream.
const FLAG_FIN: u8 = 1;

/// RST_STREAM's statuses this sends.
pub const PROTOCOL_ERROR: u32 = 1;
pub const REFUSED_STREAM: u32 = 3;
pub const CANCEL: u32 = 5;

/// A header block's name-value pairs (names lower-case, as SPDY has them).
pub type Headers = Vec<(String, String)>;

/// One frame of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        id: u32,
        fin: bool,
        headers: Headers,
    },
    SynReply {
        id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        id: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_stream: u32,
        status: u32,
    },
    Headers {
        id: u32,
        headers: Headers,
    },
    Data {
        id: u32,
        fin: bool,
        data: Bytes,
    },
    /// A control frame this does not act on (SETTINGS, WINDOW_UPDATE, ...), by its type.
    Ignored {
        kind: u16,
    },
}

/// Why a session's bytes cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("SPDY version {0} is not supported (only 3)")]
    Version(u16),
    #[error("a SPDY frame of {0} bytes is larger than allowed")]
    TooLarge(usize),
    #[error("a SPDY {0} frame is too short")]
    Short(&'static str),
    #[error("a SPDY header block cannot be decompressed: {0}")]
    Inflate(String),
    #[error("a SPDY header block is malformed")]
    HeaderBlock,
}

/// The SPDY/3 header compression dictionary: length-prefixed words, then a run of common
/// strings (1,423 bytes, as the draft gives it).
static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    const WORDS: &[&str] = &[
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
    const TAIL: &str = concat!(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized",
        "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable",
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,",
        "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    );
    let mut d = Vec::with_capacity(1423);
    for w in WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(TAIL.as_bytes());
    d
});

/// One side of a session: reads the peer's frames and writes this side's, each direction with
/// its own zlib stream for header blocks.
pub struct Codec {
    inflate: Decompress,
    deflate: Compress,
}

impl Default for Codec {
    fn default() -> Self {
        Codec {
            inflate: Decompress::new(true),
            deflate: Compress::new(Compression::default(), true),
        }
    }
}

impl Codec {
    /// The next whole frame at the front of `buf`, taken off it; `None` until one has arrived.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let len = (u32::from_be_bytes([0, buf[5], buf[6], buf[7]])) as usize;
        if len > MAX_FRAME {
            return Err(SpdyError::TooLarge(len));
        }
        if buf.len() < 8 + len {
            return Ok(None);
        }
        let mut head = buf.split_to(8);
        let mut body = buf.split_to(len);
        let first = head.get_u32();
        let flags = head.get_u8();
        let fin = flags & FLAG_FIN != 0;
        if first & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data {
                id: first & 0x7fff_ffff,
                fin,
                data: body.freeze(),
            }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(SpdyError::Version(version));
        }
        let kind = (first & 0xffff) as u16;
        let need = |n: usize, name| {
            if len < n {
                Err(SpdyError::Short(name))
            } else {
                Ok(())
            }
        };
        Ok(Some(match kind {
            SYN_STREAM => {
                need(10, "SYN_STREAM")?;
                let id = body.get_u32() & 0x7fff_ffff;
                body.advance(6); // associated stream, priority, slot
                let headers = self.headers(&body)?;
                Frame::SynStream { id, fin, headers }
            }
            SYN_REPLY => {
                need(4, "SYN_REPLY")?;
                let id = body.get_u32() & 0x7fff_ffff;
                let headers = self.headers(&body)?;
                Frame::SynReply { id, fin, headers }
            }
            HEADERS => {
                need(4, "HEADERS")?;
                let id = body.get_u32() & 0x7fff_ffff;
                let headers = self.headers(&body)?;
                Frame::Headers { id, headers }
            }
            RST_STREAM => {
                need(8, "RST_STREAM")?;
                Frame::RstStream {
                    id: body.get_u32() & 0x7fff_ffff,
                    status: body.get_u32(),
                }
            }
            PING => {
                need(4, "PING")?;
                Frame::Ping { id: body.get_u32() }
            }
            GOAWAY => {
                need(8, "GOAWAY")?;
                Frame::GoAway {
                    last_stream: body.get_u32() & 0x7fff_ffff,
                    status: body.get_u32(),
                }
            }
            kind => Frame::Ignored { kind },
        }))
    }

    /// Appends `frame`'s bytes to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) {
        let control = |out: &mut BytesMut, kind: u16, flags: u8, body: &[u8]| {
            out.put_u32(0x8000_0000 | (u32::from(VERSION) << 16) | u32::from(kind));
            out.put_u32((u32::from(flags) << 24) | body.len() as u32);
            out.put_slice(body);
        };
        let fin_flag = |fin: bool| if fin { FLAG_FIN } else { 0 };
        match frame {
            Frame::SynStream { id, fin, headers } => {
                let mut body = Vec::new();
                body.extend_from_slice(&id.to_be_bytes());
                body.extend_from_slice(&[0; 6]);
                body.extend_from_slice(&self.compress(headers));
                control(out, SYN_STREAM, fin_flag(*fin), &body);
            }
            Frame::SynReply { id, fin, headers } => {
                let mut body = id.to_be_bytes().to_vec();
                body.extend_from_slice(&self.compress(headers));
                control(out, SYN_REPLY, fin_flag(*fin), &body);
            }
            Frame::Headers { id, headers } => {
                let mut body = id.to_be_bytes().to_vec();
                body.extend_from_slice(&self.compress(headers));
                control(out, HEADERS, 0, &body);
            }
            Frame::RstStream { id, status } => {
                let mut body = id.to_be_bytes().to_vec();
                body.extend_from_slice(&status.to_be_bytes());
                control(out, RST_STREAM, 0, &body);
            }
            Frame::Ping { id } => control(out, PING, 0, &id.to_be_bytes()),
            Frame::GoAway {
                last_stream,
                status,
            } => {
                let mut body = last_stream.to_be_bytes().to_vec();
                body.extend_from_slice(&status.to_be_bytes());
                control(out, GOAWAY, 0, &body);
            }
            Frame::Data { id, fin, data } => {
                out.put_u32(id & 0x7fff_ffff);
                out.put_u32((u32::from(fin_flag(*fin)) << 24) | data.len() as u32);
                out.put_slice(data);
            }
            Frame::Ignored { .. } => {}
        }
    }

    /// A header block of the peer's, decompressed and read.
    fn headers(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let raw = self.inflate(block)?;
        let mut b = &raw[..];
        let take = |b: &mut &[u8]| -> Result<String, SpdyError> {
            if b.len() < 4 {
                return Err(SpdyError::HeaderBlock);
            }
            let n = b.get_u32() as usize;
            if b.len() < n {
                return Err(SpdyError::HeaderBlock);
            }
            let s = String::from_utf8_lossy(&b[..n]).into_owned();
            b.advance(n);
            Ok(s)
        };
        if b.len() < 4 {
            return Err(SpdyError::HeaderBlock);
        }
        let count = b.get_u32() as usize;
        let mut out = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let name = take(&mut b)?;
            let value = take(&mut b)?;
            out.push((name, value));
        }
        Ok(out)
    }

    fn inflate(&mut self, input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let mut at = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let (before, produced) = (self.inflate.total_in(), out.len());
            let result = self
                .inflate
                .decompress_vec(&input[at..], &mut out, FlushDecompress::Sync);
            let consumed = (self.inflate.total_in() - before) as usize;
            at += consumed;
            match result {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(&DICTIONARY)
                        .map_err(|e| SpdyError::Inflate(e.to_string()))?;
                    continue;
                }
                Err(e) => return Err(SpdyError::Inflate(e.to_string())),
            }
            if at >= input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if consumed == 0 && out.len() == produced {
                return Err(SpdyError::Inflate("the header stream ended".into()));
            }
        }
    }

    /// A header block of this side's, compressed (one zlib stream for the session, flushed at
    /// each block's end so that the peer can read it whole).
    fn compress(&mut self, headers: &Headers) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.put_u32(headers.len() as u32);
        for (n, v) in headers {
            raw.put_u32(n.len() as u32);
            raw.put_slice(n.as_bytes());
            raw.put_u32(v.len() as u32);
            raw.put_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut at = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(&raw[at..], &mut out, FlushCompress::Sync)
                .expect("deflate of a buffer in memory");
            at += (self.deflate.total_in() - before) as usize;
            // Done once the input is in and the flush left room to spare.
            if at >= raw.len() && out.capacity() - out.len() >= 64 {
                return out;
            }
        }
    }
}

/// A header's value, by its lower-case name.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_the_drafts() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert_eq!(&DICTIONARY[..11], b"\0\0\0\x07options");
        assert!(DICTIONARY.ends_with(b"enq=0."));
    }

    /// A client's compressor, as Go's spdy framer makes it: zlib seeded with the dictionary.
    fn client_codec() -> Codec {
        let mut c = Codec::default();
        c.deflate.set_dictionary(&DICTIONARY).unwrap();
        c
    }

    fn stream_headers(kind: &str, id: &str) -> Headers {
        vec![
            ("port".into(), "8080".into()),
            ("requestid".into(), id.into()),
            ("streamtype".into(), kind.into()),
        ]
    }

    #[test]
    fn frames_survive_a_round_trip_split_anywhere() {
        let mut client = client_codec();
        let mut server = Codec::default();
        let frames = vec![
            Frame::SynStream {
                id: 1,
                fin: false,
                headers: stream_headers("error", "0"),
            },
            Frame::Data {
                id: 1,
                fin: true,
                data: Bytes::new(),
            },
            Frame::SynStream {
                id: 3,
                fin: false,
                headers: stream_headers("data", "0"),
            },
            Frame::Data {
                id: 3,
                fin: false,
                data: Bytes::from_static(b"GET / HTTP/1.1\r\n\r\n"),
            },
            Frame::Ping { id: 7 },
            Frame::RstStream { id: 3, status: 5 },
            Frame::GoAway {
                last_stream: 3,
                status: 0,
            },
        ];
        let mut wire = BytesMut::new();
        for f in &frames {
            client.encode(f, &mut wire);
        }
        // Fed a byte at a time, as WebSocket messages may cut it.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in wire {
            buf.put_u8(b);
            while let Some(f) = server.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
    }

    #[test]
    fn replies_read_back_through_the_peer_and_headers_keep_one_stream() {
        let mut server = Codec::default();
        let mut client = client_codec();
        let mut wire = BytesMut::new();
        for id in [1, 3, 5] {
            server.encode(
                &Frame::SynReply {
                    id,
                    fin: false,
                    headers: vec![],
                },
                &mut wire,
            );
        }
        server.encode(
            &Frame::SynReply {
                id: 7,
                fin: true,
                headers: stream_headers("data", "2"),
            },
            &mut wire,
        );
        let mut got = Vec::new();
        while let Some(f) = client.decode(&mut wire).unwrap() {
            got.push(f);
        }
        assert_eq!(got.len(), 4);
        assert_eq!(
            got[3],
            Frame::SynReply {
                id: 7,
                fin: true,
                headers: stream_headers("data", "2")
            }
        );
        assert_eq!(
            header(&stream_headers("data", "2"), "streamType"),
            Some("data")
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut server = Codec::default();
        // Version 2.
        let mut b = BytesMut::from(&[0x80, 2, 0, 1, 0, 0, 0, 10, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0][..]);
        assert!(matches!(server.decode(&mut b), Err(SpdyError::Version(2))));
        // A SYN_STREAM whose header block is not zlib.
        let mut b = BytesMut::from(
            &[
                0x80, 3, 0, 1, 0, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4,
            ][..],
        );
        assert!(matches!(server.decode(&mut b), Err(SpdyError::Inflate(_))));
        // Too short a RST_STREAM.
        let mut b = BytesMut::from(&[0x80, 3, 0, 3, 0, 0, 0, 2, 0, 0][..]);
        assert!(matches!(server.decode(&mut b), Err(SpdyError::Short(_))));
    }
}

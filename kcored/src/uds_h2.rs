//! Unix-socket connections that accept any `:authority`.
//!
//! On a unix socket there is no host, and gRPC clients of other ecosystems send whatever
//! stands for one as the HTTP/2 `:authority`: grpcio (Python, since 1.57) the
//! percent-encoded socket path, grpc-java and grpcurl the path itself. h2, under tonic,
//! refuses a request whose `:authority` is not an RFC 3986 authority ("malformed
//! authority", RST_STREAM PROTOCOL_ERROR) before tonic sees it, and has no option to
//! relax that. So each accepted [`UnixStream`] is wrapped in a [`UdsH2`], which rewrites
//! what the client sends before h2 reads it: every request header block (HEADERS plus its
//! CONTINUATIONs) is decoded with an HPACK decoder that follows the client's dynamic
//! table, a `:authority` that h2 would refuse becomes `localhost` (a valid one is kept),
//! and the block is encoded again with one HPACK encoder per connection, whose dynamic
//! table the server's decoder mirrors. Every other frame, and every byte the server sends,
//! passes through untouched. The caller's credentials are the socket's (see
//! [`Connected`]), so `Caller::of` still sees the peer's uid, gid and pid.
//!
//! Anything malformed (a bad preface, a broken HPACK block, a CONTINUATION out of place,
//! oversized blocks) ends the connection with an I/O error, logged at debug: h2 would have
//! ended it too.

use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, BytesMut};
use loona_hpack::decoder::DecoderError;
use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tonic::transport::server::{Connected, UdsConnectInfo};

/// What a client sends first on an HTTP/2 connection (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// A frame header: length (24 bits), type, flags, stream id (31 bits).
const FRAME_HEAD: usize = 9;

const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Stream dependency (4 bytes) and weight (1) of a HEADERS frame with PRIORITY.
const PRIORITY_LEN: usize = 5;

/// The largest frame payload the server takes: SETTINGS_MAX_FRAME_SIZE, which hyper
/// leaves at the protocol's default for tonic (16 KiB). Re-encoded blocks are split into
/// frames no larger.
const MAX_FRAME: usize = 16_384;
/// The server's HPACK dynamic table size: SETTINGS_HEADER_TABLE_SIZE, which neither
/// tonic nor hyper sets, so h2 decodes with the protocol's default (4096) and the client
/// may not use a larger table either.
const TABLE_SIZE: usize = 4_096;
/// The largest compressed header block taken (HEADERS and CONTINUATIONs together).
const MAX_BLOCK: usize = 1 << 20;
/// The largest decoded header list taken (RFC 9113 §6.5.2 sizes: name + value + 32 each).
const MAX_LIST: usize = 1 << 20;
/// How much is read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;
/// What a `:authority` that is not one becomes.
const FALLBACK_AUTHORITY: &[u8] = b"localhost";

/// Why a connection was ended.
#[derive(Debug, thiserror::Error)]
pub enum H2Error {
    #[error("not an HTTP/2 connection preface")]
    Preface,
    #[error("a HEADERS frame on stream 0")]
    StreamZero,
    #[error("a CONTINUATION frame without a header block to continue")]
    StrayContinuation,
    #[error(
        "a frame of type {kind:#x} on stream {got} inside the header block of stream {stream} \
         (only its CONTINUATION frames may come)"
    )]
    ExpectedContinuation { stream: u32, kind: u8, got: u32 },
    #[error("a PUSH_PROMISE frame from a client")]
    PushPromise,
    #[error("a HEADERS frame too short for its padding or priority fields")]
    ShortFrame,
    #[error("a header block larger than {MAX_BLOCK} bytes")]
    BlockTooLarge,
    #[error("a header list larger than {MAX_LIST} bytes")]
    ListTooLarge,
    #[error("HPACK: {0}")]
    Hpack(DecoderError),
    #[error("the HPACK decoder failed on the block")]
    HpackPanic,
    #[error("HPACK encoding: {0}")]
    Encode(io::Error),
}

/// The client-to-server rewriter of one connection: a pure state machine, fed the bytes the
/// client sent as they come and writing what the server should read.
pub struct Rewriter {
    state: State,
    /// A header block whose END_HEADERS has not come yet.
    block: Option<Block>,
    /// Follows the client's encoder.
    decoder: Decoder<'static>,
    /// The server's decoder follows this one.
    encoder: Encoder<'static>,
    /// Whether a `:authority` was replaced on this connection yet (logged once).
    replaced: bool,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// That many bytes of the preface seen.
    Preface(usize),
    /// At a frame boundary.
    Head,
    /// Inside a frame that passes through: that many payload bytes to go.
    Pass(usize),
    /// The payload of this HEADERS or CONTINUATION frame is awaited whole.
    Headers(Head),
}

#[derive(Debug, Clone, Copy)]
struct Head {
    len: usize,
    kind: u8,
    flags: u8,
    stream: u32,
}

impl Head {
    fn parse(b: &[u8; FRAME_HEAD]) -> Head {
        Head {
            len: usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    fn put(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream: u32) {
        // len <= MAX_FRAME, so it fits the 24 bits.
        let len = (len as u32).to_be_bytes();
        out.put_slice(&len[1..]);
        out.put_u8(kind);
        out.put_u8(flags);
        out.put_u32(stream & 0x7fff_ffff);
    }
}

/// A request's header block as the client sent it, padding removed.
struct Block {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_LEN]>,
    fragment: Vec<u8>,
}

impl Default for Rewriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Rewriter {
    pub fn new() -> Rewriter {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(TABLE_SIZE);
        let mut encoder = Encoder::new();
        encoder.set_max_table_size(TABLE_SIZE);
        Rewriter {
            state: State::Preface(0),
            block: None,
            decoder,
            encoder,
            replaced: false,
        }
    }

    /// Take what can be taken from the front of `input` (the client's bytes; a partial
    /// frame stays there until the rest comes) and append to `out` what the server reads.
    pub fn feed(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> Result<(), H2Error> {
        loop {
            match self.state {
                State::Preface(seen) => {
                    let n = input.len().min(PREFACE.len() - seen);
                    if n == 0 {
                        return Ok(());
                    }
                    if input[..n] != PREFACE[seen..seen + n] {
                        return Err(H2Error::Preface);
                    }
                    out.put_slice(&input.split_to(n));
                    self.state = if seen + n == PREFACE.len() {
                        State::Head
                    } else {
                        State::Preface(seen + n)
                    };
                }
                State::Head => {
                    let Some(bytes) = input.first_chunk::<FRAME_HEAD>() else {
                        return Ok(());
                    };
                    let head = Head::parse(bytes);
                    if let Some(b) = &self.block
                        && (head.kind != CONTINUATION || head.stream != b.stream)
                    {
                        return Err(H2Error::ExpectedContinuation {
                            stream: b.stream,
                            kind: head.kind,
                            got: head.stream,
                        });
                    }
                    match head.kind {
                        HEADERS | CONTINUATION => {
                            if head.kind == CONTINUATION && self.block.is_none() {
                                return Err(H2Error::StrayContinuation);
                            }
                            if head.stream == 0 {
                                return Err(H2Error::StreamZero);
                            }
                            if head.len > MAX_BLOCK {
                                return Err(H2Error::BlockTooLarge);
                            }
                            input.advance(FRAME_HEAD);
                            self.state = State::Headers(head);
                        }
                        // It would carry a header block of the client's encoder that we
                        // cannot pass on; h2 ends the connection for it anyway.
                        PUSH_PROMISE => return Err(H2Error::PushPromise),
                        _ => {
                            out.put_slice(&input.split_to(FRAME_HEAD));
                            self.state = State::Pass(head.len);
                        }
                    }
                }
                State::Pass(0) => self.state = State::Head,
                State::Pass(left) => {
                    if input.is_empty() {
                        return Ok(());
                    }
                    let n = left.min(input.len());
                    out.put_slice(&input.split_to(n));
                    self.state = State::Pass(left - n);
                }
                State::Headers(head) => {
                    if input.len() < head.len {
                        return Ok(());
                    }
                    let payload = input.split_to(head.len);
                    self.state = State::Head;
                    self.header_frame(head, &payload, out)?;
                }
            }
        }
    }

    /// A whole HEADERS or CONTINUATION frame: kept until its block is complete, then
    /// re-encoded into `out`.
    fn header_frame(
        &mut self,
        head: Head,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), H2Error> {
        let block = if head.kind == HEADERS {
            let mut p = payload;
            let mut pad = 0;
            if head.flags & PADDED != 0 {
                let (&n, rest) = p.split_first().ok_or(H2Error::ShortFrame)?;
                pad = usize::from(n);
                p = rest;
            }
            let priority = if head.flags & PRIORITY != 0 {
                let (fields, rest) = p
                    .split_first_chunk::<PRIORITY_LEN>()
                    .ok_or(H2Error::ShortFrame)?;
                p = rest;
                Some(*fields)
            } else {
                None
            };
            // Padding as long as what is left or longer is a protocol error.
            if pad > p.len() {
                return Err(H2Error::ShortFrame);
            }
            Block {
                stream: head.stream,
                end_stream: head.flags & END_STREAM != 0,
                priority,
                fragment: p[..p.len() - pad].to_vec(),
            }
        } else {
            let mut b = self.block.take().ok_or(H2Error::StrayContinuation)?;
            if b.fragment.len() + payload.len() > MAX_BLOCK {
                return Err(H2Error::BlockTooLarge);
            }
            b.fragment.extend_from_slice(payload);
            b
        };
        if head.flags & END_HEADERS == 0 {
            self.block = Some(block);
            return Ok(());
        }
        let encoded = self.reencode(&block.fragment)?;
        write_block(&block, &encoded, out);
        Ok(())
    }

    /// Decode a complete block with the client's table and encode it with ours, a
    /// `:authority` h2 would refuse replaced.
    fn reencode(&mut self, fragment: &[u8]) -> Result<Vec<u8>, H2Error> {
        let mut headers: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut size = 0usize;
        let decoder = &mut self.decoder;
        // The decoder is a library's code run on a client's bytes: a panic in it ends
        // this connection, not the task serving it.
        let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| {
            decoder.decode_with_cb(fragment, |name, value| {
                // Counted even past the limit (nothing more is kept): references to the
                // dynamic table could make a small block a huge list.
                size = size.saturating_add(name.len() + value.len() + 32);
                if size <= MAX_LIST {
                    headers.push((name.into_owned(), value.into_owned()));
                }
            })
        }));
        match decoded {
            Err(_) => return Err(H2Error::HpackPanic),
            Ok(Err(e)) => return Err(H2Error::Hpack(e)),
            Ok(Ok(())) => {}
        }
        if size > MAX_LIST {
            return Err(H2Error::ListTooLarge);
        }
        for (name, value) in &mut headers {
            if name.as_slice() == b":authority" && !is_authority(value) {
                if !self.replaced {
                    self.replaced = true;
                    tracing::debug!(
                        authority = %String::from_utf8_lossy(value),
                        "replaced :authority (not an RFC 3986 authority) with localhost"
                    );
                }
                *value = FALLBACK_AUTHORITY.to_vec();
            }
        }
        let mut encoded = Vec::with_capacity(fragment.len() + FALLBACK_AUTHORITY.len() + 8);
        self.encoder
            .encode_into(
                headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())),
                &mut encoded,
            )
            .map_err(H2Error::Encode)?;
        Ok(encoded)
    }
}

/// Whether h2 takes `value` as a `:authority`: its own test (`http`'s parser).
fn is_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// `encoded` as a HEADERS frame (END_STREAM and priority as the client sent them, no
/// padding) and as many CONTINUATION frames as it takes, none larger than [`MAX_FRAME`].
fn write_block(block: &Block, encoded: &[u8], out: &mut BytesMut) {
    let mut flags = if block.end_stream { END_STREAM } else { 0 };
    let prio_len = match block.priority {
        Some(_) => {
            flags |= PRIORITY;
            PRIORITY_LEN
        }
        None => 0,
    };
    let (first, mut rest) = encoded.split_at(encoded.len().min(MAX_FRAME - prio_len));
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    Head::put(out, prio_len + first.len(), HEADERS, flags, block.stream);
    if let Some(p) = &block.priority {
        out.put_slice(p);
    }
    out.put_slice(first);
    while !rest.is_empty() {
        let (chunk, r) = rest.split_at(rest.len().min(MAX_FRAME));
        rest = r;
        let flags = if rest.is_empty() { END_HEADERS } else { 0 };
        Head::put(out, chunk.len(), CONTINUATION, flags, block.stream);
        out.put_slice(chunk);
    }
}

/// An accepted unix-socket connection whose requests h2 takes whatever their
/// `:authority` (see the module's doc). Reads are rewritten, writes go straight through.
pub struct UdsH2 {
    inner: UnixStream,
    rewriter: Rewriter,
    /// Client bytes not yet taken by the rewriter (a partial frame).
    input: BytesMut,
    /// Rewritten bytes not yet read by the server.
    output: BytesMut,
    scratch: Box<[u8]>,
    eof: bool,
    failed: bool,
}

impl UdsH2 {
    pub fn new(inner: UnixStream) -> UdsH2 {
        UdsH2 {
            inner,
            rewriter: Rewriter::new(),
            input: BytesMut::new(),
            output: BytesMut::new(),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            eof: false,
            failed: false,
        }
    }
}

impl std::fmt::Debug for UdsH2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdsH2").field("inner", &self.inner).finish()
    }
}

impl AsyncRead for UdsH2 {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if !this.output.is_empty() {
                let n = buf.remaining().min(this.output.len());
                buf.put_slice(&this.output[..n]);
                this.output.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.failed {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "malformed HTTP/2 from the client",
                )));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut rb = ReadBuf::new(&mut this.scratch);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                this.eof = true;
                continue;
            }
            this.input.extend_from_slice(rb.filled());
            if let Err(e) = this.rewriter.feed(&mut this.input, &mut this.output) {
                tracing::debug!(
                    error = %e,
                    peer = ?this.inner.peer_cred().ok(),
                    "closing a unix-socket connection: malformed HTTP/2 from the client"
                );
                this.failed = true;
                this.output.clear();
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
            }
        }
    }
}

impl AsyncWrite for UdsH2 {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The unix socket's own: the peer's credentials, as for a bare `UnixStream`.
impl Connected for UdsH2 {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> UdsConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const SETTINGS: u8 = 0x4;
    const DATA: u8 = 0x0;
    const WINDOW_UPDATE: u8 = 0x8;
    const RST_STREAM: u8 = 0x3;
    const GOAWAY: u8 = 0x7;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        let len = (payload.len() as u32).to_be_bytes();
        out.put_slice(&len[1..]);
        out.put_u8(kind);
        out.put_u8(flags);
        out.put_u32(stream);
        out.put_slice(payload);
        out.to_vec()
    }

    /// An HPACK string literal, not Huffman-coded (< 127 bytes).
    fn lit(s: &str) -> Vec<u8> {
        assert!(s.len() < 127);
        let mut v = vec![s.len() as u8];
        v.extend_from_slice(s.as_bytes());
        v
    }

    /// The first request of a connection as grpc-java or grpcio encode it: the pseudo
    /// headers and the rest added to the dynamic table. Afterwards the client's table is
    /// te (62), content-type (63), :authority (64), :path (65).
    fn first_block(path: &str, authority: &str) -> Vec<u8> {
        let mut b = vec![0x83, 0x86]; // :method POST, :scheme http (static)
        b.push(0x40 | 4); // :path, name from the static table, indexed
        b.extend(lit(path));
        b.push(0x40 | 1); // :authority
        b.extend(lit(authority));
        b.push(0x40 | 31); // content-type
        b.extend(lit("application/grpc"));
        b.push(0x40); // te: a new name
        b.extend(lit("te"));
        b.extend(lit("trailers"));
        b
    }

    /// The same request again, all of it from the dynamic table.
    const NEXT_BLOCK: [u8; 6] = [0x83, 0x86, 0x80 | 65, 0x80 | 64, 0x80 | 63, 0x80 | 62];

    fn preface_and_settings() -> Vec<u8> {
        let mut v = PREFACE.to_vec();
        v.extend(frame(SETTINGS, 0, 0, &[]));
        v
    }

    #[derive(Debug)]
    struct Frame {
        head: Head,
        payload: Vec<u8>,
    }

    /// The frames of what the server reads (after the preface, which must be there).
    fn frames(out: &[u8]) -> Vec<Frame> {
        assert!(out.starts_with(PREFACE), "no preface");
        let mut rest = &out[PREFACE.len()..];
        let mut v = Vec::new();
        while !rest.is_empty() {
            let head = Head::parse(rest.first_chunk().expect("a whole frame header"));
            let payload = rest[FRAME_HEAD..FRAME_HEAD + head.len].to_vec();
            rest = &rest[FRAME_HEAD + head.len..];
            v.push(Frame { head, payload });
        }
        v
    }

    /// A header block as the server sees it.
    #[derive(Debug)]
    struct Seen {
        stream: u32,
        flags: u8,
        priority: Option<Vec<u8>>,
        headers: Vec<(String, String)>,
    }

    /// The header blocks in `frames`, decoded by one decoder as h2's would: also checks
    /// the frames' sizes and that each block is HEADERS plus CONTINUATIONs.
    fn blocks(frames: &[Frame]) -> Vec<Seen> {
        let mut dec = Decoder::new();
        let mut seen = Vec::new();
        let mut open: Option<(Seen, Vec<u8>)> = None;
        for f in frames {
            assert!(f.head.len <= MAX_FRAME, "a frame of {} bytes", f.head.len);
            let fragment = match f.head.kind {
                HEADERS => {
                    assert!(open.is_none(), "HEADERS inside a block");
                    assert_eq!(f.head.flags & PADDED, 0, "padding left");
                    let (priority, frag) = if f.head.flags & PRIORITY != 0 {
                        (Some(f.payload[..5].to_vec()), f.payload[5..].to_vec())
                    } else {
                        (None, f.payload.clone())
                    };
                    let s = Seen {
                        stream: f.head.stream,
                        flags: f.head.flags,
                        priority,
                        headers: Vec::new(),
                    };
                    open = Some((s, Vec::new()));
                    frag
                }
                CONTINUATION => {
                    let (s, _) = open.as_ref().expect("CONTINUATION outside a block");
                    assert_eq!(s.stream, f.head.stream);
                    f.payload.clone()
                }
                _ => {
                    assert!(open.is_none(), "frame {} inside a block", f.head.kind);
                    continue;
                }
            };
            let (_, buf) = open.as_mut().expect("open block");
            buf.extend(fragment);
            if f.head.flags & END_HEADERS != 0 {
                let (mut s, buf) = open.take().expect("open block");
                s.headers = dec
                    .decode(&buf)
                    .expect("the server decodes the block")
                    .into_iter()
                    .map(|(n, v)| {
                        (
                            String::from_utf8(n).expect("utf-8"),
                            String::from_utf8(v).expect("utf-8"),
                        )
                    })
                    .collect();
                seen.push(s);
            }
        }
        assert!(open.is_none(), "a block without END_HEADERS");
        seen
    }

    fn header<'a>(s: &'a Seen, name: &str) -> Option<&'a str> {
        s.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Everything fed at once.
    fn rewrite(input: &[u8]) -> Result<Vec<u8>, H2Error> {
        let mut r = Rewriter::new();
        let mut inp = BytesMut::from(input);
        let mut out = BytesMut::new();
        r.feed(&mut inp, &mut out)?;
        Ok(out.to_vec())
    }

    #[test]
    fn an_invalid_authority_is_replaced_and_a_valid_one_kept() {
        let mut c = preface_and_settings();
        c.extend(frame(
            HEADERS,
            END_HEADERS,
            1,
            &first_block("/kcore.v1.KcoreService/ListVMs", "/run/kcore/kcore.sock"),
        ));
        c.extend(frame(DATA, END_STREAM, 1, &[0, 0, 0, 0, 0]));
        // A second connection's first request, with a valid authority.
        let seen = blocks(&frames(&rewrite(&c).expect("rewrite")));
        assert_eq!(seen.len(), 1);
        assert_eq!(header(&seen[0], ":authority"), Some("localhost"));
        assert_eq!(
            header(&seen[0], ":path"),
            Some("/kcore.v1.KcoreService/ListVMs")
        );
        assert_eq!(
            seen[0]
                .headers
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            [
                ":method",
                ":scheme",
                ":path",
                ":authority",
                "content-type",
                "te"
            ]
        );

        for valid in ["localhost", "[::]:50051", "kcore.example:443", "127.0.0.1"] {
            let mut c = preface_and_settings();
            c.extend(frame(HEADERS, END_HEADERS, 1, &first_block("/x/Y", valid)));
            let seen = blocks(&frames(&rewrite(&c).expect("rewrite")));
            assert_eq!(header(&seen[0], ":authority"), Some(valid));
        }
        // grpcio's percent-encoded path, grpc-java's path, an empty one: all replaced.
        for invalid in ["%2Frun%2Fkcore%2Fkcore.sock", "/tmp/kcore.sock", "", "a b"] {
            let mut c = preface_and_settings();
            c.extend(frame(
                HEADERS,
                END_HEADERS,
                1,
                &first_block("/x/Y", invalid),
            ));
            let seen = blocks(&frames(&rewrite(&c).expect("rewrite")));
            assert_eq!(
                header(&seen[0], ":authority"),
                Some("localhost"),
                "{invalid:?}"
            );
        }
    }

    #[test]
    fn a_dynamic_table_reference_across_requests_is_followed() {
        let mut c = preface_and_settings();
        c.extend(frame(
            HEADERS,
            END_HEADERS,
            1,
            &first_block("/a/B", "/run/kcore/kcore.sock"),
        ));
        c.extend(frame(DATA, END_STREAM, 1, &[0; 5]));
        for stream in [3, 5, 7] {
            c.extend(frame(HEADERS, END_HEADERS, stream, &NEXT_BLOCK));
            c.extend(frame(DATA, END_STREAM, stream, &[0; 5]));
        }
        let seen = blocks(&frames(&rewrite(&c).expect("rewrite")));
        assert_eq!(
            seen.iter().map(|s| s.stream).collect::<Vec<_>>(),
            [1, 3, 5, 7]
        );
        for s in &seen {
            assert_eq!(header(s, ":authority"), Some("localhost"), "{s:?}");
            assert_eq!(header(s, ":path"), Some("/a/B"), "{s:?}");
            assert_eq!(header(s, "te"), Some("trailers"), "{s:?}");
        }
    }

    #[test]
    fn frames_split_across_reads_come_out_the_same() {
        let mut c = preface_and_settings();
        c.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 1, 0, 0]));
        c.extend(frame(
            HEADERS,
            END_HEADERS,
            1,
            &first_block("/a/B", "/run/kcore/kcore.sock"),
        ));
        c.extend(frame(DATA, 0, 1, &[7; 300]));
        c.extend(frame(DATA, END_STREAM, 1, &[]));
        c.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &NEXT_BLOCK));
        let whole = rewrite(&c).expect("rewrite");
        for step in [1, 2, 7, 9, 10, 64] {
            let mut r = Rewriter::new();
            let (mut inp, mut out) = (BytesMut::new(), BytesMut::new());
            for chunk in c.chunks(step) {
                inp.extend_from_slice(chunk);
                r.feed(&mut inp, &mut out).expect("feed");
            }
            assert!(inp.is_empty(), "{} bytes left over", inp.len());
            assert_eq!(out.to_vec(), whole, "{step} bytes at a time");
        }
        // Frames other than headers pass through untouched, in order.
        let f = frames(&whole);
        assert_eq!(f[0].head.kind, SETTINGS);
        assert_eq!(
            (f[1].head.kind, f[1].payload.as_slice()),
            (WINDOW_UPDATE, &[0, 1, 0, 0][..])
        );
        assert_eq!(
            (f[3].head.kind, f[3].payload.as_slice()),
            (DATA, &[7; 300][..])
        );
        assert_eq!((f[4].head.kind, f[4].head.flags), (DATA, END_STREAM));
        let seen = blocks(&f);
        assert_eq!(seen[1].flags, END_HEADERS | END_STREAM);
        assert_eq!(header(&seen[1], ":authority"), Some("localhost"));
    }

    #[test]
    fn continuation_padding_and_priority() {
        let block = first_block("/a/B", "/run/kcore/kcore.sock");
        let (a, rest) = block.split_at(3);
        let (b, c2) = rest.split_at(10);
        let priority = [0x80, 0, 0, 0, 0xff]; // exclusive on stream 0, weight 256
        let mut payload = vec![4]; // 4 bytes of padding
        payload.extend(priority);
        payload.extend(a);
        payload.extend([0; 4]);
        let mut c = preface_and_settings();
        c.extend(frame(HEADERS, PADDED | PRIORITY | END_STREAM, 1, &payload));
        c.extend(frame(CONTINUATION, 0, 1, b));
        c.extend(frame(CONTINUATION, END_HEADERS, 1, c2));
        // The next block refers to the first's entries; padded, no priority.
        let mut payload = vec![1];
        payload.extend(NEXT_BLOCK);
        payload.push(0);
        c.extend(frame(HEADERS, PADDED | END_HEADERS, 3, &payload));
        let f = frames(&rewrite(&c).expect("rewrite"));
        // One HEADERS frame for each (the block is small), no CONTINUATION.
        assert_eq!(
            f.iter().map(|f| f.head.kind).collect::<Vec<_>>(),
            [SETTINGS, HEADERS, HEADERS]
        );
        let seen = blocks(&f);
        assert_eq!(seen[0].flags, PRIORITY | END_STREAM | END_HEADERS);
        assert_eq!(seen[0].priority.as_deref(), Some(&priority[..]));
        assert_eq!(seen[1].flags, END_HEADERS);
        assert_eq!(seen[1].priority, None);
        for s in &seen {
            assert_eq!(header(s, ":authority"), Some("localhost"));
            assert_eq!(header(s, ":path"), Some("/a/B"));
        }
    }

    #[test]
    fn a_large_block_is_split_into_frames_the_server_takes() {
        // 40 KiB of metadata (never indexed, so not in any table) in one oversized frame.
        let mut block = first_block("/a/B", "/run/kcore/kcore.sock");
        let big = "v".repeat(40 * 1024);
        block.push(0x10);
        block.extend(lit("x-big"));
        block.extend(loona_hpack::encoder::encode_integer(big.len(), 7));
        block.extend(big.as_bytes());
        let mut c = preface_and_settings();
        c.extend(frame(HEADERS, END_HEADERS | PRIORITY, 1, &{
            let mut p = vec![0, 0, 0, 0, 15];
            p.extend(&block);
            p
        }));
        c.extend(frame(DATA, END_STREAM, 1, &[1; 20_000])); // passes through as it is
        let f = frames(&rewrite(&c).expect("rewrite"));
        let kinds: Vec<u8> = f.iter().map(|f| f.head.kind).collect();
        assert_eq!(kinds, [SETTINGS, HEADERS, CONTINUATION, CONTINUATION, DATA]);
        assert_eq!(f[1].head.len, MAX_FRAME);
        assert_eq!(f[4].payload.len(), 20_000);
        let seen = blocks(&f[..4]);
        assert_eq!(header(&seen[0], "x-big"), Some(big.as_str()));
        assert_eq!(header(&seen[0], ":authority"), Some("localhost"));
        assert_eq!(seen[0].priority.as_deref(), Some(&[0, 0, 0, 0, 15][..]));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let settings = preface_and_settings();
        let with = |frames: &[Vec<u8>]| {
            let mut c = settings.clone();
            for f in frames {
                c.extend(f);
            }
            rewrite(&c)
        };
        let cases: Vec<(&str, Result<Vec<u8>, H2Error>)> = vec![
            ("HTTP/1.1", rewrite(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")),
            ("bad preface", rewrite(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")),
            (
                "index out of bounds",
                with(&[frame(HEADERS, END_HEADERS, 1, &[0xff, 0xff, 0x7f])]),
            ),
            (
                "a truncated literal",
                with(&[frame(HEADERS, END_HEADERS, 1, &[0x41, 0x7e, b'a'])]),
            ),
            (
                "bad Huffman",
                with(&[frame(HEADERS, END_HEADERS, 1, &[0x41, 0x82, 0xff, 0xff])]),
            ),
            (
                "a table larger than the server's",
                with(&[frame(HEADERS, END_HEADERS, 1, &[0x3f, 0xe1, 0x7f, 0x82])]),
            ),
            (
                "a CONTINUATION alone",
                with(&[frame(CONTINUATION, END_HEADERS, 1, &[0x82])]),
            ),
            (
                "DATA inside a header block",
                with(&[frame(HEADERS, 0, 1, &[0x82]), frame(DATA, 0, 1, &[])]),
            ),
            (
                "another stream's CONTINUATION",
                with(&[
                    frame(HEADERS, 0, 1, &[0x82]),
                    frame(CONTINUATION, END_HEADERS, 3, &[0x86]),
                ]),
            ),
            (
                "HEADERS on stream 0",
                with(&[frame(HEADERS, END_HEADERS, 0, &[0x82])]),
            ),
            (
                "padding longer than the frame",
                with(&[frame(HEADERS, END_HEADERS | PADDED, 1, &[9, 0x82])]),
            ),
            (
                "no room for the padding length",
                with(&[frame(HEADERS, PADDED, 1, &[])]),
            ),
            (
                "no room for the priority",
                with(&[frame(HEADERS, PRIORITY, 1, &[0, 0])]),
            ),
            (
                "PUSH_PROMISE",
                with(&[frame(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2, 0x82])]),
            ),
            (
                "a block past the limit",
                with(&[vec![0x10, 0, 1, HEADERS, 0, 0, 0, 0, 1]]),
            ),
        ];
        for (what, r) in cases {
            assert!(r.is_err(), "{what}: {:?}", r.map(|v| v.len()));
        }
        // A header list past the limit: one 3 KiB entry referenced again and again.
        let mut block = vec![0x40];
        block.extend(lit("x"));
        block.extend(loona_hpack::encoder::encode_integer(3000, 7));
        block.extend([b'y'; 3000]);
        block.extend([0x80 | 62; 400]);
        let r = with(&[frame(HEADERS, END_HEADERS, 1, &block)]);
        assert!(
            matches!(r, Err(H2Error::ListTooLarge)),
            "{:?}",
            r.map(|v| v.len())
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Whatever a client sends, in whatever pieces: an answer, never a panic.
        #[test]
        fn any_bytes_after_the_preface(
            body in prop::collection::vec(any::<u8>(), 0..2048),
            step in 1usize..64,
        ) {
            let mut c = preface_and_settings();
            c.extend(body);
            let mut r = Rewriter::new();
            let (mut inp, mut out) = (BytesMut::new(), BytesMut::new());
            for chunk in c.chunks(step) {
                inp.extend_from_slice(chunk);
                if r.feed(&mut inp, &mut out).is_err() {
                    break;
                }
            }
        }

        /// Header frames with random flags and blocks made of valid-looking pieces.
        #[test]
        fn random_header_frames(
            frames_in in prop::collection::vec(
                (prop::sample::select(vec![HEADERS, CONTINUATION, DATA]),
                 any::<u8>(),
                 1u32..4,
                 prop::collection::vec(any::<u8>(), 0..64)),
                1..12),
        ) {
            let mut c = preface_and_settings();
            for (kind, flags, stream, payload) in frames_in {
                c.extend(frame(kind, flags, stream, &payload));
            }
            let _ = rewrite(&c);
        }
    }

    /// The peer's credentials pass through, as `Caller::of` reads them.
    #[tokio::test]
    async fn connect_info_is_the_sockets() {
        let (a, _b) = UnixStream::pair().expect("socketpair");
        let cred = UdsH2::new(a)
            .connect_info()
            .peer_cred
            .expect("peer credentials");
        assert_eq!(cred.uid(), nix::unistd::getuid().as_raw());
        assert_eq!(cred.gid(), nix::unistd::getgid().as_raw());
        assert_eq!(cred.pid(), Some(std::process::id() as i32));
    }

    /// What a raw client read back for each stream: its response headers and trailers,
    /// its DATA, or the RST_STREAM code.
    #[derive(Debug, Default)]
    struct Reply {
        headers: Vec<(String, String)>,
        data: Vec<u8>,
        reset: Option<u32>,
        done: bool,
    }

    /// Send `client` (a preface, SETTINGS and requests) to a real tonic server (health)
    /// over a unix socket pair, with or without [`UdsH2`], and read until every stream in
    /// `streams` has ended.
    async fn against_tonic(client: Vec<u8>, streams: &[u32], wrap: bool) -> Vec<Reply> {
        let (server_end, mut conn) = UnixStream::pair().expect("socketpair");
        let (_, health) = tonic_health::server::health_reporter();
        let router = tonic::transport::Server::builder().add_service(health);
        // One connection, then none: the server serves until aborted.
        use tokio_stream::StreamExt;
        let server = if wrap {
            let one = tokio_stream::iter([Ok::<_, io::Error>(UdsH2::new(server_end))]);
            tokio::spawn(router.serve_with_incoming(one.chain(tokio_stream::pending())))
        } else {
            let one = tokio_stream::iter([Ok::<_, io::Error>(server_end)]);
            tokio::spawn(router.serve_with_incoming(one.chain(tokio_stream::pending())))
        };
        conn.write_all(&client).await.expect("send");
        let mut dec = Decoder::new();
        let mut replies: Vec<Reply> = streams.iter().map(|_| Reply::default()).collect();
        let mut buf = BytesMut::new();
        let read = async {
            while !replies.iter().all(|r| r.done) {
                while buf.len() >= FRAME_HEAD {
                    let head = Head::parse(buf.first_chunk().expect("9 bytes"));
                    if buf.len() < FRAME_HEAD + head.len {
                        break;
                    }
                    buf.advance(FRAME_HEAD);
                    let payload = buf.split_to(head.len);
                    if head.kind == SETTINGS && head.flags & 1 == 0 {
                        conn.write_all(&frame(SETTINGS, 1, 0, &[]))
                            .await
                            .expect("ack");
                    }
                    assert_ne!(head.kind, GOAWAY, "GOAWAY: {payload:?}");
                    let Some(i) = streams.iter().position(|s| *s == head.stream) else {
                        continue;
                    };
                    let r = &mut replies[i];
                    match head.kind {
                        HEADERS => {
                            assert_eq!(head.flags & END_HEADERS, END_HEADERS);
                            let frag = if head.flags & PRIORITY != 0 {
                                &payload[5..]
                            } else {
                                &payload[..]
                            };
                            for (n, v) in dec.decode(frag).expect("decode the server's block") {
                                r.headers.push((
                                    String::from_utf8_lossy(&n).into_owned(),
                                    String::from_utf8_lossy(&v).into_owned(),
                                ));
                            }
                        }
                        DATA => r.data.extend_from_slice(&payload),
                        RST_STREAM => {
                            r.reset = Some(u32::from_be_bytes([
                                payload[0], payload[1], payload[2], payload[3],
                            ]));
                            r.done = true;
                        }
                        _ => {}
                    }
                    if head.flags & END_STREAM != 0 && matches!(head.kind, HEADERS | DATA) {
                        r.done = true;
                    }
                }
                if replies.iter().all(|r| r.done) {
                    break;
                }
                let mut chunk = [0u8; 4096];
                let n = conn.read(&mut chunk).await.expect("read");
                assert!(n > 0, "the server closed the connection: {replies:?}");
                buf.extend_from_slice(&chunk[..n]);
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the server answered every stream in time");
        server.abort();
        replies
    }

    /// grpc.health.v1.Health/Check of the server's own health ("", SERVING): an empty
    /// request message.
    fn health_check(stream: u32, block: &[u8], flags: u8) -> Vec<u8> {
        let mut v = frame(HEADERS, flags, stream, block);
        v.extend(frame(DATA, END_STREAM, stream, &[0, 0, 0, 0, 0]));
        v
    }

    const HEALTH: &str = "/grpc.health.v1.Health/Check";

    fn assert_serving(r: &Reply) {
        assert_eq!(r.reset, None, "{r:?}");
        let h = |n: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(h(":status"), Some("200"), "{r:?}");
        assert_eq!(h("grpc-status"), Some("0"), "{r:?}");
        // HealthCheckResponse { status: SERVING }
        assert_eq!(r.data, [0, 0, 0, 0, 2, 0x08, 0x01], "{r:?}");
    }

    #[tokio::test]
    async fn h2_refuses_a_socket_path_as_authority_without_the_adapter() {
        let mut c = preface_and_settings();
        c.extend(health_check(
            1,
            &first_block(HEALTH, "/run/kcore/kcore.sock"),
            END_HEADERS,
        ));
        let replies = against_tonic(c, &[1], false).await;
        assert_eq!(
            replies[0].reset,
            Some(1),
            "h2 no longer refuses such an authority with PROTOCOL_ERROR: UdsH2 may be \
             unnecessary now ({:?})",
            replies[0]
        );
    }

    /// Against the real h2 and tonic: a path as authority, then requests that reference
    /// the dynamic table, a block split into CONTINUATIONs with padding and priority, and
    /// a valid authority: all answered.
    #[tokio::test]
    async fn a_real_tonic_server_answers_through_the_adapter() {
        let mut c = preface_and_settings();
        c.extend(health_check(
            1,
            &first_block(HEALTH, "/run/kcore/kcore.sock"),
            END_HEADERS,
        ));
        c.extend(health_check(3, &NEXT_BLOCK, END_HEADERS));
        // NEXT_BLOCK in three frames, padded, with priority.
        let mut p = vec![2, 0, 0, 0, 1, 20];
        p.extend(&NEXT_BLOCK[..2]);
        p.extend([0, 0]);
        let mut split = frame(HEADERS, PADDED | PRIORITY, 5, &p);
        split.extend(frame(CONTINUATION, 0, 5, &NEXT_BLOCK[2..4]));
        split.extend(frame(CONTINUATION, END_HEADERS, 5, &NEXT_BLOCK[4..]));
        split.extend(frame(DATA, END_STREAM, 5, &[0; 5]));
        c.extend(split);
        // A valid authority, with the dynamic table in use from before.
        let mut valid = vec![0x83, 0x86, 0x80 | 65, 0x01];
        valid.extend(lit("localhost:1234"));
        valid.extend([0x80 | 63, 0x80 | 62]);
        c.extend(health_check(7, &valid, END_HEADERS));
        let replies = against_tonic(c, &[1, 3, 5, 7], true).await;
        for r in &replies {
            assert_serving(r);
        }
    }

    /// Many requests whose new header names overflow both dynamic tables (ours and the
    /// client's), so entries are evicted all along: h2's decoder must stay in step with
    /// our encoder to the last request.
    #[tokio::test]
    async fn the_tables_stay_in_step_through_evictions() {
        let mut client = Encoder::new();
        let mut c = preface_and_settings();
        let mut streams = Vec::new();
        for i in 0..80u32 {
            let stream = 2 * i + 1;
            let name = format!("x-{i}-{}", "n".repeat(120));
            let headers: [(&[u8], &[u8]); 8] = [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", HEALTH.as_bytes()),
                (b":authority", b"/run/kcore/kcore.sock"),
                (b"content-type", b"application/grpc"),
                (b"te", b"trailers"),
                (b"x-common", b"the same every time"),
                (name.as_bytes(), b"v"),
            ];
            c.extend(health_check(stream, &client.encode(headers), END_HEADERS));
            streams.push(stream);
        }
        let replies = against_tonic(c, &streams, true).await;
        for r in &replies {
            assert_serving(r);
        }
    }

    /// A broken header block ends the connection (no hang, no panic in the server).
    #[tokio::test]
    async fn malformed_input_closes_the_connection() {
        let (server_end, mut conn) = UnixStream::pair().expect("socketpair");
        let (_, health) = tonic_health::server::health_reporter();
        use tokio_stream::StreamExt;
        let one = tokio_stream::iter([Ok::<_, io::Error>(UdsH2::new(server_end))]);
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming(one.chain(tokio_stream::pending())),
        );
        let mut c = preface_and_settings();
        c.extend(frame(HEADERS, END_HEADERS, 1, &[0xff, 0xff, 0x7f]));
        conn.write_all(&c).await.expect("send");
        let closed = async {
            let mut chunk = [0u8; 4096];
            loop {
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), closed)
            .await
            .expect("the connection was closed");
        assert!(!server.is_finished(), "the server itself stopped");
        server.abort();
    }
}

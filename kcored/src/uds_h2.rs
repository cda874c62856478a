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
    fn header_frame(&mut self, head: Head, payload: &[u8], out: &mut BytesMut) -> Result<(), H2Error> {
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

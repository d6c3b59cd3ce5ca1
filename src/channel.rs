//! Message channels (Curio's `curio.channel`): length-prefixed messages over a
//! stream, typed values with serde, and an authenticated rendezvous over TCP or
//! Unix sockets.
//!
//! A [`Connection`] frames messages as a 4-byte big-endian length followed by
//! that many bytes; [`Connection::send`] and [`Connection::recv`] carry any
//! serde type, encoded with [postcard](https://docs.rs/postcard). A [`Channel`]
//! listens on or connects to an address and makes both ends prove they hold
//! the same key (an HMAC-SHA256 challenge each way) before it hands out a
//! connection.
//!
//! # Invariants
//!
//! - A message longer than the connection's limit
//!   ([`Connection::set_max_message`], 16 MiB by default) is refused from its
//!   length prefix alone, before anything is allocated for it; the buffer for
//!   an accepted message grows only as its bytes arrive.
//! - A cancelled or timed-out `recv` consumes nothing: the bytes of a partly
//!   received message stay buffered and the next `recv` returns it whole.
//! - A `send` interrupted after writing part of a frame leaves the peer unable
//!   to find the next frame; the connection then refuses further sends with a
//!   clear error instead of writing garbage.
//! - A [`Channel`] hands out a connection only after both challenges passed;
//!   no message from an unauthenticated peer is ever returned. Digests are
//!   compared in constant time.
//!
//! # Example
//!
//! ```
//! use curio::channel::{Channel, Connection};
//! use curio::net::UnixStream;
//!
//! curio::run(|| -> curio::Result<()> {
//!     // Framing over any stream.
//!     let (a, b) = UnixStream::pair()?;
//!     let mut a = Connection::new(a.into_socket().as_stream());
//!     let mut b = Connection::new(b.into_socket().as_stream());
//!     a.send(&("fib", 30u64))?;
//!     let (name, n): (String, u64) = b.recv()?;
//!     assert_eq!((name.as_str(), n), ("fib", 30));
//!
//!     // An authenticated rendezvous on a free TCP port.
//!     let mut server = Channel::new("127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap(), b"peekaboo")?;
//!     server.bind()?;
//!     let client = Channel::new(server.address().clone(), b"peekaboo")?;
//!     let peer = curio::spawn(move || -> curio::Result<u32> {
//!         let mut conn = client.connect()?;
//!         conn.send(&41u32)?;
//!         conn.recv()
//!     });
//!     let mut conn = server.accept()?;
//!     let n: u32 = conn.recv()?;
//!     conn.send(&(n + 1))?;
//!     assert_eq!(peer.join()??, 42);
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;

use crate::error::{Error, ErrorKind, Result};
use crate::io::{Socket, Stream, StreamIo};
use crate::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use crate::time::timeout_after;

/// The longest message a new [`Connection`] accepts: 16 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// The longest message a frame can carry: its length prefix is 32 bits.
pub const MAX_FRAME: usize = u32::MAX as usize;

/// Frames with at least this many bytes are written as header, then payload,
/// instead of being copied into one buffer first.
const SPLIT_WRITE: usize = 16 * 1024;

/// How long a [`Channel`]'s handshake may take by default.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------
// Framing, shared with the worker side of `run_in_process` (blocking std I/O)
// ---------------------------------------------------------------------------

/// The 4-byte length prefix of a message of `len` bytes.
pub(crate) fn frame_header(len: usize) -> Result<[u8; 4]> {
    let n = u32::try_from(len).map_err(|_| {
        Error::from(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a message of {len} bytes is longer than a frame can carry ({MAX_FRAME} bytes); \
                 split it"
            ),
        ))
    })?;
    Ok(n.to_be_bytes())
}

/// The error for a length prefix over the limit.
pub(crate) fn too_long(len: usize, max: usize) -> Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the peer announced a message of {len} bytes, over this connection's limit of \
             {max} bytes; raise the limit with set_max_message if that size is expected"
        ),
    )
    .into()
}

/// The error for a stream that ended inside a frame (or before one).
pub(crate) fn truncated(got: usize, want: usize) -> Error {
    let msg = if got == 0 {
        "the peer closed the connection".to_string()
    } else {
        format!("the peer closed the connection after {got} of the {want} bytes of a frame")
    };
    Error::from(io::Error::new(io::ErrorKind::UnexpectedEof, msg)).with_progress(got)
}

/// Writes one frame with blocking std I/O.
pub(crate) fn write_frame_blocking(w: &mut impl io::Write, msg: &[u8]) -> Result<()> {
    let header = frame_header(msg.len())?;
    if msg.len() < SPLIT_WRITE {
        let mut frame = Vec::with_capacity(4 + msg.len());
        frame.extend_from_slice(&header);
        frame.extend_from_slice(msg);
        w.write_all(&frame)?;
    } else {
        w.write_all(&header)?;
        w.write_all(msg)?;
    }
    Ok(())
}

/// Reads one frame with blocking std I/O; `Ok(None)` at a clean end of stream.
pub(crate) fn read_frame_blocking(r: &mut impl io::Read, max: usize) -> Result<Option<Vec<u8>>> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(truncated(got, 4)),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(too_long(len, max));
    }
    let mut msg = Vec::new();
    let n = io::Read::read_to_end(&mut io::Read::take(&mut *r, len as u64), &mut msg)?;
    if n < len {
        return Err(truncated(4 + n, 4 + len));
    }
    Ok(Some(msg))
}

// ---------------------------------------------------------------------------
// Connection
// ---------------------------------------------------------------------------

/// Framed messages over a stream (Curio's `Connection`): bytes with
/// [`send_bytes`](Connection::send_bytes) / [`recv_bytes`](Connection::recv_bytes),
/// serde values with [`send`](Connection::send) / [`recv`](Connection::recv).
///
/// Reads come from a buffered [`Stream`]; writes go to the same stream
/// ([`Connection::new`]) or to a separate one ([`Connection::from_pair`], for
/// a pair of pipes). One task may receive and one may send at a time.
pub struct Connection<R: StreamIo = Socket, W: StreamIo = R> {
    reader: Stream<R>,
    /// `None`: write to the reader's own fd.
    writer: Option<W>,
    max_message: usize,
    /// Set when a send stopped part-way through a frame.
    broken: bool,
}

impl<S: StreamIo> Connection<S, S> {
    /// Frames messages over one stream, used both ways (a socket).
    pub fn new(stream: Stream<S>) -> Connection<S, S> {
        Connection {
            reader: stream,
            writer: None,
            max_message: DEFAULT_MAX_MESSAGE,
            broken: false,
        }
    }
}

impl<R: StreamIo, W: StreamIo> Connection<R, W> {
    /// Frames messages read from `reader` and written to `writer` (for
    /// example the two ends of a pair of pipes).
    pub fn from_pair(reader: Stream<R>, writer: W) -> Connection<R, W> {
        Connection {
            reader,
            writer: Some(writer),
            max_message: DEFAULT_MAX_MESSAGE,
            broken: false,
        }
    }

    /// Sets the longest message `recv` accepts (at most [`MAX_FRAME`]). A
    /// longer one is an error as soon as its length prefix arrives.
    pub fn set_max_message(&mut self, bytes: usize) {
        self.max_message = bytes.min(MAX_FRAME);
    }

    /// The longest message `recv` accepts.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// The stream messages are read from.
    pub fn get_ref(&self) -> &Stream<R> {
        &self.reader
    }

    fn write(&self, data: &[u8]) -> Result<()> {
        match &self.writer {
            Some(w) => w.write_all_of(data),
            None => self.reader.get_ref().write_all_of(data),
        }
    }

    /// Sends `msg` as one message.
    ///
    /// # Errors
    ///
    /// A message longer than [`MAX_FRAME`]; an I/O error; a usage error if an
    /// earlier send was interrupted part-way through its frame.
    ///
    /// # Cancellation
    ///
    /// A cancel point while the stream is not writable. Cancelled before any
    /// byte went out, nothing was sent and the connection is intact. Cancelled
    /// part-way (see [`Error::bytes_done`], which counts the 4-byte header),
    /// the peer has a partial frame and cannot find the next one: the
    /// connection refuses further sends, so close it.
    pub fn send_bytes(&mut self, msg: &[u8]) -> Result<()> {
        if self.broken {
            return Err(Error::usage(
                "this connection is broken: an earlier send was interrupted part-way through a \
                 message, so the peer cannot find the next one; close it and reconnect",
            ));
        }
        let header = frame_header(msg.len())?;
        let r = if msg.len() < SPLIT_WRITE {
            let mut frame = Vec::with_capacity(4 + msg.len());
            frame.extend_from_slice(&header);
            frame.extend_from_slice(msg);
            self.write(&frame)
        } else {
            self.write(&header).and_then(|()| {
                self.write(msg).map_err(|e| {
                    let done = e.bytes_done().unwrap_or(0);
                    e.with_progress(4 + done)
                })
            })
        };
        if let Err(e) = &r {
            if e.bytes_done().unwrap_or(0) > 0 {
                self.broken = true;
            }
        }
        r
    }

    /// Receives one message.
    ///
    /// # Errors
    ///
    /// An I/O error of kind `InvalidData` if the length prefix is over
    /// [`max_message`](Connection::max_message) (nothing is allocated for it;
    /// the prefix stays buffered, so every later `recv` reports it again); of
    /// kind `UnexpectedEof` if the peer closed the connection, before a message
    /// ([`Error::bytes_done`] is `Some(0)`) or inside one.
    ///
    /// # Cancellation
    ///
    /// A cancel point while no whole message is buffered. Cancelled or timed
    /// out, nothing is consumed: the bytes of a partial message stay buffered,
    /// and the next `recv` returns the message whole.
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>> {
        let have = self.reader.fill_to(4)?;
        if have < 4 {
            return Err(truncated(have, 4));
        }
        let head = &self.reader.buffered()[..4];
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len > self.max_message {
            return Err(too_long(len, self.max_message));
        }
        let have = self.reader.fill_to(4 + len)?;
        if have < 4 + len {
            return Err(truncated(have, 4 + len));
        }
        self.reader.discard(4);
        Ok(self.reader.take_buffered(len))
    }

    /// Sends `value`, encoded with postcard.
    ///
    /// # Errors
    ///
    /// An I/O error of kind `InvalidInput` if serde cannot encode the value;
    /// otherwise as [`send_bytes`](Connection::send_bytes).
    ///
    /// # Cancellation
    ///
    /// As [`send_bytes`](Connection::send_bytes).
    pub fn send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let bytes = encode(value)?;
        self.send_bytes(&bytes)
    }

    /// Receives a message and decodes it as a `T`.
    ///
    /// # Errors
    ///
    /// An I/O error of kind `InvalidData` if the message is not a valid `T`
    /// (the message is consumed); otherwise as
    /// [`recv_bytes`](Connection::recv_bytes).
    ///
    /// # Cancellation
    ///
    /// As [`recv_bytes`](Connection::recv_bytes): nothing is lost.
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T> {
        let bytes = self.recv_bytes()?;
        decode(&bytes)
    }

    /// The server's half of the handshake (Curio's `authenticate_server`):
    /// challenge the peer, then answer its challenge.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::AuthenticationFailed`] if the peer holds another key or
    /// does not follow the protocol; I/O errors.
    ///
    /// # Cancellation
    ///
    /// A cancel point at each message. Cancelled, the handshake is incomplete
    /// and the connection must not be used: close it.
    pub fn authenticate_server(&mut self, key: &[u8]) -> Result<()> {
        self.deliver_challenge(key, Role::Client)?;
        self.answer_challenge(key, Role::Server)
    }

    /// The client's half of the handshake (Curio's `authenticate_client`):
    /// answer the peer's challenge, then challenge it.
    ///
    /// # Errors
    ///
    /// As [`authenticate_server`](Connection::authenticate_server).
    ///
    /// # Cancellation
    ///
    /// As [`authenticate_server`](Connection::authenticate_server).
    pub fn authenticate_client(&mut self, key: &[u8]) -> Result<()> {
        self.answer_challenge(key, Role::Client)?;
        self.deliver_challenge(key, Role::Server)
    }

    /// Receives a handshake message (at most [`AUTH_LIMIT`] bytes).
    fn recv_auth(&mut self) -> Result<Vec<u8>> {
        let limit = self.max_message;
        self.max_message = AUTH_LIMIT;
        let r = self.recv_bytes();
        self.max_message = limit;
        r.map_err(|e| {
            if e.is_cancellation() || e.io_error().is_none() {
                e
            } else {
                auth_error(format!("the handshake failed: {e}"))
            }
        })
    }

    fn deliver_challenge(&mut self, key: &[u8], answerer: Role) -> Result<()> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| {
            Error::from(io::Error::other(format!(
                "no random bytes for the challenge: {e}"
            )))
        })?;
        let mut msg = CHALLENGE.to_vec();
        msg.extend_from_slice(&nonce);
        self.send_bytes(&msg)?;
        let answer = self.recv_auth()?;
        if mac(key, answerer, &nonce).verify_slice(&answer).is_ok() {
            self.send_bytes(WELCOME)
        } else {
            // Best effort: the peer learns why, then we fail whatever happens.
            let _ = self.send_bytes(FAILURE);
            Err(auth_error(
                "the peer's digest was wrong: it does not hold the same key",
            ))
        }
    }

    fn answer_challenge(&mut self, key: &[u8], me: Role) -> Result<()> {
        let msg = self.recv_auth()?;
        let Some(nonce) = msg.strip_prefix(CHALLENGE) else {
            return Err(auth_error(
                "the peer did not send a challenge: is it a curio channel?",
            ));
        };
        if nonce.len() < MIN_NONCE {
            return Err(auth_error("the peer's challenge is too short"));
        }
        let digest = mac(key, me, nonce).finalize().into_bytes();
        self.send_bytes(&digest)?;
        let reply = self.recv_auth()?;
        if reply == WELCOME {
            Ok(())
        } else {
            Err(auth_error(
                "the peer rejected our digest: it does not hold the same key",
            ))
        }
    }

    /// Closes the connection (the same as dropping it).
    pub fn close(self) {}
}

impl<R: StreamIo, W: StreamIo> fmt::Debug for Connection<R, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field(
                "fd",
                &std::os::fd::AsRawFd::as_raw_fd(&self.reader.get_ref().fd()),
            )
            .field("buffered", &self.reader.buffered().len())
            .field("max_message", &self.max_message)
            .field("broken", &self.broken)
            .finish()
    }
}

/// Encodes `value` with postcard.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("could not encode a {}: {e}", std::any::type_name::<T>()),
        )
        .into()
    })
}

/// Decodes a whole message as a `T`; trailing bytes are an error.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let bad = |why: String| -> Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "a message of {} bytes is not a valid {}: {why}",
                bytes.len(),
                std::any::type_name::<T>()
            ),
        )
        .into()
    };
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(bad(format!("{} bytes left over", rest.len()))),
        Err(e) => Err(bad(e.to_string())),
    }
}

// ---------------------------------------------------------------------------
// The handshake
// ---------------------------------------------------------------------------

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
const NONCE_LEN: usize = 32;
const MIN_NONCE: usize = 16;
/// The longest handshake message either side accepts.
const AUTH_LIMIT: usize = 256;

/// Whose answer a digest is. Each side's answer is bound to its role, so an
/// answer cannot be reflected back as the other side's.
#[derive(Clone, Copy)]
enum Role {
    Client,
    Server,
}

fn mac(key: &[u8], role: Role, nonce: &[u8]) -> Hmac<Sha256> {
    let mut m =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    m.update(match role {
        Role::Client => b"curio-channel-v1 client answer\0",
        Role::Server => b"curio-channel-v1 server answer\0",
    });
    m.update(nonce);
    m
}

fn auth_error(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::AuthenticationFailed, msg)
}

// ---------------------------------------------------------------------------
// Channel
// ---------------------------------------------------------------------------

/// Where a [`Channel`] listens or connects.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// A TCP address (port 0 binds a free port; [`Channel::address`] then
    /// tells which).
    Tcp(SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Address {
        Address::Tcp(a)
    }
}

impl From<PathBuf> for Address {
    fn from(p: PathBuf) -> Address {
        Address::Unix(p)
    }
}

impl From<&Path> for Address {
    fn from(p: &Path) -> Address {
        Address::Unix(p.to_path_buf())
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "{a}"),
            Address::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

enum Listening {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// A rendezvous point for authenticated [`Connection`]s (Curio's `Channel`):
/// one side [`accept`](Channel::accept)s, the other
/// [`connect`](Channel::connect)s, and both must hold the same key.
///
/// TCP connections get `TCP_NODELAY`: a message of 16 KiB or more is written
/// as header then payload, and Nagle's algorithm would hold the payload back
/// until the peer's delayed ACK (tens of milliseconds).
///
/// The handshake authenticates the peers; it does not encrypt or sign the
/// messages that follow. Use it on a Unix socket or a trusted network, or
/// under TLS, when the traffic itself must be protected.
pub struct Channel {
    address: Address,
    key: Vec<u8>,
    listener: Option<Listening>,
    /// The Unix socket file this channel created, removed on drop.
    created: Option<PathBuf>,
    max_message: usize,
    auth_timeout: Duration,
}

impl Channel {
    /// A channel at `address` whose peers must hold `key`.
    ///
    /// # Errors
    ///
    /// A usage error if `key` is empty (it would authenticate nothing).
    pub fn new(address: impl Into<Address>, key: impl AsRef<[u8]>) -> Result<Channel> {
        let key = key.as_ref().to_vec();
        if key.is_empty() {
            return Err(Error::usage(
                "a channel needs a non-empty key: an empty one authenticates nothing",
            ));
        }
        Ok(Channel {
            address: address.into(),
            key,
            listener: None,
            created: None,
            max_message: DEFAULT_MAX_MESSAGE,
            auth_timeout: DEFAULT_AUTH_TIMEOUT,
        })
    }

    /// The longest message the connections it makes accept
    /// ([`Connection::set_max_message`]).
    pub fn set_max_message(&mut self, bytes: usize) {
        self.max_message = bytes.min(MAX_FRAME);
    }

    /// How long the handshake may take (1 s by default).
    pub fn set_auth_timeout(&mut self, d: Duration) {
        self.auth_timeout = d;
    }

    /// The address: after [`bind`](Channel::bind), the real one (with the
    /// port the system picked for port 0).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Starts listening (`SO_REUSEADDR` for TCP). [`accept`](Channel::accept)
    /// binds on first use if this was not called.
    pub fn bind(&mut self) -> Result<()> {
        if self.listener.is_some() {
            return Ok(());
        }
        match &self.address {
            Address::Tcp(a) => {
                let l = TcpListener::bind(*a)?;
                self.address = Address::Tcp(l.local_addr()?);
                self.listener = Some(Listening::Tcp(l));
            }
            Address::Unix(p) => {
                let l = UnixListener::bind(p)?;
                self.created = Some(p.clone());
                self.listener = Some(Listening::Unix(l));
            }
        }
        Ok(())
    }

    /// Waits for a peer that passes the handshake and returns the connection
    /// to it.
    ///
    /// A peer that fails the handshake (another key, not a curio channel, no
    /// answer within the auth timeout, a closed connection) is reported on
    /// stderr and dropped, and accepting goes on: the caller never sees it.
    ///
    /// # Errors
    ///
    /// Binding or accepting failed.
    ///
    /// # Cancellation
    ///
    /// A cancel point while waiting for a peer and during each handshake.
    /// Cancelled, no connection is returned and one being authenticated is
    /// closed; the channel keeps listening.
    pub fn accept(&mut self) -> Result<Connection> {
        self.bind()?;
        loop {
            let (sock, peer) = match self.listener.as_ref().expect("bound above") {
                Listening::Tcp(l) => {
                    let (s, a) = l.accept()?;
                    s.set_nodelay(true)?;
                    (s.into_socket(), a.to_string())
                }
                Listening::Unix(l) => {
                    let (s, _) = l.accept()?;
                    (s.into_socket(), "a local peer".to_string())
                }
            };
            let mut conn = Connection::new(sock.as_stream());
            conn.set_max_message(self.max_message);
            let key = &self.key;
            match timeout_after(self.auth_timeout, || conn.authenticate_server(key)) {
                Ok(()) => return Ok(conn),
                // Our own handshake deadline: drop the peer, keep accepting.
                Err(e) if e.is_timeout() => eprintln!(
                    "curio: channel {}: dropped {peer}: no handshake within {:?}",
                    self.address, self.auth_timeout
                ),
                Err(e) if e.is_cancellation() => return Err(e),
                Err(e) => eprintln!("curio: channel {}: dropped {peer}: {e}", self.address),
            }
        }
    }

    /// Connects to the channel's address and runs the client's handshake.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::AuthenticationFailed`] if the keys differ; an I/O error of
    /// kind `TimedOut` if the server did not finish the handshake within the
    /// auth timeout; connection errors.
    ///
    /// # Cancellation
    ///
    /// A cancel point while connecting and during the handshake. Cancelled,
    /// the half-made connection is closed.
    pub fn connect(&self) -> Result<Connection> {
        let sock = match &self.address {
            Address::Tcp(a) => {
                let s = TcpStream::connect(*a)?;
                s.set_nodelay(true)?;
                s.into_socket()
            }
            Address::Unix(p) => UnixStream::connect(p)?.into_socket(),
        };
        let mut conn = Connection::new(sock.as_stream());
        conn.set_max_message(self.max_message);
        match timeout_after(self.auth_timeout, || conn.authenticate_client(&self.key)) {
            Ok(()) => Ok(conn),
            Err(e) if e.is_timeout() => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the channel at {} did not finish the handshake within {:?}",
                    self.address, self.auth_timeout
                ),
            )
            .into()),
            Err(e) => Err(e),
        }
    }

    /// Stops listening (the same as dropping the channel).
    pub fn close(self) {}
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.listener = None;
        if let Some(p) = self.created.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Channel")
            .field("address", &self.address)
            .field("listening", &self.listener.is_some())
            .field("max_message", &self.max_message)
            .field("auth_timeout", &self.auth_timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_frames_round_trip_and_reject_what_is_wrong() {
        let mut wire = Vec::new();
        write_frame_blocking(&mut wire, b"hello").unwrap();
        write_frame_blocking(&mut wire, &[7u8; 20_000]).unwrap();
        let mut r = &wire[..];
        assert_eq!(
            read_frame_blocking(&mut r, 1 << 20).unwrap().unwrap(),
            b"hello"
        );
        assert_eq!(
            read_frame_blocking(&mut r, 1 << 20).unwrap().unwrap().len(),
            20_000
        );
        assert!(read_frame_blocking(&mut r, 1 << 20).unwrap().is_none());

        let mut huge = &[0xffu8, 0xff, 0xff, 0xff][..];
        let e = read_frame_blocking(&mut huge, 1 << 20).unwrap_err();
        assert_eq!(e.io_error().unwrap().kind(), io::ErrorKind::InvalidData);

        let mut cut = &wire[..7];
        let e = read_frame_blocking(&mut cut, 1 << 20).unwrap_err();
        assert_eq!(e.io_error().unwrap().kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(e.bytes_done(), Some(7));
    }

    #[test]
    fn digests_depend_on_key_role_and_nonce() {
        let d = |k: &[u8], r, n: &[u8]| mac(k, r, n).finalize().into_bytes().to_vec();
        let n = [1u8; 32];
        assert_eq!(d(b"k", Role::Client, &n), d(b"k", Role::Client, &n));
        assert_ne!(d(b"k", Role::Client, &n), d(b"k", Role::Server, &n));
        assert_ne!(d(b"k", Role::Client, &n), d(b"j", Role::Client, &n));
        assert_ne!(d(b"k", Role::Client, &n), d(b"k", Role::Client, &[2u8; 32]));
    }

    #[test]
    fn decode_refuses_trailing_bytes() {
        let mut b = encode(&7u32).unwrap();
        assert_eq!(decode::<u32>(&b).unwrap(), 7);
        b.push(0);
        assert!(decode::<u32>(&b).is_err());
    }
}

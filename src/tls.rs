//! TLS with rustls on green sockets: verified client connections, servers, and
//! TLS streams with the same methods as plain ones.
//!
//! rustls's synchronous API ([`rustls::ClientConnection`] /
//! [`rustls::ServerConnection`]) never blocks: it takes bytes from the network
//! (`read_tls`), hands out plaintext (`reader`), accepts plaintext (`writer`)
//! and queues records to send (`write_tls`). [`TlsIo`] drives it over a
//! non-blocking [`Socket`] with the socket's own try-then-wait loop, so a task
//! that reads or writes a [`TlsStream`] suspends exactly where a plain socket
//! would, and every [`Stream`] method (`readline`, `read_exactly`, `lines`,
//! `writelines`, `std::io::{Read, Write, BufRead}` …) works unchanged.
//!
//! The crypto provider is rustls's `ring`, which builds with the Rust toolchain
//! alone. Certificates are verified by default against the Mozilla roots
//! (`webpki-roots`).
//!
//! # Invariants
//!
//! - Only the task holding the stream touches its rustls connection, and never
//!   across a suspension: the connection is borrowed for each non-blocking call
//!   and released before the task waits for readiness.
//! - The handshake runs in the task that opens or accepts the connection (for a
//!   server, the client's own handler task) under a deadline
//!   ([`DEFAULT_HANDSHAKE_TIMEOUT`] unless configured), so a stalled peer holds
//!   up no one else and is dropped when the deadline passes.
//! - A cancelled or timed-out read loses nothing: ciphertext read from the
//!   socket, whole or a partial record, stays in rustls, and decrypted bytes
//!   stay there (or in the stream's buffer) until read.
//! - A cancelled or timed-out write leaves the stream consistent: the part of
//!   the data that rustls accepted (the error's [`Error::bytes_done`]) is
//!   encrypted and queued, and goes out first with the next write, `flush`,
//!   `shutdown` or close; nothing is sent twice or out of order. Resume with
//!   `data[bytes_done..]`.
//! - Dropping a stream (or `close`) sends `close_notify` if the socket takes it
//!   at once; [`Stream::shutdown`](Stream#method.shutdown) waits until it is
//!   sent. A peer that closes without `close_notify` makes the next read fail
//!   with rustls's `UnexpectedEof` error, never a clean end of file.
//!
//! # Example
//!
//! A server and a client in one program, with a certificate made by `rcgen`:
//!
//! ```
//! use std::sync::Arc;
//! use curio::tls::{self, TlsStream};
//! use curio::net::{self, Connect};
//!
//! let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
//! let der = cert.cert.der().clone();
//! let key = tls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
//! let server_config = tls::server_config(vec![der.clone()], key)?;
//! let mut roots = tls::rustls::RootCertStore::empty();
//! roots.add(der).unwrap();
//! let client_config = tls::client_config_with_roots(roots);
//!
//! curio::run(move || -> curio::Result<()> {
//!     let listener = net::tcp_server_socket("127.0.0.1:0".parse().unwrap(), false)?;
//!     let port = listener.local_addr()?.port();
//!     let server = curio::spawn(move || {
//!         tls::run_server(listener, server_config, |mut s: TlsStream, _addr| {
//!             let line = s.readline()?;
//!             s.write_all(&line)
//!         })
//!     });
//!     let connector = tls::TlsConnector::new(client_config);
//!     let mut s = Connect::new("localhost", port).tls_with(&connector).open()?;
//!     s.write_all(b"hello\n")?;
//!     assert_eq!(s.readline()?, b"hello\n");
//!     assert_eq!(s.get_ref().protocol_version(), Some(tls::rustls::ProtocolVersion::TLSv1_3));
//!     server.cancel()?;
//!     Ok(())
//! })?;
//! # Ok::<(), curio::Error>(())
//! ```

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, ClientConnection, Connection,
    ProtocolVersion, RootCertStore, ServerConfig, ServerConnection, SupportedCipherSuite,
};

use crate::error::{Error, ErrorKind, Result};
use crate::io::{Socket, Stream, StreamIo};
use crate::net::{self, Connect, Listener, TcpListener};
use crate::poller::Direction;

pub use rustls;
pub use rustls::pki_types;

/// How long a handshake may take before the connection is dropped, unless a
/// [`TlsConnector`] or [`TlsAcceptor`] says otherwise. Ten seconds: a real
/// peer needs a few round trips; a client that sends nothing for this long is
/// stalled or hostile.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS stream: [`Stream`] over [`TlsIo`], with every stream method.
pub type TlsStream = Stream<TlsIo>;

// ---------------------------------------------------------------------------
// Configurations
// ---------------------------------------------------------------------------

/// The crypto provider every configuration here uses: rustls's `ring`.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// A client configuration that verifies servers against `roots`, with no client
/// certificate, TLS 1.2 and 1.3. Change its public fields (`alpn_protocols` …)
/// before use, or build your own with
/// `ClientConfig::builder_with_provider(tls::provider())` for client
/// certificates.
pub fn client_config_with_roots(roots: RootCertStore) -> ClientConfig {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// The default client configuration: servers are verified against the Mozilla
/// root certificates (`webpki-roots`).
pub fn client_config() -> Arc<ClientConfig> {
    static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| {
            let roots = RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            Arc::new(client_config_with_roots(roots))
        })
        .clone()
}

/// A server configuration presenting `certs` (the server's certificate first,
/// then its chain) with `key`, asking no client certificate, TLS 1.2 and 1.3.
///
/// # Errors
///
/// A key rustls cannot use, or one that does not belong to the first
/// certificate.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig> {
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| config_error(&e, "the certificate", "the key"))
}

/// [`server_config`] from two PEM files: the certificate chain and the
/// private key (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
///
/// A missing or unreadable file, a file with no certificate or key in it, or
/// a key that does not match the certificate; each message names the file.
pub fn server_config_from_pem(
    cert_path: impl AsRef<Path>,
    key_path: impl AsRef<Path>,
) -> Result<ServerConfig> {
    let (cert_path, key_path) = (cert_path.as_ref(), key_path.as_ref());
    let certs = load_certs(cert_path)?;
    let key = load_private_key(key_path)?;
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            config_error(
                &e,
                &format!("the certificate in {}", cert_path.display()),
                &format!("the key in {}", key_path.display()),
            )
        })
}

fn config_error(e: &rustls::Error, cert: &str, key: &str) -> Error {
    let msg = match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "{key} does not match {cert}; give the private key that belongs to the first \
             certificate of the chain"
        ),
        _ => format!("cannot use {cert} with {key}: {e}"),
    };
    Error::from(io::Error::new(io::ErrorKind::InvalidInput, msg))
}

fn pem_error(what: &str, path: &Path, e: pki_types::pem::Error) -> Error {
    let kind = match &e {
        pki_types::pem::Error::Io(io) => io.kind(),
        _ => io::ErrorKind::InvalidData,
    };
    let msg = match e {
        pki_types::pem::Error::Io(io) => {
            format!("cannot read the {what} file {}: {io}", path.display())
        }
        pki_types::pem::Error::NoItemsFound => format!(
            "no {what} found in {}; expected a PEM file with a \"-----BEGIN ...-----\" block",
            path.display()
        ),
        other => format!(
            "the {what} file {} is not valid PEM: {other}",
            path.display()
        ),
    };
    Error::from(io::Error::new(kind, msg))
}

/// Reads every certificate in the PEM file at `path` (a server's certificate
/// and its chain, or roots to trust).
///
/// # Errors
///
/// A missing or unreadable file, bad PEM, or no certificate in it.
pub fn load_certs(path: impl AsRef<Path>) -> Result<Vec<CertificateDer<'static>>> {
    let path = path.as_ref();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| pem_error("certificate", path, e))?;
    if certs.is_empty() {
        return Err(pem_error(
            "certificate",
            path,
            pki_types::pem::Error::NoItemsFound,
        ));
    }
    Ok(certs)
}

/// Reads the first private key in the PEM file at `path`.
///
/// # Errors
///
/// A missing or unreadable file, bad PEM, or no key in it.
pub fn load_private_key(path: impl AsRef<Path>) -> Result<PrivateKeyDer<'static>> {
    let path = path.as_ref();
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error("private key", path, e))
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A TLS failure with a peer: what rustls reported, and who the peer was. It
/// travels inside the [`Error`] (kind [`ErrorKind::Io`], I/O kind
/// `InvalidData`); get it back with [`TlsError::of`].
#[derive(Debug)]
pub struct TlsError {
    peer: String,
    handshake: bool,
    error: rustls::Error,
}

impl TlsError {
    /// The TLS error inside `e`, if it is one.
    pub fn of(e: &Error) -> Option<&TlsError> {
        e.io_error()?.get_ref()?.downcast_ref::<TlsError>()
    }

    /// What rustls reported (match on it: `InvalidCertificate(Expired)` …).
    pub fn rustls_error(&self) -> &rustls::Error {
        &self.error
    }

    /// The peer: `name (address)` for a client's server, the address for a
    /// server's client.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// True if the failure happened during the handshake.
    pub fn during_handshake(&self) -> bool {
        self.handshake
    }

    fn explain(&self) -> String {
        use rustls::Error as E;
        let e = &self.error;
        match e {
            E::InvalidCertificate(c) => match c {
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => format!(
                    "the certificate is not valid for this server name ({e}); connect with the \
                     name the certificate was issued for"
                ),
                CertificateError::UnknownIssuer => format!(
                    "the certificate was issued by an unknown authority ({e}); to trust a private \
                     authority, pass a ClientConfig whose roots hold its certificate"
                ),
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    format!("the certificate has expired ({e})")
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    format!("the certificate is not valid yet ({e})")
                }
                _ => format!("the certificate was rejected ({e})"),
            },
            E::AlertReceived(AlertDescription::CertificateRequired) => format!(
                "the server requires a client certificate ({e}); build the ClientConfig with \
                 with_client_auth_cert"
            ),
            E::AlertReceived(
                AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateUnknown
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::CertificateRevoked,
            ) => format!("the peer rejected our certificate ({e})"),
            E::NoCertificatesPresented => {
                format!("the client sent no certificate, and this server requires one ({e})")
            }
            _ => e.to_string(),
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.handshake {
            "tls handshake"
        } else {
            "tls connection"
        };
        write!(f, "{what} with {} failed: {}", self.peer, self.explain())
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

// ---------------------------------------------------------------------------
// TlsIo: rustls over a green socket
// ---------------------------------------------------------------------------

/// A socket's reads and writes as `std::io`, without waiting: `WouldBlock`
/// goes back to the caller, who waits with the socket's registration. A read
/// shorter than asked for (the socket drained) is noted in `short`.
struct Raw<'a> {
    sock: &'a socket2::Socket,
    short: bool,
}

impl<'a> Raw<'a> {
    fn new(sock: &'a socket2::Socket) -> Raw<'a> {
        Raw { sock, short: false }
    }
}

impl Read for Raw<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (&*self.sock).read(buf)?;
        self.short = n > 0 && n < buf.len();
        Ok(n)
    }
}

impl Write for Raw<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.send_with_flags(buf, libc::MSG_NOSIGNAL)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.sock.send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A rustls connection over a non-blocking [`Socket`]: what a [`TlsStream`]
/// reads and writes. Also the place for what the handshake settled: ALPN,
/// peer certificates, protocol version, SNI.
pub struct TlsIo {
    /// Boxed: a rustls connection is over a kilobyte, and a stream must stay
    /// small enough to move into a task (and out of one as its result).
    conn: RefCell<Box<Connection>>,
    sock: Socket,
    /// For error messages: `name (address)` or the address.
    peer: String,
    /// The client's server name (the SNI it sent).
    client_name: Option<String>,
    /// The first fatal error; every later call returns it again.
    failed: RefCell<Option<rustls::Error>>,
    /// `close_notify` has been queued; writes are refused.
    closed: Cell<bool>,
}

impl TlsIo {
    fn new(conn: Connection, sock: Socket, peer: String, client_name: Option<String>) -> TlsIo {
        TlsIo {
            conn: RefCell::new(Box::new(conn)),
            sock,
            peer,
            client_name,
            failed: RefCell::new(None),
            closed: Cell::new(false),
        }
    }

    /// The negotiated ALPN protocol, if any.
    pub fn alpn_protocol(&self) -> Option<Vec<u8>> {
        self.conn.borrow().alpn_protocol().map(<[u8]>::to_vec)
    }

    /// The negotiated TLS version.
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.conn.borrow().protocol_version()
    }

    /// The negotiated cipher suite.
    pub fn cipher_suite(&self) -> Option<SupportedCipherSuite> {
        self.conn.borrow().negotiated_cipher_suite()
    }

    /// The peer's certificate chain, its own certificate first (a server's
    /// always; a client's only if the server asked for one).
    pub fn peer_certificates(&self) -> Option<Vec<CertificateDer<'static>>> {
        self.conn.borrow().peer_certificates().map(<[_]>::to_vec)
    }

    /// The server name (SNI): on a server, the one the client asked for; on a
    /// client, the one it sent and verified the certificate against.
    pub fn server_name(&self) -> Option<String> {
        match &**self.conn.borrow() {
            Connection::Server(s) => s.server_name().map(str::to_string),
            Connection::Client(_) => self.client_name.clone(),
        }
    }

    /// True on the client side of a connection.
    pub fn is_client(&self) -> bool {
        matches!(&**self.conn.borrow(), Connection::Client(_))
    }

    /// Runs `f` on the rustls connection, for anything not exposed here
    /// (exporting keying material, the handshake kind …).
    pub fn with_connection<R>(&self, f: impl FnOnce(&Connection) -> R) -> R {
        f(&self.conn.borrow())
    }

    /// The socket underneath, for socket options. Reading or writing it
    /// directly corrupts the TLS stream.
    pub fn socket(&self) -> &Socket {
        &self.sock
    }

    /// The error for a rustls failure, remembered so later calls repeat it;
    /// the alert rustls queued for the peer is sent if the socket takes it now.
    fn fail(&self, e: rustls::Error) -> Error {
        self.failed.replace(Some(e.clone()));
        self.flush_nowait();
        self.tls_error(e)
    }

    fn tls_error(&self, error: rustls::Error) -> Error {
        let handshake = self.conn.borrow().is_handshaking();
        let e = TlsError {
            peer: self.peer.clone(),
            handshake,
            error,
        };
        Error::from(io::Error::new(io::ErrorKind::InvalidData, e))
    }

    fn check_failed(&self) -> Result<()> {
        match &*self.failed.borrow() {
            None => Ok(()),
            Some(e) => Err(self.tls_error(e.clone())),
        }
    }

    /// One `read_tls` from the socket, waiting until it is readable. 0: the
    /// peer closed the TCP connection.
    fn read_tls(&self) -> Result<usize> {
        // A read that drained the socket (shorter than asked) marks it so:
        // the next one waits for readiness first instead of trying a read
        // that would only answer `EAGAIN` (`io::Registration`, one system
        // call per read).
        let reg = self.sock.registration();
        let mut short = false;
        let n = reg.retry(Direction::Read, || {
            let mut raw = Raw::new(self.sock.socket());
            let r = self.conn.borrow_mut().read_tls(&mut raw);
            short = raw.short;
            r
        })?;
        if short {
            reg.mark_drained(Direction::Read);
        }
        Ok(n)
    }

    /// Decrypts what `read_tls` brought; a protocol error is fatal.
    fn process(&self) -> Result<()> {
        let r = self.conn.borrow_mut().process_new_packets();
        match r {
            Ok(_) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Writes every queued record, waiting while the socket is full.
    fn flush_tls(&self) -> Result<()> {
        while self.conn.borrow().wants_write() {
            let n = self.sock.registration().retry(Direction::Write, || {
                self.conn
                    .borrow_mut()
                    .write_tls(&mut Raw::new(self.sock.socket()))
            })?;
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::WriteZero).into());
            }
        }
        Ok(())
    }

    /// Writes queued records while the socket takes them, without waiting.
    fn flush_nowait(&self) {
        let mut conn = self.conn.borrow_mut();
        while conn.wants_write() {
            match conn.write_tls(&mut Raw::new(self.sock.socket())) {
                Ok(n) if n > 0 => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => break,
            }
        }
    }

    /// Runs the handshake to its end.
    fn handshake(&self) -> Result<()> {
        loop {
            self.flush_tls()?;
            if !self.conn.borrow().is_handshaking() {
                return Ok(());
            }
            if self.read_tls()? == 0 {
                let msg = format!(
                    "tls handshake with {} failed: the peer closed the connection",
                    self.peer
                );
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, msg).into());
            }
            self.process()?;
        }
    }

    /// The handshake under `limit`; our own expiry becomes an I/O error of
    /// kind `TimedOut` (not a timeout of the caller's blocks).
    fn handshake_within(&self, limit: Option<Duration>) -> Result<()> {
        match crate::time::timeout_after(limit, || self.handshake()) {
            Err(e) if e.kind() == ErrorKind::Timeout => {
                let msg = format!(
                    "tls handshake with {} did not finish within {:?}; the peer is stalled \
                     (a longer limit: handshake_timeout)",
                    self.peer,
                    limit.unwrap_or_default()
                );
                Err(io::Error::new(io::ErrorKind::TimedOut, msg).into())
            }
            other => other,
        }
    }

    /// Queues `close_notify` and sends it with everything queued before it,
    /// then shuts down the socket's sending side.
    fn close_notify(&self) -> Result<()> {
        self.check_failed()?;
        if !self.closed.replace(true) {
            self.conn.borrow_mut().send_close_notify();
        }
        self.flush_tls()?;
        match self.sock.shutdown(Shutdown::Write) {
            Err(e)
                if e.io_error()
                    .is_some_and(|io| io.kind() == io::ErrorKind::NotConnected) =>
            {
                Ok(())
            }
            other => other,
        }
    }
}

impl StreamIo for TlsIo {
    /// Decrypted bytes; 0 once the peer has sent `close_notify`. A peer that
    /// closed without it gives rustls's `UnexpectedEof` error.
    fn read_some(&self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            self.check_failed()?;
            let r = self.conn.borrow_mut().reader().read(buf);
            match r {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
            // Records rustls queued while reading (a key update, an alert) go
            // out now if they can; otherwise with the next write.
            self.flush_nowait();
            self.read_tls()?;
            self.process()?;
        }
    }

    /// Encrypts and sends all of `data`. Failed or cancelled part way, the
    /// error's [`Error::bytes_done`] counts the bytes rustls accepted: they are
    /// queued and go out before anything written later.
    fn write_all_of(&self, data: &[u8]) -> Result<()> {
        let mut done = 0;
        loop {
            self.check_failed().map_err(|e| e.with_progress(done))?;
            if self.closed.get() {
                let e = Error::from(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    format!(
                        "write to the tls connection with {} after shutdown",
                        self.peer
                    ),
                ));
                return Err(e.with_progress(done));
            }
            if done < data.len() {
                let r = self.conn.borrow_mut().writer().write(&data[done..]);
                match r {
                    Ok(n) => done += n,
                    Err(e) => return Err(Error::from(e).with_progress(done)),
                }
            }
            self.flush_tls().map_err(|e| e.with_progress(done))?;
            if done == data.len() {
                return Ok(());
            }
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Sends the records a cancelled write left queued.
    fn flush(&self) -> Result<()> {
        self.check_failed()?;
        self.flush_tls()
    }
}

impl Drop for TlsIo {
    /// Sends `close_notify` (after an established, healthy connection) and
    /// whatever else is queued, as far as the socket takes it without waiting.
    fn drop(&mut self) {
        let healthy = self.failed.get_mut().is_none();
        let conn = self.conn.get_mut();
        if healthy && !conn.is_handshaking() && !self.closed.get() {
            conn.send_close_notify();
        }
        self.flush_nowait();
    }
}

impl fmt::Debug for TlsIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let conn = self.conn.borrow();
        f.debug_struct("TlsIo")
            .field("fd", &self.sock.fileno())
            .field("peer", &self.peer)
            .field("client", &matches!(&**conn, Connection::Client(_)))
            .field("version", &conn.protocol_version())
            .field("handshaking", &conn.is_handshaking())
            .finish()
    }
}

impl Stream<TlsIo> {
    /// Closes the TLS session cleanly: sends `close_notify` after everything
    /// written before, waiting while the socket is full, then shuts down the
    /// socket's sending side. Reading goes on: the peer's last bytes and its
    /// own `close_notify` (a read of 0) can still arrive. Later writes fail.
    ///
    /// Dropping the stream also sends `close_notify`, but only if the socket
    /// takes it at once, and reports nothing.
    ///
    /// # Cancellation
    ///
    /// A cancel point while the socket is full. Cancelled, `close_notify` stays
    /// queued behind the earlier data; a later `shutdown`, `flush` or the drop
    /// sends it.
    pub fn shutdown(&mut self) -> Result<()> {
        self.get_ref().close_notify()
    }
}

fn peer_addr(sock: &Socket) -> String {
    match sock.socket().peer_addr() {
        Ok(a) => match a.as_socket() {
            Some(a) => a.to_string(),
            None => a
                .as_pathname()
                .map_or_else(|| "a unix socket".to_string(), |p| p.display().to_string()),
        },
        Err(_) => "an unconnected socket".to_string(),
    }
}

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

/// Opens client TLS sessions with one configuration: what to trust, client
/// certificate, ALPN (all in the rustls [`ClientConfig`]) and the handshake
/// deadline. Cheap to clone; `Send`.
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
    handshake_timeout: Option<Duration>,
}

impl TlsConnector {
    /// A connector using `config`.
    pub fn new(config: impl Into<Arc<ClientConfig>>) -> TlsConnector {
        TlsConnector {
            config: config.into(),
            handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
        }
    }

    /// Sets the handshake deadline (`None`: wait as long as it takes).
    pub fn handshake_timeout(mut self, limit: Option<Duration>) -> TlsConnector {
        self.handshake_timeout = limit;
        self
    }

    /// The rustls configuration.
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// Runs a client handshake over the connected `sock`, sending
    /// `server_name` (SNI) and verifying the server's certificate for it (a
    /// DNS name or an IP address). What `tokio-rustls` calls `connect`; use
    /// [`Connect`] to resolve and connect as well.
    ///
    /// # Errors
    ///
    /// An invalid name ([`ErrorKind::Usage`]); a [`TlsError`] naming the
    /// server if the handshake fails (a certificate for another name, from an
    /// unknown authority, expired …); an I/O error of kind `TimedOut` past the
    /// handshake deadline, `UnexpectedEof` if the server hangs up.
    ///
    /// # Cancellation
    ///
    /// A cancel point while the handshake waits for the server. Cancelled, the
    /// socket is closed.
    pub fn connect(&self, server_name: &str, sock: impl Into<Socket>) -> Result<TlsStream> {
        let sock = sock.into();
        let name = ServerName::try_from(server_name.to_string()).map_err(|_| {
            Error::usage(format!(
                "{server_name:?} is not a valid tls server name; give a DNS name or an IP address"
            ))
        })?;
        let conn = ClientConnection::new(self.config.clone(), name)
            .map_err(|e| Error::usage(format!("cannot start a tls client session: {e}")))?;
        let peer = format!("{server_name} ({})", peer_addr(&sock));
        let io = TlsIo::new(
            Connection::Client(conn),
            sock,
            peer,
            Some(server_name.to_string()),
        );
        io.handshake_within(self.handshake_timeout)?;
        Ok(Stream::new(io))
    }
}

impl Default for TlsConnector {
    /// Verifies servers against the Mozilla roots ([`client_config`]).
    fn default() -> TlsConnector {
        TlsConnector::new(client_config())
    }
}

impl From<Arc<ClientConfig>> for TlsConnector {
    fn from(config: Arc<ClientConfig>) -> TlsConnector {
        TlsConnector::new(config)
    }
}

impl From<ClientConfig> for TlsConnector {
    fn from(config: ClientConfig) -> TlsConnector {
        TlsConnector::new(config)
    }
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector")
            .field("alpn_protocols", &self.config.alpn_protocols)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

/// A TLS connection to open: [`Connect`] after `.tls()` or `.tls_with()`.
#[derive(Clone, Debug)]
pub struct TlsConnect {
    target: Connect,
    connector: TlsConnector,
    server_name: Option<String>,
}

impl Connect {
    /// Makes this a TLS connection, verified against the Mozilla roots
    /// ([`client_config`]); the server name is the host unless
    /// [`TlsConnect::server_name`] says otherwise.
    pub fn tls(self) -> TlsConnect {
        self.tls_with(&TlsConnector::default())
    }

    /// Makes this a TLS connection with `connector`'s configuration (your own
    /// roots, a client certificate, ALPN, the handshake deadline).
    pub fn tls_with(self, connector: &TlsConnector) -> TlsConnect {
        TlsConnect {
            target: self,
            connector: connector.clone(),
            server_name: None,
        }
    }
}

impl TlsConnect {
    /// The name to send (SNI) and verify the certificate against, instead of
    /// the host (for connecting to an address, or through a tunnel).
    pub fn server_name(mut self, name: impl Into<String>) -> TlsConnect {
        self.server_name = Some(name.into());
        self
    }

    /// The ALPN protocols to offer, most preferred first (e.g. `[b"h2",
    /// b"http/1.1"]`); the server's choice is [`TlsIo::alpn_protocol`].
    pub fn alpn<P: AsRef<[u8]>>(mut self, protocols: impl IntoIterator<Item = P>) -> TlsConnect {
        let mut config = ClientConfig::clone(&self.connector.config);
        config.alpn_protocols = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self.connector.config = Arc::new(config);
        self
    }

    /// Sets the handshake deadline (`None`: wait as long as it takes).
    pub fn handshake_timeout(mut self, limit: Option<Duration>) -> TlsConnect {
        self.connector.handshake_timeout = limit;
        self
    }

    /// Resolves the host, connects, and runs the handshake (see
    /// [`TlsConnector::connect`] for the errors).
    ///
    /// # Cancellation
    ///
    /// A cancel point while resolving, connecting and in the handshake.
    /// Cancelled, no socket is left open.
    pub fn open(self) -> Result<TlsStream> {
        let tcp = self.target.open()?;
        let name = self.server_name.as_deref().unwrap_or(&self.target.host);
        self.connector.connect(name, tcp)
    }
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

/// Runs server TLS handshakes with one configuration (certificate, client
/// authentication, ALPN: the rustls [`ServerConfig`]) and a handshake
/// deadline. Cheap to clone; `Send`.
#[derive(Clone)]
pub struct TlsAcceptor {
    config: Arc<ServerConfig>,
    handshake_timeout: Option<Duration>,
}

impl TlsAcceptor {
    /// An acceptor using `config`, with [`DEFAULT_HANDSHAKE_TIMEOUT`].
    pub fn new(config: impl Into<Arc<ServerConfig>>) -> TlsAcceptor {
        TlsAcceptor {
            config: config.into(),
            handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
        }
    }

    /// Sets the handshake deadline (`None`: wait as long as it takes, which
    /// lets a silent client hold its connection forever).
    pub fn handshake_timeout(mut self, limit: Option<Duration>) -> TlsAcceptor {
        self.handshake_timeout = limit;
        self
    }

    /// The rustls configuration.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// Runs a server handshake over the accepted `sock`.
    ///
    /// # Errors
    ///
    /// A [`TlsError`] naming the client if the handshake fails (not TLS, no
    /// common version or cipher suite, a rejected client certificate …); an I/O
    /// error of kind `TimedOut` past the handshake deadline, `UnexpectedEof`
    /// if the client hangs up.
    ///
    /// # Cancellation
    ///
    /// A cancel point while the handshake waits for the client. Cancelled, the
    /// socket is closed.
    pub fn accept(&self, sock: impl Into<Socket>) -> Result<TlsStream> {
        let sock = sock.into();
        let conn = ServerConnection::new(self.config.clone())
            .map_err(|e| Error::usage(format!("cannot start a tls server session: {e}")))?;
        let peer = peer_addr(&sock);
        let io = TlsIo::new(Connection::Server(conn), sock, peer, None);
        io.handshake_within(self.handshake_timeout)?;
        Ok(Stream::new(io))
    }
}

impl From<Arc<ServerConfig>> for TlsAcceptor {
    fn from(config: Arc<ServerConfig>) -> TlsAcceptor {
        TlsAcceptor::new(config)
    }
}

impl From<ServerConfig> for TlsAcceptor {
    fn from(config: ServerConfig) -> TlsAcceptor {
        TlsAcceptor::new(config)
    }
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("alpn_protocols", &self.config.alpn_protocols)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

/// [`net::run_server`] for TLS: each client's task first runs the handshake
/// (under the acceptor's deadline), then `handler(stream, addr)`. A client
/// whose handshake fails or times out is dropped without calling the handler,
/// and the failure is reported as a handler's error is
/// ([`net::HandlerResult`]); the server goes on.
///
/// # Cancellation
///
/// As [`net::run_server`]: cancelling the server's task stops it, cancelling
/// every handler and handshake in progress.
pub fn run_server<L, F, R>(listener: L, acceptor: impl Into<TlsAcceptor>, handler: F) -> Result<()>
where
    L: Listener,
    L::Conn: Into<Socket>,
    F: Fn(TlsStream, L::Addr) -> R + 'static,
    R: net::HandlerResult,
{
    let acceptor = acceptor.into();
    net::serve(
        listener,
        std::any::type_name::<F>(),
        move |conn: L::Conn, addr| acceptor.accept(conn).map(|s| handler(s, addr)),
    )
}

/// Listens on `addr` and serves each client with `handler` over TLS (see
/// [`run_server`]): the tutorial's `tcp_server('', 10000, handler, ssl=context)`.
///
/// # Cancellation
///
/// As [`net::run_server`].
pub fn tcp_server<F, R>(
    addr: SocketAddr,
    acceptor: impl Into<TlsAcceptor>,
    handler: F,
) -> Result<()>
where
    F: Fn(TlsStream, SocketAddr) -> R + 'static,
    R: net::HandlerResult,
{
    run_server(TcpListener::bind(addr)?, acceptor, handler)
}

//! TLS: streams over rustls with every stream method, verification failures
//! that say which and name the host, PEM loading, hostile and broken peers,
//! cancellation and timeouts around the handshake, reads and writes, and
//! interoperation with `openssl s_client` and `openssl s_server`.
//!
//! Certificates are made with rcgen when the tests run (`common::pki`).

mod common;

use std::cell::{Cell, RefCell};
use std::io::{BufRead as _, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pki::{Ca, TempDir};
use common::*;
use curio::net::{Connect, TcpListener, TcpStream, tcp_server_socket};
use curio::tls::rustls::{self, ClientConfig, ProtocolVersion, ServerConfig};
use curio::tls::{self, TlsAcceptor, TlsConnector, TlsError, TlsStream};
use curio::{Event, Socket, Task};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Starts `tls::run_server` on 127.0.0.1 with `acceptor`; returns the server
/// task and its port.
fn serve<F, R>(acceptor: impl Into<TlsAcceptor>, handler: F) -> (Task<curio::Result<()>>, u16)
where
    F: Fn(TlsStream, SocketAddr) -> R + 'static,
    R: curio::net::HandlerResult,
{
    let listener = tcp_server_socket(any_port(), false).unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = acceptor.into();
    let server = curio::spawn(move || tls::run_server(listener, acceptor, handler));
    (server, port)
}

/// A TLS connection to 127.0.0.1:`port`, verifying the name "localhost".
fn connect(port: u16, connector: &TlsConnector) -> curio::Result<TlsStream> {
    Connect::new("127.0.0.1", port)
        .tls_with(connector)
        .server_name("localhost")
        .open()
}

/// Echoes lines until the client closes, then says "bye" and closes cleanly.
fn echo_lines(mut s: TlsStream, _: SocketAddr) -> curio::Result<()> {
    s.set_max_line(1 << 20);
    loop {
        let line = s.readline()?;
        if line.is_empty() {
            break;
        }
        s.write_all(&line)?;
    }
    s.write_all(b"bye\n")?;
    s.shutdown()
}

/// Reads a plain socket to its end; a reset counts as the end.
fn recv_to_eof(sock: &Socket) -> curio::Result<Vec<u8>> {
    let mut all = Vec::new();
    loop {
        match sock.recv(65536) {
            Ok(chunk) if chunk.is_empty() => return Ok(all),
            Ok(chunk) => all.extend_from_slice(&chunk),
            Err(e)
                if e.io_error()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionReset) =>
            {
                return Ok(all);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The first flight of a real client: a ClientHello for "localhost".
fn client_hello(ca: &Ca) -> Vec<u8> {
    let name = "localhost".try_into().unwrap();
    let mut c = rustls::ClientConnection::new(ca.client_config(), name).unwrap();
    let mut hello = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut hello).unwrap();
    }
    assert!(hello.len() > 100, "a ClientHello is a few hundred bytes");
    hello
}

/// The `TlsError` inside `e`, or a panic saying what `e` was.
#[track_caller]
fn tls_error(e: &curio::Error) -> &TlsError {
    TlsError::of(e).unwrap_or_else(|| panic!("expected a TLS error, got {e:?}"))
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// `len` bytes of a pattern that never repeats within 251 bytes.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

#[test]
fn tls_stream_has_the_plain_stream_api_and_reports_what_was_negotiated() {
    let ca = Ca::new("test ca");
    let leaf = ca.leaf(&["localhost"]);
    run_real(move || {
        let log = Log::new();
        let mut server_config = leaf.server_config();
        server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let l = log.clone();
        let (server, port) = serve(server_config, move |s: TlsStream, addr| {
            let io = s.get_ref();
            l.push(format!(
                "server: sni {:?} alpn {:?} client certs {}",
                io.server_name(),
                io.alpn_protocol().map(String::from_utf8),
                io.peer_certificates().map_or(0, |c| c.len())
            ));
            echo_lines(s, addr)
        });
        let mut s = Connect::new("127.0.0.1", port)
            .tls_with(&TlsConnector::new(ca.client_config()))
            .server_name("localhost")
            .alpn(["http/1.1"])
            .open()
            .unwrap();
        let io = s.get_ref();
        assert_eq!(io.protocol_version(), Some(ProtocolVersion::TLSv1_3));
        assert_eq!(io.alpn_protocol().as_deref(), Some(&b"http/1.1"[..]));
        assert_eq!(io.server_name().as_deref(), Some("localhost"));
        assert!(io.is_client());
        assert!(io.cipher_suite().is_some());
        assert_eq!(io.peer_certificates().unwrap()[0], leaf.der);

        s.write_all(b"one\n").unwrap();
        assert_eq!(s.readline().unwrap(), b"one\n");
        s.writelines([&b"two\n"[..], b"three\n"]).unwrap();
        let two: Vec<Vec<u8>> = curio::Stream::lines(&mut s)
            .take(2)
            .map(Result::unwrap)
            .collect();
        assert_eq!(two, [b"two\n".to_vec(), b"three\n".to_vec()]);
        s.write_all(b"abcdef\n").unwrap();
        assert_eq!(s.read_exactly(3).unwrap(), b"abc");
        assert_eq!(s.read_exactly(4).unwrap(), b"def\n");
        // std::io, as a generic reader and writer would use it.
        writeln!(s, "four").unwrap();
        Write::flush(&mut s).unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut s, &mut line).unwrap();
        assert_eq!(line, "four\n");
        let mut long_line: Vec<u8> = (0..300_000).map(|i| b'a' + (i % 26) as u8).collect();
        long_line.push(b'\n');
        s.set_max_line(400_000);
        s.write_all(&long_line).unwrap();
        assert!(
            s.readline().unwrap() == long_line,
            "a 300 kB line comes back whole"
        );
        // A clean close: close_notify both ways.
        s.shutdown().unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"bye\n");
        assert!(s.write_all(b"late\n").is_err(), "no writes after shutdown");
        server.cancel().unwrap();
        log.assert_eq(&[
            r#"server: sni Some("localhost") alpn Some(Ok("http/1.1")) client certs 0"#,
        ]);
    });
}

#[test]
fn a_tls_stream_moves_into_a_task_and_back() {
    let ca = Ca::new("test ca");
    let leaf = ca.leaf(&["localhost"]);
    run_real(move || {
        let (server, port) = serve(leaf.server_config(), echo_lines);
        let s = connect(port, &TlsConnector::new(ca.client_config())).unwrap();
        // A task's closure and result are copied across a stack switch.
        let task = curio::spawn(move || {
            let mut s = s;
            s.write_all(b"from a task\n").map(|()| s)
        });
        let mut s = task.join().unwrap().unwrap();
        assert_eq!(s.readline().unwrap(), b"from a task\n");
        server.cancel().unwrap();
    });
}

#[test]
fn tls12_works_too() {
    let ca = Ca::new("test ca");
    let leaf = ca.leaf(&["localhost"]);
    run_real(move || {
        let (server, port) = serve(leaf.server_config(), echo_lines);
        let config = ClientConfig::builder_with_provider(tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(ca.roots())
            .with_no_client_auth();
        let mut s = connect(port, &TlsConnector::new(config)).unwrap();
        assert_eq!(
            s.get_ref().protocol_version(),
            Some(ProtocolVersion::TLSv1_2)
        );
        s.write_all(b"over 1.2\n").unwrap();
        assert_eq!(s.readline().unwrap(), b"over 1.2\n");
        server.cancel().unwrap();
    });
}

#[test]
fn dropping_a_stream_sends_close_notify_so_the_peer_sees_a_clean_end() {
    let ca = Ca::new("test ca");
    let leaf = ca.leaf(&["localhost"]);
    run_real(move || {
        let (server, port) = serve(leaf.server_config(), |mut s: TlsStream, _| {
            s.write_all(b"all of it")?;
            s.close().unwrap(); // then dropped: close_notify goes out with the data
            Ok::<_, curio::Error>(())
        });
        let mut s = connect(port, &TlsConnector::new(ca.client_config())).unwrap();
        assert_eq!(s.read_all().unwrap(), b"all of it");
        assert_eq!(s.read_some(10).unwrap(), b"", "the end stays the end");
        server.cancel().unwrap();
    });
}

#[test]
fn a_peer_that_closes_without_close_notify_is_a_truncation_error() {
    let ca = Ca::new("test ca");
    let leaf = ca.leaf(&["localhost"]);
    run_real(move || {
        let (server, port) = serve(leaf.server_config(), |mut s: TlsStream, _| {
            s.write_all(b"partial")?;
            // TCP end of file without close_notify.
            s.get_ref().socket().shutdown(Shutdown::Write)?;
            s.read_some(1).map(drop)
        });
        let mut s = connect(port, &TlsConnector::new(ca.client_config())).unwrap();
        assert_eq!(s.read_exactly(7).unwrap(), b"partial");
        let e = s.read_some(10).unwrap_err();
        let io = e.io_error().expect("an I/O error");
        assert_eq!(io.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(
            io.to_string().contains("close_notify"),
            "rustls's message: {io}"
        );
        // read_all keeps what came before the truncation.
        server.cancel().unwrap();
    });
}

// ---------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------

/// Connects to a server presenting `leaf` with `connector` and `name`; returns
/// the client's error.
fn verify_failure(leaf: common::pki::Leaf, connector: TlsConnector, name: &'static str) -> String {
    run_real(move || {
        let (server, port) = serve(leaf.server_config(), echo_lines);
        let r = Connect::new("127.0.0.1", port)
            .tls_with(&connector)
            .server_name(name)
            .open();
        let e = r.expect_err("verification must fail");
        let te = tls_error(&e);
        assert!(te.during_handshake());
        assert_eq!(te.peer(), format!("{name} (127.0.0.1:{port})"));
        server.cancel().unwrap();
        format!("{:?}|{e}", te.rustls_error())
    })
}

#[test]
fn a_certificate_for_another_name_is_rejected_naming_the_host() {
    let ca = Ca::new("test ca");
    let got = verify_failure(
        ca.leaf(&["localhost"]),
        TlsConnector::new(ca.client_config()),
        "other.example",
    );
    assert!(
        got.starts_with("InvalidCertificate(NotValidForName"),
        "{got}"
    );
    assert!(
        got.contains("tls handshake with other.example (127.0.0.1:")
            && got.contains("not valid for this server name"),
        "{got}"
    );
}

#[test]
fn a_certificate_from_an_unknown_authority_is_rejected() {
    let ca = Ca::new("test ca");
    // The default connector trusts the Mozilla roots only.
    let got = verify_failure(
        ca.leaf(&["localhost"]),
        TlsConnector::default(),
        "localhost",
    );
    assert!(
        got.starts_with("InvalidCertificate(UnknownIssuer)"),
        "{got}"
    );
    assert!(
        got.contains("tls handshake with localhost (127.0.0.1:")
            && got.contains("unknown authority"),
        "{got}"
    );
}

#[test]
fn an_expired_certificate_is_rejected() {
    let ca = Ca::new("test ca");
    let got = verify_failure(
        ca.expired_leaf(&["localhost"]),
        TlsConnector::new(ca.client_config()),
        "localhost",
    );
    assert!(got.starts_with("InvalidCertificate(Expired"), "{got}");
    assert!(
        got.contains("tls handshake with localhost (127.0.0.1:") && got.contains("has expired"),
        "{got}"
    );
}

#[test]
fn a_server_that_requires_a_client_certificate() {
    let ca = Ca::new("test ca");
    let server_leaf = ca.leaf(&["localhost"]);
    let client_leaf = ca.leaf(&["client.example"]);
    run_real(move || {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(ca.roots()),
            tls::provider(),
        )
        .build()
        .unwrap();
        let config = ServerConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(server_leaf.chain(), server_leaf.key())
            .unwrap();
        let (server, port) = serve(config, |mut s: TlsStream, _| {
            let n = s.get_ref().peer_certificates().map_or(0, |c| c.len());
            s.write_all(format!("{n} client certificate\n").as_bytes())
        });

        // Without one: in TLS 1.3 the client's side of the handshake is done
        // before the server judges it, so the refusal comes with the first read.
        let r = connect(port, &TlsConnector::new(ca.client_config()))
            .and_then(|mut s| s.read_some(100));
        let e = r.expect_err("the server refuses a client without a certificate");
        assert!(
            e.to_string().contains("requires a client certificate")
                && e.to_string().contains("localhost (127.0.0.1:"),
            "{e}"
        );

        // With one.
        let config = ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(ca.roots())
            .with_client_auth_cert(client_leaf.chain(), client_leaf.key())
            .unwrap();
        let mut s = connect(port, &TlsConnector::new(config)).unwrap();
        assert_eq!(s.readline().unwrap(), b"1 client certificate\n");
        server.cancel().unwrap();
    });
}

// ---------------------------------------------------------------------------
// PEM files
// ---------------------------------------------------------------------------

#[test]
fn pem_files_load_and_bad_ones_say_what_is_wrong() {
    let ca = Ca::new("test ca");
    let dir = TempDir::new("pem");
    let (cert, key) = ca.leaf(&["localhost"]).write(&dir.0, "server");
    let (_, other_key) = ca.leaf(&["localhost"]).write(&dir.0, "other");
    let missing = dir.0.join("missing.pem");
    let empty = dir.0.join("empty.pem");
    std::fs::write(&empty, "nothing here\n").unwrap();

    assert!(tls::server_config_from_pem(&cert, &key).is_ok());
    assert_eq!(tls::load_certs(&cert).unwrap().len(), 1);

    let e = tls::server_config_from_pem(&missing, &key).unwrap_err();
    assert_eq!(e.io_error().unwrap().kind(), std::io::ErrorKind::NotFound);
    let msg = e.to_string();
    assert!(
        msg.starts_with("cannot read the certificate file") && msg.contains("missing.pem"),
        "{msg}"
    );

    let e = tls::server_config_from_pem(&cert, &missing).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot read the private key file"),
        "{e}"
    );

    let e = tls::server_config_from_pem(&cert, &other_key).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("other.key does not match the certificate in") && msg.contains("server.pem"),
        "{msg}"
    );

    let e = tls::server_config_from_pem(&empty, &key).unwrap_err();
    assert!(e.to_string().starts_with("no certificate found in"), "{e}");
    let e = tls::load_private_key(&cert).unwrap_err();
    assert!(e.to_string().starts_with("no private key found in"), "{e}");
}

// ---------------------------------------------------------------------------
// Hostile and broken peers
// ---------------------------------------------------------------------------

/// A small xorshift generator: random enough for garbage, the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// One good client: a round trip through the echo server.
fn good_client(port: u16, connector: &TlsConnector, n: usize) {
    let mut s = connect(port, connector).unwrap();
    let msg = format!("good client {n}\n");
    s.write_all(msg.as_bytes()).unwrap();
    assert_eq!(s.readline().unwrap(), msg.as_bytes());
}

/// Sends `bytes` instead of a handshake, ends its side, and waits for the
/// server to hang up.
fn bad_client(port: u16, bytes: Vec<u8>) -> curio::Result<()> {
    let c = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))?;
    c.sendall(&bytes)?;
    c.shutdown(Shutdown::Write)?;
    let answer = recv_to_eof(&c)?;
    // At most an alert (7 bytes in clear, or 5 + a handshake record of an
    // unexpected message); never application data.
    assert!(answer.len() <= 64, "{} bytes back", answer.len());
    Ok(())
}

const BAD_PEERS_CHILD: &str = "CURIO_TLS_BAD_PEERS_CHILD";

#[test]
fn hostile_peers_never_stop_the_server_and_leave_no_fd() {
    if !in_child(BAD_PEERS_CHILD) {
        // About 2 s of CPU in a debug build; the deadline leaves room for a
        // machine busy with the other tests.
        let out = run_test_in_child_within(
            "hostile_peers_never_stop_the_server_and_leave_no_fd",
            BAD_PEERS_CHILD,
            &[],
            secs(40),
        );
        assert!(
            out.status.success(),
            "the child failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let ca = Ca::new("test ca");
    let leaf = ca.leaf(&["localhost"]);
    let hello = client_hello(&ca);
    let hello_len = hello.len();
    let before = open_fds();
    let started = Instant::now();
    let counts = run_real_within(secs(35), move || {
        let acceptor = TlsAcceptor::new(leaf.server_config()).handshake_timeout(Some(ms(300)));
        let (server, port) = serve(acceptor, echo_lines);
        let connector = TlsConnector::new(ca.client_config());
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);

        // 10 000 connections sending random bytes instead of a ClientHello,
        // 100 at a time; a good client between batches.
        let mut garbage = 0;
        for batch in 0..100 {
            let clients: Vec<_> = (0..100)
                .map(|_| {
                    let n = 1 + (rng.next() % 600) as usize;
                    let bytes = rng.bytes(n);
                    curio::spawn(move || bad_client(port, bytes))
                })
                .collect();
            for c in clients {
                c.join().unwrap().unwrap();
                garbage += 1;
            }
            good_client(port, &connector, batch);
        }

        // A real ClientHello cut off at every byte boundary.
        let mut cut = 0;
        for chunk in (0..hello.len()).collect::<Vec<_>>().chunks(50) {
            let clients: Vec<_> = chunk
                .iter()
                .map(|&k| {
                    let part = hello[..k].to_vec();
                    curio::spawn(move || bad_client(port, part))
                })
                .collect();
            for c in clients {
                c.join().unwrap().unwrap();
                cut += 1;
            }
            good_client(port, &connector, cut);
        }

        // A client that stalls half way through its ClientHello is dropped at
        // the handshake deadline; others are served meanwhile.
        let half = hello[..hello.len() / 2].to_vec();
        let staller = curio::spawn(move || -> curio::Result<Duration> {
            let c = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))?;
            let t0 = Instant::now();
            c.sendall(&half)?;
            let answer = recv_to_eof(&c)?;
            assert!(answer.len() <= 64);
            Ok(t0.elapsed())
        });
        for i in 0..5 {
            good_client(port, &connector, 10_000 + i);
        }
        assert!(!staller.is_terminated(), "the staller is still waiting");
        let stalled = staller.join().unwrap().unwrap();
        assert!(
            stalled >= ms(250) && stalled < secs(3),
            "dropped after {stalled:?}"
        );
        server.cancel().unwrap();
        (garbage, cut)
    });
    assert_eq!(counts, (10_000, hello_len));
    assert_eq!(open_fds(), before, "fds open before and after");
    eprintln!("hostile peers: {counts:?} in {:?}", started.elapsed());
}

#[test]
fn the_handshake_deadline_is_an_io_timeout_naming_the_peer() {
    run_real(|| {
        // A server that accepts and says nothing.
        let listener = TcpListener::bind(any_port()).unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = Rc::new(RefCell::new(Vec::new()));
        let h = held.clone();
        let acceptor_task = curio::spawn(move || -> curio::Result<()> {
            loop {
                let (c, _) = listener.accept()?;
                h.borrow_mut().push(c);
            }
        });
        let t0 = curio::clock();
        let e = Connect::new("127.0.0.1", port)
            .tls()
            .server_name("localhost")
            .handshake_timeout(Some(ms(100)))
            .open()
            .unwrap_err();
        let took = curio::clock() - t0;
        assert!(!e.is_cancellation(), "{e:?}");
        assert_eq!(e.io_error().unwrap().kind(), std::io::ErrorKind::TimedOut);
        assert!(
            e.to_string().starts_with(&format!(
                "tls handshake with localhost (127.0.0.1:{port}) did not finish within 100ms"
            )),
            "{e}"
        );
        assert!(took >= ms(100) && took < secs(2), "{took:?}");

        // Inside a longer timeout block, the deadline is still the handshake's
        // own error, not an uncaught timeout.
        let r = curio::timeout_after(secs(5), || {
            Connect::new("127.0.0.1", port)
                .tls()
                .server_name("localhost")
                .handshake_timeout(Some(ms(50)))
                .open()
        });
        let e = r.unwrap_err();
        assert_eq!(e.io_error().unwrap().kind(), std::io::ErrorKind::TimedOut);

        // The client sockets were closed: the server sees a ClientHello, then the end.
        for c in held.take() {
            assert_eq!(recv_to_eof(&c).unwrap()[0], 0x16);
        }
        acceptor_task.cancel().unwrap();
    });
}

// ---------------------------------------------------------------------------
// Cancellation and timeouts
// ---------------------------------------------------------------------------

#[test]
fn cancelled_client_handshake_closes_the_socket() {
    for how in BOTH {
        run_real(move || {
            let listener = TcpListener::bind(any_port()).unwrap();
            let addr = listener.local_addr().unwrap();
            let tcp = TcpStream::connect(addr).unwrap();
            let (server_side, _) = listener.accept().unwrap();
            let connector = TlsConnector::default();
            let (_, r) = interrupted(how, Some(tcp), move |tcp| {
                connector.connect("localhost", tcp.take().unwrap())
            });
            expect_interrupted(how, r);
            // The ClientHello came, then the end: the client's socket is closed.
            let got = recv_to_eof(&server_side).unwrap();
            assert_eq!(got[0], 0x16, "{how:?}: a handshake record first");
        });
    }
}

#[test]
fn cancelled_server_handshake_closes_the_socket() {
    let ca = Ca::new("test ca");
    let leaf = ca.leaf(&["localhost"]);
    let config = Arc::new(leaf.server_config());
    for how in BOTH {
        let config = config.clone();
        run_real(move || {
            let listener = TcpListener::bind(any_port()).unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (conn, _) = listener.accept().unwrap();
            let acceptor = TlsAcceptor::new(config);
            let (_, r) = interrupted(how, Some(conn), move |conn| {
                acceptor.accept(conn.take().unwrap())
            });
            expect_interrupted(how, r);
            assert_eq!(recv_to_eof(&client).unwrap(), b"", "{how:?}");
        });
    }
}

/// A relay between a TLS client and server that can hold back the second
/// half of the next chunk the server sends, until `release` is set.
struct Relay {
    port: u16,
    split_next: Rc<Cell<bool>>,
    release: Rc<Event>,
    task: Task<curio::Result<()>>,
}

impl Relay {
    fn start(server_port: u16) -> Relay {
        let listener = TcpListener::bind(any_port()).unwrap();
        let port = listener.local_addr().unwrap().port();
        let split_next = Rc::new(Cell::new(false));
        let release = Rc::new(Event::new());
        let (split, rel) = (split_next.clone(), release.clone());
        let task = curio::spawn(move || -> curio::Result<()> {
            let (client, _) = listener.accept()?;
            let server = Rc::new(TcpStream::connect(SocketAddr::from((
                [127, 0, 0, 1],
                server_port,
            )))?);
            let client = Rc::new(client);
            let (c2, s2) = (client.clone(), server.clone());
            let up = curio::spawn(move || -> curio::Result<()> {
                loop {
                    let d = c2.recv(65536)?;
                    if d.is_empty() {
                        return s2.shutdown(Shutdown::Write);
                    }
                    s2.sendall(&d)?;
                }
            });
            loop {
                let d = server.recv(65536)?;
                if d.is_empty() {
                    break;
                }
                if split.replace(false) {
                    let half = d.len() / 2;
                    client.sendall(&d[..half])?;
                    rel.wait()?;
                    client.sendall(&d[half..])?;
                } else {
                    client.sendall(&d)?;
                }
            }
            client.shutdown(Shutdown::Write)?;
            up.join()?
        });
        Relay {
            port,
            split_next,
            release,
            task,
        }
    }
}

#[test]
fn cancelled_read_loses_neither_a_partial_record_nor_decrypted_bytes() {
    let ca = Ca::new("test ca");
    let leaf = ca.leaf(&["localhost"]);
    let config = Arc::new(leaf.server_config());
    for how in BOTH {
        let (ca_config, config) = (ca.client_config(), config.clone());
        run_real(move || {
            let (server, port) = serve(config, echo_lines);
            let relay = Relay::start(port);
            let mut s = connect(relay.port, &TlsConnector::new(ca_config)).unwrap();
            // A round trip first, so the session tickets have gone by.
            s.write_all(b"ping\n").unwrap();
            assert_eq!(s.readline().unwrap(), b"ping\n");

            // Half a record arrives, the reader is interrupted waiting for the rest.
            relay.split_next.set(true);
            s.write_all(b"hello, world\n").unwrap();
            let (mut s, r) = interrupted(how, s, |s| s.readline());
            expect_interrupted(how, r);
            relay.release.set();
            assert_eq!(s.readline().unwrap(), b"hello, world\n", "{how:?}");

            // Decrypted bytes short of what read_exactly wants stay buffered.
            s.write_all(b"123456\n").unwrap();
            let (mut s, r) = interrupted(how, s, |s| s.read_exactly(10));
            let e = expect_interrupted(how, r);
            assert_eq!(e.bytes_done(), Some(7));
            s.write_all(b"7890\n").unwrap();
            assert_eq!(s.read_exactly(12).unwrap(), b"123456\n7890\n");

            // A timed-out read on an idle stream, then the stream still works.
            let (mut s, r) = interrupted(how, s, |s| curio::Stream::read_some(s, 100));
            expect_interrupted(how, r);
            s.write_all(b"still here\n").unwrap();
            assert_eq!(s.readline().unwrap(), b"still here\n");
            s.shutdown().unwrap();
            assert_eq!(s.read_all().unwrap(), b"bye\n");
            relay.task.join().unwrap().unwrap();
            server.cancel().unwrap();
        });
    }
}

#[test]
fn cancelled_write_leaves_the_stream_consistent() {
    let ca = Ca::new("test ca");
    let leaf = ca.leaf(&["localhost"]);
    let config = Arc::new(leaf.server_config());
    for how in BOTH {
        for resume_with_flush in [false, true] {
            let (ca_config, config) = (ca.client_config(), config.clone());
            // 8 MiB through TLS in 4 KiB reads takes seconds in a debug build,
            // and more on a loaded CI machine: a longer watchdog.
            run_real_within(Duration::from_secs(60), move || {
                let go = Rc::new(Event::new());
                let g = go.clone();
                // Reads everything once told to, then reports size and checksum.
                let (server, port) = serve(config, move |mut s: TlsStream, _| {
                    g.wait()?;
                    let all = s.read_all()?;
                    let sum: u64 = all
                        .iter()
                        .enumerate()
                        .map(|(i, &b)| (i as u64 + 1) * b as u64)
                        .sum();
                    s.write_all(format!("{} {sum}\n", all.len()).as_bytes())?;
                    s.shutdown()
                });
                let s = connect(port, &TlsConnector::new(ca_config)).unwrap();
                s.get_ref()
                    .socket()
                    .socket()
                    .set_send_buffer_size(64 * 1024)
                    .unwrap();
                let data = Rc::new(pattern(8 << 20));
                let d = data.clone();
                let (mut s, r) = interrupted(how, s, move |s| s.write_all(&d));
                let e = expect_interrupted(how, r);
                let done = e
                    .bytes_done()
                    .expect("a cancelled write says how far it got");
                assert!(done > 0 && done < data.len(), "{how:?}: {done}");
                go.set();
                if resume_with_flush {
                    s.flush().unwrap();
                }
                s.write_all(&data[done..]).unwrap();
                s.shutdown().unwrap();
                let sum: u64 = data
                    .iter()
                    .enumerate()
                    .map(|(i, &b)| (i as u64 + 1) * b as u64)
                    .sum();
                let expected = format!("{} {sum}\n", data.len());
                assert_eq!(s.readline().unwrap(), expected.as_bytes(), "{how:?}");
                server.cancel().unwrap();
            });
        }
    }
}

#[test]
fn timeout_after_around_a_whole_exchange() {
    let ca = Ca::new("test ca");
    let leaf = ca.leaf(&["localhost"]);
    run_real(move || {
        // A server that answers after 200 ms.
        let (server, port) = serve(leaf.server_config(), |mut s: TlsStream, _| {
            let line = s.readline()?;
            curio::sleep(ms(200))?;
            s.write_all(&line)
        });
        let connector = TlsConnector::new(ca.client_config());
        let r = curio::timeout_after(ms(100), || {
            let mut s = connect(port, &connector)?;
            s.write_all(b"slow\n")?;
            s.readline()
        });
        assert!(r.unwrap_err().is_timeout());
        let r = curio::timeout_after(secs(5), || {
            let mut s = connect(port, &connector)?;
            s.write_all(b"slow\n")?;
            s.readline()
        });
        assert_eq!(r.unwrap(), b"slow\n");
        server.cancel().unwrap();
    });
}

// ---------------------------------------------------------------------------
// Peers nobody here wrote: openssl s_client and s_server
// ---------------------------------------------------------------------------

/// Runs `cmd` on a worker thread with `input` on its stdin; returns (status,
/// stdout, stderr). Killed past 20 s.
fn run_tool(mut cmd: Command, input: &'static [u8]) -> (bool, String, String) {
    let out = curio::run_in_thread(move || {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the tool");
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(input);
        });
        let pid = child.id();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(20));
            let _ = Command::new("kill").arg(pid.to_string()).status();
        });
        drop(killer);
        let out = child.wait_with_output().expect("wait for the tool");
        let _ = writer.join();
        out
    })
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn openssl_s_client_talks_to_the_server() {
    let Some(openssl) = external_tool("openssl", "openssl") else {
        return;
    };
    let ca = Ca::new("test ca");
    let leaf = ca.leaf(&["localhost"]);
    let dir = TempDir::new("s_client");
    let ca_file = ca.write(&dir.0, "ca");
    run_real(move || {
        let mut config = leaf.server_config();
        config.alpn_protocols = vec![b"curio-test".to_vec()];
        let (server, port) = serve(config, |mut s: TlsStream, _| {
            let line = s.readline()?;
            let io = s.get_ref();
            let version = format!("{:?}", io.protocol_version().unwrap());
            let alpn = String::from_utf8(io.alpn_protocol().unwrap_or_default()).unwrap();
            let said = String::from_utf8_lossy(&line).trim().to_string();
            s.write_all(format!("you said {said} over {version} with {alpn}\n").as_bytes())?;
            s.shutdown()
        });
        for version in ["-tls1_3", "-tls1_2"] {
            let mut cmd = Command::new(&openssl);
            cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
                .args(["-servername", "localhost", "-verify_return_error", "-brief"])
                .args(["-alpn", "curio-test", "-ign_eof", version])
                .arg("-CAfile")
                .arg(&ca_file);
            let (ok, out, err) = run_tool(cmd, b"hello from openssl\n");
            assert!(ok, "{version}: s_client failed:\n{out}\n{err}");
            let expected_version = if version == "-tls1_3" {
                "TLSv1_3"
            } else {
                "TLSv1_2"
            };
            assert!(
                out.contains(&format!(
                    "you said hello from openssl over {expected_version} with curio-test"
                )),
                "{version}: {out}\n{err}"
            );
            assert!(err.contains("Verification: OK"), "{version}: {err}");
        }
        server.cancel().unwrap();
    });
}

#[test]
fn the_client_talks_to_openssl_s_server() {
    let Some(openssl) = external_tool("openssl", "openssl") else {
        return;
    };
    let ca = Ca::new("test ca");
    let leaf = ca.leaf(&["localhost"]);
    let dir = TempDir::new("s_server");
    let (cert, key) = leaf.write(&dir.0, "server");
    run_real(move || {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(&openssl)
            .args(["s_server", "-accept", &format!("127.0.0.1:{port}")])
            .args(["-naccept", "1", "-rev", "-alpn", "http/1.1"])
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start openssl s_server");
        let stdout = child.stdout.take().unwrap();
        // Wait for "ACCEPT" (a probe connection would use up -naccept 1).
        let mut lines = std::io::BufReader::new(stdout);
        let ready = curio::run_in_thread(move || {
            let mut line = String::new();
            while lines.read_line(&mut line).unwrap_or(0) > 0 {
                if line.starts_with("ACCEPT") {
                    return true;
                }
                line.clear();
            }
            false
        })
        .unwrap();
        assert!(ready, "s_server did not start");
        let mut s = Connect::new("127.0.0.1", port)
            .tls_with(&TlsConnector::new(ca.client_config()))
            .server_name("localhost")
            .alpn(["http/1.1"])
            .open()
            .unwrap();
        assert_eq!(
            s.get_ref().alpn_protocol().as_deref(),
            Some(&b"http/1.1"[..])
        );
        s.write_all(b"hello openssl\n").unwrap();
        let line = curio::timeout_after(secs(5), || s.readline()).unwrap();
        assert_eq!(line, b"lssnepo olleh\n", "s_server -rev reverses each line");
        s.shutdown().unwrap();
        drop(s);
        let status = curio::run_in_thread(move || {
            let _ = child.kill();
            child.wait()
        })
        .unwrap();
        let _ = status;
        assert!(Path::new(&cert).exists());
    });
}

//! Networking over real sockets on 127.0.0.1: many clients at once (tasks and
//! OS threads), half-close, peer resets, UDP, Unix sockets, cancel and timeout
//! of accept/connect/recvfrom, the servers (`tcp_server`, `run_server`,
//! `unix_server`: panicking handlers, cancellation, closing client sockets),
//! `open_connection`, and no fd left behind after 10 000 connections.
//!
//! The tests run on the real clock under the watchdog from `common`, with short
//! timeouts. Tests that look at the whole process (stderr, the fd table) run in
//! a child process so that concurrently running tests do not disturb them.

mod common;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use curio::net::{
    ListenOptions, TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream, create_connection,
    create_connection_from, open_connection, open_connection_from, open_unix_connection,
    run_server, tcp_server, tcp_server_socket, tcp_server_socket_with, unix_server,
};
use curio::{ErrorKind, Event, Socket, State, Task};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A port nothing listens on (bound with std, then released).
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind(any_port()).unwrap();
    l.local_addr().unwrap()
}

/// Reads until end of file with plain `recv`.
fn recv_to_eof(sock: &Socket) -> curio::Result<Vec<u8>> {
    let mut all = Vec::new();
    loop {
        let chunk = sock.recv(65536)?;
        if chunk.is_empty() {
            return Ok(all);
        }
        all.extend_from_slice(&chunk);
    }
}

/// Echoes until the client closes.
fn echo<S: std::ops::Deref<Target = Socket>, A>(client: S, _addr: A) -> curio::Result<()> {
    loop {
        let data = client.recv(4096)?;
        if data.is_empty() {
            return Ok(());
        }
        client.sendall(&data)?;
    }
}

/// Starts an echo server on a free port: its task and address.
fn start_echo_server() -> (Task<curio::Result<()>>, SocketAddr) {
    let listener = tcp_server_socket(any_port(), false).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = curio::spawn(move || run_server(listener, echo));
    (server, addr)
}

/// A unique Unix socket path in the temp dir, removed on drop.
struct SockPath(PathBuf);

impl SockPath {
    fn new(tag: &str) -> SockPath {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("curio-net-{}-{tag}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&p);
        SockPath(p)
    }
}

impl Drop for SockPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[track_caller]
fn assert_io_kind<T: std::fmt::Debug>(r: curio::Result<T>, kinds: &[std::io::ErrorKind]) {
    let e = r.expect_err("expected an I/O error");
    assert_eq!(e.kind(), ErrorKind::Io, "{e:?}");
    let k = e.io_error().unwrap().kind();
    assert!(
        kinds.contains(&k),
        "got {k:?} ({e}), expected one of {kinds:?}"
    );
}

// ---------------------------------------------------------------------------
// Many clients at once
// ---------------------------------------------------------------------------

/// A client task: connects, waits for everybody, then five request/reply rounds.
fn task_client(addr: SocketAddr, i: usize, go: Rc<Event>) -> curio::Result<usize> {
    let c = TcpStream::connect(addr)?;
    go.wait()?;
    let mut st = c.as_stream();
    for round in 0..5 {
        let msg = format!("task client {i} round {round}\n");
        st.write_all(msg.as_bytes())?;
        let reply = st.readline()?;
        assert_eq!(reply, msg.as_bytes());
    }
    Ok(i)
}

/// A client on an OS thread with std's blocking sockets.
fn thread_client(addr: SocketAddr, i: usize) {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    for round in 0..5 {
        let msg = format!("thread client {i} round {round} {}", "x".repeat(i * 37));
        c.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0u8; msg.len()];
        c.read_exact(&mut back).unwrap();
        assert_eq!(back, msg.as_bytes());
    }
    c.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "the server closed after our end of file");
}

#[test]
fn echo_serves_200_task_clients_and_50_thread_clients_at_once() {
    run_real(|| {
        let (server, addr) = start_echo_server();
        let threads: Vec<_> = (0..50)
            .map(|i| std::thread::spawn(move || thread_client(addr, i)))
            .collect();
        let go = Rc::new(Event::new());
        let clients: Vec<_> = (0..200)
            .map(|i| {
                let go = go.clone();
                curio::spawn(move || task_client(addr, i, go))
            })
            .collect();
        // Let every task connect before any of them talks.
        curio::sleep(ms(20)).unwrap();
        go.set();
        for (i, c) in clients.iter().enumerate() {
            assert_eq!(c.join().unwrap().unwrap(), i);
        }
        let all_ok = curio::run_in_thread(move || {
            threads
                .into_iter()
                .map(|t| t.join().is_ok())
                .fold(true, |a, b| a & b)
        })
        .unwrap();
        assert!(all_ok, "a std client thread failed (see its panic above)");
        server.cancel().unwrap();
    });
}

// ---------------------------------------------------------------------------
// Half-close and resets
// ---------------------------------------------------------------------------

#[test]
fn after_a_half_close_the_peer_reads_eof_and_can_still_send_back() {
    run_real(|| {
        let (c, s) = tcp_pair();
        let server = curio::spawn(move || -> curio::Result<()> {
            let data = recv_to_eof(&s)?;
            // End of file seen; our own direction is still open.
            s.sendall(format!("got {} bytes: ", data.len()).as_bytes())?;
            s.sendall(&data)?;
            Ok(())
        });
        c.sendall(b"hello").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        assert_io_kind(c.send(b"too late"), &[std::io::ErrorKind::BrokenPipe]);
        assert_eq!(recv_to_eof(&c).unwrap(), b"got 5 bytes: hello");
        server.join().unwrap().unwrap();
    });
}

#[test]
fn a_half_close_through_a_stream_and_a_std_peer() {
    run_real(|| {
        let listener = TcpListener::bind(any_port()).unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut got = Vec::new();
            c.read_to_end(&mut got).unwrap(); // the curio side half-closes
            c.write_all(b"reply after eof\n").unwrap();
            got
        });
        let (s, _) = listener.accept().unwrap();
        s.sendall(b"request").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut st = s.as_stream();
        assert_eq!(st.readline().unwrap(), b"reply after eof\n");
        assert_eq!(st.readline().unwrap(), b"");
        let got = curio::run_in_thread(move || peer.join().unwrap()).unwrap();
        assert_eq!(got, b"request");
    });
}

#[test]
fn a_peer_reset_is_a_clear_io_error_and_the_kernel_goes_on() {
    run_real(|| {
        // A reader parked in recv is woken by the reset.
        let (c, s) = tcp_pair();
        let c = Rc::new(c);
        let c1 = c.clone();
        let reader = curio::spawn(move || c1.recv(100));
        until_state(&reader, State::ReadWait);
        s.socket().set_linger(Some(Duration::ZERO)).unwrap();
        drop(s); // RST
        let r = reader.join().unwrap();
        assert_io_kind(r, &[std::io::ErrorKind::ConnectionReset]);
        // A later send fails cleanly too (an error, no SIGPIPE, no hang).
        assert_io_kind(
            c.sendall(b"anyone?"),
            &[
                std::io::ErrorKind::BrokenPipe,
                std::io::ErrorKind::ConnectionReset,
            ],
        );

        // A stream's read_exactly hit by a reset after part of the data.
        let (c, s) = tcp_pair();
        s.sendall(b"part").unwrap();
        curio::sleep(ms(10)).unwrap();
        s.socket().set_linger(Some(Duration::ZERO)).unwrap();
        let mut st = c.as_stream();
        let kid = curio::spawn(move || {
            let r = st.read_exactly(100);
            (st, r)
        });
        curio::sleep(ms(10)).unwrap();
        drop(s);
        let (st, r) = kid.join().unwrap();
        let e = r.unwrap_err();
        assert_eq!(
            e.io_error().map(std::io::Error::kind),
            Some(std::io::ErrorKind::ConnectionReset),
            "{e:?}"
        );
        assert_eq!(e.bytes_done(), Some(4));
        assert_eq!(st.buffered(), b"part", "the bytes that came are kept");

        // The kernel is fine: timers and new connections work.
        curio::sleep(ms(1)).unwrap();
        let (c, s) = tcp_pair();
        c.sendall(b"still alive").unwrap();
        assert_eq!(s.recv(100).unwrap(), b"still alive");
    });
}

#[test]
fn a_server_survives_clients_that_reset() {
    run_real(|| {
        let (server, addr) = start_echo_server();
        let resetters = curio::run_in_thread(move || {
            for _ in 0..20 {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                c.write_all(b"bye").unwrap();
                socket2::SockRef::from(&c)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                drop(c);
            }
        });
        resetters.unwrap();
        curio::sleep(ms(20)).unwrap();
        let c = TcpStream::connect(addr).unwrap();
        c.sendall(b"ping").unwrap();
        assert_eq!(c.recv(10).unwrap(), b"ping");
        assert!(!server.is_terminated());
        server.cancel().unwrap();
    });
}

// ---------------------------------------------------------------------------
// Waiting on sockets and shutdown
// ---------------------------------------------------------------------------

#[test]
fn a_task_waiting_on_a_socket_for_an_os_thread_is_not_a_deadlock() {
    run_real(|| {
        let listener = TcpListener::bind(any_port()).unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            c.write_all(b"late but here").unwrap();
        });
        let (s, _) = listener.accept().unwrap();
        // Nothing else can run and no timer is armed: only the socket can
        // wake the kernel.
        assert_eq!(s.recv(100).unwrap(), b"late but here");
        curio::run_in_thread(move || peer.join().unwrap()).unwrap();
    });
}

#[test]
fn shutdown_cancels_tasks_blocked_on_sockets_and_closes_them() {
    let listener = std::net::TcpListener::bind(any_port()).unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    run_real(move || {
        for i in 0..5 {
            let seen = seen2.clone();
            curio::spawn(move || {
                let c = TcpStream::connect(addr).unwrap();
                let r = c.recv(100);
                seen.lock()
                    .unwrap()
                    .push(format!("reader {i}: {}", outcome(&r)));
                // `c` is dropped here: closed.
            });
        }
        curio::sleep(ms(50)).unwrap();
        // main returns with five tasks blocked in recv
    });
    let mut events = seen.lock().unwrap().clone();
    events.sort();
    let expected: Vec<String> = (0..5).map(|i| format!("reader {i}: Cancelled")).collect();
    assert_eq!(events, expected, "each was cancelled at shutdown");
    for _ in 0..5 {
        let (mut peer, _) = listener.accept().unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest)
            .expect("the socket was closed at shutdown (end of file, not a timeout)");
        assert!(rest.is_empty());
    }
}

// ---------------------------------------------------------------------------
// UDP
// ---------------------------------------------------------------------------

#[test]
fn udp_round_trips_with_recvfrom_and_sendto() {
    run_real(|| {
        let server = UdpSocket::bind(any_port()).unwrap();
        let saddr = server.local_addr().unwrap();
        let echo = curio::spawn(move || -> curio::Result<()> {
            let mut buf = [0u8; 2048];
            loop {
                let (n, from) = server.recvfrom(&mut buf)?;
                server.sendto(&buf[..n], from)?;
            }
        });
        let clients: Vec<_> = (0..20)
            .map(|i| {
                curio::spawn(move || -> curio::Result<()> {
                    let s = UdpSocket::bind(any_port())?;
                    let me = s.local_addr()?;
                    for round in 0..10 {
                        let msg = format!("datagram {i}/{round} from {me}");
                        assert_eq!(s.sendto(msg.as_bytes(), saddr)?, msg.len());
                        let mut buf = [0u8; 2048];
                        let (n, from) = curio::timeout_after(secs(5), || s.recvfrom(&mut buf))?;
                        assert_eq!(from, saddr);
                        assert_eq!(&buf[..n], msg.as_bytes());
                    }
                    Ok(())
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap().unwrap();
        }
        echo.cancel().unwrap();
        assert!(echo.join().unwrap().unwrap_err().is_cancelled());
    });
}

#[test]
fn udp_recvfrom_cancelled_or_timed_out_takes_nothing() {
    run_real(|| {
        for how in BOTH {
            let a = UdpSocket::bind(any_port()).unwrap();
            let b = UdpSocket::bind(any_port()).unwrap();
            let baddr = b.local_addr().unwrap();
            let (b, r) = interrupted(how, b, |b| b.recvfrom(&mut [0u8; 64]));
            expect_interrupted(how, r);
            a.sendto(b"after", baddr).unwrap();
            let mut buf = [0u8; 64];
            let (n, from) = b.recvfrom(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"after");
            assert_eq!(from, a.local_addr().unwrap());
        }
    });
}

// ---------------------------------------------------------------------------
// Unix sockets
// ---------------------------------------------------------------------------

#[test]
fn unix_server_and_open_unix_connection_echo() {
    let path = SockPath::new("server");
    let p = path.0.clone();
    run_real(move || {
        let p2 = p.clone();
        let server = curio::spawn(move || unix_server(&p2, echo));
        // unix_server binds when its task first runs.
        curio::yield_now().unwrap();
        assert!(p.exists(), "the socket file exists");
        let clients: Vec<_> = (0..20)
            .map(|i| {
                let p = p.clone();
                curio::spawn(move || -> curio::Result<()> {
                    let c = open_unix_connection(&p)?;
                    let mut st = c.as_stream();
                    for round in 0..3 {
                        let msg = format!("unix {i} {round}\n");
                        st.write_all(msg.as_bytes())?;
                        assert_eq!(st.readline()?, msg.as_bytes());
                    }
                    Ok(())
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap().unwrap();
        }
        server.cancel().unwrap();
        let r = open_unix_connection(&p);
        assert!(r.is_err(), "the listener is closed: {r:?}");
    });
}

#[test]
fn unix_listener_accept_interrupted_then_usable_and_pair() {
    let path = SockPath::new("accept");
    let p = path.0.clone();
    run_real(move || {
        let listener = UnixListener::bind(&p).unwrap();
        let again = UnixListener::bind(&p);
        assert_io_kind(again, &[std::io::ErrorKind::AddrInUse]);
        let mut listener = listener;
        for how in BOTH {
            let (l, r) = interrupted(how, listener, |l| l.accept().map(|_| ()));
            expect_interrupted(how, r);
            listener = l;
        }
        let c = UnixStream::connect(&p).unwrap();
        let (s, _) = listener.accept().unwrap();
        c.sendall(b"over unix").unwrap();
        assert_eq!(s.recv(100).unwrap(), b"over unix");

        let (a, b) = UnixStream::pair().unwrap();
        let kid = curio::spawn(move || echo(b, ()));
        for i in 0..100 {
            let msg = format!("pair message {i}");
            a.sendall(msg.as_bytes()).unwrap();
            let mut got = Vec::new();
            while got.len() < msg.len() {
                got.extend(a.recv(100).unwrap());
            }
            assert_eq!(got, msg.as_bytes());
        }
        drop(a);
        kid.join().unwrap().unwrap();
    });
}

// ---------------------------------------------------------------------------
// accept and connect: cancel and timeout
// ---------------------------------------------------------------------------

#[test]
fn accept_cancelled_or_timed_out_accepts_nothing_and_the_listener_stays_usable() {
    run_real(|| {
        let mut listener = TcpListener::bind(any_port()).unwrap();
        let addr = listener.local_addr().unwrap();
        for how in BOTH {
            let (l, r) = interrupted(how, listener, |l| l.accept().map(|_| ()));
            expect_interrupted(how, r);
            listener = l;
            let c = TcpStream::connect(addr).unwrap();
            let (s, peer) = listener.accept().unwrap();
            assert_eq!(peer, c.local_addr().unwrap());
            s.sendall(b"accepted").unwrap();
            assert_eq!(c.recv(100).unwrap(), b"accepted");
        }
        let r = curio::timeout_after(Duration::ZERO, || listener.accept());
        assert!(r.unwrap_err().is_timeout());
    });
}

/// A listener whose accept queue is full (backlog 0, never accepted), so a
/// further connect stays in progress: (listener, the connections filling it,
/// its address). Kept alive by the caller.
fn black_hole() -> (socket2::Socket, Vec<socket2::Socket>, SocketAddr) {
    use socket2::{Domain, Socket, Type};
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    l.bind(&any_port().into()).unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    let fillers = (0..4)
        .map(|_| {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            s.set_nonblocking(true).unwrap();
            let _ = s.connect(&addr.into());
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    (l, fillers, addr)
}

#[test]
fn connect_cancelled_or_timed_out_while_in_progress() {
    run_real(|| {
        let (_hole, _fillers, addr) = black_hole();
        for how in BOTH {
            let ((), r) = interrupted(how, (), move |_| TcpStream::connect(addr).map(|_| ()));
            expect_interrupted(how, r);
        }
        let r = curio::timeout_after(Duration::ZERO, || TcpStream::connect(addr));
        assert!(r.unwrap_err().is_timeout());
        let r = curio::timeout_after(Duration::ZERO, || create_connection(&[addr]));
        assert!(r.unwrap_err().is_timeout());
        // With a source address, and through a name lookup.
        let source: SocketAddr = "127.0.0.1:0".parse().unwrap();
        for how in BOTH {
            let ((), r) = interrupted(how, (), move |_| {
                TcpStream::connect_from(addr, source).map(|_| ())
            });
            expect_interrupted(how, r);
            let ((), r) = interrupted(how, (), move |_| {
                create_connection_from(&[addr], source).map(|_| ())
            });
            expect_interrupted(how, r);
            let ((), r) = interrupted(how, (), move |_| {
                open_connection_from("localhost", addr.port(), source).map(|_| ())
            });
            expect_interrupted(how, r);
        }
        let r = curio::timeout_after(Duration::ZERO, || curio::net::resolve("localhost", 1));
        assert!(r.unwrap_err().is_timeout());

        // The kernel and the sockets layer are fine afterwards.
        let (c, s) = tcp_pair();
        c.sendall(b"ok").unwrap();
        assert_eq!(s.recv(10).unwrap(), b"ok");
    });
}

#[test]
fn connect_to_a_closed_port_is_refused() {
    run_real(|| {
        let r = TcpStream::connect(closed_port());
        assert_io_kind(r, &[std::io::ErrorKind::ConnectionRefused]);
        let r = create_connection(&[]);
        assert_eq!(r.unwrap_err().kind(), ErrorKind::Io);
    });
}

// ---------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------

#[test]
fn run_server_closes_the_client_socket_after_the_handler_returns() {
    run_real(|| {
        let listener = tcp_server_socket(any_port(), false).unwrap();
        let addr = listener.local_addr().unwrap();
        // The handler answers, then returns Ok or an error: either way the
        // server closes the connection and goes on.
        let server = curio::spawn(move || {
            run_server(listener, |client: TcpStream, _| -> curio::Result<()> {
                let mut st = client.as_stream();
                let line = st.readline()?;
                st.write_all(b"bye\n")?;
                if line == b"fail\n" {
                    return Err(curio::Error::other("asked to fail"));
                }
                Ok(())
            })
        });
        for request in [&b"plain\n"[..], b"fail\n", b"plain\n"] {
            let c = TcpStream::connect(addr).unwrap();
            c.sendall(request).unwrap();
            let got = curio::timeout_after(secs(5), || recv_to_eof(&c)).unwrap();
            assert_eq!(got, b"bye\n", "answer, then end of file");
        }
        assert!(!server.is_terminated());
        server.cancel().unwrap();
    });
}

/// The handler of `a_failed_handler_is_reported_with_its_task_peer_and_error`.
fn line_or_fail(client: TcpStream, _: SocketAddr) -> curio::Result<()> {
    let mut st = client.as_stream();
    st.set_max_line(16);
    let line = st.readline()?; // an over-long line is an error
    st.write_all(&line)
}

#[test]
fn a_failed_handler_is_reported_with_its_task_peer_and_error() {
    const CHILD: &str = "CURIO_TEST_HANDLER_FAILURE";
    if in_child(CHILD) {
        run_real(|| {
            let listener = tcp_server_socket(any_port(), false).unwrap();
            let addr = listener.local_addr().unwrap();
            let server = curio::spawn(move || run_server(listener, line_or_fail));
            // A good client, a client that sends an over-long line, and one
            // that is cancelled by the server's end: only the second is reported.
            let good = TcpStream::connect(addr).unwrap();
            good.sendall(b"short\n").unwrap();
            assert_eq!(recv_to_eof(&good).unwrap(), b"short\n");
            let bad = TcpStream::connect(addr).unwrap();
            bad.sendall(b"a line far longer than sixteen bytes\n")
                .unwrap();
            // Closed after the failure (with a reset: it left bytes unread).
            let end = recv_to_eof(&bad);
            assert!(end.as_ref().map_or(true, |got| got.is_empty()), "{end:?}");
            println!("bad peer {}", bad.local_addr().unwrap());
            let idle = TcpStream::connect(addr).unwrap();
            curio::sleep(ms(50)).unwrap();
            server.cancel().unwrap();
            assert_eq!(recv_to_eof(&idle).unwrap(), b"");
        });
        return;
    }
    let out = run_test_in_child(
        "a_failed_handler_is_reported_with_its_task_peer_and_error",
        CHILD,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let peer = stdout
        .lines()
        .find_map(|l| Some(l.split_once("bad peer ")?.1))
        .unwrap_or_else(|| panic!("the child names the bad peer:\n{stdout}\n{stderr}"));
    let reports: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("curio: task crash:"))
        .collect();
    assert_eq!(reports.len(), 1, "{stderr}");
    assert!(
        reports[0].starts_with("curio: task crash: Task(id=")
            && reports[0].ends_with(", name='net::line_or_fail', state=RUNNING) failed:"),
        "{stderr}"
    );
    let expected = format!("serving {peer}: line longer than 16 bytes");
    assert!(
        stderr.contains(&expected),
        "wanted {expected:?} in:\n{stderr}"
    );
}

#[test]
fn tcp_server_serves_on_the_given_address() {
    run_real(|| {
        let addr = closed_port(); // free a moment ago
        let server = curio::spawn(move || tcp_server(addr, echo));
        curio::yield_now().unwrap(); // it binds when it first runs
        let c = TcpStream::connect(addr).unwrap();
        c.sendall(b"tcp_server").unwrap();
        assert_eq!(c.recv(100).unwrap(), b"tcp_server");
        server.cancel().unwrap();
        let e = server.join().unwrap().unwrap_err();
        assert!(e.is_cancelled(), "{e:?}");
    });
}

#[test]
fn cancelling_the_server_closes_the_listener_and_cancels_every_handler() {
    run_real(|| {
        let log = Log::new();
        let listener = tcp_server_socket(any_port(), false).unwrap();
        let addr = listener.local_addr().unwrap();
        let l = log.clone();
        let server = curio::spawn(move || {
            let l = l.clone();
            run_server(listener, move |client: TcpStream, _| -> curio::Result<()> {
                l.push("handler waits");
                let r = client.recv(100);
                l.push(format!("handler: {}", outcome(&r)));
                if r.as_ref().is_err_and(|e| e.is_cancelled()) {
                    // Cleanup may still do I/O.
                    client.sendall(b"goodbye")?;
                }
                r.map(drop)
            })
        });
        let clients: Vec<TcpStream> = (0..10).map(|_| TcpStream::connect(addr).unwrap()).collect();
        for _ in 0..2000 {
            if log.events().len() == 10 {
                break;
            }
            curio::sleep(ms(1)).unwrap();
        }
        assert_eq!(
            log.events().len(),
            10,
            "every handler started: {:?}",
            log.events()
        );

        server.cancel().unwrap();
        let e = server.join().unwrap().unwrap_err();
        assert!(e.is_cancelled(), "{e:?}");
        let mut events = log.events();
        events.sort();
        let mut expected = vec!["handler waits"; 10];
        expected.extend(vec!["handler: Cancelled"; 10]);
        expected.sort();
        assert_events(&events, &expected);

        // Every client got the goodbye and then end of file.
        for c in &clients {
            let got = curio::timeout_after(secs(5), || recv_to_eof(c)).unwrap();
            assert_eq!(got, b"goodbye");
        }
        // Nobody listens any more.
        assert_io_kind(
            TcpStream::connect(addr),
            &[std::io::ErrorKind::ConnectionRefused],
        );
    });
}

const CHILD_ENV: &str = "CURIO_NET_TEST_CHILD";

#[test]
fn a_panicking_handler_is_reported_and_the_server_goes_on() {
    if in_child(CHILD_ENV) {
        run_real(|| {
            let listener = tcp_server_socket(any_port(), false).unwrap();
            let addr = listener.local_addr().unwrap();
            let server = curio::spawn(move || {
                run_server(listener, |client: TcpStream, _| -> curio::Result<()> {
                    let mut st = client.as_stream();
                    let line = st.readline()?;
                    if line == b"panic\n" {
                        panic!("handler boom on purpose");
                    }
                    st.write_all(&line)
                })
            });
            for request in [
                &b"echo 1\n"[..],
                b"panic\n",
                b"echo 2\n",
                b"panic\n",
                b"echo 3\n",
            ] {
                let c = TcpStream::connect(addr).unwrap();
                c.sendall(request).unwrap();
                let got = curio::timeout_after(secs(5), || recv_to_eof(&c)).unwrap();
                if request == b"panic\n" {
                    assert_eq!(got, b"", "the crashed handler's socket is closed");
                } else {
                    assert_eq!(got, request, "the server goes on after a crash");
                }
            }
            assert!(!server.is_terminated());
            server.cancel().unwrap();
        });
        return;
    }
    let out = run_test_in_child(
        "a_panicking_handler_is_reported_and_the_server_goes_on",
        CHILD_ENV,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the child failed:\n{stderr}");
    assert_eq!(
        stderr.matches("curio: task crash").count(),
        2,
        "each crash is reported:\n{stderr}"
    );
    assert!(stderr.contains("handler boom on purpose"), "{stderr}");
}

// ---------------------------------------------------------------------------
// open_connection and create_connection
// ---------------------------------------------------------------------------

#[test]
fn open_connection_resolves_localhost_on_a_worker_thread() {
    run_real(|| {
        let (server, addr) = start_echo_server();
        let port = addr.port();
        let opener = curio::spawn(move || open_connection("localhost", port));
        curio::yield_now().unwrap();
        assert_eq!(
            opener.state(),
            State::FutureWait,
            "the task waits for a worker thread while the name resolves"
        );
        let c = opener.join().unwrap().unwrap();
        assert_eq!(c.peer_addr().unwrap(), addr);
        c.sendall(b"via localhost").unwrap();
        assert_eq!(c.recv(100).unwrap(), b"via localhost");

        let c = open_connection("127.0.0.1", port).unwrap();
        c.sendall(b"via numbers").unwrap();
        assert_eq!(c.recv(100).unwrap(), b"via numbers");

        // The first address refuses; the second answers.
        let c = create_connection(&[closed_port(), addr]).unwrap();
        assert_eq!(c.peer_addr().unwrap(), addr);

        let r = curio::timeout_after(Duration::ZERO, || open_connection("localhost", port));
        assert!(r.unwrap_err().is_timeout());
        server.cancel().unwrap();
    });
}

// ---------------------------------------------------------------------------
// No fd left behind
// ---------------------------------------------------------------------------

const FD_CHILD_ENV: &str = "CURIO_NET_FD_CHILD";

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The fd-leak handler: "echo" answers and returns; "wait" waits for end of
/// file (or the server's cancellation); anything else returns at once.
fn leak_handler(client: TcpStream, _: SocketAddr) -> curio::Result<()> {
    let mut st = client.as_stream();
    let line = st.readline()?;
    match &line[..] {
        b"echo\n" => st.write_all(&line),
        b"wait\n" => st.readline().map(drop),
        _ => Ok(()),
    }
}

/// One of the 10 000 clients; some are cancelled or time out on the way. Some
/// connections are handed back to be held open until the server is cancelled.
fn leak_client(addr: SocketAddr, n: usize) -> curio::Result<Option<TcpStream>> {
    match n % 10 {
        0 => match curio::timeout_after(Duration::ZERO, || TcpStream::connect(addr)) {
            Ok(_) => {}
            Err(e) => assert!(e.is_timeout(), "{e:?}"),
        },
        1 => {
            let c = TcpStream::connect(addr)?;
            c.sendall(b"wait\n")?;
            let r = curio::timeout_after(ms(1), || c.recv(10));
            assert!(r.unwrap_err().is_timeout());
        }
        2 => {
            let c = TcpStream::connect(addr)?;
            c.sendall(b"wait\n")?;
            let kid = curio::spawn(move || c.recv(10));
            curio::yield_now()?;
            kid.cancel()?;
            assert!(kid.join()?.unwrap_err().is_cancelled());
        }
        3 if n % 100 == 3 => {
            let c = TcpStream::connect(addr)?;
            c.sendall(b"wait\n")?;
            return Ok(Some(c));
        }
        4 => drop(TcpStream::connect(addr)?),
        5 => {
            let c = TcpStream::connect(addr)?;
            c.sendall(b"echo\n")?;
            c.socket().set_linger(Some(Duration::ZERO))?;
        }
        _ => {
            let c = TcpStream::connect(addr)?;
            c.sendall(b"echo\n")?;
            assert_eq!(recv_to_eof(&c)?, b"echo\n");
        }
    }
    Ok(None)
}

#[test]
fn no_fd_is_left_open_after_10000_connections_with_cancellations() {
    if in_child(FD_CHILD_ENV) {
        let before = open_fds();
        let held = run_real(|| {
            let listener = tcp_server_socket(any_port(), false).unwrap();
            let addr = listener.local_addr().unwrap();
            let server = curio::spawn(move || run_server(listener, leak_handler));
            let held = Rc::new(RefCell::new(Vec::new()));
            for batch in 0..100 {
                let clients: Vec<_> = (0..100)
                    .map(|i| curio::spawn(move || leak_client(addr, batch * 100 + i)))
                    .collect();
                for c in clients {
                    held.borrow_mut().extend(c.join().unwrap().unwrap());
                }
            }
            let held = held.take();
            assert_eq!(held.len(), 100);
            // The held connections' handlers are cancelled with the server.
            server.cancel().unwrap();
            for c in &held {
                assert_eq!(recv_to_eof(c).unwrap(), b"");
            }
            held.len()
        });
        let after = open_fds();
        assert_eq!(held, 100);
        assert_eq!(
            before, after,
            "fds open before and after 10 000 connections"
        );
        return;
    }
    let out = run_test_in_child(
        "no_fd_is_left_open_after_10000_connections_with_cancellations",
        FD_CHILD_ENV,
    );
    assert!(
        out.status.success(),
        "the child failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// Source addresses, taking the fd out, split streams (issue 11, item 5)
// ---------------------------------------------------------------------------

#[test]
fn create_connection_and_open_connection_bind_the_source_address() {
    run_real(|| {
        let listener = TcpListener::bind(any_port()).unwrap();
        let addr = listener.local_addr().unwrap();
        let source: SocketAddr = "127.0.0.2:0".parse().unwrap();
        let c = create_connection_from(&[addr], source).unwrap();
        let (s, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), source.ip(), "the server sees the source address");
        assert_eq!(c.local_addr().unwrap().ip(), source.ip());
        drop((c, s));

        let c =
            open_connection_from("localhost", addr.port(), "127.0.0.3:0".parse().unwrap()).unwrap();
        let (_s, peer) = listener.accept().unwrap();
        assert_eq!(peer.to_string().split(':').next(), Some("127.0.0.3"));
        drop(c);

        // A source of the other family cannot reach this address: the error of
        // the last address tried comes back.
        let e = create_connection_from(&[addr], "[::1]:0".parse().unwrap()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io, "{e:?}");
    });
}

#[test]
fn taking_the_fd_out_deregisters_it_and_leaves_it_open() {
    run_real(|| {
        let (c, s) = tcp_pair();
        // Make the kernel register s (a wait), then take its fd out.
        let r = curio::timeout_after(ms(20), || s.recv(10));
        assert!(r.unwrap_err().is_timeout());
        let fd_before = s.fileno();
        let raw: std::os::fd::OwnedFd = s.into_socket().into();
        use std::os::fd::AsRawFd;
        assert_eq!(raw.as_raw_fd(), fd_before, "the same fd, not closed");
        // Wrapped again in the same kernel, it registers afresh (a stale
        // registration would make that fail) and works.
        let s2 = TcpStream::from_std(std::net::TcpStream::from(raw)).unwrap();
        let r = curio::timeout_after(ms(20), || s2.recv(10));
        assert!(
            r.unwrap_err().is_timeout(),
            "the wait registered the fd again"
        );
        c.sendall(b"still open").unwrap();
        assert_eq!(s2.recv(100).unwrap(), b"still open");

        // into_std hands a blocking std stream to synchronous code on a thread.
        let std_stream = s2.into_std().unwrap();
        let t = std::thread::spawn(move || {
            let mut s = std_stream;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).unwrap();
            s.write_all(b"back").unwrap();
            buf
        });
        c.sendall(b"sync").unwrap();
        assert_eq!(c.recv(100).unwrap(), b"back");
        assert_eq!(
            &curio::run_in_thread(move || t.join().unwrap()).unwrap(),
            b"sync"
        );
    });
}

#[test]
fn a_split_stream_reads_lines_in_one_task_while_another_writes() {
    run_real(|| {
        let (c, s) = tcp_pair();
        let (mut reader, mut writer) = s.into_split();
        let log = Log::new();
        let l = log.clone();
        // The reader waits in readline while the writer, in another task, writes.
        let reading = curio::spawn(move || -> curio::Result<()> {
            let line = reader.readline()?;
            l.push(format!("reader got {:?}", String::from_utf8_lossy(&line)));
            Ok(())
        });
        curio::sleep(ms(10)).unwrap();
        assert_eq!(reading.state(), State::ReadWait);
        let l = log.clone();
        let writing = curio::spawn(move || -> curio::Result<()> {
            writer.write_all(b"hello from the writer\n")?;
            l.push("writer wrote");
            Ok(())
        });
        writing.join().unwrap().unwrap();
        let mut cs = c.as_stream();
        assert_eq!(cs.readline().unwrap(), b"hello from the writer\n");
        cs.write_all(b"hello to the reader\n").unwrap();
        reading.join().unwrap().unwrap();
        log.assert_eq(&["writer wrote", "reader got \"hello to the reader\\n\""]);
    });
}

#[test]
fn a_split_socket_closes_when_both_halves_are_gone_and_a_cancelled_reader_loses_nothing() {
    run_real(|| {
        for how in BOTH {
            let (c, s) = tcp_pair();
            let (reader, writer) = s.into_split();
            c.sendall(b"part").unwrap();
            let (mut reader, r) = interrupted(how, reader, |r| r.readline());
            expect_interrupted(how, r);
            assert_eq!(
                reader.buffered(),
                b"part",
                "{how:?}: kept for the next read"
            );
            drop(writer);
            let r = curio::timeout_after(ms(20), || c.recv(10));
            assert!(
                r.unwrap_err().is_timeout(),
                "{how:?}: the read half keeps it open"
            );
            c.sendall(b"ial\n").unwrap();
            assert_eq!(reader.readline().unwrap(), b"partial\n");
            drop(reader);
            assert_eq!(
                c.recv(10).unwrap(),
                b"",
                "{how:?}: closed with its last half"
            );
        }
    });
}

/// A chat server written the way a newcomer would: each client's handler
/// splits its connection, a task of its own writes what others say, the
/// handler reads lines and hands each to every other client's queue.
#[test]
fn a_chat_server_with_split_streams() {
    type Clients = Rc<RefCell<Vec<(u64, Rc<curio::Queue<Vec<u8>>>)>>>;

    fn chat_client(client: TcpStream, _addr: SocketAddr, clients: Clients) -> curio::Result<()> {
        let me = curio::current_task().id();
        let (mut reader, mut writer) = client.into_split();
        let outbox = Rc::new(curio::Queue::new(0));
        clients.borrow_mut().push((me, outbox.clone()));
        let out = outbox.clone();
        let sender = curio::spawn(move || -> curio::Result<()> {
            loop {
                let msg: Vec<u8> = out.get()?;
                writer.write_all(&msg)?;
            }
        });
        for line in reader.lines() {
            let line = line?;
            for (id, q) in clients.borrow().iter() {
                if *id != me {
                    let _ = q.try_put(line.clone());
                }
            }
        }
        clients.borrow_mut().retain(|(id, _)| *id != me);
        sender.cancel()?;
        Ok(())
    }

    run_real(|| {
        let listener = tcp_server_socket(any_port(), false).unwrap();
        let addr = listener.local_addr().unwrap();
        let clients: Clients = Rc::default();
        let server = curio::spawn(move || {
            run_server(listener, move |c, a| chat_client(c, a, clients.clone()))
        });
        let people = ["ann", "bob", "cy"];
        let mut streams: Vec<_> = people
            .iter()
            .map(|_| TcpStream::connect(addr).unwrap().as_stream())
            .collect();
        curio::sleep(ms(50)).unwrap(); // everyone has joined
        for (name, s) in people.iter().zip(streams.iter_mut()) {
            s.write_all(format!("{name}: hi\n").as_bytes()).unwrap();
        }
        for (name, s) in people.iter().zip(streams.iter_mut()) {
            let mut heard: Vec<String> = (0..2)
                .map(|_| String::from_utf8(s.readline().unwrap()).unwrap())
                .collect();
            heard.sort();
            let expected: Vec<String> = people
                .iter()
                .filter(|p| *p != name)
                .map(|p| format!("{p}: hi\n"))
                .collect();
            assert_eq!(heard, expected, "what {name} heard");
        }
        drop(streams);
        server.cancel().unwrap();
    });
}

// ---------------------------------------------------------------------------
// Listen backlog (issue 11, item 6)
// ---------------------------------------------------------------------------

/// How many of `n` connections to a listener that never accepts complete
/// within 300 ms.
fn connections_completed(listener: &TcpListener, n: usize) -> usize {
    let addr = listener.local_addr().unwrap();
    let tries: Vec<_> = (0..n)
        .map(|_| {
            curio::spawn(move || curio::timeout_after(ms(300), || TcpStream::connect(addr)).ok())
        })
        .collect();
    let conns: Vec<_> = tries.iter().filter_map(|t| t.join().unwrap()).collect();
    conns.len()
}

#[test]
fn tcp_server_socket_takes_a_listen_backlog() {
    run_real(|| {
        let small = tcp_server_socket_with(any_port(), ListenOptions::new().backlog(1)).unwrap();
        let done = connections_completed(&small, 6);
        assert!(
            done <= 2,
            "with a backlog of 1, {done} connections completed without an accept"
        );
        let default = tcp_server_socket_with(any_port(), ListenOptions::new()).unwrap();
        assert_eq!(connections_completed(&default, 6), 6);
        let e = ListenOptions::new().backlog(0);
        assert_eq!(e.get_backlog(), 1, "a backlog of 0 is raised to 1");
    });
}

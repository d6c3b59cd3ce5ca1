//! Message channels: framed, typed messages between two processes; the
//! handshake refuses a wrong key; a huge length prefix, a truncated frame and
//! an interrupted receive are clear and lose nothing (`curio-reference.md`
//! §18).

mod common;

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Instant;

use common::*;
use curio::channel::{Address, Channel, Connection};
use curio::net::{TcpListener, TcpStream, UnixStream};
use curio::{ErrorKind, Socket};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
enum Command {
    Fib(u64),
    Say { text: String, times: u8 },
    Stop,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Reply {
    to: Command,
    result: Vec<String>,
}

fn answer(cmd: &Command) -> Vec<String> {
    match cmd {
        Command::Fib(n) => vec![
            (1..=*n)
                .fold((0u64, 1u64), |(a, b), _| (b, a + b))
                .0
                .to_string(),
        ],
        Command::Say { text, times } => vec![text.clone(); *times as usize],
        Command::Stop => vec!["bye".into()],
    }
}

const PEER_ENV: &str = "CURIO_TEST_CHANNEL_PEER";
const ADDR_ENV: &str = "CURIO_TEST_CHANNEL_ADDR";
const KEY: &[u8] = b"the key both processes hold";

/// A connected pair of connections over a Unix socketpair.
fn conn_pair() -> (Connection, Connection) {
    let (a, b) = UnixStream::pair().unwrap();
    (
        Connection::new(a.into_socket().as_stream()),
        Connection::new(b.into_socket().as_stream()),
    )
}

/// A connection and the raw socket of its peer, for writing broken frames.
fn conn_and_raw() -> (Connection, Socket) {
    let (a, b) = UnixStream::pair().unwrap();
    (
        Connection::new(a.into_socket().as_stream()),
        b.into_socket(),
    )
}

fn io_kind(e: &curio::Error) -> std::io::ErrorKind {
    e.io_error()
        .map_or(std::io::ErrorKind::Other, |io| io.kind())
}

// ---------------------------------------------------------------------------
// Between two processes
// ---------------------------------------------------------------------------

/// The peer process: this test binary re-run with only this test and
/// `PEER_ENV` set. It connects to the address in `ADDR_ENV` and answers
/// commands until `Stop`. Run directly, it does nothing.
#[test]
fn channel_peer_process() {
    if !in_child(PEER_ENV) {
        return;
    }
    let addr = std::env::var(ADDR_ENV).unwrap();
    let address = match addr.parse::<SocketAddr>() {
        Ok(a) => Address::Tcp(a),
        Err(_) => Address::Unix(addr.into()),
    };
    run_real(move || {
        let mut conn = Channel::new(address, KEY).unwrap().connect().unwrap();
        loop {
            let cmd: Command = conn.recv().unwrap();
            let result = answer(&cmd);
            conn.send(&Reply {
                to: cmd.clone(),
                result,
            })
            .unwrap();
            if cmd == Command::Stop {
                return;
            }
        }
    });
}

/// Serves the peer process over `channel` and checks each typed round trip.
fn talk_to_peer_process(mut channel: Channel) {
    channel.bind().unwrap();
    let addr = channel.address().to_string();
    let peer = curio::spawn(move || {
        curio::run_in_thread(move || {
            run_test_in_child_with("channel_peer_process", PEER_ENV, &[(ADDR_ENV, &addr)])
        })
    });
    let mut conn = channel.accept().unwrap();
    let commands = [
        Command::Fib(50),
        Command::Say {
            text: "héllo".into(),
            times: 3,
        },
        Command::Say {
            text: "x".repeat(100_000),
            times: 2,
        },
        Command::Stop,
    ];
    for cmd in commands {
        conn.send(&cmd).unwrap();
        let reply: Reply = conn.recv().unwrap();
        assert_eq!(reply.result, answer(&cmd));
        assert_eq!(reply.to, cmd);
    }
    let out = peer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "the peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The peer closed its end: a clean end of stream, before any frame.
    let e = conn.recv_bytes().unwrap_err();
    assert_eq!(io_kind(&e), std::io::ErrorKind::UnexpectedEof);
    assert_eq!(e.bytes_done(), Some(0));
}

#[test]
fn typed_round_trips_with_another_process_over_tcp() {
    run_real(|| talk_to_peer_process(Channel::new(any_port(), KEY).unwrap()));
}

#[test]
fn typed_round_trips_with_another_process_over_a_unix_socket() {
    let path = std::env::temp_dir().join(format!("curio-channel-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let p = path.clone();
    run_real(move || talk_to_peer_process(Channel::new(p.as_path(), KEY).unwrap()));
    assert!(!path.exists(), "the channel removed its socket file");
}

// ---------------------------------------------------------------------------
// The handshake
// ---------------------------------------------------------------------------

#[test]
fn a_wrong_key_fails_both_sides_and_the_server_keeps_accepting() {
    run_real(|| {
        let mut server = Channel::new(any_port(), KEY).unwrap();
        server.bind().unwrap();
        let addr = server.address().clone();
        let accepted = curio::spawn(move || {
            let mut conn = server.accept()?;
            conn.recv::<String>()
        });

        let e = Channel::new(addr.clone(), b"not the key")
            .unwrap()
            .connect()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AuthenticationFailed, "{e}");
        assert!(e.to_string().contains("rejected our digest"), "{e}");
        assert!(
            !accepted.is_terminated(),
            "accept did not return the impostor"
        );

        let mut good = Channel::new(addr, KEY).unwrap().connect().unwrap();
        good.send(&"hello".to_string()).unwrap();
        assert_eq!(accepted.join().unwrap().unwrap(), "hello");
    });
}

#[test]
fn the_server_side_of_a_wrong_key_is_an_authentication_error() {
    run_real(|| {
        let (mut a, mut b) = conn_pair();
        let client = curio::spawn(move || b.authenticate_client(b"other key"));
        let e = a.authenticate_server(KEY).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AuthenticationFailed);
        assert!(e.to_string().contains("digest was wrong"), "{e}");
        let e = client.join().unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AuthenticationFailed);
    });
}

#[test]
fn matching_keys_authenticate_both_ways() {
    run_real(|| {
        let (mut a, mut b) = conn_pair();
        let client = curio::spawn(move || {
            b.authenticate_client(KEY)?;
            b.recv::<u32>()
        });
        a.authenticate_server(KEY).unwrap();
        a.send(&7u32).unwrap();
        assert_eq!(client.join().unwrap().unwrap(), 7);
    });
}

#[test]
fn a_peer_that_never_answers_times_out_on_both_sides() {
    run_real(|| {
        // A server that accepts and says nothing.
        let listener = TcpListener::bind(any_port()).unwrap();
        let addr = listener.local_addr().unwrap();
        let silent = curio::spawn(move || -> curio::Result<()> {
            let (c, _) = listener.accept()?;
            curio::sleep(secs(5))?;
            drop(c);
            Ok(())
        });
        let mut ch = Channel::new(addr, KEY).unwrap();
        ch.set_auth_timeout(ms(100));
        let start = Instant::now();
        let e = ch.connect().unwrap_err();
        assert_eq!(io_kind(&e), std::io::ErrorKind::TimedOut, "{e}");
        assert!(start.elapsed() < secs(2));
        silent.cancel().unwrap();

        // A client that connects and says nothing is dropped by accept,
        // which then serves the next one.
        let mut server = Channel::new(any_port(), KEY).unwrap();
        server.set_auth_timeout(ms(100));
        server.bind().unwrap();
        let Address::Tcp(addr) = server.address().clone() else {
            unreachable!()
        };
        let mute = TcpStream::connect(addr).unwrap();
        let accepted = curio::spawn(move || {
            let mut c = server.accept()?;
            c.recv::<u8>()
        });
        curio::sleep(ms(200)).unwrap();
        let mut good = Channel::new(addr, KEY).unwrap().connect().unwrap();
        good.send(&9u8).unwrap();
        assert_eq!(accepted.join().unwrap().unwrap(), 9);
        drop(mute);
    });
}

#[test]
fn an_empty_key_is_refused() {
    let e = Channel::new(any_port(), b"").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Usage);
}

// ---------------------------------------------------------------------------
// Broken frames
// ---------------------------------------------------------------------------

#[test]
fn a_4_gib_length_prefix_is_refused_at_once_without_allocating() {
    run_real(|| {
        let (mut conn, raw) = conn_and_raw();
        raw.sendall(&[0xff, 0xff, 0xff, 0xff]).unwrap();
        let start = Instant::now();
        let e = conn.recv_bytes().unwrap_err();
        assert_eq!(io_kind(&e), std::io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("4294967295 bytes"), "{e}");
        assert!(e.to_string().contains("set_max_message"), "{e}");
        assert!(start.elapsed() < ms(100), "it did not wait for the payload");
        assert!(
            conn.get_ref().buffered().len() <= 4,
            "nothing allocated for it"
        );
        // It stays refused.
        assert_eq!(
            io_kind(&conn.recv_bytes().unwrap_err()),
            std::io::ErrorKind::InvalidData
        );
    });
}

#[test]
fn the_size_limit_is_configurable() {
    run_real(|| {
        let (mut a, mut b) = conn_pair();
        b.set_max_message(10);
        a.send_bytes(b"0123456789").unwrap();
        assert_eq!(b.recv_bytes().unwrap(), b"0123456789");
        a.send_bytes(b"0123456789A").unwrap();
        let e = b.recv_bytes().unwrap_err();
        assert!(e.to_string().contains("11 bytes"), "{e}");
        assert!(e.to_string().contains("limit of 10 bytes"), "{e}");
    });
}

#[test]
fn a_peer_that_closes_mid_frame_is_an_end_of_file_error() {
    run_real(|| {
        let (mut conn, raw) = conn_and_raw();
        raw.sendall(&100u32.to_be_bytes()).unwrap();
        raw.sendall(&[1u8; 10]).unwrap();
        drop(raw);
        let e = conn.recv_bytes().unwrap_err();
        assert_eq!(io_kind(&e), std::io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("after 14 of the 104 bytes"), "{e}");
        assert_eq!(e.bytes_done(), Some(14));

        let (mut conn, raw) = conn_and_raw();
        raw.sendall(&[0, 0]).unwrap();
        drop(raw);
        let e = conn.recv_bytes().unwrap_err();
        assert_eq!(io_kind(&e), std::io::ErrorKind::UnexpectedEof);
        assert_eq!(e.bytes_done(), Some(2));
    });
}

#[test]
fn a_message_that_is_not_the_type_is_an_invalid_data_error() {
    run_real(|| {
        let (mut a, mut b) = conn_pair();
        a.send_bytes(&[0xff; 3]).unwrap();
        let e = b.recv::<Command>().unwrap_err();
        assert_eq!(io_kind(&e), std::io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("Command"), "{e}");
        // The bad message was consumed; the next one arrives.
        a.send(&Command::Stop).unwrap();
        assert_eq!(b.recv::<Command>().unwrap(), Command::Stop);
    });
}

// ---------------------------------------------------------------------------
// Cancellation
// ---------------------------------------------------------------------------

#[test]
fn an_interrupted_recv_loses_nothing() {
    for how in BOTH {
        run_real(move || {
            let (conn, raw) = conn_and_raw();
            let msg = postcard_bytes(&Command::Say {
                text: "whole".into(),
                times: 2,
            });
            let mut frame = (msg.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&msg);
            // Half a frame arrives, then the receive is interrupted.
            raw.sendall(&frame[..5]).unwrap();
            let (mut conn, r) = interrupted(how, conn, |c| c.recv::<Command>());
            expect_interrupted(how, r);
            assert_eq!(
                conn.get_ref().buffered(),
                &frame[..5],
                "{how:?}: kept buffered"
            );
            raw.sendall(&frame[5..]).unwrap();
            assert_eq!(
                conn.recv::<Command>().unwrap(),
                Command::Say {
                    text: "whole".into(),
                    times: 2
                },
                "{how:?}"
            );
        });
    }
}

#[test]
fn an_interrupted_send_part_way_breaks_the_connection_clearly() {
    for how in BOTH {
        run_real(move || {
            let (a, _b) = conn_pair();
            // Nobody reads: a big message fills the socket buffers and blocks.
            let big = vec![7u8; 8 << 20];
            let (mut a, r) = interrupted(how, a, move |c| c.send_bytes(&big));
            let e = expect_interrupted(how, r);
            let done = e.bytes_done().unwrap();
            assert!(done > 0 && done < (8 << 20) + 4, "{how:?}: {done}");
            let e = a.send_bytes(b"more").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Usage);
            assert!(e.to_string().contains("broken"), "{e}");
        });
    }
}

const FD_CHILD_ENV: &str = "CURIO_TEST_CHANNEL_FD_CHILD";

/// Counting fds needs a process of its own (other tests open fds meanwhile).
#[test]
fn interrupted_handshakes_and_receives_leave_no_fd() {
    if !in_child(FD_CHILD_ENV) {
        let out = run_test_in_child(
            "interrupted_handshakes_and_receives_leave_no_fd",
            FD_CHILD_ENV,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    for how in BOTH {
        let fds = open_fds();
        run_real(move || {
            let mut server = Channel::new(any_port(), KEY).unwrap();
            server.bind().unwrap();
            let (server, r) = interrupted(how, server, |s| s.accept());
            expect_interrupted(how, r);

            // A server that never answers: connect is interrupted in the handshake.
            let listener = TcpListener::bind(any_port()).unwrap();
            let addr = listener.local_addr().unwrap();
            let ch = Channel::new(addr, KEY).unwrap();
            let (_ch, r) = interrupted(how, ch, |c| c.connect());
            expect_interrupted(how, r);

            // A client that never answers: accept is interrupted in the handshake.
            let Address::Tcp(addr) = server.address().clone() else {
                unreachable!()
            };
            let _mute = TcpStream::connect(addr).unwrap();
            let (_server, r) = interrupted(how, server, |s| s.accept());
            expect_interrupted(how, r);

            let (conn, _raw) = conn_and_raw();
            let (_conn, r) = interrupted(how, conn, |c| c.recv_bytes());
            expect_interrupted(how, r);
        });
        assert_eq!(open_fds(), fds, "{how:?}");
    }
}

// ---------------------------------------------------------------------------
// Framing over pipes
// ---------------------------------------------------------------------------

#[test]
fn a_connection_over_a_pair_of_pipes() {
    run_real(|| {
        let (r1, mut w1) = std::io::pipe().unwrap();
        let (r2, w2) = std::io::pipe().unwrap();
        // This side reads pipe 1 and writes pipe 2.
        let mut conn = Connection::from_pair(
            curio::FileStream::from_fd(r1).unwrap(),
            curio::io::FileIo::new(w2).unwrap(),
        );
        let frame = {
            let msg = postcard_bytes(&42u64);
            let mut f = (msg.len() as u32).to_be_bytes().to_vec();
            f.extend_from_slice(&msg);
            f
        };
        w1.write_all(&frame).unwrap();
        assert_eq!(conn.recv::<u64>().unwrap(), 42);
        conn.send(&"back".to_string()).unwrap();
        let mut r2 = r2;
        let mut got = [0u8; 9];
        std::io::Read::read_exact(&mut r2, &mut got).unwrap();
        assert_eq!(&got[..4], &5u32.to_be_bytes());
        assert_eq!(&got[4..], b"\x04back");
    });
}

/// The postcard encoding of `v` (what `Connection::send` puts in a frame).
fn postcard_bytes<T: Serialize>(v: &T) -> Vec<u8> {
    let (mut a, mut b) = conn_pair();
    a.send(v).unwrap();
    b.recv_bytes().unwrap()
}

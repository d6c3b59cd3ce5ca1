//! Worker processes and message channels: curio against its baselines, same run.
//!
//! - `run_in_process`: a trivial function called in a worker process and its
//!   value brought back (µs per call), with the pool warm. Baselines: a fresh
//!   worker per call (a new kernel each time, so the pool is empty: spawning
//!   this binary again, its greeting, the call, and reaping it: what the pool
//!   saves), `run_in_thread` (a pool thread instead of a process), and the
//!   floor: one small frame each way between two processes over a Unix
//!   socket with blocking std I/O (what any cross-process call costs here).
//! - `channel_round_trip`: a small typed message `(u64, String)` sent to
//!   another process, which sends it back, over an authenticated `Channel` on
//!   127.0.0.1. Baseline: the same framing (4-byte length + postcard bytes)
//!   over a bare blocking `std::net::TcpStream` pair, no curio on either side.
//!
//! The benchmark binary is its own `main` (criterion's macro would not call
//! `curio::process::init()` first, and workers re-run this binary).

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use curio::channel::Channel;

use curio_benches::criterion_config;

fn noop(x: u64) -> u64 {
    x + 1
}

const KEY: &[u8] = b"bench key";

/// The peer of `channel_round_trip`: connects to the channel at `addr` and
/// sends every message back until the connection closes.
fn channel_echo_peer(addr: SocketAddr) -> u64 {
    curio::run(|| {
        let mut conn = Channel::new(addr, KEY).unwrap().connect().unwrap();
        let mut n = 0;
        while let Ok(msg) = conn.recv::<(u64, String)>() {
            conn.send(&msg).unwrap();
            n += 1;
        }
        n
    })
}

/// The peer of the bare-socket baseline: blocking std I/O, the same framing.
fn bare_echo_peer(addr: SocketAddr) -> u64 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut n = 0;
    let mut buf = Vec::new();
    loop {
        let mut head = [0u8; 4];
        if s.read_exact(&mut head).is_err() {
            return n;
        }
        let len = u32::from_be_bytes(head) as usize;
        buf.resize(4 + len, 0);
        buf[..4].copy_from_slice(&head);
        s.read_exact(&mut buf[4..]).unwrap();
        s.write_all(&buf).unwrap();
        n += 1;
    }
}

/// The floor of `run_in_process`: the same exchange (a frame each way between
/// two processes over a Unix socket), with blocking std I/O on both sides.
fn bare_unix_echo_peer(path: String) -> u64 {
    let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
    let mut n = 0;
    let mut buf = Vec::new();
    loop {
        let mut head = [0u8; 4];
        if s.read_exact(&mut head).is_err() {
            return n;
        }
        let len = u32::from_be_bytes(head) as usize;
        buf.resize(4 + len, 0);
        buf[..4].copy_from_slice(&head);
        s.read_exact(&mut buf[4..]).unwrap();
        s.write_all(&buf).unwrap();
        n += 1;
    }
}

curio::process_fn!(noop, channel_echo_peer, bare_echo_peer, bare_unix_echo_peer);

fn bare_unix_round_trips(n: u64) -> Duration {
    curio::run(|| {
        let path = std::env::temp_dir().join(format!("curio-bench-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = curio::net::UnixListener::bind(&path).unwrap();
        let p = path.to_string_lossy().into_owned();
        let peer = curio::spawn(move || curio::run_in_process(bare_unix_echo_peer, p));
        let (conn, _) = listener.accept().unwrap();
        let raw = conn.socket().try_clone().unwrap();
        drop(conn);
        raw.set_nonblocking(false).unwrap();
        let mut s: std::os::unix::net::UnixStream = raw.into();
        // A frame the size of a warm call's: a few bytes each way.
        let frame = [0u8, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        let mut back = [0u8; 12];
        let start = Instant::now();
        for _ in 0..n {
            s.write_all(&frame).unwrap();
            s.read_exact(&mut back).unwrap();
            black_box(&back);
        }
        let took = start.elapsed();
        drop(s);
        assert_eq!(peer.join().unwrap().unwrap(), n);
        let _ = std::fs::remove_file(&path);
        took
    })
}

fn warm_run_in_process(n: u64) -> Duration {
    curio::run(|| {
        curio::run_in_process(noop, 0).unwrap(); // start the worker
        let start = Instant::now();
        for i in 0..n {
            black_box(curio::run_in_process(noop, black_box(i)).unwrap());
        }
        start.elapsed()
    })
}

fn fresh_worker_per_call(n: u64) -> Duration {
    let start = Instant::now();
    for i in 0..n {
        // A new kernel has an empty pool: the call starts a worker, and the
        // kernel's end reaps it.
        black_box(curio::run(|| {
            curio::run_in_process(noop, black_box(i)).unwrap()
        }));
    }
    start.elapsed()
}

fn warm_run_in_thread(n: u64) -> Duration {
    curio::run(|| {
        curio::run_in_thread(|| noop(0)).unwrap();
        let start = Instant::now();
        for i in 0..n {
            let i = black_box(i);
            black_box(curio::run_in_thread(move || noop(i)).unwrap());
        }
        start.elapsed()
    })
}

fn channel_round_trips(n: u64) -> Duration {
    curio::run(|| {
        let mut server = Channel::new("127.0.0.1:0".parse::<SocketAddr>().unwrap(), KEY).unwrap();
        server.bind().unwrap();
        let curio::channel::Address::Tcp(addr) = server.address().clone() else {
            unreachable!()
        };
        let peer = curio::spawn(move || curio::run_in_process(channel_echo_peer, addr));
        let mut conn = server.accept().unwrap();
        let msg = (7u64, "a small typed message".to_string());
        let start = Instant::now();
        for _ in 0..n {
            conn.send(&msg).unwrap();
            let back: (u64, String) = conn.recv().unwrap();
            black_box(back);
        }
        let took = start.elapsed();
        drop(conn);
        assert_eq!(peer.join().unwrap().unwrap(), n);
        took
    })
}

fn bare_socket_round_trips(n: u64) -> Duration {
    curio::run(|| {
        let listener = curio::net::TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = curio::spawn(move || curio::run_in_process(bare_echo_peer, addr));
        // Accepted by curio (the peer's task must run meanwhile), then used
        // as a plain blocking std socket.
        let (conn, _) = listener.accept().unwrap();
        let raw = conn.socket().try_clone().unwrap();
        drop(conn);
        raw.set_nonblocking(false).unwrap();
        let mut s: TcpStream = raw.into();
        s.set_nodelay(true).unwrap();
        let payload = {
            // The same bytes a Connection sends for the same message.
            let (a, b) = curio::net::UnixStream::pair().unwrap();
            let mut a = curio::channel::Connection::new(a.into_socket().as_stream());
            let mut b = curio::channel::Connection::new(b.into_socket().as_stream());
            a.send(&(7u64, "a small typed message".to_string()))
                .unwrap();
            b.recv_bytes().unwrap()
        };
        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&payload);
        let mut back = vec![0u8; frame.len()];
        let start = Instant::now();
        for _ in 0..n {
            s.write_all(&frame).unwrap();
            s.read_exact(&mut back).unwrap();
            black_box(&back);
        }
        let took = start.elapsed();
        drop(s);
        assert_eq!(peer.join().unwrap().unwrap(), n);
        took
    })
}

fn bench_run_in_process(c: &mut Criterion) {
    let mut g = c.benchmark_group("run_in_process");
    g.bench_function("curio_run_in_process_warm", |b| {
        b.iter_custom(warm_run_in_process)
    });
    g.bench_function("fresh_worker_per_call", |b| {
        b.iter_custom(fresh_worker_per_call)
    });
    g.bench_function("curio_run_in_thread_warm", |b| {
        b.iter_custom(warm_run_in_thread)
    });
    g.bench_function("floor_bare_unix_socket_round_trip", |b| {
        b.iter_custom(bare_unix_round_trips)
    });
    g.finish();
}

fn bench_channel(c: &mut Criterion) {
    let mut g = c.benchmark_group("channel_round_trip");
    g.bench_function("curio_channel_typed", |b| {
        b.iter_custom(channel_round_trips)
    });
    g.bench_function("bare_std_socket_same_framing", |b| {
        b.iter_custom(bare_socket_round_trips)
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = bench_run_in_process, bench_channel
}

fn main() {
    curio::process::init();
    benches();
    Criterion::default().configure_from_args().final_summary();
}

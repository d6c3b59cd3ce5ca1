//! TCP echo servers on 127.0.0.1, one per peer, for the echo benchmark
//! (`echo_bench` runs them; `echo_load` drives them). Each reads up to 64 bytes
//! from a connection and writes them back, until the peer closes.
//!
//! ```text
//! echo_server KIND [PORT] [--cpu N] [--exit-after K]
//!   KIND     mio      a hand-written mio state machine on one thread (the floor)
//!            curio    curio::run, one task per connection (run_server, recv_into + sendall)
//!            tokio    tokio current_thread, one task per connection (read + write_all)
//!            may      may with one worker, one coroutine per connection (read + write_all)
//!            threads  std::net, one OS thread per connection (read + write_all)
//!   PORT     the port to listen on (default 0: any free port)
//!   --cpu N          pin the process to CPU N before any runtime starts
//!   --exit-after K   exit (status 0) once K connections have closed, so that a
//!                    profiler such as callgrind writes its output (default: never)
//! ```
//!
//! Once listening, the server prints `ready PORT` on standard output.
//!
//! Every server sets `TCP_NODELAY` on its connections, as the load generator does
//! on its own, and every one makes the same system calls per round trip: a `read`
//! that returns the request, a `write` of the reply, and a `read` that answers
//! `EAGAIN` before the connection waits for readiness (mio, curio, tokio and may
//! share epoll's edge-triggered mode), plus a share of `epoll_wait`. The thread
//! server blocks in `read` instead.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use curio_benches::echo::{MSG_LEN, flag, pin_to_cpu, positional, raise_nofile_limit};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pos = positional(&args);
    let kind = pos.first().map_or("", String::as_str).to_string();
    let port: u16 = pos.get(1).map_or(0, |p| p.parse().expect("PORT"));
    let cpu: i64 = flag(&args, "--cpu", -1);
    let exit_after: usize = flag(&args, "--exit-after", 0);
    if cpu >= 0 {
        pin_to_cpu(cpu as usize).expect("pin to CPU");
    }
    raise_nofile_limit().expect("raise RLIMIT_NOFILE");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let closed = Closed::new(exit_after);
    match kind.as_str() {
        "mio" => serve_mio(addr, closed),
        "curio" => serve_curio(addr, closed),
        "tokio" => serve_tokio(addr, closed),
        "may" => serve_may(addr, closed),
        "threads" => serve_threads(addr, closed),
        _ => {
            eprintln!(
                "usage: echo_server mio|curio|tokio|may|threads [PORT] [--cpu N] [--exit-after K]"
            );
            std::process::exit(2);
        }
    }
}

/// Counts closed connections and exits the process after the `limit`-th (0: never).
#[derive(Clone)]
struct Closed {
    count: Arc<AtomicUsize>,
    limit: usize,
}

impl Closed {
    fn new(limit: usize) -> Closed {
        Closed {
            count: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    fn one(&self) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if self.limit > 0 && n >= self.limit {
            std::process::exit(0);
        }
    }
}

fn ready(port: u16) {
    println!("ready {port}");
    let _ = io::stdout().flush();
}

// ---------------------------------------------------------------------------
// mio: the floor
// ---------------------------------------------------------------------------

/// One connection of the mio server: the socket, and the bytes read but not yet
/// written back (`buf[start..end]`).
struct MioConn {
    stream: mio::net::TcpStream,
    buf: [u8; MSG_LEN],
    start: usize,
    end: usize,
}

impl MioConn {
    /// Echoes until the socket would block. Returns false once the connection is
    /// finished (closed by the peer, or an error).
    fn drive(&mut self) -> bool {
        loop {
            while self.start < self.end {
                match self.stream.write(&self.buf[self.start..self.end]) {
                    Ok(n) => self.start += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
            match self.stream.read(&mut self.buf) {
                Ok(0) => return false,
                Ok(n) => (self.start, self.end) = (0, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }
}

fn serve_mio(addr: SocketAddr, closed: Closed) {
    use mio::{Events, Interest, Poll, Token};
    const LISTENER: Token = Token(usize::MAX);

    let std_listener = StdListener::bind(addr).expect("bind");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let port = std_listener.local_addr().expect("local_addr").port();
    let mut listener = mio::net::TcpListener::from_std(std_listener);
    let mut poll = Poll::new().expect("epoll");
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .expect("register listener");
    let mut events = Events::with_capacity(1024);
    let mut conns: Vec<Option<MioConn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    ready(port);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            panic!("epoll_wait: {e}");
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let _ = stream.set_nodelay(true);
                            let i = free.pop().unwrap_or_else(|| {
                                conns.push(None);
                                conns.len() - 1
                            });
                            // Edge-triggered: data that came before registration is
                            // reported by the first `poll` after it.
                            poll.registry()
                                .register(
                                    &mut stream,
                                    Token(i),
                                    Interest::READABLE | Interest::WRITABLE,
                                )
                                .expect("register connection");
                            conns[i] = Some(MioConn {
                                stream,
                                buf: [0; MSG_LEN],
                                start: 0,
                                end: 0,
                            });
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            eprintln!("echo_server mio: accept: {e}");
                            break;
                        }
                    }
                }
                continue;
            }
            let i = ev.token().0;
            let Some(conn) = conns.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            if !conn.drive() {
                if let Some(mut c) = conns[i].take() {
                    let _ = poll.registry().deregister(&mut c.stream);
                }
                free.push(i);
                closed.one();
            }
        }
    }
}

// ---------------------------------------------------------------------------
// curio
// ---------------------------------------------------------------------------

fn serve_curio(addr: SocketAddr, closed: Closed) {
    let r = curio::run(move || -> curio::Result<()> {
        let listener = curio::net::tcp_server_socket(addr, false)?;
        ready(listener.local_addr()?.port());
        curio::net::run_server(listener, move |client: curio::net::TcpStream, _| {
            let _ = client.set_nodelay(true);
            let mut buf = [0u8; MSG_LEN];
            loop {
                match client.recv_into(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if client.sendall(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            drop(client);
            closed.one();
        })
    });
    if let Err(e) = r {
        eprintln!("echo_server curio: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------
// tokio current_thread
// ---------------------------------------------------------------------------

fn serve_tokio(addr: SocketAddr, closed: Closed) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio current_thread runtime");
    let std_listener = StdListener::bind(addr).expect("bind");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let port = std_listener.local_addr().expect("local_addr").port();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
        ready(port);
        loop {
            let (mut stream, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("echo_server tokio: accept: {e}");
                    continue;
                }
            };
            let closed = closed.clone();
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let mut buf = [0u8; MSG_LEN];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                drop(stream);
                closed.one();
            });
        }
    });
}

// ---------------------------------------------------------------------------
// may, one worker
// ---------------------------------------------------------------------------

fn serve_may(addr: SocketAddr, closed: Closed) {
    may::config().set_workers(1);
    let listener = may::net::TcpListener::bind(addr).expect("bind");
    let port = listener.local_addr().expect("local_addr").port();
    let acceptor = may::go!(move || {
        ready(port);
        for conn in listener.incoming() {
            let mut stream = match conn {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("echo_server may: accept: {e}");
                    continue;
                }
            };
            let closed = closed.clone();
            may::go!(move || {
                let _ = stream.set_nodelay(true);
                let mut buf = [0u8; MSG_LEN];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                drop(stream);
                closed.one();
            });
        }
    });
    let _ = acceptor.join();
}

// ---------------------------------------------------------------------------
// std threads
// ---------------------------------------------------------------------------

fn serve_threads(addr: SocketAddr, closed: Closed) {
    let listener = StdListener::bind(addr).expect("bind");
    ready(listener.local_addr().expect("local_addr").port());
    for conn in listener.incoming() {
        let mut stream = match conn {
            Ok(s) => s,
            Err(e) => {
                eprintln!("echo_server threads: accept: {e}");
                continue;
            }
        };
        let closed = closed.clone();
        let spawned = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut buf = [0u8; MSG_LEN];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                drop(stream);
                closed.one();
            });
        if let Err(e) = spawned {
            eprintln!("echo_server threads: spawn: {e}");
        }
    }
}

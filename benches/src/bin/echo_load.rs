//! The echo benchmark's load generator: N connections to 127.0.0.1:PORT, each
//! doing sequential 64-byte round trips (write 64 bytes, read until the same 64
//! come back, repeat), driven by one mio state machine on one thread.
//!
//! ```text
//! echo_load PORT [--conns N] [--warmup S] [--secs S] [--count RT]
//!                [--server-pid PID] [--cpu N] [--pause-us U]
//!   --conns N         connections (default 100)
//!   --warmup S        seconds of load before measuring (default 1)
//!   --secs S          seconds measured (default 5)
//!   --count RT        stop after RT round trips in all instead (0, the default:
//!                     run for the time above); with --warmup 0 it measures from
//!                     the first request, for profilers
//!   --server-pid PID  also read the server's CPU time (utime + stime in
//!                     /proc/PID/stat) at the start and end of the measured window
//!   --cpu N           pin this process to CPU N
//!   --rate R          paced load: send at most R requests per second in all
//!                     (default 0: as fast as the replies come back). A
//!                     connection whose reply came waits in a queue for its
//!                     turn; the generator then polls without blocking, so it
//!                     keeps its own CPU busy, never the server's
//!   --pause-us U      sleep U µs after handling each batch of events (default 0),
//!                     for profiling: a server under valgrind is so slow that
//!                     the next request is always there before it reads again, so
//!                     it would never wait; a pause makes it wait, as natively
//! ```
//!
//! It prints one human line and one machine line:
//! `result conns=N rt=R secs=T server_ticks=S server_user_ticks=U load_ticks=L busy_ticks=B clk_tck=C`
//! (round trips completed in the window, its length in seconds, the server's CPU
//! time in the window in clock ticks and the user-mode part of it, -1 for no
//! server, and this process's; and
//! the busy time of CPUs 0 and 1 from `/proc/stat`, whatever ran there, so that
//! `B - S - L` is what other processes, interrupts and the hypervisor took).
//!
//! After a request is written, the connection waits for epoll's readable edge
//! without trying a `read` first: the reply can only arrive after the request,
//! and Linux reports an edge for every arrival, so two system calls per round trip
//! suffice here (the servers make three). Replies are checked byte for byte.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::time::{Duration, Instant};

use curio_benches::echo::{
    MSG_LEN, clock_ticks_per_sec, cpu_ticks, cpu_ticks_split, cpus_busy_ticks, flag, pin_to_cpu,
    positional, raise_nofile_limit,
};
use mio::{Events, Interest, Poll, Token};

/// Gives up if no round trip completes for this long.
const STALL: Duration = Duration::from_secs(10);

/// Counters read when the measured window opens and when it closes.
struct Snapshot {
    /// Round trips completed so far.
    total: u64,
    at: Instant,
    /// The server's (user, system) CPU ticks; (-1, -1) without a server.
    server: (i64, i64),
    /// This process's CPU ticks.
    own: u64,
    /// Busy ticks of CPUs 0 and 1, whoever ran there.
    busy: u64,
}

struct Conn {
    stream: mio::net::TcpStream,
    request: [u8; MSG_LEN],
    reply: [u8; MSG_LEN],
    sent: usize,
    got: usize,
    /// Registered for writability too (only after a write would block).
    writable: bool,
    /// Paced mode: the reply came and the next request waits for its turn.
    held: bool,
}

impl Conn {
    /// Advances the connection until it has to wait; returns how many round trips
    /// completed. With `pace`, stops once a reply is complete (the connection is
    /// then `held` until the caller releases it).
    fn drive(&mut self, registry: &mio::Registry, token: Token, pace: bool) -> io::Result<u64> {
        let mut done = 0;
        loop {
            if self.held {
                return Ok(done);
            }
            if self.sent < MSG_LEN {
                match self.stream.write(&self.request[self.sent..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        self.sent += n;
                        if self.sent == MSG_LEN {
                            // Wait for the reply's readable edge (see the module doc).
                            return Ok(done);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if !self.writable {
                            registry.reregister(
                                &mut self.stream,
                                token,
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            self.writable = true;
                        }
                        return Ok(done);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            match self.stream.read(&mut self.reply[self.got..]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    self.got += n;
                    if self.got == MSG_LEN {
                        if self.reply != self.request {
                            return Err(io::Error::other("echo reply differs from the request"));
                        }
                        done += 1;
                        self.sent = 0;
                        self.got = 0;
                        self.held = pace;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(done),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pos = positional(&args);
    let Some(port) = pos.first().and_then(|p| p.parse::<u16>().ok()) else {
        eprintln!(
            "usage: echo_load PORT [--conns N] [--warmup S] [--secs S] [--count RT] [--server-pid PID] [--cpu N] [--rate R] [--pause-us U]"
        );
        std::process::exit(2);
    };
    let conns: usize = flag(&args, "--conns", 100);
    let warmup: f64 = flag(&args, "--warmup", 1.0);
    let secs: f64 = flag(&args, "--secs", 5.0);
    let count: u64 = flag(&args, "--count", 0);
    let server_pid: i64 = flag(&args, "--server-pid", -1);
    let cpu: i64 = flag(&args, "--cpu", -1);
    let pause = Duration::from_micros(flag(&args, "--pause-us", 0));
    let rate: f64 = flag(&args, "--rate", 0.0);
    let pace = rate > 0.0;
    if cpu >= 0 {
        pin_to_cpu(cpu as usize).expect("pin to CPU");
    }
    raise_nofile_limit().expect("raise RLIMIT_NOFILE");
    // (user, system) ticks of the server, (-1, -1) without one.
    let server_ticks = || {
        if server_pid > 0 {
            cpu_ticks_split(&server_pid.to_string()).map_or((-1, -1), |(u, s)| (u as i64, s as i64))
        } else {
            (-1, -1)
        }
    };

    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut poll = Poll::new().expect("epoll");
    let mut events = Events::with_capacity(1024);
    let mut table: Vec<Conn> = Vec::with_capacity(conns);
    for i in 0..conns {
        let s = StdStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connection {i} to {addr}: {e}"));
        s.set_nodelay(true).expect("nodelay");
        s.set_nonblocking(true).expect("nonblocking");
        let mut stream = mio::net::TcpStream::from_std(s);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)
            .expect("register");
        let mut request = [0u8; MSG_LEN];
        for (j, b) in request.iter_mut().enumerate() {
            *b = (i * 31 + j) as u8;
        }
        table.push(Conn {
            stream,
            request,
            reply: [0; MSG_LEN],
            sent: 0,
            got: 0,
            writable: false,
            held: pace,
        });
    }

    // Unpaced, every connection sends its first request now, and from then on
    // events drive them. Paced, connections queue for their turn to send.
    let mut total: u64 = 0;
    let mut queue: VecDeque<usize> = VecDeque::new();
    if pace {
        queue.extend(0..conns);
    } else {
        for (i, c) in table.iter_mut().enumerate() {
            total += c
                .drive(poll.registry(), Token(i), false)
                .expect("first request");
        }
    }
    let mut released: u64 = 0;
    let start = Instant::now();
    let warm_end = start + Duration::from_secs_f64(warmup);
    let by_count = count > 0;
    let mut window: Option<Snapshot> = None;
    let open = |total: u64| Snapshot {
        total,
        at: Instant::now(),
        server: server_ticks(),
        own: cpu_ticks("self").unwrap_or(0),
        busy: cpus_busy_ticks(&[0, 1]).unwrap_or(0),
    };
    if warmup <= 0.0 {
        window = Some(open(total));
    }
    let mut last_progress = (total, Instant::now());
    let end = loop {
        if pace {
            // Release as many held connections as the rate allows by now.
            let due = (start.elapsed().as_secs_f64() * rate) as u64;
            while released < due {
                let Some(i) = queue.pop_front() else { break };
                table[i].held = false;
                total += table[i]
                    .drive(poll.registry(), Token(i), true)
                    .unwrap_or_else(|e| panic!("connection {i}: {e}"));
                released += 1;
            }
            // Turns nobody was waiting for are lost, not banked: a slow server
            // must not be answered with a burst.
            if queue.is_empty() {
                released = due;
            }
        }
        let timeout = if pace && !queue.is_empty() {
            Duration::ZERO
        } else {
            Duration::from_millis(100)
        };
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            panic!("epoll_wait: {e}");
        }
        for ev in events.iter() {
            let i = ev.token().0;
            let was_held = table[i].held;
            match table[i].drive(poll.registry(), ev.token(), pace) {
                Ok(n) => total += n,
                Err(e) => panic!("connection {i}: {e}"),
            }
            if table[i].held && !was_held {
                queue.push_back(i);
            }
        }
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
        let now = Instant::now();
        match window {
            None if now >= warm_end => window = Some(open(total)),
            Some(Snapshot { total: t0, at, .. }) => {
                let finished = if by_count {
                    total - t0 >= count
                } else {
                    now.duration_since(at).as_secs_f64() >= secs
                };
                if finished {
                    break open(total);
                }
            }
            None => {}
        }
        if total != last_progress.0 {
            last_progress = (total, now);
        } else if now.duration_since(last_progress.1) > STALL {
            eprintln!("echo_load: no round trip completed for {STALL:?}; giving up");
            std::process::exit(1);
        }
        if now.duration_since(start) > Duration::from_secs_f64(warmup + secs) + STALL * 6 {
            eprintln!("echo_load: ran far past its time; giving up");
            std::process::exit(1);
        }
    };
    let Snapshot {
        total: t0,
        at: at0,
        server: s0,
        own: l0,
        busy: b0,
    } = window.expect("measured window opened");
    let Snapshot {
        total: t1,
        at: at1,
        server: s1,
        own: l1,
        busy: b1,
    } = end;
    let rt = t1 - t0;
    let dt = at1.duration_since(at0).as_secs_f64();
    let (server_user, server_sys) = if s0.0 >= 0 && s1.0 >= 0 {
        (s1.0 - s0.0, s1.1 - s0.1)
    } else {
        (-1, -1)
    };
    let server = if server_user >= 0 {
        server_user + server_sys
    } else {
        -1
    };
    let load = l1.saturating_sub(l0);
    let busy = b1.saturating_sub(b0);
    let clk = clock_ticks_per_sec();
    println!(
        "{conns} connections: {rt} round trips in {dt:.3} s = {:.0} rt/s; server CPU {} ticks, load generator CPU {load} ticks (1 tick = {:.1} ms)",
        rt as f64 / dt,
        server,
        1000.0 / clk as f64
    );
    println!(
        "result conns={conns} rt={rt} secs={dt:.6} server_ticks={server} server_user_ticks={server_user} load_ticks={load} busy_ticks={busy} clk_tck={clk}"
    );
    let _ = io::stdout().flush();
    drop(table);
}

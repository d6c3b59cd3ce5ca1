//! The TCP echo benchmark's driver: runs each echo server (`echo_server`) as a
//! child process pinned to CPU 0 and the load generator (`echo_load`) pinned to
//! CPU 1, all on 127.0.0.1, and reports round trips per second and the
//! **server's CPU time per round trip**; or measures the server's memory per idle
//! connection. Build it with `--release`: it runs the `echo_server` and
//! `echo_load` binaries found next to its own executable.
//!
//! ```text
//! echo_bench [compare] [--runs R] [--secs S] [--warmup S] [--conns N] [--rate Q] [--servers LIST]
//!     R rounds (default 3); in each, every server in LIST (default
//!     mio,curio,tokio,may,threads; the order rotates by one each round) serves N
//!     connections (default 100) for S seconds measured (default 5) after the
//!     warm-up (default 1). Prints each measurement, then medians over the rounds
//!     and ratios: server CPU per round trip ÷ mio's, round trips/s ÷ tokio's.
//!     With --rate Q the load generator paces itself to Q round trips/s in all
//!     (default: as fast as the server answers): every server then sees the same
//!     load, so CPU per round trip compares efficiency without the bias of
//!     saturation (a server that is not saturated batches fewer events per
//!     epoll_wait and so pays more per round trip; unpaced, the fastest server is
//!     the likeliest to be held back by the load generator).
//! echo_bench idle [--conns N] [--servers LIST]
//!     For each server in LIST (default mio,curio,tokio,may) opens N idle
//!     connections (default 10 000, fewer if RLIMIT_NOFILE cannot hold them) and
//!     reports the server's VmRSS growth per connection.
//! ```
//!
//! The `others` column is what everything else took of CPUs 0 and 1 during the
//! window (other processes, interrupts, hypervisor steal; 100% is one whole CPU):
//! on a shared machine, a sample with a large figure there measured contention.
//!
//! Server CPU time is `utime + stime` of the whole server process (all its
//! threads) from `/proc/PID/stat`, read by the load generator when its measured
//! window opens and closes. It includes the kernel's work in the server's system
//! calls (most of it: TCP over loopback), so the runtimes differ only in the user
//! space part of a figure that is mostly the same.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use curio_benches::echo::{
    flag, median, open_fds, positional, raise_nofile_limit, status_bytes, wait_until,
};

/// A child process killed (and reaped) when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A sibling binary of this executable (`target/release/NAME`).
fn sibling(name: &str) -> PathBuf {
    let me = std::env::current_exe().expect("current_exe");
    let p = me.with_file_name(name);
    if !p.exists() {
        eprintln!(
            "echo_bench: {} not found; build with `cargo build --release -p curio-benches --bins`",
            p.display()
        );
        std::process::exit(2);
    }
    p
}

/// Starts `echo_server KIND 0 --cpu 0` and waits (at most 10 s) for its
/// `ready PORT` line.
fn start_server(kind: &str) -> (Guard, u16) {
    let child = Command::new(sibling("echo_server"))
        .args([kind, "0", "--cpu", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn echo_server");
    let mut guard = Guard(child);
    let stdout = guard.0.stdout.take().expect("server stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Reads the server's output until it ends, so the server never blocks on a
        // full pipe; only the first line matters.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{kind} server did not say ready within 10 s"));
    let port = line
        .strip_prefix("ready ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("{kind} server said {line:?}, expected `ready PORT`"));
    (guard, port)
}

/// One measurement of one server.
#[derive(Clone, Copy, Debug)]
struct Sample {
    rt_per_s: f64,
    /// Server CPU time per round trip, µs.
    server_us: f64,
    /// The user-mode part of `server_us`, µs (the runtime's own code; the rest
    /// is the kernel's, in the server's system calls).
    server_user_us: f64,
    /// Server CPU use in the window, as a fraction of one CPU.
    server_util: f64,
    /// Load generator CPU time per round trip, µs.
    load_us: f64,
    /// What everything else took of CPUs 0 and 1 in the window (other processes,
    /// interrupts, hypervisor steal), as a fraction of one CPU.
    others: f64,
}

fn field(line: &str, name: &str) -> f64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
}

fn measure(kind: &str, conns: usize, warmup: f64, secs: f64, rate: f64) -> Sample {
    let (server, port) = start_server(kind);
    let pid = server.0.id();
    let out = Command::new(sibling("echo_load"))
        .arg(port.to_string())
        .args(["--conns", &conns.to_string()])
        .args(["--warmup", &warmup.to_string()])
        .args(["--secs", &secs.to_string()])
        .args(["--server-pid", &pid.to_string()])
        .args(["--cpu", "1"])
        .args(["--rate", &rate.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run echo_load");
    drop(server);
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(line) = text.lines().find(|l| l.starts_with("result ")) else {
        panic!("echo_load against {kind} failed ({}): {text}", out.status);
    };
    let rt = field(line, "rt");
    let dt = field(line, "secs");
    let clk = field(line, "clk_tck");
    let server_s = field(line, "server_ticks") / clk;
    let server_user_s = field(line, "server_user_ticks") / clk;
    let load_s = field(line, "load_ticks") / clk;
    let busy_s = field(line, "busy_ticks") / clk;
    Sample {
        others: ((busy_s - server_s - load_s) / dt).max(0.0),
        rt_per_s: rt / dt,
        server_us: server_s / rt * 1e6,
        server_user_us: server_user_s / rt * 1e6,
        server_util: server_s / dt,
        load_us: load_s / rt * 1e6,
    }
}

fn compare(args: &[String]) {
    let runs: usize = flag(args, "--runs", 3);
    let secs: f64 = flag(args, "--secs", 5.0);
    let warmup: f64 = flag(args, "--warmup", 1.0);
    let conns: usize = flag(args, "--conns", 100);
    let rate: f64 = flag(args, "--rate", 0.0);
    let list: String = flag(args, "--servers", "mio,curio,tokio,may,threads".to_string());
    let servers: Vec<&str> = list.split(',').filter(|s| !s.is_empty()).collect();
    assert!((1..=20).contains(&runs), "--runs must be between 1 and 20");
    assert!(secs > 0.0 && secs <= 120.0, "--secs must be in (0, 120]");
    let load = if rate > 0.0 {
        format!("paced at {rate} requests/s")
    } else {
        "as fast as replies come".to_string()
    };
    println!(
        "echo: {conns} connections, 64-byte round trips {load}, {warmup} s warm-up + {secs} s measured; \
         server on CPU 0, load generator on CPU 1; {runs} rounds"
    );
    println!(
        "{:<8} {:>5} {:>10} {:>14} {:>9} {:>10} {:>11} {:>8}",
        "server", "round", "rt/s", "server µs/rt", "user µs", "server CPU", "load µs/rt", "others"
    );
    // samples[server][round]
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); servers.len()];
    for round in 0..runs {
        for k in 0..servers.len() {
            let i = (k + round) % servers.len();
            let s = measure(servers[i], conns, warmup, secs, rate);
            println!(
                "{:<8} {:>5} {:>10.0} {:>14.3} {:>9.3} {:>9.0}% {:>11.3} {:>7.0}%",
                servers[i],
                round + 1,
                s.rt_per_s,
                s.server_us,
                s.server_user_us,
                s.server_util * 100.0,
                s.load_us,
                s.others * 100.0
            );
            samples[i].push(s);
        }
    }
    let pos = |name: &str| servers.iter().position(|s| *s == name);
    let (mio, tokio) = (pos("mio"), pos("tokio"));
    // Ratios are taken within each round, then the median over rounds.
    let ratio = |i: usize, base: Option<usize>, f: fn(&Sample) -> f64| -> f64 {
        let Some(b) = base else { return f64::NAN };
        let r: Vec<f64> = (0..runs)
            .map(|r| f(&samples[i][r]) / f(&samples[b][r]))
            .collect();
        median(&r)
    };
    println!();
    println!("medians over {runs} rounds (ratios: per round, then the median):");
    println!(
        "{:<8} {:>10} {:>14} {:>9} {:>10} {:>11} {:>8} {:>10} {:>12}",
        "server",
        "rt/s",
        "server µs/rt",
        "user µs",
        "server CPU",
        "load µs/rt",
        "others",
        "CPU ÷ mio",
        "rt/s ÷ tokio"
    );
    for (i, name) in servers.iter().enumerate() {
        let m = |f: fn(&Sample) -> f64| median(&samples[i].iter().map(f).collect::<Vec<_>>());
        println!(
            "{:<8} {:>10.0} {:>14.3} {:>9.3} {:>9.0}% {:>11.3} {:>7.0}% {:>10.3} {:>12.3}",
            name,
            m(|s| s.rt_per_s),
            m(|s| s.server_us),
            m(|s| s.server_user_us),
            m(|s| s.server_util) * 100.0,
            m(|s| s.load_us),
            m(|s| s.others) * 100.0,
            ratio(i, mio, |s| s.server_us),
            ratio(i, tokio, |s| s.rt_per_s),
        );
    }
    if let (Some(c), Some(m), Some(t)) = (pos("curio"), mio, tokio) {
        let cpu = ratio(c, Some(m), |s| s.server_us);
        let rts = ratio(c, Some(t), |s| s.rt_per_s);
        println!();
        println!(
            "target: curio server CPU per round trip <= 1.05 x mio: {cpu:.3} x -> {}",
            if cpu <= 1.05 { "met" } else { "missed" }
        );
        if rate > 0.0 {
            println!(
                "target: curio round trips/s >= tokio current_thread: not measured here (paced load)"
            );
        } else {
            println!(
                "target: curio round trips/s >= tokio current_thread: {rts:.3} x -> {}",
                if rts >= 1.0 { "met" } else { "missed" }
            );
        }
    }
}

/// Opens `n` idle connections to a fresh `kind` server and returns (RSS before,
/// RSS after, connections the server holds).
fn idle_one(kind: &str, n: usize) -> (u64, u64, usize) {
    let (server, port) = start_server(kind);
    let pid = server.0.id();
    // Let the server settle (runtimes start threads lazily, allocators warm up).
    std::thread::sleep(Duration::from_millis(300));
    let fds0 = open_fds(pid).expect("server fds");
    let rss0 = status_bytes(pid, "VmRSS").expect("server VmRSS");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => clients.push(s),
            Err(e) => panic!("{kind}: idle connection {i}: {e}"),
        }
        if start.elapsed() > Duration::from_secs(120) {
            panic!("{kind}: opening {n} connections took over 120 s");
        }
    }
    // Wait until the server has accepted them all, then until its RSS stops moving.
    let accepted = wait_until(Duration::from_secs(60), Duration::from_millis(50), || {
        open_fds(pid).is_ok_and(|f| f >= fds0 + n)
    });
    let held = open_fds(pid).unwrap_or(0).saturating_sub(fds0);
    if !accepted {
        eprintln!("{kind}: the server holds {held} of {n} connections after 60 s");
    }
    let mut rss = status_bytes(pid, "VmRSS").unwrap_or(0);
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        let now = status_bytes(pid, "VmRSS").unwrap_or(0);
        if now == rss {
            break;
        }
        rss = now;
    }
    drop(clients);
    drop(server);
    (rss0, rss, held)
}

fn idle(args: &[String]) {
    let want: usize = flag(args, "--conns", 10_000);
    let list: String = flag(args, "--servers", "mio,curio,tokio,may".to_string());
    let limit = raise_nofile_limit().expect("raise RLIMIT_NOFILE");
    // The driver holds one fd per connection, and so does the server (whose limit
    // is the same): leave room for each process's other fds.
    let room = (limit as usize).saturating_sub(64);
    let n = want.min(room);
    if n < want {
        println!("RLIMIT_NOFILE is {limit}: {n} connections instead of {want}");
    }
    println!(
        "idle connections: {n} per server; server VmRSS before and after, all accepted and idle"
    );
    println!(
        "{:<8} {:>12} {:>12} {:>8} {:>14}",
        "server", "RSS before", "RSS after", "held", "bytes / conn"
    );
    for kind in list.split(',').filter(|s| !s.is_empty()) {
        let (before, after, held) = idle_one(kind, n);
        println!(
            "{:<8} {:>9} KiB {:>9} KiB {:>8} {:>14.0}",
            kind,
            before / 1024,
            after / 1024,
            held,
            after.saturating_sub(before) as f64 / n as f64
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pos = positional(&args);
    match pos.first().map_or("compare", String::as_str) {
        "compare" => compare(&args),
        "idle" => idle(&args),
        _ => {
            eprintln!(
                "usage: echo_bench [compare] [--runs R] [--secs S] [--warmup S] [--conns N] [--rate Q] [--servers LIST]\n       echo_bench idle [--conns N] [--servers LIST]"
            );
            std::process::exit(2);
        }
    }
}

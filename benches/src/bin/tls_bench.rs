//! The TLS benchmark's driver: runs `tls_server` (curio, then tokio-rustls on
//! tokio `current_thread`, order rotating each round) pinned to CPU 0 and
//! `tls_load` pinned to CPU 1, and reports, per server:
//!
//! - echo: 100 connections doing 64-byte round trips; round trips/s and the
//!   **server's CPU time per round trip**;
//! - handshake: new TLS 1.3 connections (ECDSA P-256 certificate, X25519, no
//!   resumption), 16 clients in a loop; handshakes/s and the **server's CPU
//!   time per handshake**;
//! - sink and source: 1 GiB through one connection, client to server and
//!   server to client; **MB/s**.
//!
//! Build it with `--release`: it runs the `tls_server` and `tls_load` binaries
//! found next to its own executable.
//!
//! ```text
//! tls_bench [--runs R] [--secs S] [--warmup S] [--bytes B] [--modes LIST] [--servers LIST]
//!     R rounds (default 3); S seconds measured (default 5) after the warm-up
//!     (default 1) for echo and handshake; B bytes per bulk transfer (default
//!     1 GiB); LIST of modes (default echo,handshake,sink,source) and servers
//!     (default curio,tokio). Prints each measurement, then medians over the
//!     rounds and curio ÷ tokio ratios taken per round.
//! ```
//!
//! Server CPU time is `utime + stime` of the server process from
//! `/proc/PID/stat`, read by the load generator when its window opens and
//! closes; it includes the kernel's work in the server's system calls.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use curio_benches::echo::{flag, median};

/// A child process killed (and reaped) when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sibling(name: &str) -> PathBuf {
    let me = std::env::current_exe().expect("current_exe");
    let p = me.with_file_name(name);
    if !p.exists() {
        eprintln!(
            "tls_bench: {} not found; build with `cargo build --release -p curio-benches --bins`",
            p.display()
        );
        std::process::exit(2);
    }
    p
}

/// Starts `tls_server KIND 0 --mode MODE --cpu 0`; waits for `ready PORT CERT`.
fn start_server(kind: &str, mode: &str) -> (Guard, u16, String) {
    let server_mode = if mode == "handshake" { "echo" } else { mode };
    let child = Command::new(sibling("tls_server"))
        .args([kind, "0", "--mode", server_mode, "--cpu", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn tls_server");
    let mut guard = Guard(child);
    let stdout = guard.0.stdout.take().expect("server stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{kind} server did not say ready within 10 s"));
    let mut parts = line.split_whitespace();
    assert_eq!(parts.next(), Some("ready"), "{kind} server said {line:?}");
    let port = parts.next().and_then(|p| p.parse().ok()).expect("PORT");
    let cert = parts.next().expect("CERT").to_string();
    (guard, port, cert)
}

/// One measurement.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Operations (round trips, handshakes) per second, or MB/s for bulk.
    rate: f64,
    /// Server CPU µs per operation (per MB for bulk).
    server_us: f64,
    /// Server CPU use in the window, as a fraction of one CPU.
    server_util: f64,
}

fn field(line: &str, name: &str) -> f64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
}

fn measure(kind: &str, mode: &str, warmup: f64, secs: f64, bytes: u64) -> Sample {
    let (server, port, cert) = start_server(kind, mode);
    let pid = server.0.id();
    let out = Command::new(sibling("tls_load"))
        .arg(port.to_string())
        .args(["--cert", &cert, "--mode", mode])
        .args(["--warmup", &warmup.to_string(), "--secs", &secs.to_string()])
        .args(["--bytes", &bytes.to_string()])
        .args(["--server-pid", &pid.to_string(), "--cpu", "1"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run tls_load");
    drop(server);
    let _ = std::fs::remove_file(&cert);
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(line) = text.lines().find(|l| l.starts_with("result ")) else {
        panic!(
            "tls_load {mode} against {kind} failed ({}): {text}",
            out.status
        );
    };
    let ops = field(line, "ops");
    let dt = field(line, "secs");
    let clk = field(line, "clk_tck");
    let server_s = field(line, "server_ticks") / clk;
    let bulk = mode == "sink" || mode == "source";
    let units = if bulk { bytes as f64 / 1e6 } else { ops };
    Sample {
        rate: units / dt,
        server_us: server_s / units * 1e6,
        server_util: server_s / dt,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: usize = flag(&args, "--runs", 3);
    let secs: f64 = flag(&args, "--secs", 5.0);
    let warmup: f64 = flag(&args, "--warmup", 1.0);
    let bytes: u64 = flag(&args, "--bytes", 1u64 << 30);
    let modes: String = flag(&args, "--modes", "echo,handshake,sink,source".to_string());
    let servers: String = flag(&args, "--servers", "curio,tokio".to_string());
    let modes: Vec<&str> = modes.split(',').filter(|s| !s.is_empty()).collect();
    let servers: Vec<&str> = servers.split(',').filter(|s| !s.is_empty()).collect();
    assert!((1..=20).contains(&runs), "--runs must be between 1 and 20");
    println!(
        "tls: servers on CPU 0, tokio-rustls load generator on CPU 1; {runs} rounds; \
         echo/handshake {warmup} s warm-up + {secs} s; bulk {bytes} bytes"
    );
    for mode in &modes {
        let bulk = *mode == "sink" || *mode == "source";
        let (rate, per) = if bulk {
            ("MB/s", "server µs/MB")
        } else if *mode == "echo" {
            ("rt/s", "server µs/rt")
        } else {
            ("hs/s", "server µs/hs")
        };
        println!("\n{mode}");
        println!(
            "{:<8} {:>5} {:>12} {:>14} {:>10}",
            "server", "round", rate, per, "server CPU"
        );
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); servers.len()];
        for round in 0..runs {
            for k in 0..servers.len() {
                let i = (k + round) % servers.len();
                let s = measure(servers[i], mode, warmup, secs, bytes);
                println!(
                    "{:<8} {:>5} {:>12.0} {:>14.3} {:>9.0}%",
                    servers[i],
                    round + 1,
                    s.rate,
                    s.server_us,
                    s.server_util * 100.0
                );
                samples[i].push(s);
            }
        }
        let pos = |name: &str| servers.iter().position(|s| *s == name);
        println!("medians:");
        for (i, name) in servers.iter().enumerate() {
            let m = |f: fn(&Sample) -> f64| median(&samples[i].iter().map(f).collect::<Vec<_>>());
            println!(
                "{:<8} {:>5} {:>12.0} {:>14.3} {:>9.0}%",
                name,
                "",
                m(|s| s.rate),
                m(|s| s.server_us),
                m(|s| s.server_util) * 100.0
            );
        }
        if let (Some(c), Some(t)) = (pos("curio"), pos("tokio")) {
            let ratio = |f: fn(&Sample) -> f64| {
                median(
                    &(0..runs)
                        .map(|r| f(&samples[c][r]) / f(&samples[t][r]))
                        .collect::<Vec<_>>(),
                )
            };
            let cpu = ratio(|s| s.server_us);
            let rate_ratio = ratio(|s| s.rate);
            if bulk {
                println!(
                    "target: curio MB/s within 5% of tokio-rustls: {rate_ratio:.3} x -> {}",
                    if rate_ratio >= 0.95 { "met" } else { "missed" }
                );
                println!("(server CPU per MB: curio ÷ tokio-rustls {cpu:.3} x)");
            } else {
                println!(
                    "target: curio server CPU per {} <= 1.05 x tokio-rustls: {cpu:.3} x -> {}",
                    if *mode == "echo" {
                        "round trip"
                    } else {
                        "handshake"
                    },
                    if cpu <= 1.05 { "met" } else { "missed" }
                );
                println!("({rate}: curio ÷ tokio-rustls {rate_ratio:.3} x)");
            }
        }
    }
}

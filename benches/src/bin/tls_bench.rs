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
//!     (default curio,tokio). A mode `echo:Q` or `handshake:Q` paces the load
//!     generator to Q round trips (handshakes) per second in all, the same for
//!     every server, so that servers are compared at equal load; plain `echo`
//!     and `handshake` run as fast as the replies come (the load generator's
//!     saturation). Each round runs every mode once against every server
//!     (server order rotating per round), so drifts in the machine's load
//!     touch all modes and servers alike. `echo:Q:paired` (or
//!     `handshake:Q:paired`) runs the servers at the same time instead, both
//!     on CPU 0, each under its own load generator at Q/s (both on CPU 1):
//!     whatever else the machine does in that window then falls on both
//!     alike, which a shared machine's noise otherwise does not allow.
//!     Prints each measurement, then per
//!     mode the medians over the rounds and the median of the per-round
//!     curio ÷ tokio ratios, with the ratios of every round.
//! ```
//!
//! Server CPU time is the scheduler's run time of the server process, all
//! threads (`/proc/PID/task/*/schedstat`, nanoseconds; user plus system, so it
//! includes the kernel's work in the server's system calls), read by the load
//! generator when its window opens and closes.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use curio_benches::echo::{flag, median};

/// A mode and its pace (0: unpaced).
#[derive(Clone, Debug)]
struct Mode {
    name: String,
    rate: f64,
    /// Run the servers at the same time, each under its own paced load
    /// generator, rather than one after the other.
    paired: bool,
}

impl Mode {
    fn parse(s: &str) -> Mode {
        let mut parts = s.split(':');
        let name = parts.next().unwrap_or_default();
        let rate = parts
            .next()
            .map_or(0.0, |r| r.parse().expect("a rate after ':'"));
        let paired = match parts.next() {
            None => false,
            Some("paired") => true,
            Some(x) => panic!("unknown mode option {x:?}; only `paired`"),
        };
        assert!(!paired || rate > 0.0, "only paced modes can be paired");
        assert!(
            ["echo", "handshake", "sink", "source"].contains(&name),
            "unknown mode {name}"
        );
        assert!(
            rate == 0.0 || name == "echo" || name == "handshake",
            "only echo and handshake can be paced"
        );
        Mode {
            name: name.to_string(),
            rate,
            paired,
        }
    }
    fn bulk(&self) -> bool {
        self.name == "sink" || self.name == "source"
    }
    fn label(&self) -> String {
        if self.paired {
            format!("{} paired at {}/s", self.name, self.rate)
        } else if self.rate > 0.0 {
            format!("{} paced at {}/s", self.name, self.rate)
        } else if self.bulk() {
            self.name.clone()
        } else {
            format!("{} unpaced", self.name)
        }
    }
}

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
    /// Load generator CPU use in the window, as a fraction of one CPU.
    load_util: f64,
}

fn field(line: &str, name: &str) -> f64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
}

/// Runs the load generator against each of `kinds` at the same time (one
/// server each, all on CPU 0; all load generators on CPU 1), or against one
/// alone when `kinds` has one element; returns a sample per kind.
fn measure(kinds: &[&str], mode: &Mode, warmup: f64, secs: f64, bytes: u64) -> Vec<Sample> {
    let servers: Vec<_> = kinds.iter().map(|k| start_server(k, &mode.name)).collect();
    let loads: Vec<Child> = servers
        .iter()
        .map(|(server, port, cert)| {
            Command::new(sibling("tls_load"))
                .arg(port.to_string())
                .args(["--cert", cert, "--mode", &mode.name])
                .args(["--warmup", &warmup.to_string(), "--secs", &secs.to_string()])
                .args(["--bytes", &bytes.to_string()])
                .args(["--rate", &mode.rate.to_string()])
                .args(["--server-pid", &server.0.id().to_string(), "--cpu", "1"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("run tls_load")
        })
        .collect();
    let outs: Vec<_> = loads
        .into_iter()
        .map(|l| l.wait_with_output().expect("wait for tls_load"))
        .collect();
    for (_, _, cert) in &servers {
        let _ = std::fs::remove_file(cert);
    }
    drop(servers);
    kinds
        .iter()
        .zip(outs)
        .map(|(kind, out)| {
            let text = String::from_utf8_lossy(&out.stdout);
            let Some(line) = text.lines().find(|l| l.starts_with("result ")) else {
                panic!(
                    "tls_load {} against {kind} failed ({}): {text}",
                    mode.name, out.status
                );
            };
            let ops = field(line, "ops");
            let dt = field(line, "secs");
            let server_s = field(line, "server_ns") / 1e9;
            let load_s = field(line, "load_ns") / 1e9;
            let units = if mode.bulk() { bytes as f64 / 1e6 } else { ops };
            Sample {
                rate: units / dt,
                server_us: server_s / units * 1e6,
                server_util: server_s / dt,
                load_util: load_s / dt,
            }
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: usize = flag(&args, "--runs", 3);
    let secs: f64 = flag(&args, "--secs", 5.0);
    let warmup: f64 = flag(&args, "--warmup", 1.0);
    let bytes: u64 = flag(&args, "--bytes", 1u64 << 30);
    let modes: String = flag(&args, "--modes", "echo,handshake,sink,source".to_string());
    let servers: String = flag(&args, "--servers", "curio,tokio".to_string());
    let modes: Vec<Mode> = modes
        .split(',')
        .filter(|s| !s.is_empty())
        .map(Mode::parse)
        .collect();
    let servers: Vec<&str> = servers.split(',').filter(|s| !s.is_empty()).collect();
    assert!((1..=50).contains(&runs), "--runs must be between 1 and 50");
    println!(
        "tls: servers on CPU 0, tokio-rustls load generator on CPU 1; {runs} rounds; \
         echo/handshake {warmup} s warm-up + {secs} s; bulk {bytes} bytes"
    );
    let units = |m: &Mode| {
        if m.bulk() {
            ("MB/s", "server µs/MB")
        } else if m.name == "echo" {
            ("rt/s", "server µs/rt")
        } else {
            ("hs/s", "server µs/hs")
        }
    };
    println!(
        "{:<28} {:<8} {:>5} {:>10} {:>14} {:>10} {:>9}",
        "mode", "server", "round", "rate", "server µs/op", "server CPU", "load CPU"
    );
    // samples[mode][server][round]
    let mut samples: Vec<Vec<Vec<Sample>>> = vec![vec![Vec::new(); servers.len()]; modes.len()];
    for round in 0..runs {
        for (m, mode) in modes.iter().enumerate() {
            // Paired: all servers at once, each under its own load.
            // Otherwise one after the other, order rotating per round.
            let order: Vec<usize> = (0..servers.len())
                .map(|k| (k + round) % servers.len())
                .collect();
            let batches: Vec<Vec<usize>> = if mode.paired {
                vec![order]
            } else {
                order.into_iter().map(|i| vec![i]).collect()
            };
            let results = batches.into_iter().flat_map(|batch| {
                let kinds: Vec<&str> = batch.iter().map(|&i| servers[i]).collect();
                batch
                    .into_iter()
                    .zip(measure(&kinds, mode, warmup, secs, bytes))
            });
            for (i, s) in results {
                println!(
                    "{:<28} {:<8} {:>5} {:>10.0} {:>14.3} {:>9.1}% {:>8.1}%",
                    mode.label(),
                    servers[i],
                    round + 1,
                    s.rate,
                    s.server_us,
                    s.server_util * 100.0,
                    s.load_util * 100.0
                );
                samples[m][i].push(s);
            }
        }
    }
    let pos = |name: &str| servers.iter().position(|s| *s == name);
    for (m, mode) in modes.iter().enumerate() {
        let (rate, per) = units(mode);
        println!("\n{} — medians over {runs} rounds", mode.label());
        println!(
            "{:<8} {:>10} {:>14} {:>10} {:>9}",
            "server", rate, per, "server CPU", "load CPU"
        );
        for (i, name) in servers.iter().enumerate() {
            let med =
                |f: fn(&Sample) -> f64| median(&samples[m][i].iter().map(f).collect::<Vec<_>>());
            println!(
                "{:<8} {:>10.0} {:>14.3} {:>9.1}% {:>8.1}%",
                name,
                med(|s| s.rate),
                med(|s| s.server_us),
                med(|s| s.server_util) * 100.0,
                med(|s| s.load_util) * 100.0
            );
        }
        let (Some(c), Some(t)) = (pos("curio"), pos("tokio")) else {
            continue;
        };
        let per_round = |f: fn(&Sample) -> f64| {
            (0..runs)
                .map(|r| f(&samples[m][c][r]) / f(&samples[m][t][r]))
                .collect::<Vec<_>>()
        };
        let show = |xs: &[f64]| {
            xs.iter()
                .map(|x| format!("{x:.3}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let cpu = per_round(|s| s.server_us);
        let rates = per_round(|s| s.rate);
        let (cpu_m, rate_m) = (median(&cpu), median(&rates));
        if mode.bulk() {
            println!(
                "target: curio MB/s within 5% of tokio-rustls: {rate_m:.3} x -> {}",
                if rate_m >= 0.95 { "met" } else { "missed" }
            );
            println!("  per round: {}", show(&rates));
            println!(
                "(server CPU per MB: curio ÷ tokio-rustls {cpu_m:.3} x; per round: {})",
                show(&cpu)
            );
        } else {
            println!(
                "target: curio server CPU per {} <= 1.05 x tokio-rustls: {cpu_m:.3} x -> {}",
                if mode.name == "echo" {
                    "round trip"
                } else {
                    "handshake"
                },
                if cpu_m <= 1.05 { "met" } else { "missed" }
            );
            println!("  per round: {}", show(&cpu));
            println!(
                "({rate}: curio ÷ tokio-rustls {rate_m:.3} x; per round: {})",
                show(&rates)
            );
        }
    }
}

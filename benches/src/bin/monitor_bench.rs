//! What watching a program costs it (issue 12): the task switch with the
//! monitor on and a client polling `ps`, `ps` over many tasks, and the kernel
//! time of one `where`.
//!
//! ```text
//! monitor_bench switch [ROUNDS] [YIELDS]
//!                                ns per yield (two tasks taking turns, YIELDS yields a round,
//!                                default 10 000 000, so that a round sees a few `ps`): an
//!                                unwatched kernel against one with the monitor on and a client
//!                                asking `ps` every 100 ms, rounds alternating; prints each
//!                                round and the medians, of wall time and of the kernel
//!                                thread's CPU time (which a loaded machine disturbs less)
//! monitor_bench ps [TASKS]       `ps` over TASKS sleeping tasks (default 100 000): the time a
//!                                client waits for the table, and the kernel's share
//! monitor_bench where [DEPTH]    `where` on a task blocked DEPTH frames deep (default 20):
//!                                kernel time per capture, and the first and later symbol
//!                                lookups (made by the monitor's thread, not the kernel)
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use curio_benches::loops;

const YIELDS: u64 = 10_000_000;
const PROMPT: &[u8] = b"curio > ";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map_or("switch", String::as_str);
    let n: Option<u64> = args.get(2).and_then(|s| s.replace('_', "").parse().ok());
    let m: Option<u64> = args.get(3).and_then(|s| s.replace('_', "").parse().ok());
    match what {
        "switch" => switch(n.unwrap_or(7) as usize, m.unwrap_or(YIELDS)),
        "ps" => ps(n.unwrap_or(100_000) as usize),
        "where" => where_(n.unwrap_or(20) as usize),
        _ => {
            eprintln!(
                "usage: monitor_bench [switch [ROUNDS [YIELDS]] | ps [TASKS] | where [DEPTH]]"
            );
            std::process::exit(2);
        }
    }
}

/// Reads from `s` up to and including the next prompt; returns the bytes.
fn until_prompt(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while !got.ends_with(PROMPT) {
        let n = s.read(&mut buf).expect("read the monitor");
        assert!(n > 0, "the monitor closed the session");
        got.extend_from_slice(&buf[..n]);
    }
    got
}

fn connect(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect to the monitor");
    until_prompt(&mut s);
    s
}

fn ask(s: &mut TcpStream, line: &str) -> Vec<u8> {
    s.write_all(line.as_bytes()).expect("write");
    s.write_all(b"\n").expect("write");
    until_prompt(s)
}

fn monitored() -> curio::Kernel {
    curio::Kernel::builder()
        .monitor_address("127.0.0.1:0".parse().expect("address"))
        .build()
}

/// The calling thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant
    // every Linux has.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// One round of the switch loop, `yields` yields; with `poll`, a client asks
/// `ps` every 100 ms meanwhile. Wall and kernel-thread CPU ns per yield.
fn switch_round(poll: bool, yields: u64) -> (f64, f64) {
    let kernel = if poll {
        monitored()
    } else {
        curio::Kernel::builder().build()
    };
    kernel
        .run(move || {
            let stop = Arc::new(AtomicBool::new(false));
            let client = poll.then(|| {
                let addr = curio::monitor::address().expect("the monitor listens");
                let stop = stop.clone();
                thread::spawn(move || {
                    let mut s = connect(addr);
                    let mut polls = 0u32;
                    while !stop.load(Ordering::Acquire) {
                        ask(&mut s, "ps");
                        polls += 1;
                        thread::sleep(Duration::from_millis(100));
                    }
                    polls
                })
            });
            // Let the client connect first, so every round polls throughout.
            curio::sleep(Duration::from_millis(50)).expect("sleep");
            let (start, cpu) = (Instant::now(), thread_cpu());
            loops::curio_switch(yields, curio::yield_now);
            let ns = start.elapsed().as_nanos() as f64 / yields as f64;
            let cpu_ns = (thread_cpu() - cpu).as_nanos() as f64 / yields as f64;
            stop.store(true, Ordering::Release);
            // The client's last `ps` needs the kernel: wait in a cancellable sleep.
            if let Some(c) = client {
                while !c.is_finished() {
                    curio::sleep(Duration::from_millis(5)).expect("sleep");
                }
                let polls = c.join().expect("client");
                assert!(
                    polls > 0 || ns * yields as f64 <= 1e8,
                    "the client never polled"
                );
            }
            (ns, cpu_ns)
        })
        .expect("kernel")
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn switch(rounds: usize, yields: u64) {
    let (mut off, mut on, mut off_cpu, mut on_cpu) = (vec![], vec![], vec![], vec![]);
    switch_round(false, yields); // warm-up: stacks mapped, code paged in
    for r in 0..rounds {
        let (a, a_cpu) = switch_round(false, yields);
        let (b, b_cpu) = switch_round(true, yields);
        println!(
            "round {r}: unwatched {a:.2} ns/yield (CPU {a_cpu:.2}), \
             monitor on + ps every 100 ms {b:.2} ns/yield (CPU {b_cpu:.2})"
        );
        off.push(a);
        on.push(b);
        off_cpu.push(a_cpu);
        on_cpu.push(b_cpu);
    }
    let (a, b) = (median(&mut off), median(&mut on));
    let (a_cpu, b_cpu) = (median(&mut off_cpu), median(&mut on_cpu));
    println!(
        "median: unwatched {a:.2} ns/yield, watched {b:.2} ns/yield: {:+.1}%; \
         kernel thread CPU {a_cpu:.2} against {b_cpu:.2} ns/yield: {:+.1}%",
        (b / a - 1.0) * 100.0,
        (b_cpu / a_cpu - 1.0) * 100.0
    );
}

fn ps(tasks: usize) {
    monitored()
        .run(move || {
            let spawn = Instant::now();
            let kids: Vec<_> = (0..tasks)
                .map(|_| curio::spawn(|| curio::sleep(Duration::from_secs(3600))))
                .collect();
            curio::yield_now().expect("yield"); // every kid starts and sleeps
            println!("{tasks} sleeping tasks in {:.2} s", spawn.elapsed().as_secs_f64());
            // The kernel's share: the snapshot made between two slices (what
            // the monitor asks for); stack depths and CPU times are then read
            // on the monitor's thread.
            let t = Instant::now();
            let snap = curio::debug::snapshot();
            println!(
                "snapshot from a task (kernel's rows + stack depths): {:.1} ms for {} rows",
                t.elapsed().as_secs_f64() * 1e3,
                snap.tasks.len()
            );
            let addr = curio::monitor::address().expect("the monitor listens");
            let client = thread::spawn(move || {
                let mut s = connect(addr);
                let mut times = Vec::new();
                let mut bytes = 0;
                for _ in 0..5 {
                    let t = Instant::now();
                    bytes = ask(&mut s, "ps").len();
                    times.push(t.elapsed().as_secs_f64() * 1e3);
                }
                (times, bytes)
            });
            while !client.is_finished() {
                curio::sleep(Duration::from_millis(1)).expect("sleep");
            }
            let (mut times, bytes) = client.join().expect("client");
            println!(
                "ps over {tasks} tasks, as a client waits for it: {:?} ms (median {:.0} ms, {bytes} bytes)",
                times.iter().map(|t| t.round()).collect::<Vec<_>>(),
                median(&mut times)
            );
            for k in &kids {
                k.cancel_nowait();
            }
        })
        .expect("kernel");
}

#[inline(never)]
fn nest(depth: usize) -> curio::Result<()> {
    if depth == 0 {
        curio::sleep(Duration::from_secs(3600))
    } else {
        nest(depth - 1)?;
        std::hint::black_box(depth);
        Ok(())
    }
}

fn where_(depth: usize) {
    curio::run(move || {
        let kid = curio::spawn(move || nest(depth));
        curio::yield_now().expect("yield");
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..1000 {
            let t = Instant::now();
            last = Some(kid.traceback().expect("traceback"));
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let t = Instant::now();
        let frames = last.as_ref().map_or(0, |t| t.frames().len());
        let first = t.elapsed();
        let again = kid.traceback().expect("traceback");
        let t = Instant::now();
        let _ = again.to_string();
        let later = t.elapsed();
        println!(
            "where on a task {depth} frames deep ({frames} frames): kernel time per capture median {:.1} µs, max {:.1} µs; symbol lookup (monitor thread) first {:.1} ms, then {:.2} ms",
            median(&mut times),
            times.iter().copied().fold(0.0, f64::max),
            first.as_secs_f64() * 1e3,
            later.as_secs_f64() * 1e3
        );
        kid.cancel().expect("cancel");
    });
}

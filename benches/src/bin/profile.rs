//! The hot loops of the criterion benches (`curio_benches::loops`) without
//! criterion around them, for profilers (`valgrind --tool=callgrind`, `perf record`). Prints the
//! time per operation, which under a profiler means little.
//!
//! ```text
//! profile switch [N]   two tasks take turns yielding, N yields in all (default 1 000 000)
//! profile spawn [N]    spawn a task and join it, N times (default 1 000 000)
//! profile batch [N]    spawn 10 000 tasks then join them all, N tasks in all (default 1 000 000)
//! profile floor [N]    the floor: N resume + suspend round trips of one bare corosensei coroutine
//! profile rr [N]       two bare corosensei coroutines taking turns through a VecDeque, N yields
//! profile queue [N]    two tasks ping-pong an item through two queues, N round trips
//! profile event [N]    two tasks ping-pong through two events, N round trips
//! profile switch-watched [N]  `switch` in a kernel with the monitor on (a watched kernel)
//! profile tokio-spawn [N]  the peer: tokio current_thread, spawn a task and await it, N times
//! profile tokio-batch [N]  the peer: tokio current_thread, batches of 10 000 spawned then awaited
//! ```
//!
//! For callgrind, count only the measured loop with
//! `--toggle-collect='*profile::run_*'`.

use std::time::Instant;

use curio_benches::loops;

#[inline(never)]
fn run_floor(n: u64) {
    loops::corosensei_resume_suspend(n);
}

#[inline(never)]
fn run_switch(n: u64) {
    loops::curio_switch(n, curio::yield_now);
}

#[inline(never)]
fn run_spawn(n: u64) {
    loops::curio_spawn_one(n);
}

#[inline(never)]
fn run_batch(n: u64) {
    loops::curio_spawn_batch(n);
}

#[inline(never)]
fn run_round_robin(n: u64) {
    loops::corosensei_round_robin(n, |y| y.suspend(()));
}

#[inline(never)]
fn run_queue(n: u64) {
    loops::curio_queue_pingpong(n);
}

#[inline(never)]
fn run_event(n: u64) {
    loops::curio_event_pingpong(n);
}

/// The tokio peers run outside curio: the same loops as the criterion bench,
/// a warm-up round first.
fn tokio_peer(what: &str, n: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime");
    let batch = what == "tokio-batch";
    let f = |n: u64| {
        rt.block_on(async move {
            let mut tasks = Vec::with_capacity(10_000);
            let mut done = 0;
            while done < n {
                let k = if batch { (n - done).min(10_000) } else { 1 };
                for i in done..done + k {
                    tasks.push(tokio::spawn(async move { i }));
                }
                for t in tasks.drain(..) {
                    std::hint::black_box(t.await.expect("join"));
                }
                done += k;
            }
        })
    };
    f(n.min(10_000));
    let start = Instant::now();
    f(n);
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    println!("{what}: {n} operations, {ns:.1} ns each");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map_or("switch", String::as_str).to_string();
    let n: u64 = args
        .get(2)
        .and_then(|s| s.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    if what.starts_with("tokio-") {
        return tokio_peer(&what, n);
    }
    let f: fn(u64) = match what.as_str() {
        "switch" | "switch-watched" => run_switch,
        "spawn" => run_spawn,
        "batch" => run_batch,
        "floor" => run_floor,
        "rr" => run_round_robin,
        "queue" => run_queue,
        "event" => run_event,
        _ => {
            eprintln!("usage: profile [switch|spawn|batch|floor|rr|queue|event] [N]");
            std::process::exit(2);
        }
    };
    let body = move || {
        // One short round first, so the stack pool is warm as in the benches.
        f(n.min(10_000));
        let start = Instant::now();
        f(n);
        start.elapsed().as_nanos() as f64 / n as f64
    };
    let ns = if what == "switch-watched" {
        curio::Kernel::builder()
            .monitor_address("127.0.0.1:0".parse().expect("an address"))
            .build()
            .run(body)
            .expect("the watched kernel runs")
    } else {
        curio::run(body)
    };
    println!("{what}: {n} operations, {ns:.1} ns each");
}

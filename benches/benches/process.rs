//! Subprocesses and signals: nanoseconds per child spawned and waited for, and
//! microseconds from `kill(2)` to the waiting task's wake-up.
//!
//! Groups:
//!
//! - `spawn_wait_true`: start `/bin/true` and wait for it to exit, one child at
//!   a time. Peers: `std::process::Command::status` (a blocking `waitpid`),
//!   curio's `Command::status` (pidfd through the poller) from a task, and
//!   `tokio::process::Command::status` on a `current_thread` runtime. Most of
//!   the time is the operating system's (fork/exec and exit); the difference
//!   between peers is how the exit is waited for.
//! - `signal_latency`: a task waits for `SIGUSR1` (curio: `SignalSet::wait`;
//!   tokio: `Signal::recv` on `SIGUSR2`, on a `current_thread` runtime); an OS
//!   thread, once the task is parked, records the time and sends the signal
//!   to the process with `kill(2)`. One iteration is the time from just
//!   before `kill` to the task running again; the pause before each `kill` is
//!   not counted.
//!
//! The two runtimes use different signals: tokio registers its action through
//! signal-hook too, and a signal curio has given back to its default action
//! would end the process when tokio's turn came (see `arch-notes/signals.md`).

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use curio_benches::{criterion_config, curio_timed};

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio current_thread runtime")
}

fn std_true(iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        let s = std::process::Command::new("/bin/true").status().unwrap();
        black_box(s);
    }
    start.elapsed()
}

fn curio_true(iters: u64) -> Duration {
    curio_timed(|| {
        for _ in 0..iters {
            let s = curio::subprocess::Command::new("/bin/true")
                .status()
                .unwrap();
            black_box(s);
        }
    })
}

fn tokio_true(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    rt.block_on(async move {
        let start = Instant::now();
        for _ in 0..iters {
            let s = tokio::process::Command::new("/bin/true")
                .status()
                .await
                .unwrap();
            black_box(s);
        }
        start.elapsed()
    })
}

/// The sending side of the latency loop: `iters` times, waits until the task
/// says it is about to wait, lets it park, records the time and sends `sig`.
fn sender(iters: u64, sig: i32, armed: Arc<AtomicBool>, sent: Arc<Mutex<Instant>>) {
    for _ in 0..iters {
        while !armed.swap(false, Ordering::AcqRel) {
            std::hint::spin_loop();
        }
        std::thread::sleep(Duration::from_micros(200));
        *sent.lock().unwrap() = Instant::now();
        curio::signal::send(std::process::id(), sig).unwrap();
    }
}

fn curio_latency(iters: u64) -> Duration {
    let armed = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(Instant::now()));
    let set = curio::signal::SignalSet::new(&[curio::signal::SIGUSR1]).unwrap();
    let (a, s) = (armed.clone(), sent.clone());
    let t = std::thread::spawn(move || sender(iters, curio::signal::SIGUSR1, a, s));
    let total = curio::run(|| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            armed.store(true, Ordering::Release);
            set.wait().unwrap();
            total += sent.lock().unwrap().elapsed();
        }
        total
    });
    t.join().unwrap();
    total
}

fn tokio_latency(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    use tokio::signal::unix::{SignalKind, signal};
    let armed = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(Instant::now()));
    let (a, s) = (armed.clone(), sent.clone());
    rt.block_on(async move {
        let mut sig = signal(SignalKind::user_defined2()).unwrap();
        let t = std::thread::spawn(move || sender(iters, libc::SIGUSR2, a, s));
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            armed.store(true, Ordering::Release);
            sig.recv().await.unwrap();
            total += sent.lock().unwrap().elapsed();
        }
        t.join().unwrap();
        total
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio_rt();

    let mut g = c.benchmark_group("spawn_wait_true");
    g.sample_size(20);
    g.bench_function("std", |b| b.iter_custom(std_true));
    g.bench_function("curio", |b| b.iter_custom(curio_true));
    g.bench_function("tokio/current_thread", |b| {
        b.iter_custom(|n| tokio_true(&rt, n))
    });
    g.finish();

    let mut g = c.benchmark_group("signal_latency");
    g.sample_size(20);
    g.bench_function("curio", |b| b.iter_custom(curio_latency));
    g.bench_function("tokio/current_thread", |b| {
        b.iter_custom(|n| tokio_latency(&rt, n))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = bench
}
criterion_main!(benches);

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
//! The loops are in `curio_benches::process`; `src/bin/process_rounds.rs`
//! runs the same loops with the peers interleaved, which this noisy machine
//! needs for a fair comparison.

use criterion::{Criterion, criterion_group, criterion_main};
use curio_benches::criterion_config;
use curio_benches::process::{
    curio_latency, curio_true, std_true, tokio_latency, tokio_rt, tokio_true,
};

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

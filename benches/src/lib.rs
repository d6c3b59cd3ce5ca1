//! Benchmarks of curio against its peers: helpers shared by the criterion
//! benches (`benches/*.rs`) and the `scale` and `profile` binaries; the measured
//! curio loops are in [`loops`], the TCP echo benchmark's helpers in [`echo`].
//!
//! Every peer is measured in the same run on the same machine, and figures are
//! quoted as ratios to a peer from that run (see `arch-notes/benchmarks.md`).
//! Runtimes are configured to be like-for-like with curio's single-threaded
//! kernel: tokio's `current_thread` runtime, and `may` with one worker.

pub mod echo;
pub mod loops;
pub mod process;
pub mod resp;

use std::sync::Once;
use std::time::{Duration, Instant};

use criterion::Criterion;

/// The stack size given to bare corosensei coroutines: curio's default, so the
/// floor is measured with the same amount of address space per stack.
pub const COROSENSEI_STACK: usize = curio::DEFAULT_STACK_SIZE;

/// Criterion settings sized for a small, shared, noisy machine: 30 samples, 3 s
/// of measurement after 1 s of warm-up. Command-line flags
/// (`--measurement-time`, `--sample-size`, …) still override these.
pub fn criterion_config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args()
}

/// Runs `f` in a new curio kernel and returns how long it took, timed from
/// inside the kernel (so kernel start-up and shutdown are not counted).
pub fn curio_timed(f: impl FnOnce()) -> Duration {
    curio::run(|| {
        let start = Instant::now();
        f();
        start.elapsed()
    })
}

/// Splits `total` operations between two workers (the first takes the odd one).
pub fn halves(total: u64) -> (u64, u64) {
    (total - total / 2, total / 2)
}

/// Configures `may` for one worker thread, with a coroutine pool big enough to
/// hold a 10 000-task batch. Must run before the first coroutine is spawned
/// anywhere in the process; later calls do nothing.
///
/// Discussion: curio and the bare corosensei peer reuse every stack. With
/// `may`'s default pool (1 000 coroutines) each spawn past the first thousand
/// of a batch maps a fresh stack, which made the batch peer ~10 µs per task
/// here instead of ~0.8 µs; the larger pool keeps the comparison about
/// scheduling, not `mmap`.
pub fn may_one_worker() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        may::config().set_workers(1).set_pool_capacity(20_000);
    });
}

/// Runs `f` as a `may` coroutine on the (single) worker and waits for its value
/// from the calling thread.
///
/// Benchmarks time themselves inside `f`, so that spawning and joining happen
/// coroutine-to-coroutine on the worker, as in curio and tokio, rather than
/// across OS threads.
pub fn may_run<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    may_one_worker();
    match may::go!(f).join() {
        Ok(v) => v,
        Err(_) => panic!("may benchmark coroutine panicked"),
    }
}

/// A tokio `current_thread` runtime: with `timers`, the time driver is enabled
/// (as a program that sleeps needs); without, the runtime has no driver at all.
pub fn tokio_runtime(timers: bool) -> tokio::runtime::Runtime {
    let mut b = tokio::runtime::Builder::new_current_thread();
    if timers {
        b.enable_time();
    }
    b.build().expect("tokio current_thread runtime")
}

/// Reads a `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM`, `VmPTE` …), in bytes.
pub fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    })
}

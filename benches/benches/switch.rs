//! Task switch: nanoseconds per yield for two tasks that take turns yielding.
//!
//! One criterion iteration is one yield: the yielding task suspends and the
//! other one is resumed. A sample of `n` iterations runs `n` yields (split
//! between the two tasks) inside one runtime, timed from inside the runtime
//! before the two tasks are spawned until both are joined, so runtime start-up
//! is excluded and the spawn/join of the two tasks is amortized over the
//! hundreds of thousands of yields a sample holds.
//!
//! Peers, all in group `switch`:
//!
//! - `corosensei/resume_suspend`: one coroutine resumed and suspended, no
//!   scheduler at all. The floor.
//! - `corosensei/round_robin_2`: two coroutines taking turns through a
//!   `VecDeque`: the smallest possible scheduler.
//! - `corosensei/round_robin_2_nested`: the same, but each coroutine suspends
//!   from inside a function it calls (not inlined), as real code does.
//! - `curio/yield_now`, `curio/sleep_zero`: two curio tasks in one kernel
//!   calling `curio::yield_now()` / `curio::sleep(Duration::ZERO)` in a loop.
//! - `curio/yield_now_nested`: the same, but each task yields from inside a
//!   function it calls (not inlined).
//!
//! Why the `_nested` pairs: a stackful switch leaves the CPU's return-address
//! predictor describing the kernel's stack, so every frame a resumed task
//! returns through costs a mispredicted return (and the next suspend another).
//! A loop that yields directly pays none of that; each extra frame between
//! the loop and the switch pays about the same in bare corosensei as in
//! curio. See `arch-notes/trap-flow.md`.
//! - `tokio/current_thread`, `tokio/current_thread_timers`: two tokio tasks
//!   calling `tokio::task::yield_now().await`, without and with the time driver.
//! - `may/1_worker`: two `may` coroutines on one worker calling
//!   `may::coroutine::yield_now()`.
//! - `std_thread/yield_now`: two OS threads calling `std::thread::yield_now()`.
//!   Not like-for-like: on a multi-core machine the threads run in parallel and
//!   each yield is a `sched_yield` system call that usually switches nothing.

use std::time::{Duration, Instant};

use corosensei::Yielder;
use criterion::{Criterion, criterion_group, criterion_main};
use curio_benches::{criterion_config, curio_timed, halves, loops, may_run, tokio_runtime};

/// The floor: one resume and one suspend of a single coroutine per iteration.
fn corosensei_resume_suspend(iters: u64) -> Duration {
    let start = Instant::now();
    loops::corosensei_resume_suspend(iters);
    start.elapsed()
}

/// Two coroutines taking turns through a ready queue, suspending inline.
fn corosensei_round_robin(iters: u64) -> Duration {
    let start = Instant::now();
    loops::corosensei_round_robin(iters, |y| y.suspend(()));
    start.elapsed()
}

/// [`corosensei_round_robin`], suspending from a function each coroutine calls.
fn corosensei_round_robin_nested(iters: u64) -> Duration {
    #[inline(never)]
    fn nested_suspend(y: &Yielder<(), ()>) {
        y.suspend(());
    }
    let start = Instant::now();
    loops::corosensei_round_robin(iters, nested_suspend);
    start.elapsed()
}

/// Two curio tasks, each calling `op` (a yield) its share of `iters` times.
fn curio_switch<F>(iters: u64, op: F) -> Duration
where
    F: Fn() -> curio::Result<()> + Copy + 'static,
{
    curio_timed(|| loops::curio_switch(iters, op))
}

#[inline]
fn curio_sleep_zero() -> curio::Result<()> {
    curio::sleep(Duration::ZERO)
}

#[inline(never)]
fn curio_nested_yield() -> curio::Result<()> {
    curio::yield_now()
}

/// Two tokio tasks on a `current_thread` runtime.
fn tokio_switch(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    let (a, b) = halves(iters);
    rt.block_on(async move {
        let start = Instant::now();
        let t1 = tokio::spawn(async move {
            for _ in 0..a {
                tokio::task::yield_now().await;
            }
        });
        let t2 = tokio::spawn(async move {
            for _ in 0..b {
                tokio::task::yield_now().await;
            }
        });
        t1.await.expect("join");
        t2.await.expect("join");
        start.elapsed()
    })
}

/// Two `may` coroutines on one worker.
fn may_switch(iters: u64) -> Duration {
    let (a, b) = halves(iters);
    may_run(move || {
        let start = Instant::now();
        let t1 = may::go!(move || {
            for _ in 0..a {
                may::coroutine::yield_now();
            }
        });
        let t2 = may::go!(move || {
            for _ in 0..b {
                may::coroutine::yield_now();
            }
        });
        t1.join().expect("join");
        t2.join().expect("join");
        start.elapsed()
    })
}

/// Two OS threads calling `sched_yield`.
fn std_switch(iters: u64) -> Duration {
    let (a, b) = halves(iters);
    let start = Instant::now();
    let t1 = std::thread::spawn(move || {
        for _ in 0..a {
            std::thread::yield_now();
        }
    });
    let t2 = std::thread::spawn(move || {
        for _ in 0..b {
            std::thread::yield_now();
        }
    });
    t1.join().expect("join");
    t2.join().expect("join");
    start.elapsed()
}

fn switch(c: &mut Criterion) {
    let mut g = c.benchmark_group("switch");
    g.bench_function("corosensei/resume_suspend", |b| {
        b.iter_custom(corosensei_resume_suspend)
    });
    g.bench_function("corosensei/round_robin_2", |b| {
        b.iter_custom(corosensei_round_robin)
    });
    g.bench_function("corosensei/round_robin_2_nested", |b| {
        b.iter_custom(corosensei_round_robin_nested)
    });
    g.bench_function("curio/yield_now", |b| {
        b.iter_custom(|n| curio_switch(n, curio::yield_now))
    });
    g.bench_function("curio/sleep_zero", |b| {
        b.iter_custom(|n| curio_switch(n, curio_sleep_zero))
    });
    g.bench_function("curio/yield_now_nested", |b| {
        b.iter_custom(|n| curio_switch(n, curio_nested_yield))
    });
    let rt = tokio_runtime(false);
    g.bench_function("tokio/current_thread", |b| {
        b.iter_custom(|n| tokio_switch(&rt, n))
    });
    let rt = tokio_runtime(true);
    g.bench_function("tokio/current_thread_timers", |b| {
        b.iter_custom(|n| tokio_switch(&rt, n))
    });
    g.bench_function("may/1_worker", |b| b.iter_custom(may_switch));
    g.bench_function("std_thread/yield_now", |b| b.iter_custom(std_switch));
    g.finish();
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = switch
}
criterion_main!(benches);

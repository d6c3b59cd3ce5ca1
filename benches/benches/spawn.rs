//! Spawn + join: nanoseconds per task for a trivial task that returns a number.
//!
//! One criterion iteration is one task spawned and joined. A sample runs inside
//! one runtime, timed from inside it, so runtime start-up is excluded.
//!
//! Groups:
//!
//! - `spawn_join_one`: spawn a task, join it, repeat.
//! - `spawn_join_batch`: spawn 10 000 tasks, then join them all, repeat.
//! - `spawn_join_one_thread`: `std::thread::spawn` + `join`, one at a time.
//!   Its own group with fewer samples, since each costs tens of microseconds.
//!
//! Peers in both main groups:
//!
//! - `corosensei`: a bare coroutine created on a reused stack and resumed to
//!   completion (the batch keeps 10 000 stacks). The floor: no task header, no
//!   ready queue, no join.
//! - `curio`: `curio::spawn(move || i)` and `Task::join` from the main task.
//! - `tokio/current_thread`: `tokio::spawn(async move { i })` and awaiting the
//!   `JoinHandle`, from the `block_on` future.
//! - `may/1_worker`: `go!(move || i)` and `JoinHandle::join`, from a coroutine
//!   on the single worker, whose coroutine pool is raised to hold a whole batch
//!   (see `curio_benches::may_one_worker`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};
use criterion::{Criterion, criterion_group, criterion_main};
use curio_benches::loops::{BATCH, in_batches};
use curio_benches::{
    COROSENSEI_STACK, criterion_config, curio_timed, loops, may_run, tokio_runtime,
};

/// Runs one trivial coroutine to completion on `stack` and hands the stack back.
fn run_coroutine(stack: DefaultStack, i: u64) -> DefaultStack {
    let mut co = Coroutine::with_stack(stack, move |_: &Yielder<(), ()>, ()| black_box(i));
    match co.resume(()) {
        CoroutineResult::Return(v) => {
            black_box(v);
        }
        CoroutineResult::Yield(()) => unreachable!("the coroutine never yields"),
    }
    co.into_stack()
}

fn corosensei_one(stack: &mut Option<DefaultStack>, iters: u64) -> Duration {
    let mut st = stack.take().expect("stack");
    let start = Instant::now();
    for i in 0..iters {
        st = run_coroutine(st, i);
    }
    let elapsed = start.elapsed();
    *stack = Some(st);
    elapsed
}

fn corosensei_batch(stacks: &mut Vec<DefaultStack>, iters: u64) -> Duration {
    let start = Instant::now();
    in_batches(iters, |first, n| {
        let mut coros: Vec<_> = (0..n)
            .map(|k| {
                let stack = stacks.pop().expect("a stack per task");
                let i = first + k;
                Coroutine::with_stack(stack, move |_: &Yielder<(), ()>, ()| black_box(i))
            })
            .collect();
        for co in &mut coros {
            match co.resume(()) {
                CoroutineResult::Return(v) => {
                    black_box(v);
                }
                CoroutineResult::Yield(()) => unreachable!("the coroutine never yields"),
            }
        }
        stacks.extend(coros.into_iter().map(Coroutine::into_stack));
    });
    start.elapsed()
}

fn curio_one(iters: u64) -> Duration {
    curio_timed(|| loops::curio_spawn_one(iters))
}

fn curio_batch(iters: u64) -> Duration {
    curio_timed(|| loops::curio_spawn_batch(iters))
}

fn tokio_one(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    rt.block_on(async move {
        let start = Instant::now();
        for i in 0..iters {
            let t = tokio::spawn(async move { i });
            black_box(t.await.expect("join"));
        }
        start.elapsed()
    })
}

fn tokio_batch(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    loops::tokio_spawn_batches_of(rt, iters, BATCH)
}

fn may_one(iters: u64) -> Duration {
    may_run(move || {
        let start = Instant::now();
        for i in 0..iters {
            let t = may::go!(move || i);
            black_box(t.join().expect("join"));
        }
        start.elapsed()
    })
}

fn may_batch(iters: u64) -> Duration {
    may_run(move || {
        let mut tasks = Vec::with_capacity(BATCH as usize);
        let start = Instant::now();
        in_batches(iters, |first, n| {
            for i in first..first + n {
                tasks.push(may::go!(move || i));
            }
            for t in tasks.drain(..) {
                black_box(t.join().expect("join"));
            }
        });
        start.elapsed()
    })
}

fn std_one(iters: u64) -> Duration {
    let start = Instant::now();
    for i in 0..iters {
        black_box(std::thread::spawn(move || i).join().expect("join"));
    }
    start.elapsed()
}

fn spawn_join(c: &mut Criterion) {
    let rt = tokio_runtime(false);

    let mut g = c.benchmark_group("spawn_join_one");
    let mut stack = Some(DefaultStack::new(COROSENSEI_STACK).expect("stack"));
    g.bench_function("corosensei", |b| {
        b.iter_custom(|n| corosensei_one(&mut stack, n))
    });
    g.bench_function("curio", |b| b.iter_custom(curio_one));
    g.bench_function("tokio/current_thread", |b| {
        b.iter_custom(|n| tokio_one(&rt, n))
    });
    g.bench_function("may/1_worker", |b| b.iter_custom(may_one));
    g.finish();

    let mut g = c.benchmark_group("spawn_join_batch");
    let mut stacks: Vec<_> = (0..BATCH)
        .map(|_| DefaultStack::new(COROSENSEI_STACK).expect("stack"))
        .collect();
    g.bench_function("corosensei", |b| {
        b.iter_custom(|n| corosensei_batch(&mut stacks, n))
    });
    drop(stacks);
    g.bench_function("curio", |b| b.iter_custom(curio_batch));
    g.bench_function("tokio/current_thread", |b| {
        b.iter_custom(|n| tokio_batch(&rt, n))
    });
    g.bench_function("may/1_worker", |b| b.iter_custom(may_batch));
    g.finish();

    let mut g = c.benchmark_group("spawn_join_one_thread");
    g.sample_size(10).measurement_time(Duration::from_secs(1));
    g.bench_function("std_thread", |b| b.iter_custom(std_one));
    g.finish();
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = spawn_join
}
criterion_main!(benches);

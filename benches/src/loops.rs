//! The measured loops, shared by the criterion benches and the `profile`
//! binary so that a profile always looks at exactly what criterion timed.
//!
//! The curio loops run inside the kernel that calls them (criterion times them
//! from inside `curio::run`, so kernel start-up is not counted). Each blocking
//! call is made directly in the loop, as user code would: see
//! `arch-notes/trap-flow.md` for why that matters to a stackful switch.

use std::collections::VecDeque;
use std::hint::black_box;
use std::rc::Rc;

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};
use curio::sync::Event;

use crate::{COROSENSEI_STACK, halves};

/// Tasks spawned before any is joined in [`curio_spawn_batch`].
pub const BATCH: u64 = 10_000;

/// Splits `iters` tasks into batches of at most [`BATCH`], calling `batch(first, len)`.
pub fn in_batches(iters: u64, mut batch: impl FnMut(u64, u64)) {
    let mut done = 0;
    while done < iters {
        let n = (iters - done).min(BATCH);
        batch(done, n);
        done += n;
    }
}

/// The floor: `iters` resume + suspend round trips of one bare corosensei
/// coroutine and its caller. Not inlined, so that where it lands in a binary
/// does not depend on the code around its call (this loop's timing moved by
/// 70% with code placement when criterion's closure inlined it).
#[inline(never)]
pub fn corosensei_resume_suspend(iters: u64) {
    let stack = DefaultStack::new(COROSENSEI_STACK).expect("stack");
    let mut coro = Coroutine::with_stack(stack, |y: &Yielder<bool, ()>, mut go: bool| {
        while go {
            go = y.suspend(());
        }
    });
    for _ in 0..iters {
        black_box(coro.resume(black_box(true)));
    }
    assert!(matches!(coro.resume(false), CoroutineResult::Return(())));
}

/// Two bare corosensei coroutines taking turns through a `VecDeque`, `iters`
/// suspends in all; each suspends through `suspend` (inline for a closure,
/// one call deep for a `#[inline(never)]` function).
pub fn corosensei_round_robin<S>(iters: u64, suspend: S)
where
    S: Fn(&Yielder<(), ()>) + Copy + 'static,
{
    let (a, b) = halves(iters);
    let make = |n: u64| {
        let stack = DefaultStack::new(COROSENSEI_STACK).expect("stack");
        Coroutine::with_stack(stack, move |y: &Yielder<(), ()>, ()| {
            for _ in 0..n {
                suspend(y);
            }
        })
    };
    let mut ready = VecDeque::from([make(a), make(b)]);
    while let Some(mut co) = ready.pop_front() {
        if let CoroutineResult::Yield(()) = co.resume(()) {
            ready.push_back(co);
        }
    }
}

/// Two curio tasks, each calling `op` (a yield) its share of `iters` times.
pub fn curio_switch<F>(iters: u64, op: F)
where
    F: Fn() -> curio::Result<()> + Copy + 'static,
{
    let (a, b) = halves(iters);
    let t1 = curio::spawn(move || {
        for _ in 0..a {
            op().expect("yield");
        }
    });
    let t2 = curio::spawn(move || {
        for _ in 0..b {
            op().expect("yield");
        }
    });
    t1.join().expect("join");
    t2.join().expect("join");
}

/// Spawns a task returning a number and joins it, `iters` times.
pub fn curio_spawn_one(iters: u64) {
    for i in 0..iters {
        let t = curio::spawn(move || i);
        black_box(t.join().expect("join"));
    }
}

/// Spawns [`BATCH`] tasks returning a number, then joins them all, until
/// `iters` tasks have run.
pub fn curio_spawn_batch(iters: u64) {
    curio_spawn_batches_of(iters, BATCH);
}

/// [`curio_spawn_batch`] with batches of `batch` tasks (`batch_sizes`).
pub fn curio_spawn_batches_of(iters: u64, batch: u64) {
    let mut tasks = Vec::with_capacity(batch as usize);
    let mut done = 0;
    while done < iters {
        let n = (iters - done).min(batch);
        for i in done..done + n {
            tasks.push(curio::spawn(move || i));
        }
        for t in tasks.drain(..) {
            black_box(t.join().expect("join"));
        }
        done += n;
    }
}

/// The peer: `iters` tokio tasks in batches of `batch`, each spawned then
/// awaited, in `rt` (a `current_thread` runtime); the time from inside it.
pub fn tokio_spawn_batches_of(
    rt: &tokio::runtime::Runtime,
    iters: u64,
    batch: u64,
) -> std::time::Duration {
    rt.block_on(async move {
        let mut tasks = Vec::with_capacity(batch as usize);
        let start = std::time::Instant::now();
        let mut done = 0;
        while done < iters {
            let n = (iters - done).min(batch);
            for i in done..done + n {
                tasks.push(tokio::spawn(async move { i }));
            }
            for t in tasks.drain(..) {
                black_box(t.await.expect("join"));
            }
            done += n;
        }
        start.elapsed()
    })
}

/// Two tasks hand control back and forth through two events, `n` round trips.
pub fn curio_event_pingpong(n: u64) {
    let (e1, e2) = (Rc::new(Event::new()), Rc::new(Event::new()));
    let (b1, b2) = (e1.clone(), e2.clone());
    let b = curio::spawn(move || {
        for _ in 0..n {
            b1.wait().expect("wait");
            b1.clear();
            b2.set();
        }
    });
    for _ in 0..n {
        e1.set();
        e2.wait().expect("wait");
        e2.clear();
    }
    b.join().expect("join");
}

/// Two tasks pass a number back and forth through two unbounded queues, `n`
/// round trips.
pub fn curio_queue_pingpong(n: u64) {
    let (q1, q2) = (Rc::new(curio::Queue::new(0)), Rc::new(curio::Queue::new(0)));
    let (p1, p2) = (q1.clone(), q2.clone());
    let b = curio::spawn(move || {
        for _ in 0..n {
            let v: u64 = p1.get().expect("get");
            p2.put(v).expect("put");
        }
    });
    for i in 0..n {
        q1.put(i).expect("put");
        black_box(q2.get().expect("get"));
    }
    b.join().expect("join");
}

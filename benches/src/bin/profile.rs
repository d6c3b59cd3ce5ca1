//! The hot loops of the `switch` and `spawn` benches without criterion around
//! them, for profilers (`valgrind --tool=callgrind`, `perf record`). Prints the
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
//! ```
//!
//! For callgrind, count only the measured loop with
//! `--toggle-collect='*profile::run_*'`.

use std::collections::VecDeque;
use std::hint::black_box;
use std::rc::Rc;
use std::time::Instant;

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};
use curio::sync::Event;
use curio_benches::{COROSENSEI_STACK, halves};

#[inline(never)]
fn run_floor(n: u64) {
    let stack = DefaultStack::new(COROSENSEI_STACK).expect("stack");
    let mut coro = Coroutine::with_stack(stack, |y: &Yielder<bool, ()>, mut go: bool| {
        while go {
            go = y.suspend(());
        }
    });
    for _ in 0..n {
        black_box(coro.resume(black_box(true)));
    }
    assert!(matches!(coro.resume(false), CoroutineResult::Return(())));
}

#[inline(never)]
fn run_switch(n: u64) {
    let (a, b) = halves(n);
    let t1 = curio::spawn(move || {
        for _ in 0..a {
            curio::yield_now().expect("yield");
        }
    });
    let t2 = curio::spawn(move || {
        for _ in 0..b {
            curio::yield_now().expect("yield");
        }
    });
    t1.join().expect("join");
    t2.join().expect("join");
}

#[inline(never)]
fn run_spawn(n: u64) {
    for i in 0..n {
        let t = curio::spawn(move || i);
        black_box(t.join().expect("join"));
    }
}

#[inline(never)]
fn run_batch(n: u64) {
    let mut tasks = Vec::with_capacity(10_000);
    let mut done = 0;
    while done < n {
        let k = (n - done).min(10_000);
        for i in done..done + k {
            tasks.push(curio::spawn(move || i));
        }
        for t in tasks.drain(..) {
            black_box(t.join().expect("join"));
        }
        done += k;
    }
}

#[inline(never)]
fn run_round_robin(n: u64) {
    let (a, b) = halves(n);
    let make = |k: u64| {
        let stack = DefaultStack::new(COROSENSEI_STACK).expect("stack");
        Coroutine::with_stack(stack, move |y: &Yielder<(), ()>, ()| {
            for _ in 0..k {
                y.suspend(());
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

#[inline(never)]
fn run_queue(n: u64) {
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

#[inline(never)]
fn run_event(n: u64) {
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map_or("switch", String::as_str).to_string();
    let n: u64 = args
        .get(2)
        .and_then(|s| s.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    let f: fn(u64) = match what.as_str() {
        "switch" => run_switch,
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
    let ns = curio::run(move || {
        // One short round first, so the stack pool is warm as in the benches.
        f(n.min(10_000));
        let start = Instant::now();
        f(n);
        start.elapsed().as_nanos() as f64 / n as f64
    });
    println!("{what}: {n} operations, {ns:.1} ns each");
}

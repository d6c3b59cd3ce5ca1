//! `run_in_thread`: blocking work on a pool of OS threads while the kernel runs
//! other tasks.
//!
//! Values and panics come back to the caller; the pool never runs more calls at
//! once than `thread_pool_size`, and callers beyond that wait; a cancelled or
//! timed-out caller returns at once, a call not yet started never runs, and the
//! late result of a call already running is dropped without harm
//! (`semantics.md`, Workers; `curio-reference.md` §11.1).

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use curio::{ErrorKind, Kernel};

/// Runs `main` on a virtual-clock kernel whose pool has `threads` threads,
/// under the watchdog; fails the test if the kernel reports an error.
#[track_caller]
fn run_with_pool<T: Send + 'static>(
    threads: usize,
    main: impl FnOnce() -> T + Send + 'static,
) -> T {
    watchdog(move || {
        let kernel = Kernel::builder()
            .virtual_clock(true)
            .thread_pool_size(threads)
            .build();
        match kernel.run(main) {
            Ok(v) => v,
            Err(e) => panic!("the kernel failed: {e}"),
        }
    })
}

/// A gate that blocking functions on pool threads wait at until it opens.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn wait(&self) {
        let (open, cv) = &*self.0;
        let mut open = open.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
    }

    fn open(&self) {
        let (open, cv) = &*self.0;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
}

/// Suspends the calling task until `cond` holds, looking every millisecond of
/// kernel time (on the virtual clock, each look lets a few real milliseconds
/// pass while pool threads work).
fn wait_until(mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "condition not reached"
        );
        curio::sleep(ms(1)).unwrap();
    }
}

/// Sets its flag when dropped: shows where a result ended up.
#[derive(Debug)]
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------
// Values and panics
// ---------------------------------------------------------------------------

#[test]
fn run_in_thread_returns_the_value_of_the_function() {
    run_with_pool(4, || {
        let n = curio::run_in_thread(|| (1..=10u64).product::<u64>()).unwrap();
        assert_eq!(n, 3_628_800);
        let me = thread::current().id();
        let (s, other) = curio::run_in_thread(move || {
            (String::from("from a thread"), thread::current().id() != me)
        })
        .unwrap();
        assert_eq!(s, "from a thread");
        assert!(other, "the function ran on another OS thread");
    });
}

#[test]
fn the_kernel_runs_other_tasks_while_a_thread_blocks() {
    let events = run_logged(|log| {
        let (tx, rx) = mpsc::channel::<&'static str>();
        let l = log.clone();
        let caller = curio::spawn(move || {
            // Blocks its pool thread until the other task sends.
            let msg = curio::run_in_thread(move || rx.recv().unwrap()).unwrap();
            l.push(format!("caller got {msg:?}"));
        });
        let l = log.clone();
        let sender = curio::spawn(move || {
            curio::sleep(secs(1)).unwrap();
            l.push("sender sends");
            tx.send("hello").unwrap();
        });
        sender.join().unwrap();
        caller.join().unwrap();
    });
    assert_events(&events, &["sender sends", "caller got \"hello\""]);
}

#[test]
fn a_panic_in_the_function_comes_back_as_an_error_and_the_kernel_goes_on() {
    run_with_pool(2, || {
        let e = curio::run_in_thread(|| -> u32 { panic!("the worker fell over") }).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TaskPanicked);
        assert!(e.is_panic());
        assert!(!e.is_cancellation());
        assert!(e.to_string().contains("the worker fell over"), "{e}");
        // The pool still works.
        assert_eq!(curio::run_in_thread(|| 5).unwrap(), 5);
    });
}

// ---------------------------------------------------------------------------
// Pool size
// ---------------------------------------------------------------------------

#[test]
fn two_hundred_callers_share_a_pool_of_four_threads() {
    let (values, high_water) = run_with_pool(4, || {
        let running = Arc::new(AtomicUsize::new(0));
        let high = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..200u64)
            .map(|n| {
                let (running, high) = (running.clone(), high.clone());
                curio::spawn(move || {
                    curio::run_in_thread(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        high.fetch_max(now, Ordering::SeqCst);
                        thread::sleep(Duration::from_millis(2));
                        running.fetch_sub(1, Ordering::SeqCst);
                        n * n
                    })
                })
            })
            .collect();
        let values: Vec<u64> = callers.iter().map(|c| c.join().unwrap().unwrap()).collect();
        (values, high.load(Ordering::SeqCst))
    });
    assert_eq!(values, (0..200u64).map(|n| n * n).collect::<Vec<_>>());
    assert_eq!(
        high_water, 4,
        "at most 4 calls may run at once, and 4 should"
    );
}

#[test]
fn callers_beyond_the_pool_size_wait_for_a_thread() {
    let events = run_with_pool(2, || {
        let log = Log::new();
        let gate = Gate::default();
        let started = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (1..=5)
            .map(|n| {
                let (gate, started, log) = (gate.clone(), started.clone(), log.clone());
                curio::spawn(move || {
                    let v = curio::run_in_thread(move || {
                        started.fetch_add(1, Ordering::SeqCst);
                        gate.wait();
                        n
                    })
                    .unwrap();
                    log.push(format!("caller {n} returned"));
                    v
                })
            })
            .collect();
        wait_until(|| started.load(Ordering::SeqCst) == 2);
        // Give a third thread every chance to start, were the pool to allow it.
        for _ in 0..20 {
            curio::sleep(ms(1)).unwrap();
        }
        log.push(format!(
            "while the gate is shut: {} started, {} returned",
            started.load(Ordering::SeqCst),
            callers.iter().filter(|c| c.is_terminated()).count()
        ));
        gate.open();
        let values: Vec<i32> = callers.iter().map(|c| c.join().unwrap()).collect();
        assert_eq!(values, [1, 2, 3, 4, 5]);
        assert_eq!(started.load(Ordering::SeqCst), 5);
        log.events()
    });
    assert_eq!(events[0], "while the gate is shut: 2 started, 0 returned");
    assert_eq!(events.len(), 6);
}

#[test]
fn calls_made_together_run_at_once_while_the_pool_has_room() {
    // Two calls that must meet: each waits (up to 500 ms) for the other to
    // start. With a pool of four they must run on two threads at the same time,
    // also when one idle thread is already there from an earlier call. Each
    // round runs on a fresh kernel thread, so it starts with a fresh pool.
    for round in 1..=5 {
        let met = run_with_pool(4, || {
            curio::run_in_thread(|| ()).unwrap();
            // Let that thread go back to the pool and wait there, idle. (Blocking
            // the kernel thread for a moment is harmless here: no task is due.)
            thread::sleep(Duration::from_millis(50));
            let (a_tx, a_rx) = mpsc::channel::<()>();
            let (b_tx, b_rx) = mpsc::channel::<()>();
            let a = curio::spawn(move || {
                curio::run_in_thread(move || {
                    let _ = a_tx.send(());
                    b_rx.recv_timeout(Duration::from_millis(500)).is_ok()
                })
            });
            let b = curio::spawn(move || {
                curio::run_in_thread(move || {
                    let _ = b_tx.send(());
                    a_rx.recv_timeout(Duration::from_millis(500)).is_ok()
                })
            });
            (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
        });
        assert_eq!(
            met,
            (true, true),
            "round {round}: the two calls did not run at the same time"
        );
    }
}

// ---------------------------------------------------------------------------
// Cancellation
// ---------------------------------------------------------------------------

#[test]
fn a_cancelled_caller_returns_at_once_while_the_thread_runs_on() {
    let (real, outcome_text, finished_yet) = run_with_pool(4, || {
        let finished = Arc::new(AtomicBool::new(false));
        let f = finished.clone();
        let caller = curio::spawn(move || {
            curio::run_in_thread(move || {
                thread::sleep(Duration::from_secs(3));
                f.store(true, Ordering::SeqCst);
                "too late"
            })
        });
        curio::sleep(ms(10)).unwrap();
        let t0 = Instant::now();
        caller.cancel().unwrap();
        let real = t0.elapsed();
        let r = caller.join().unwrap();
        (real, outcome(&r), finished.load(Ordering::SeqCst))
    });
    assert_eq!(outcome_text, "Cancelled");
    assert!(
        real < Duration::from_secs(1),
        "cancel took {real:?} of real time"
    );
    assert!(!finished_yet, "the function could not have finished yet");
}

#[test]
fn a_timed_out_caller_returns_at_once() {
    let (real, outcome_text) = run_with_pool(4, || {
        let t0 = Instant::now();
        let r = curio::timeout_after(secs(1), || {
            curio::run_in_thread(|| thread::sleep(Duration::from_secs(3)))
        });
        (t0.elapsed(), outcome(&r))
    });
    assert_eq!(outcome_text, "Timeout");
    assert!(
        real < Duration::from_secs(1),
        "the timeout took {real:?} of real time"
    );
}

#[test]
fn the_late_result_of_an_abandoned_call_is_dropped_without_harm() {
    run_with_pool(4, || {
        let dropped = Arc::new(AtomicBool::new(false));
        let d = dropped.clone();
        let r = curio::timeout_after(ms(10), || {
            curio::run_in_thread(move || {
                thread::sleep(Duration::from_millis(200));
                DropFlag(d)
            })
        });
        assert!(r.unwrap_err().is_timeout());
        assert!(!dropped.load(Ordering::SeqCst));
        // The same task waits on a new call while the zombie finishes and posts
        // its (now stale) wake-up: this wait must not be ended by it.
        let v = curio::run_in_thread(|| {
            thread::sleep(Duration::from_millis(400));
            7
        })
        .unwrap();
        assert_eq!(v, 7);
        assert!(
            dropped.load(Ordering::SeqCst),
            "the abandoned result was dropped"
        );
        assert_eq!(curio::run_in_thread(|| 8).unwrap(), 8);
    });
}

#[test]
fn a_zombie_thread_does_not_hold_up_later_calls() {
    // curio-reference.md §11.1: the abandoned call finishes as a zombie and its
    // thread leaves the pool; the caller's place is free at once. With a pool
    // of one, the next call must not wait for the zombie to finish.
    let (real, v) = run_with_pool(1, || {
        let r = curio::timeout_after(ms(10), || {
            curio::run_in_thread(|| thread::sleep(Duration::from_secs(2)))
        });
        assert!(r.unwrap_err().is_timeout());
        let t0 = Instant::now();
        let v = curio::run_in_thread(|| 5).unwrap();
        (t0.elapsed(), v)
    });
    assert_eq!(v, 5);
    assert!(
        real < Duration::from_secs(1),
        "the next call waited {real:?} for the zombie"
    );
}

#[test]
fn a_cancelled_call_that_has_not_started_never_runs() {
    let events = run_with_pool(1, || {
        let log = Log::new();
        let gate = Gate::default();
        let ran = Arc::new(AtomicBool::new(false));
        let g = gate.clone();
        let first = curio::spawn(move || curio::run_in_thread(move || g.wait()));
        let r = ran.clone();
        let queued =
            curio::spawn(move || curio::run_in_thread(move || r.store(true, Ordering::SeqCst)));
        curio::sleep(ms(50)).unwrap(); // both calls submitted; only one thread
        queued.cancel().unwrap();
        log.push(format!("queued call: {}", outcome(&queued.join().unwrap())));
        gate.open();
        first.join().unwrap().unwrap();
        // The pool is FIFO: once this runs, the cancelled call's turn has passed.
        curio::run_in_thread(|| ()).unwrap();
        log.push(format!(
            "cancelled function ran: {}",
            ran.load(Ordering::SeqCst)
        ));
        log.events()
    });
    assert_events(
        &events,
        &["queued call: Cancelled", "cancelled function ran: false"],
    );
}

#[test]
fn a_call_made_with_a_cancellation_already_pending_never_starts() {
    let ran = run_with_pool(4, || {
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let kid =
            curio::spawn(move || curio::run_in_thread(move || r.store(true, Ordering::SeqCst)));
        kid.cancel_nowait(); // before the kid first runs
        assert!(kid.join().unwrap().unwrap_err().is_cancelled());
        curio::run_in_thread(|| ()).unwrap();
        ran.load(Ordering::SeqCst)
    });
    assert!(
        !ran,
        "the function ran although the caller was cancelled first"
    );
}

#[test]
fn the_kernel_does_not_report_a_deadlock_while_a_thread_works() {
    let v = run_with_pool(1, || {
        // The only task waits on the thread alone: no timer, no other task.
        curio::run_in_thread(|| {
            thread::sleep(Duration::from_millis(100));
            "done"
        })
        .unwrap()
    });
    assert_eq!(v, "done");
}

#[test]
fn a_second_kernel_on_the_same_thread_keeps_to_its_own_pool_size() {
    // Two kernels, one after the other, on the same OS thread: the first with a
    // pool of four, the second with a pool of one. Each may run at most its
    // own number of calls at once.
    let highs = watchdog(|| {
        let measure = |threads: usize| {
            Kernel::builder()
                .virtual_clock(true)
                .thread_pool_size(threads)
                .build()
                .run(|| {
                    let running = Arc::new(AtomicUsize::new(0));
                    let high = Arc::new(AtomicUsize::new(0));
                    let callers: Vec<_> = (0..8)
                        .map(|_| {
                            let (running, high) = (running.clone(), high.clone());
                            curio::spawn(move || {
                                curio::run_in_thread(move || {
                                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                                    high.fetch_max(now, Ordering::SeqCst);
                                    thread::sleep(Duration::from_millis(20));
                                    running.fetch_sub(1, Ordering::SeqCst);
                                })
                            })
                        })
                        .collect();
                    for c in callers {
                        c.join().unwrap().unwrap();
                    }
                    high.load(Ordering::SeqCst)
                })
                .unwrap()
        };
        (measure(4), measure(1))
    });
    assert_eq!(highs, (4, 1));
}

/// Calls made one after another reuse the same warm thread: a worker that has
/// just posted its result counts as available, so the pool does not start a
/// new thread for each call (a regression that once grew it to its limit).
#[test]
fn sequential_calls_stay_on_one_thread() {
    let ids = run_virtual(|| {
        let mut ids = std::collections::HashSet::new();
        for _ in 0..200 {
            ids.insert(curio::run_in_thread(|| std::thread::current().id()).unwrap());
        }
        ids.len()
    });
    assert!(ids <= 2, "200 sequential calls used {ids} threads");
}

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

// ---------------------------------------------------------------------------
// A bounded number of threads, zombies included (issue 10, item 1)
// ---------------------------------------------------------------------------

/// The number of threads of this process (`Threads:` in /proc/self/status).
fn process_threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads: line")
}

const ZOMBIE_CHILD_ENV: &str = "CURIO_WORKERS_ZOMBIE_CHILD";

/// 10 000 callers of long jobs, each cancelled once its job is running (or, once
/// no more jobs start, while it waits in the queue). Runs in a child process so
/// that its thread count is its own; the child prints what it saw.
#[test]
fn ten_thousand_cancelled_long_jobs_leave_at_most_twice_the_pool_size_in_threads() {
    const JOBS: usize = 10_000;
    if in_child(ZOMBIE_CHILD_ENV) {
        let baseline = process_threads();
        let (peak, started_while_shut, cancelled, after) = watchdog(move || {
            Kernel::builder()
                .build() // the default pool: 64 threads
                .run(move || {
                    let gate = Gate::default();
                    let started = Arc::new(AtomicUsize::new(0));
                    let callers: Vec<_> = (0..JOBS)
                        .map(|_| {
                            let (gate, started) = (gate.clone(), started.clone());
                            curio::spawn(move || {
                                curio::run_in_thread(move || {
                                    started.fetch_add(1, Ordering::SeqCst);
                                    gate.wait();
                                })
                            })
                        })
                        .collect();
                    // Jobs start in the order they were queued: cancel the callers
                    // of those that are running, let the pool start more, repeat
                    // until no more start; then cancel the rest, still queued.
                    let mut peak = 0;
                    let mut done = 0;
                    loop {
                        let mut quiet = 0;
                        let mut seen = started.load(Ordering::SeqCst);
                        while quiet < 20 {
                            curio::sleep(ms(1)).unwrap();
                            let now = started.load(Ordering::SeqCst);
                            if now == seen {
                                quiet += 1;
                            } else {
                                (seen, quiet) = (now, 0);
                            }
                        }
                        peak = peak.max(process_threads());
                        if seen == done {
                            break;
                        }
                        for c in &callers[done..seen] {
                            c.cancel().unwrap();
                        }
                        done = seen;
                    }
                    for c in &callers[done..] {
                        c.cancel().unwrap();
                    }
                    peak = peak.max(process_threads());
                    let started_while_shut = started.load(Ordering::SeqCst);
                    let cancelled = callers
                        .iter()
                        .filter(|c| c.join().unwrap().is_err_and(|e| e.is_cancelled()))
                        .count();
                    gate.open();
                    // The threads that kept their place in the pool serve new
                    // calls once their abandoned jobs end.
                    assert_eq!(curio::run_in_thread(|| 9).unwrap(), 9);
                    (peak, started_while_shut, cancelled, process_threads())
                })
                .unwrap()
        });
        println!(
            "threads: baseline {baseline}, peak {peak}, after {after}; \
             jobs started {started_while_shut}; callers cancelled {cancelled}"
        );
        return;
    }
    let out = run_test_in_child(
        "ten_thousand_cancelled_long_jobs_leave_at_most_twice_the_pool_size_in_threads",
        ZOMBIE_CHILD_ENV,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the child failed:\n{stdout}\n{stderr}"
    );
    let line = stdout
        .lines()
        .find_map(|l| l.find("threads: baseline").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("no report from the child:\n{stdout}"));
    println!("{line}");
    let num = |key: &str| -> usize {
        let rest = &line[line.find(key).unwrap() + key.len()..];
        rest.trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (baseline, peak) = (num("baseline"), num("peak"));
    // The kernel's own thread and the watchdog's are counted in `peak`.
    assert!(
        peak <= baseline + 2 * 64 + 2,
        "10 000 cancelled jobs grew the process to {peak} threads: {line}"
    );
    assert_eq!(
        num("jobs started"),
        2 * 64,
        "64 zombies leave the pool, 64 more keep their place: {line}"
    );
    assert_eq!(num("callers cancelled"), JOBS, "{line}");
}

/// The policy, step by step, with a pool of one thread: a cancelled running job
/// leaves the pool as a zombie while the allowance (one per pool thread) lasts;
/// after that it keeps its place until it ends, and later calls wait for it.
#[test]
fn once_the_zombie_allowance_is_used_a_cancelled_job_keeps_its_place_and_calls_wait() {
    let events = run_with_pool(1, || {
        let log = Log::new();
        let (gate_a, gate_b) = (Gate::default(), Gate::default());
        let started = Arc::new(AtomicUsize::new(0));
        let job = |gate: &Gate, n: usize| {
            let (gate, started) = (gate.clone(), started.clone());
            curio::spawn(move || {
                curio::run_in_thread(move || {
                    started.fetch_add(1, Ordering::SeqCst);
                    gate.wait();
                    n
                })
            })
        };
        let a = job(&gate_a, 1);
        wait_until(|| started.load(Ordering::SeqCst) == 1);
        a.cancel().unwrap();
        log.push("a cancelled while running: it leaves the pool as a zombie");
        let b = job(&gate_b, 2);
        wait_until(|| started.load(Ordering::SeqCst) == 2);
        log.push("b runs on a new thread in a's place");
        b.cancel().unwrap();
        let c = job(&Gate::default(), 3);
        for _ in 0..30 {
            curio::sleep(ms(1)).unwrap();
        }
        log.push(format!(
            "c started while a and b run: {}",
            started.load(Ordering::SeqCst) == 3
        ));
        gate_b.open();
        // c runs on b's thread once b's abandoned job ends; c's own gate is shut,
        // so only the start is awaited.
        wait_until(|| started.load(Ordering::SeqCst) == 3);
        log.push("c started once b's job ended");
        c.cancel().unwrap();
        gate_a.open();
        log.events()
    });
    assert_events(
        &events,
        &[
            "a cancelled while running: it leaves the pool as a zombie",
            "b runs on a new thread in a's place",
            "c started while a and b run: false",
            "c started once b's job ended",
        ],
    );
}

// ---------------------------------------------------------------------------
// Name resolution has its own bounded lane (issue 10, item 1)
// ---------------------------------------------------------------------------

#[test]
fn open_connection_resolves_while_every_pool_thread_is_busy() {
    let r = watchdog(|| {
        Kernel::builder()
            .thread_pool_size(1)
            .build()
            .run(|| {
                let listener = curio::net::TcpListener::bind(any_port()).unwrap();
                let port = listener.local_addr().unwrap().port();
                let gate = Gate::default();
                let g = gate.clone();
                let busy = curio::spawn(move || curio::run_in_thread(move || g.wait()));
                curio::sleep(ms(20)).unwrap();
                let r = curio::timeout_after(secs(3), || {
                    curio::net::open_connection("localhost", port).map(|_| ())
                });
                gate.open();
                busy.join().unwrap().unwrap();
                outcome(&r)
            })
            .unwrap()
    });
    assert_eq!(r, "ok", "the lookup waited for the busy pool");
}

#[test]
fn stuck_name_lookups_use_a_few_threads_of_their_own_and_leave_the_pool_free() {
    let (started, pool_ok, cancelled) = run_with_pool(2, || {
        let gate = Gate::default();
        let started = Arc::new(AtomicUsize::new(0));
        // 50 lookups that never answer, one after the other, each given up
        // after 10 ms.
        let mut cancelled = 0;
        for _ in 0..50 {
            let (gate, started) = (gate.clone(), started.clone());
            let r = curio::timeout_after(ms(10), || {
                curio::workers::testing::run_in_resolver(move || {
                    started.fetch_add(1, Ordering::SeqCst);
                    gate.wait();
                })
            });
            cancelled += usize::from(r.is_err_and(|e| e.is_timeout()));
        }
        // The run_in_thread pool is untouched by the stuck lookups.
        let pool_ok = curio::timeout_after(secs(2), || curio::run_in_thread(|| 5)).ok();
        let started = started.load(Ordering::SeqCst);
        gate.open();
        (started, pool_ok, cancelled)
    });
    assert_eq!(cancelled, 50);
    assert_eq!(pool_ok, Some(5));
    assert!(
        started <= curio::workers::RESOLVER_THREADS * 2,
        "{started} stuck lookups hold threads at once"
    );
}

// ---------------------------------------------------------------------------
// Threads that cannot start (issue 10, item 2)
// ---------------------------------------------------------------------------

#[test]
fn a_call_whose_thread_could_not_start_is_reported_and_never_runs() {
    let (err, ran) = run_with_pool(2, || {
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        curio::workers::testing::fail_thread_starts(1);
        let err = curio::run_in_thread(move || r.store(true, Ordering::SeqCst)).unwrap_err();
        // A later call starts a thread; the failed job must not ride along.
        assert_eq!(curio::run_in_thread(|| 1).unwrap(), 1);
        for _ in 0..20 {
            curio::sleep(ms(1)).unwrap();
        }
        (err, ran.load(Ordering::SeqCst))
    });
    assert_eq!(err.kind(), ErrorKind::Io, "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("could not start a thread") && msg.contains("not run"),
        "the message says what happened: {msg}"
    );
    assert!(!ran, "a call reported as failed ran later");
}

#[test]
fn a_queued_call_runs_when_the_replacement_for_a_zombie_cannot_start() {
    let out = run_with_pool(1, || {
        let gate = Gate::default();
        let started = Arc::new(AtomicUsize::new(0));
        let (g, s) = (gate.clone(), started.clone());
        let a = curio::spawn(move || {
            curio::run_in_thread(move || {
                s.fetch_add(1, Ordering::SeqCst);
                g.wait();
            })
        });
        wait_until(|| started.load(Ordering::SeqCst) == 1);
        let b = curio::spawn(|| curio::run_in_thread(|| "b ran"));
        curio::sleep(ms(5)).unwrap(); // b is queued behind a
        curio::workers::testing::fail_thread_starts(1);
        a.cancel().unwrap(); // a's thread would leave; no thread can replace it
        curio::sleep(ms(20)).unwrap();
        gate.open();
        let r = curio::timeout_after(secs(3), || b.join());
        match r {
            Ok(Ok(v)) => v.to_string(),
            other => format!("{other:?}"),
        }
    });
    assert_eq!(out, "b ran", "the queued call was stranded");
}

#[test]
fn a_call_queued_when_a_thread_could_not_start_waits_for_the_threads_already_there() {
    let out = run_with_pool(2, || {
        let gate = Gate::default();
        let g = gate.clone();
        let a = curio::spawn(move || curio::run_in_thread(move || g.wait()));
        curio::sleep(ms(5)).unwrap();
        curio::workers::testing::fail_thread_starts(1);
        let b = curio::spawn(|| curio::run_in_thread(|| 2));
        curio::sleep(ms(20)).unwrap();
        gate.open();
        a.join().unwrap().unwrap();
        curio::timeout_after(secs(3), || b.join())
            .map(|r| r.unwrap())
            .map_err(|e| e.to_string())
    });
    assert_eq!(out, Ok(2));
}

//! Tasks: handles, join and wait, names and builders, states, task-local
//! storage, crash reports and stack overflows.

mod common;

use std::os::unix::process::ExitStatusExt;

use common::*;
use curio::{ErrorKind, State, TaskLocal, TaskRef};

// ---------------------------------------------------------------------------
// join and wait
// ---------------------------------------------------------------------------

#[test]
fn join_returns_the_value_once() {
    run_virtual(|| {
        let kid = curio::spawn(|| String::from("hello"));
        assert_eq!(kid.join().unwrap(), "hello");
        let err = kid.join().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ResultTaken);
    });
}

#[test]
fn wait_waits_for_the_end_without_taking_the_value() {
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let l = log.clone();
        let kid = curio::spawn(move || {
            curio::sleep(secs(2)).unwrap();
            l.at(&sw, "kid ends");
            37
        });
        assert!(!kid.is_terminated());
        kid.wait().unwrap();
        log.at(&sw, "main: wait returned");
        assert!(kid.is_terminated());
        kid.wait().unwrap(); // again: returns at once
        assert_eq!(kid.join().unwrap(), 37);
        log.assert_eq(&["2s kid ends", "2s main: wait returned"]);
    });
}

#[test]
fn joiners_wake_in_the_order_they_began_even_after_one_gave_up() {
    // The first joiner gives up (a timeout) while two more wait behind it;
    // a fourth comes after it gave up. The kid's end wakes the three still
    // waiting in the order they began to wait.
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let kid = curio::spawn(|| curio::sleep(secs(10)).unwrap());
        let joiner = |name: &'static str, start: u64, patience: u64| {
            let (l, k) = (log.clone(), kid.clone());
            curio::spawn(move || {
                curio::sleep(secs(start)).unwrap();
                match curio::timeout_after(secs(patience), || k.wait()) {
                    Ok(()) => l.at(&sw, format!("{name} saw the kid end")),
                    Err(e) => l.at(&sw, format!("{name} gave up: {:?}", e.kind())),
                }
            })
        };
        let all = [
            joiner("first", 1, 2),
            joiner("second", 2, 100),
            joiner("third", 3, 100),
            joiner("fourth", 5, 100),
        ];
        for j in all {
            j.join().unwrap();
        }
        log.assert_eq(&[
            "3s first gave up: Timeout",
            "10s second saw the kid end",
            "10s third saw the kid end",
            "10s fourth saw the kid end",
        ]);
    });
}

#[test]
fn a_lone_joiner_that_gave_up_leaves_its_place_to_the_next() {
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let kid = curio::spawn(|| curio::sleep(secs(10)).unwrap());
        for round in 0..3 {
            let r = curio::timeout_after(secs(1), || kid.wait());
            log.at(&sw, format!("round {round}: {}", outcome(&r)));
        }
        kid.wait().unwrap();
        log.at(&sw, "the kid ended");
        log.assert_eq(&[
            "1s round 0: Timeout",
            "2s round 1: Timeout",
            "3s round 2: Timeout",
            "10s the kid ended",
        ]);
    });
}

#[test]
fn a_cloned_handle_shares_the_one_result() {
    run_virtual(|| {
        let kid = curio::spawn(|| 5);
        let other = kid.clone();
        assert_eq!(other.id(), kid.id());
        assert_eq!(other.join().unwrap(), 5);
        assert_eq!(kid.join().unwrap_err().kind(), ErrorKind::ResultTaken);
    });
}

#[test]
fn dropping_a_handle_detaches_the_task() {
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let l = log.clone();
        let kid = curio::spawn(move || {
            curio::sleep(secs(1)).unwrap();
            l.at(&sw, "detached kid still ran");
        });
        let id = kid.id();
        drop(kid);
        curio::sleep(secs(2)).unwrap();
        log.at(&sw, format!("main: task {id} was detached"));
        log.assert_eq(&["1s detached kid still ran", "2s main: task 2 was detached"]);
    });
}

#[test]
fn a_panicking_task_hands_the_panic_to_its_joiner() {
    run_virtual(|| {
        let kid = curio::spawn(|| -> i32 { panic!("the kid fell over") });
        let err = kid.join().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TaskPanicked);
        assert!(err.is_panic());
        assert!(err.to_string().contains("the kid fell over"), "{err}");
        assert!(!err.is_cancellation());
        assert!(kid.is_terminated());
        assert!(!kid.is_cancelled());
        assert_eq!(kid.state(), State::Terminated);
    });
}

// ---------------------------------------------------------------------------
// Identity: names, builders, current_task
// ---------------------------------------------------------------------------

#[test]
fn builder_sets_name_daemon_and_stack_size() {
    run_virtual(|| {
        let t = curio::task::Builder::new()
            .name("worker")
            .daemon(true)
            .stack_size(64 * 1024)
            .spawn(|| {
                let me = curio::current_task();
                (me.id(), me.name().to_string(), me.is_daemon())
            })
            .unwrap();
        assert_eq!(t.name(), "worker");
        assert!(t.is_daemon());
        assert_eq!(t.join().unwrap(), (2, "worker".to_string(), true));

        let plain = curio::spawn(|| ());
        assert!(!plain.is_daemon());
        // The default name is the closure's type name.
        assert!(
            plain
                .name()
                .contains("builder_sets_name_daemon_and_stack_size"),
            "default name {:?}",
            plain.name()
        );
        assert_eq!(curio::current_task().name(), "main");
    });
}

#[test]
fn a_task_with_a_small_stack_runs() {
    run_virtual(|| {
        let t = curio::task::Builder::new()
            .stack_size(curio::MIN_STACK_SIZE)
            .spawn(|| {
                curio::sleep(secs(1)).unwrap();
                let v: Vec<u64> = (0..100).collect();
                v.iter().sum::<u64>()
            })
            .unwrap();
        assert_eq!(t.join().unwrap(), 4950);
    });
}

#[test]
fn task_states_have_curios_names() {
    run_virtual(|| {
        let main: TaskRef = curio::current_task();
        assert_eq!(main.state(), State::Running);
        assert_eq!(main.state().to_string(), "RUNNING");

        let sleeper = curio::task::Builder::new()
            .name("kid")
            .spawn(|| curio::sleep(secs(10)))
            .unwrap();
        assert_eq!(sleeper.state().to_string(), "READY");
        curio::yield_now().unwrap();
        assert_eq!(sleeper.state(), State::TimeSleep);
        assert_eq!(sleeper.state().to_string(), "TIME_SLEEP");
        assert_eq!(
            sleeper.to_string(),
            "Task(id=2, name='kid', state=TIME_SLEEP)"
        );
        assert_eq!(format!("{sleeper}"), sleeper.to_string());

        let m = main.clone();
        let watcher = curio::spawn(move || m.state().to_string());
        sleeper.join().unwrap().unwrap();
        // The watcher ran while main was joining the sleeper.
        assert_eq!(watcher.join().unwrap(), "TASK_JOIN");
        assert_eq!(sleeper.state().to_string(), "TERMINATED");

        for (s, name) in [
            (State::Ready, "READY"),
            (State::Running, "RUNNING"),
            (State::TimeSleep, "TIME_SLEEP"),
            (State::TaskJoin, "TASK_JOIN"),
            (State::EventWait, "EVENT_WAIT"),
            (State::LockAcquire, "LOCK_ACQUIRE"),
            (State::SemaAcquire, "SEMA_ACQUIRE"),
            (State::CondWait, "COND_WAIT"),
            (State::QueueGet, "QUEUE_GET"),
            (State::QueuePut, "QUEUE_PUT"),
            (State::QueueJoin, "QUEUE_JOIN"),
            (State::FutureWait, "FUTURE_WAIT"),
            (State::ReadWait, "READ_WAIT"),
            (State::WriteWait, "WRITE_WAIT"),
            (State::SignalWait, "SIGNAL_WAIT"),
            (State::Terminated, "TERMINATED"),
        ] {
            assert_eq!(s.to_string(), name);
            assert_eq!(s.name(), name);
        }
    });
}

#[test]
fn cycles_count_the_times_a_task_was_resumed() {
    run_virtual(|| {
        let kid = curio::spawn(|| {
            for _ in 0..3 {
                curio::yield_now().unwrap();
            }
        });
        kid.join().unwrap();
        assert_eq!(kid.cycles(), 4);
    });
}

// ---------------------------------------------------------------------------
// Task-local storage
// ---------------------------------------------------------------------------

static REQUEST: TaskLocal<u32> = TaskLocal::new(|| 0);
static USER: TaskLocal<String> = TaskLocal::new(|| "nobody".to_string());

#[test]
fn task_locals_are_copied_to_a_child_at_spawn() {
    run_virtual(|| {
        let log = Log::new();
        assert_eq!(REQUEST.get(), 0, "a task that never set it sees init()");
        assert_eq!(REQUEST.set(7), 0);
        USER.set("guido".into());

        let l = log.clone();
        let kid = curio::spawn(move || {
            l.push(format!("kid sees {} {}", REQUEST.get(), USER.get()));
            REQUEST.set(99); // the kid's copy only
            let lg = l.clone();
            let grandkid = curio::spawn(move || {
                lg.push(format!("grandkid sees {}", REQUEST.get()));
            });
            curio::yield_now().unwrap();
            l.push(format!("kid still sees {} {}", REQUEST.get(), USER.get()));
            grandkid.join().unwrap();
        });
        REQUEST.set(8); // after the spawn: the kid keeps its copy of 7
        log.push(format!("main sees {}", REQUEST.get()));
        kid.join().unwrap();
        log.push(format!("main still sees {} {}", REQUEST.get(), USER.get()));

        // A sibling spawned now copies main's current values.
        let sib = curio::spawn(|| REQUEST.get());
        assert_eq!(sib.join().unwrap(), 8);

        log.assert_eq(&[
            "main sees 8",
            "kid sees 7 guido",
            "grandkid sees 99",
            "kid still sees 99 guido",
            "main still sees 8 guido",
        ]);
    });
}

#[test]
fn task_locals_are_private_to_each_kernel_task() {
    run_virtual(|| {
        let a = curio::spawn(|| {
            REQUEST.set(1);
            curio::yield_now().unwrap();
            REQUEST.get()
        });
        let b = curio::spawn(|| {
            REQUEST.set(2);
            curio::yield_now().unwrap();
            REQUEST.get()
        });
        assert_eq!((a.join().unwrap(), b.join().unwrap()), (1, 2));
        assert_eq!(REQUEST.get(), 0);
    });
}

// ---------------------------------------------------------------------------
// Child processes: crash reports and stack overflows
// ---------------------------------------------------------------------------

const CRASH_CHILD: &str = "CURIO_TEST_CRASH_CHILD";
const OVERFLOW_CHILD: &str = "CURIO_TEST_OVERFLOW_CHILD";

/// In the child: a task named "crasher" panics; the kernel reports it and goes on.
#[test]
fn crash_report_child() {
    if !in_child(CRASH_CHILD) {
        return;
    }
    run_virtual(|| {
        let t = curio::task::Builder::new()
            .name("crasher")
            .spawn(|| -> () { panic!("kaboom in the crasher") })
            .unwrap();
        assert!(t.join().unwrap_err().is_panic());
        eprintln!("main carried on");
    });
}

#[test]
fn a_task_crash_is_reported_on_stderr_with_id_name_and_message() {
    let out = run_test_in_child("crash_report_child", CRASH_CHILD);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {stderr}");
    assert!(
        stderr.contains("curio: task crash: Task(id=2, name='crasher'"),
        "stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("kaboom in the crasher"),
        "stderr:\n{stderr}"
    );
    let report = stderr.find("kaboom in the crasher").unwrap();
    let carried_on = stderr.find("main carried on").expect("main carried on");
    assert!(report < carried_on, "stderr:\n{stderr}");
}

/// Recurses without bound; `black_box` keeps the frames and the recursion real.
fn dig(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 32]);
    if std::hint::black_box(depth) == u64::MAX {
        return frame[0];
    }
    dig(depth + 1).wrapping_add(frame[1])
}

/// In the child: a task with a 64 KiB stack recurses until it hits its guard page.
#[test]
fn stack_overflow_child() {
    if !in_child(OVERFLOW_CHILD) {
        return;
    }
    run_virtual(|| {
        let t = curio::task::Builder::new()
            .name("digger")
            .stack_size(64 * 1024)
            .spawn(|| dig(0))
            .unwrap();
        let _ = t.join();
        eprintln!("unreachable: the overflow did not end the process");
    });
}

#[test]
fn a_stack_overflow_ends_the_process_naming_the_task_and_its_stack_size() {
    let out = run_test_in_child("stack_overflow_child", OVERFLOW_CHILD);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.signal().is_some(),
        "the child should die by a signal, got {:?}; stderr:\n{stderr}",
        out.status
    );
    assert!(stderr.contains("overflowed its stack"), "stderr:\n{stderr}");
    assert!(
        stderr.contains("curio: task 2 'digger' overflowed its stack of 65536 bytes"),
        "stderr:\n{stderr}"
    );
    assert!(!stderr.contains("unreachable"), "stderr:\n{stderr}");
}

#[test]
fn with_mprotect_guard_pages_a_stack_overflow_is_reported_the_same_way() {
    // The fallback for kernels without MADV_GUARD_INSTALL, forced.
    let out = run_test_in_child_with(
        "stack_overflow_child",
        OVERFLOW_CHILD,
        &[("CURIO_GUARD_PAGES", "mprotect")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.signal().is_some(),
        "the child should die by a signal, got {:?}; stderr:\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains("curio: CURIO_GUARD_PAGES=mprotect is set; guard pages use mprotect"),
        "stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("curio: task 2 'digger' overflowed its stack of 65536 bytes"),
        "stderr:\n{stderr}"
    );
    assert!(!stderr.contains("unreachable"), "stderr:\n{stderr}");
}

#[test]
fn a_panic_inside_a_timeout_block_and_a_mask_leaves_nothing_behind() {
    run_virtual(|| {
        let sw = Stopwatch::start();
        let crasher = curio::spawn(|| {
            curio::timeout_after(secs(1), || {
                curio::disable_cancellation(|| -> curio::Result<()> {
                    curio::sleep(ms(500))?;
                    panic!("inside a timeout block and a mask")
                })
            })
        });
        assert!(crasher.join().unwrap_err().is_panic());
        // The next task (which may reuse the crasher's slot) is not hit by the
        // crasher's deadline, and main's own cancel points work normally.
        let next = curio::spawn(|| curio::sleep(secs(2)));
        next.join().unwrap().unwrap();
        curio::check_cancellation().unwrap();
        assert_eq!(sw.elapsed(), ms(2500));
    });
}

// ---------------------------------------------------------------------------
// Cancelling with a chosen error; the pending cancellation; outcomes without waiting
// ---------------------------------------------------------------------------

#[test]
fn cancel_with_delivers_the_chosen_error_once_at_the_next_cancel_point() {
    run_virtual(|| {
        let log = Log::new();
        let l = log.clone();
        let kid = curio::spawn(move || {
            let first = curio::sleep(secs(60));
            l.push(format!("kid woke: {}", first.as_ref().unwrap_err()));
            // Delivered once: the cleanup sleeps undisturbed, and a second
            // request (below) is ignored.
            curio::sleep(secs(1)).unwrap();
            l.push("kid cleaned up");
            first
        });
        curio::yield_now().unwrap();
        kid.cancel_with(std::io::Error::other("shutting down"))
            .unwrap();
        kid.cancel_nowait_with(std::io::Error::other("again"));
        log.push("parent: the kid has ended");
        let e = kid.join().unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(kid.is_cancelled());
        log.assert_eq(&[
            "kid woke: shutting down",
            "kid cleaned up",
            "parent: the kid has ended",
        ]);
    });
}

#[test]
fn set_cancellation_replaces_the_pending_error_and_returns_the_old_one() {
    run_virtual(|| {
        let kid = curio::spawn(|| {
            let old = curio::disable_cancellation(|| {
                curio::sleep(secs(1)).unwrap(); // the cancel arrives here, masked
                curio::set_cancellation(Some(std::io::Error::other("replaced").into()))
            });
            let delivered = curio::yield_now().unwrap_err();
            (old.map(|e| e.kind()), delivered.to_string())
        });
        curio::sleep(ms(500)).unwrap();
        kid.cancel().unwrap();
        let (old, delivered) = kid.join().unwrap();
        assert_eq!(old, Some(ErrorKind::Cancelled));
        assert_eq!(delivered, "replaced");
        // None clears it.
        assert!(curio::set_cancellation(None).is_none());
        curio::set_cancellation(Some(std::io::Error::other("x").into()));
        assert!(curio::set_cancellation(None).is_some());
        curio::yield_now().unwrap();
    });
}

#[test]
fn check_cancellation_of_takes_only_the_kind_asked_for() {
    run_virtual(|| {
        let kid = curio::spawn(|| {
            curio::disable_cancellation(|| {
                curio::sleep(secs(1)).unwrap(); // cancelled meanwhile, masked
                let not_a_timeout = curio::check_cancellation_of(ErrorKind::Timeout);
                let still_there = curio::check_cancellation().unwrap_err().kind();
                let taken = curio::check_cancellation_of(ErrorKind::Cancelled);
                let gone = curio::check_cancellation();
                (
                    not_a_timeout.is_ok(),
                    still_there,
                    taken.unwrap_err().kind(),
                    gone.is_ok(),
                )
            })
        });
        curio::sleep(ms(500)).unwrap();
        kid.cancel().unwrap();
        assert_eq!(
            kid.join().unwrap(),
            (true, ErrorKind::Cancelled, ErrorKind::Cancelled, true)
        );
    });
}

#[test]
fn a_tasks_outcome_can_be_read_without_waiting_once_it_has_ended() {
    run_virtual(|| {
        let slow = curio::spawn(|| {
            curio::sleep(secs(1)).unwrap();
            7
        });
        let e = slow.result().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(e.to_string().contains("has not finished"), "{e}");
        assert_eq!(slow.exception().unwrap_err().kind(), ErrorKind::Usage);
        assert!(!slow.is_joined());
        slow.wait().unwrap();
        assert!(!slow.is_joined(), "wait does not take the value");
        assert!(slow.exception().unwrap().is_none());
        assert_eq!(slow.result().unwrap(), 7);
        assert!(slow.is_joined());
        assert_eq!(slow.result().unwrap_err().kind(), ErrorKind::ResultTaken);

        let crasher = curio::spawn(|| -> u32 { panic!("boom") });
        crasher.wait().unwrap();
        let e = crasher.exception().unwrap().unwrap();
        assert!(e.is_panic() && e.to_string().contains("boom"), "{e}");
        assert!(crasher.result().unwrap_err().is_panic());
    });
}

#[test]
fn join_flatten_gives_the_tasks_own_error_or_value_with_one_question_mark() {
    run_virtual(|| {
        let ok = curio::spawn(|| -> curio::Result<u32> { Ok(1) });
        let failed = curio::spawn(|| -> std::io::Result<u32> { Err(std::io::Error::other("no")) });
        let server = curio::spawn(|| -> curio::Result<()> { curio::sleep(secs(3600)) });
        curio::yield_now().unwrap();
        server.cancel().unwrap();
        assert_eq!(ok.join_flatten().unwrap(), 1);
        assert_eq!(failed.join_flatten().unwrap_err().to_string(), "no");
        // A server stopped by cancelling it reports the cancellation, once.
        assert!(server.join_flatten().unwrap_err().is_cancelled());
    });
}

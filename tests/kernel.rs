//! The kernel: scheduling order, task ids, shutdown, crashes, nested kernels and
//! deadlock detection. Each test is a small scenario and the exact order of the
//! events it must produce.

mod common;

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;

use common::*;
use curio::{ErrorKind, TaskRef};

// ---------------------------------------------------------------------------
// Scheduling order
// ---------------------------------------------------------------------------

#[test]
fn spawning_never_yields() {
    run_virtual(|| {
        let log = Log::new();
        log.push("main start");
        let l = log.clone();
        let a = curio::spawn(move || l.push("a runs"));
        log.push("main spawned a");
        let l = log.clone();
        let b = curio::spawn(move || l.push("b runs"));
        log.push("main spawned b");
        curio::yield_now().unwrap();
        log.push("main resumed");
        a.join().unwrap();
        b.join().unwrap();
        log.assert_eq(&[
            "main start",
            "main spawned a",
            "main spawned b",
            "a runs",
            "b runs",
            "main resumed",
        ]);
    });
}

#[test]
fn yield_now_and_sleep_zero_go_to_the_back_of_the_ready_queue() {
    run_virtual(|| {
        let log = Log::new();
        let mut tasks = Vec::new();
        for name in ["t1", "t2", "t3"] {
            let l = log.clone();
            tasks.push(curio::spawn(move || {
                for i in 0..3 {
                    l.push(format!("{name} {i}"));
                    // t2 uses sleep(0): exactly the same as yield_now.
                    if name == "t2" {
                        curio::sleep(ms(0)).unwrap();
                    } else {
                        curio::yield_now().unwrap();
                    }
                }
            }));
        }
        for t in &tasks {
            t.join().unwrap();
        }
        log.assert_eq(&[
            "t1 0", "t2 0", "t3 0", "t1 1", "t2 1", "t3 1", "t1 2", "t2 2", "t3 2",
        ]);
    });
}

#[test]
fn tasks_made_ready_during_a_pass_run_after_those_already_ready() {
    run_virtual(|| {
        let log = Log::new();
        let l = log.clone();
        let a = curio::spawn(move || {
            l.push("a");
            let lc = l.clone();
            let c = curio::spawn(move || lc.push("c"));
            l.push("a spawned c");
            curio::yield_now().unwrap();
            l.push("a again");
            c
        });
        let l = log.clone();
        let b = curio::spawn(move || {
            l.push("b");
            curio::yield_now().unwrap();
            l.push("b again");
        });
        curio::yield_now().unwrap();
        log.push("main");
        let c = a.join().unwrap();
        b.join().unwrap();
        c.join().unwrap();
        // Queue after main's yield: a b main. a spawns c behind main and yields
        // behind c; b yields behind a; main blocks in join.
        log.assert_eq(&["a", "a spawned c", "b", "main", "c", "a again", "b again"]);
    });
}

#[test]
fn joiners_wake_in_the_order_they_started_waiting() {
    run_virtual(|| {
        let log = Log::new();
        let target = curio::spawn(|| curio::sleep(secs(1)));
        let mut joiners = Vec::new();
        for n in 1..=4 {
            let l = log.clone();
            let t: TaskRef = (*target).clone();
            joiners.push(curio::spawn(move || {
                l.push(format!("j{n} waits"));
                t.wait().unwrap();
                l.push(format!("j{n} woke"));
            }));
        }
        for j in &joiners {
            j.join().unwrap();
        }
        log.assert_eq(&[
            "j1 waits", "j2 waits", "j3 waits", "j4 waits", "j1 woke", "j2 woke", "j3 woke",
            "j4 woke",
        ]);
    });
}

#[test]
fn waking_never_yields() {
    run_virtual(|| {
        let log = Log::new();
        let l = log.clone();
        let kid = curio::spawn(move || {
            let r = curio::sleep(secs(1000));
            l.push(format!("kid woke: {}", outcome(&r)));
        });
        let l = log.clone();
        // target yields once, so joiner is already waiting when it ends.
        let target = curio::spawn(|| curio::yield_now().unwrap());
        let t: TaskRef = (*target).clone();
        let joiner = curio::spawn(move || {
            let r = t.wait();
            l.push(format!("joiner woke: {}", outcome(&r)));
        });
        curio::yield_now().unwrap(); // kid sleeps, target yields, joiner waits
        curio::yield_now().unwrap(); // target ends, making joiner ready
        log.push("main runs on after target ended");
        kid.cancel_nowait(); // wakes kid, does not switch to it
        log.push("main runs on after cancel request");
        kid.join().unwrap();
        joiner.join().unwrap();
        log.assert_eq(&[
            "main runs on after target ended",
            "main runs on after cancel request",
            "joiner woke: ok",
            "kid woke: Cancelled",
        ]);
    });
}

// ---------------------------------------------------------------------------
// Task ids
// ---------------------------------------------------------------------------

#[test]
fn main_is_task_1_and_ids_increase_in_spawn_order() {
    run_virtual(|| {
        let main = curio::current_task();
        assert_eq!(main.id(), 1);
        assert_eq!(main.parent_id(), None);
        let a = curio::spawn(|| curio::current_task().id());
        let b = curio::spawn(|| {
            let inner = curio::spawn(|| curio::current_task().parent_id());
            (
                curio::current_task().id(),
                inner.id(),
                inner.join().unwrap(),
            )
        });
        assert_eq!((a.id(), b.id()), (2, 3));
        assert_eq!(a.parent_id(), Some(1));
        assert_eq!(a.join().unwrap(), 2);
        assert_eq!(b.join().unwrap(), (3, 4, Some(3)));
        let c = curio::spawn(|| ());
        assert_eq!(c.id(), 5);
    });
    // A new kernel starts over: its main is task 1 again.
    assert_eq!(run_virtual(|| curio::current_task().id()), 1);
}

// ---------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------

/// A task that sleeps "forever"; when cancelled it records it, sleeps `cleanup`
/// seconds (a blocking cleanup), and records when it is done.
fn stubborn(log: &Log, sw: Stopwatch, name: &'static str, cleanup: u64) -> curio::Task<()> {
    let l = log.clone();
    curio::spawn(move || {
        l.at(&sw, format!("{name} start"));
        let r = curio::sleep(secs(1000));
        l.at(&sw, format!("{name} {}", outcome(&r)));
        if r.is_err() {
            let r = curio::sleep(secs(cleanup));
            l.at(&sw, format!("{name} cleanup {}", outcome(&r)));
        }
    })
}

#[test]
fn shutdown_cancels_the_remaining_tasks_newest_first_each_to_completion() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let _k1 = stubborn(&log, sw, "k1", 1);
        let _k2 = stubborn(&log, sw, "k2", 2);
        let _k3 = curio::task::Builder::new()
            .daemon(true) // daemons are cancelled too
            .spawn({
                let l = log.clone();
                move || {
                    l.at(&sw, "k3 start");
                    let r = curio::sleep(secs(1000));
                    l.at(&sw, format!("k3 {}", outcome(&r)));
                    let r = curio::sleep(secs(3));
                    l.at(&sw, format!("k3 cleanup {}", outcome(&r)));
                }
            })
            .unwrap();
        curio::sleep(secs(5)).unwrap();
        log.at(&sw, "main returns");
    });
    assert_events(
        &events,
        &[
            "0ns k1 start",
            "0ns k2 start",
            "0ns k3 start",
            "5s main returns",
            "5s k3 Cancelled",
            "8s k3 cleanup ok",
            "8s k2 Cancelled",
            "10s k2 cleanup ok",
            "10s k1 Cancelled",
            "11s k1 cleanup ok",
        ],
    );
}

/// Records `name` when dropped: shows that a stack was unwound.
struct Unwound(Log, &'static str);

impl Drop for Unwound {
    fn drop(&mut self) {
        self.0.push(format!("{} unwound", self.1));
    }
}

#[test]
fn a_shutdown_that_blocks_force_unwinds_the_rest_even_tasks_woken_meanwhile() {
    // Both kids ignore cancellation, so shutdown blocks and the kernel unwinds
    // their stacks instead, newest first. Unwinding the stubborn one sets the
    // event the waiter waits on, which queues the waiter in the middle of the
    // unwinding; it must be unwound (and leave the ready queue) all the same.
    let events = run_logged(|log| {
        let freed = Rc::new(curio::Event::new());
        let l = log.clone();
        let f = freed.clone();
        let _waiter = curio::spawn(move || {
            let _g = Unwound(l.clone(), "waiter");
            let r = curio::disable_cancellation(|| f.wait());
            l.push(format!("waiter woke: {}", outcome(&r)));
        });
        let l = log.clone();
        let _stubborn = curio::spawn(move || {
            struct SetOnDrop(Rc<curio::Event>);
            impl Drop for SetOnDrop {
                fn drop(&mut self) {
                    self.0.set();
                }
            }
            let _set = SetOnDrop(freed);
            let _g = Unwound(l, "stubborn");
            let never = curio::Event::new();
            let _ = curio::disable_cancellation(|| never.wait());
        });
        curio::sleep(secs(1)).unwrap();
        log.push("main returns");
    });
    assert_events(
        &events,
        &["main returns", "stubborn unwound", "waiter unwound"],
    );
}

#[test]
fn run_returns_mains_value_after_shutdown() {
    let (value, events) = watchdog(|| {
        let log = Log::new();
        let l = log.clone();
        let v = virtual_kernel()
            .run(move || {
                let l2 = l.clone();
                curio::spawn(move || {
                    if curio::sleep(secs(1000)).is_err() {
                        l2.push("kid cancelled");
                    }
                });
                curio::yield_now().unwrap();
                l.push("main returns");
                42
            })
            .unwrap();
        (v, log.events())
    });
    assert_eq!(value, 42);
    assert_events(&events, &["main returns", "kid cancelled"]);
}

#[test]
fn shutdown_starts_tasks_that_never_ran_and_cancels_them_at_their_first_cancel_point() {
    let events = run_logged(|log| {
        let l = log.clone();
        curio::spawn(move || {
            l.push("late start");
            let r = curio::sleep(secs(1));
            l.push(format!("late sleep {}", outcome(&r)));
        });
        log.push("main returns");
    });
    assert_events(
        &events,
        &["main returns", "late start", "late sleep Cancelled"],
    );
}

#[test]
fn shutdown_does_not_interrupt_a_task_already_cleaning_up() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let l = log.clone();
        let kid = curio::spawn(move || {
            let r = curio::sleep(secs(1000));
            l.at(&sw, format!("kid {}", outcome(&r)));
            let r = curio::sleep(secs(2));
            l.at(&sw, format!("kid cleanup {}", outcome(&r)));
        });
        curio::yield_now().unwrap();
        kid.cancel_nowait();
        log.at(&sw, "main returns");
    });
    assert_events(
        &events,
        &["0ns main returns", "0ns kid Cancelled", "2s kid cleanup ok"],
    );
}

#[test]
fn mains_panic_resumes_out_of_run_after_shutdown() {
    let (events, message) = watchdog(|| {
        let log = Log::new();
        let l = log.clone();
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            virtual_kernel().run(move || {
                let sw = Stopwatch::start();
                let lk = l.clone();
                curio::spawn(move || {
                    let r = curio::sleep(secs(1000));
                    lk.at(&sw, format!("kid {}", outcome(&r)));
                    curio::sleep(secs(1)).unwrap();
                    lk.at(&sw, "kid cleanup done");
                });
                curio::sleep(secs(2)).unwrap();
                l.at(&sw, "main panics");
                panic!("boom in main");
            })
        }));
        let payload = r.expect_err("run should resume main's panic");
        (log.events(), panic_text(&*payload))
    });
    assert_eq!(message, "boom in main");
    assert_events(
        &events,
        &["2s main panics", "2s kid Cancelled", "3s kid cleanup done"],
    );
}

// ---------------------------------------------------------------------------
// Crashes
// ---------------------------------------------------------------------------

#[test]
fn a_panicking_task_does_not_take_the_kernel_down() {
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let l = log.clone();
        let sibling = curio::spawn(move || {
            curio::sleep(secs(2)).unwrap();
            l.at(&sw, "sibling done");
            7
        });
        let l = log.clone();
        let crasher = curio::task::Builder::new()
            .name("crasher")
            .spawn(move || -> u32 {
                curio::sleep(secs(1)).unwrap();
                l.at(&sw, "crasher panics");
                panic!("kaboom {}", 42);
            })
            .unwrap();
        let err = crasher.join().unwrap_err();
        log.at(&sw, format!("joiner got {:?}", err.kind()));
        assert_eq!(err.kind(), ErrorKind::TaskPanicked);
        assert!(err.is_panic());
        assert!(
            err.to_string().contains("kaboom 42"),
            "the error should carry the panic message: {err}"
        );
        assert!(crasher.is_terminated());
        // The panic stays with the task: a second join reports it again.
        assert_eq!(crasher.join().unwrap_err().kind(), ErrorKind::TaskPanicked);
        assert_eq!(sibling.join().unwrap(), 7);
        log.assert_eq(&[
            "1s crasher panics",
            "1s joiner got TaskPanicked",
            "2s sibling done",
        ]);
    });
}

// ---------------------------------------------------------------------------
// Nested kernels
// ---------------------------------------------------------------------------

#[test]
fn a_nested_run_is_an_error_and_the_outer_kernel_goes_on() {
    run_virtual(|| {
        let err = curio::Kernel::builder()
            .virtual_clock(true)
            .build()
            .run(|| 1)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NestedKernel);
        assert!(
            err.to_string().contains("already running"),
            "message: {err}"
        );
        // Also from a task other than main, and through curio::run (a panic).
        let kid = curio::spawn(|| {
            let r = panic::catch_unwind(|| curio::run(|| 2));
            panic_text(&*r.unwrap_err())
        });
        let msg = kid.join().unwrap();
        assert!(
            msg.contains("already running"),
            "curio::run panicked with {msg:?}"
        );
        // The outer kernel is unharmed.
        curio::sleep(secs(1)).unwrap();
        assert_eq!(curio::spawn(|| 3).join().unwrap(), 3);
    });
}

// ---------------------------------------------------------------------------
// Deadlocks
// ---------------------------------------------------------------------------

#[test]
fn a_join_cycle_is_reported_as_a_deadlock_naming_the_blocked_tasks() {
    let (r, events) = watchdog(|| {
        let log = Log::new();
        let l = log.clone();
        let r = virtual_kernel().run(move || {
            let slot_b: Rc<RefCell<Option<TaskRef>>> = Rc::new(RefCell::new(None));
            let sb = slot_b.clone();
            let la = l.clone();
            let a = curio::task::Builder::new()
                .name("a")
                .spawn(move || {
                    let b = sb.borrow().clone().unwrap();
                    let r = b.wait();
                    la.push(format!("a's wait: {}", outcome(&r)));
                })
                .unwrap();
            let ta: TaskRef = (*a).clone();
            let lb = l.clone();
            let b = curio::task::Builder::new()
                .name("b")
                .spawn(move || {
                    let r = ta.wait();
                    lb.push(format!("b's wait: {}", outcome(&r)));
                })
                .unwrap();
            *slot_b.borrow_mut() = Some((*b).clone());
            let r = a.join();
            l.push(format!("main's join: {}", outcome(&r)));
        });
        (r.map_err(|e| (e.kind(), e.to_string())), log.events())
    });
    let (kind, message) = r.expect_err("a join cycle must be reported");
    assert_eq!(kind, ErrorKind::Deadlock);
    for needle in [
        "Task(id=1, name='main', state=TASK_JOIN) waits for task 2",
        "Task(id=2, name='a', state=TASK_JOIN) waits for task 3",
        "Task(id=3, name='b', state=TASK_JOIN) waits for task 2",
    ] {
        assert!(
            message.contains(needle),
            "the deadlock report should contain {needle:?}:\n{message}"
        );
    }
    // Then shutdown cancelled the newest, b; its end let a, and then main, go on.
    assert_events(
        &events,
        &["b's wait: Cancelled", "a's wait: ok", "main's join: ok"],
    );
}

#[test]
fn a_task_waiting_for_itself_is_a_deadlock() {
    let r = try_run_virtual(|| {
        let kid = curio::task::Builder::new()
            .name("narcissus")
            .spawn(|| {
                let me = curio::current_task();
                me.wait()
            })
            .unwrap();
        kid.join().unwrap()
    });
    let err = r.expect_err("self-wait must be reported");
    assert_eq!(err.kind(), ErrorKind::Deadlock);
    let msg = err.to_string();
    assert!(
        msg.contains("Task(id=2, name='narcissus', state=TASK_JOIN) waits for task 2"),
        "{msg}"
    );
}

#[test]
fn curio_run_panics_on_deadlock_with_the_report() {
    let msg = watchdog(|| {
        let r = panic::catch_unwind(|| {
            curio::run(|| {
                let me = curio::current_task();
                let kid = curio::spawn(move || me.wait());
                kid.join().unwrap().unwrap();
            })
        });
        panic_text(&*r.expect_err("curio::run should panic on deadlock"))
    });
    assert!(msg.contains("deadlock"), "{msg}");
    assert_eq!(
        msg.matches("nothing can wake one").count(),
        1,
        "the report says it once:\n{msg}"
    );
    assert!(msg.contains("waits for task 1"), "{msg}");
    assert!(msg.contains("waits for task 2"), "{msg}");
}

#[test]
fn sleeping_tasks_are_not_a_deadlock() {
    let r = try_run_virtual(|| {
        let kid = curio::spawn(|| curio::sleep(secs(3600)));
        kid.join().unwrap().unwrap();
        "done"
    });
    assert_eq!(r.unwrap(), "done");
}

#[test]
fn a_thread_can_run_another_kernel_after_a_panic_a_deadlock_or_a_nested_error() {
    let results = watchdog(|| {
        let panicked = panic::catch_unwind(|| virtual_kernel().run(|| panic!("first")));
        let deadlocked = virtual_kernel().run(|| curio::current_task().wait());
        let nested = virtual_kernel().run(|| virtual_kernel().run(|| 0).map_err(|e| e.kind()));
        let fine = virtual_kernel().run(|| {
            curio::sleep(secs(1)).unwrap();
            curio::spawn(|| 5).join().unwrap()
        });
        (
            panicked.is_err(),
            deadlocked.map(|_| ()).map_err(|e| e.kind()),
            nested.unwrap(),
            fine.unwrap(),
        )
    });
    assert_eq!(
        results,
        (
            true,
            Err(ErrorKind::Deadlock),
            Err(ErrorKind::NestedKernel),
            5
        )
    );
}

#[test]
fn a_deadlock_is_reported_only_once_the_sleepers_are_done() {
    let r = try_run_virtual(|| {
        let sw = Stopwatch::start();
        let sleeper = curio::spawn(|| curio::sleep(secs(30)));
        let stuck = curio::spawn(|| curio::current_task().wait());
        let r = stuck.join();
        (sw.elapsed(), outcome(&sleeper.join()), outcome(&r))
    });
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Deadlock);
    let msg = e.to_string();
    assert!(msg.contains("Task(id=3, name="), "{msg}");
    assert!(msg.contains("waits for task 3"), "{msg}");
    // Reported after the sleeper had ended, not while it slept.
    assert!(!msg.contains("TIME_SLEEP"), "{msg}");
    assert!(!msg.contains("Task(id=2,"), "{msg}");
}

#[test]
fn a_yield_loop_does_not_starve_timers_on_the_real_clock() {
    // Virtual time stands still while any task is ready, so this one runs on
    // the real clock: a task spinning on yield_now must not keep main's 10 ms
    // sleep from ending.
    let spins = watchdog(|| {
        curio::Kernel::builder()
            .virtual_clock(false)
            .build()
            .run(|| {
                let spinner = curio::spawn(|| {
                    let mut n = 0u64;
                    while curio::yield_now().is_ok() {
                        n += 1;
                    }
                    n
                });
                curio::sleep(ms(10)).unwrap();
                spinner.cancel().unwrap();
                spinner.join().unwrap()
            })
            .unwrap()
    });
    assert!(spins > 0);
}

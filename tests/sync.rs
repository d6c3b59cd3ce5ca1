//! Synchronization between tasks: `Event`, `Lock`, `RLock`, `Semaphore`,
//! `BoundedSemaphore`, `Condition` and `ResultCell`.
//!
//! Each test is a small scenario followed by the exact order of what happened:
//! who waited, who was woken, in which order and at which (virtual) time. The
//! rules checked are those of `semantics.md` (Synchronization and queues) and
//! `curio-reference.md` §6: FIFO wake-up, hand-off to the first waiter (a later
//! arrival cannot barge in), timeouts that leave no stale deadline, and a
//! cancelled or timed-out waiter that leaves the primitive as if it had never
//! waited.

mod common;

use std::cell::Cell;
use std::io;
use std::rc::Rc;

use common::*;
use curio::ErrorKind;
use curio::sync::{BoundedSemaphore, Condition, Event, Lock, RLock, ResultCell, Semaphore};

// ---------------------------------------------------------------------------
// Event
// ---------------------------------------------------------------------------

#[test]
fn event_set_wakes_every_waiter_in_fifo_order() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let evt = Rc::new(Event::new());
        let waiters: Vec<_> = (1..=3)
            .map(|n| {
                let (evt, log) = (evt.clone(), log.clone());
                curio::spawn(move || {
                    log.at(&sw, format!("waiter {n} waits"));
                    evt.wait().unwrap();
                    log.at(&sw, format!("waiter {n} woke"));
                })
            })
            .collect();
        curio::sleep(secs(1)).unwrap();
        log.at(&sw, "main sets the event");
        evt.set();
        log.at(&sw, "main: set returned without switching");
        for w in waiters {
            w.join().unwrap();
        }
        assert!(evt.is_set());
        evt.wait().unwrap(); // already set: returns at once
        log.at(&sw, "main: wait on a set event returned at once");
    });
    assert_events(
        &events,
        &[
            "0ns waiter 1 waits",
            "0ns waiter 2 waits",
            "0ns waiter 3 waits",
            "1s main sets the event",
            "1s main: set returned without switching",
            "1s waiter 1 woke",
            "1s waiter 2 woke",
            "1s waiter 3 woke",
            "1s main: wait on a set event returned at once",
        ],
    );
}

#[test]
fn event_can_be_cleared_and_used_again() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let evt = Rc::new(Event::new());
        evt.set();
        evt.clear();
        assert!(!evt.is_set());
        let (e, l) = (evt.clone(), log.clone());
        let kid = curio::spawn(move || {
            e.wait().unwrap();
            l.at(&sw, "kid woke");
        });
        curio::sleep(secs(2)).unwrap();
        log.at(&sw, "main sets");
        evt.set();
        kid.join().unwrap();
    });
    assert_events(&events, &["2s main sets", "2s kid woke"]);
}

#[test]
fn event_wait_times_out_then_waits_again_without_a_stale_deadline() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let evt = Rc::new(Event::new());
        let e = evt.clone();
        let _setter = curio::spawn(move || {
            curio::sleep(secs(5)).unwrap();
            e.set();
        });
        let r = curio::timeout_after(secs(1), || evt.wait());
        log.at(&sw, format!("first wait: {}", outcome(&r)));
        let r = curio::timeout_after(secs(10), || evt.wait());
        log.at(&sw, format!("second wait: {}", outcome(&r)));
        // Neither old deadline (1 s, 11 s) may interrupt this.
        curio::sleep(secs(20)).unwrap();
        log.at(&sw, "slept past both deadlines");
    });
    assert_events(
        &events,
        &[
            "1s first wait: Timeout",
            "5s second wait: ok",
            "25s slept past both deadlines",
        ],
    );
}

// ---------------------------------------------------------------------------
// Lock
// ---------------------------------------------------------------------------

#[test]
fn lock_is_handed_to_waiters_in_fifo_order() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let lock = Rc::new(Lock::new());
        let guard = lock.acquire().unwrap();
        let kids: Vec<_> = (1..=3)
            .map(|n| {
                let (lock, log) = (lock.clone(), log.clone());
                curio::spawn(move || {
                    log.at(&sw, format!("kid {n} waits"));
                    let g = lock.acquire().unwrap();
                    log.at(&sw, format!("kid {n} has the lock"));
                    curio::sleep(secs(1)).unwrap();
                    drop(g);
                    log.at(&sw, format!("kid {n} released"));
                })
            })
            .collect();
        curio::sleep(secs(1)).unwrap();
        log.at(&sw, "main releases");
        drop(guard);
        // Handed straight to kid 1: never unlocked in between.
        log.at(&sw, format!("main: locked = {}", lock.locked()));
        for k in kids {
            k.join().unwrap();
        }
        assert!(!lock.locked());
    });
    assert_events(
        &events,
        &[
            "0ns kid 1 waits",
            "0ns kid 2 waits",
            "0ns kid 3 waits",
            "1s main releases",
            "1s main: locked = true",
            "1s kid 1 has the lock",
            "2s kid 1 released",
            "2s kid 2 has the lock",
            "3s kid 2 released",
            "3s kid 3 has the lock",
            "4s kid 3 released",
        ],
    );
}

#[test]
fn a_task_arriving_after_the_release_cannot_barge_in() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let lock = Rc::new(Lock::new());
        let guard = lock.acquire().unwrap();
        let (lk, l) = (lock.clone(), log.clone());
        let a = curio::spawn(move || {
            l.at(&sw, "A waits");
            let g = lk.acquire().unwrap();
            l.at(&sw, "A has the lock");
            curio::sleep(secs(1)).unwrap();
            l.at(&sw, "A releases");
            drop(g);
        });
        curio::yield_now().unwrap(); // A is now waiting
        // C is ready before A is woken, so it runs first after the release.
        let (lk, l) = (lock.clone(), log.clone());
        let c = curio::spawn(move || {
            l.at(&sw, "C asks for the lock");
            let _g = lk.acquire().unwrap();
            l.at(&sw, "C has the lock");
        });
        drop(guard);
        log.at(&sw, "main released");
        assert!(lock.locked());
        assert!(lock.try_acquire().is_none());
        log.at(&sw, "main: try_acquire refused, the lock is promised to A");
        a.join().unwrap();
        c.join().unwrap();
        assert!(!lock.locked());
    });
    assert_events(
        &events,
        &[
            "0ns A waits",
            "0ns main released",
            "0ns main: try_acquire refused, the lock is promised to A",
            "0ns C asks for the lock",
            "0ns A has the lock",
            "1s A releases",
            "1s C has the lock",
        ],
    );
}

#[test]
fn lock_try_acquire_takes_a_free_lock_only() {
    run_virtual(|| {
        let lock = Lock::new();
        let g = lock.try_acquire().expect("a free lock");
        assert!(lock.locked());
        assert!(lock.try_acquire().is_none());
        drop(g);
        assert!(!lock.locked());
        assert!(lock.try_acquire().is_some());
        assert!(!lock.locked()); // that guard was dropped at once
    });
}

#[test]
fn lock_acquire_times_out_then_acquires_without_a_stale_deadline() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let lock = Rc::new(Lock::new());
        let lk = lock.clone();
        let holder = curio::spawn(move || {
            let _g = lk.acquire().unwrap();
            curio::sleep(secs(3)).unwrap();
        });
        curio::yield_now().unwrap(); // the holder takes the lock
        let r = curio::timeout_after(secs(1), || lock.acquire());
        log.at(&sw, format!("first acquire: {}", outcome(&r)));
        drop(r);
        assert!(lock.locked()); // still the holder's
        let g = lock.acquire().unwrap();
        log.at(&sw, "second acquire: ok");
        drop(g);
        curio::sleep(secs(10)).unwrap();
        log.at(&sw, "slept undisturbed");
        holder.join().unwrap();
    });
    assert_events(
        &events,
        &[
            "1s first acquire: Timeout",
            "3s second acquire: ok",
            "13s slept undisturbed",
        ],
    );
}

#[test]
fn a_lock_released_after_its_first_waiter_was_cancelled_goes_to_the_second() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let lock = Rc::new(Lock::new());
        let guard = lock.acquire().unwrap();
        let spawn_waiter = |name: &'static str| {
            let (lock, log) = (lock.clone(), log.clone());
            curio::spawn(move || {
                log.at(&sw, format!("{name} waits"));
                match lock.acquire() {
                    Ok(g) => {
                        log.at(&sw, format!("{name} has the lock"));
                        drop(g);
                        log.at(&sw, format!("{name} released"));
                    }
                    Err(e) => log.at(&sw, format!("{name}: acquire {:?}", e.kind())),
                }
            })
        };
        let a = spawn_waiter("A");
        let b = spawn_waiter("B");
        curio::sleep(secs(1)).unwrap();
        a.cancel().unwrap();
        assert!(lock.locked()); // main still holds it
        curio::sleep(secs(1)).unwrap();
        log.at(&sw, "main releases");
        drop(guard);
        b.join().unwrap();
        assert!(!lock.locked());
    });
    assert_events(
        &events,
        &[
            "0ns A waits",
            "0ns B waits",
            "1s A: acquire Cancelled",
            "2s main releases",
            "2s B has the lock",
            "2s B released",
        ],
    );
}

// ---------------------------------------------------------------------------
// RLock
// ---------------------------------------------------------------------------

#[test]
fn rlock_is_reentrant_and_waits_for_the_last_release() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let r = Rc::new(RLock::new());
        r.acquire().unwrap();
        r.acquire().unwrap(); // the owner again: no wait
        let (rl, l) = (r.clone(), log.clone());
        let kid = curio::spawn(move || {
            l.at(&sw, "kid waits");
            rl.acquire().unwrap();
            l.at(&sw, "kid has the rlock");
            rl.release().unwrap();
        });
        curio::yield_now().unwrap();
        curio::sleep(secs(1)).unwrap();
        r.release().unwrap();
        log.at(&sw, format!("main released once; locked = {}", r.locked()));
        curio::sleep(secs(1)).unwrap();
        r.release().unwrap();
        log.at(&sw, "main released twice");
        kid.join().unwrap();
        assert!(!r.locked());
    });
    assert_events(
        &events,
        &[
            "0ns kid waits",
            "1s main released once; locked = true",
            "2s main released twice",
            "2s kid has the rlock",
        ],
    );
}

#[test]
fn rlock_refuses_a_release_by_a_task_that_does_not_hold_it() {
    run_virtual(|| {
        let r = Rc::new(RLock::new());
        // Not held by anyone.
        let e = r.release().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(e.to_string().contains("RLock"), "{e}");

        r.acquire().unwrap();
        let rl = r.clone();
        let kid = curio::spawn(move || rl.release());
        let e = kid.join().unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(e.to_string().contains("does not hold"), "{e}");
        assert!(r.locked(), "a refused release changes nothing");

        r.release().unwrap();
        assert!(!r.locked());
        assert_eq!(r.release().unwrap_err().kind(), ErrorKind::Usage);
    });
}

#[test]
fn rlock_waiters_are_served_in_fifo_order_skipping_a_cancelled_one() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let r = Rc::new(RLock::new());
        r.acquire().unwrap();
        let kids: Vec<_> = ["A", "B", "C"]
            .into_iter()
            .map(|name| {
                let (r, log) = (r.clone(), log.clone());
                curio::spawn(move || {
                    log.at(&sw, format!("{name} waits"));
                    if let Err(e) = r.acquire() {
                        log.at(&sw, format!("{name}: acquire {:?}", e.kind()));
                        // It holds nothing, so it cannot release.
                        let bad = r.release().unwrap_err();
                        log.at(&sw, format!("{name}: release {:?}", bad.kind()));
                        return;
                    }
                    log.at(&sw, format!("{name} has the rlock"));
                    curio::sleep(secs(1)).unwrap();
                    r.release().unwrap();
                })
            })
            .collect();
        curio::sleep(secs(1)).unwrap();
        kids[1].cancel().unwrap();
        r.release().unwrap();
        for k in kids {
            k.join().unwrap();
        }
        assert!(!r.locked());
    });
    assert_events(
        &events,
        &[
            "0ns A waits",
            "0ns B waits",
            "0ns C waits",
            "1s B: acquire Cancelled",
            "1s B: release Usage",
            "1s A has the rlock",
            "2s C has the rlock",
        ],
    );
}

// ---------------------------------------------------------------------------
// Semaphore and BoundedSemaphore
// ---------------------------------------------------------------------------

#[test]
fn semaphore_admits_value_tasks_and_hands_units_over_in_fifo_order() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let sem = Rc::new(Semaphore::new(2));
        let kids: Vec<_> = (1..=4)
            .map(|n| {
                let (sem, log) = (sem.clone(), log.clone());
                curio::spawn(move || {
                    log.at(&sw, format!("kid {n} asks"));
                    let g = sem.acquire().unwrap();
                    log.at(&sw, format!("kid {n} in"));
                    curio::sleep(secs(1)).unwrap();
                    drop(g);
                    log.at(&sw, format!("kid {n} out"));
                })
            })
            .collect();
        curio::sleep(ms(500)).unwrap();
        log.at(
            &sw,
            format!("value {}, locked {}", sem.value(), sem.locked()),
        );
        curio::sleep(ms(1000)).unwrap();
        // Units were handed over, never returned to the count in between.
        log.at(
            &sw,
            format!("value {}, locked {}", sem.value(), sem.locked()),
        );
        for k in kids {
            k.join().unwrap();
        }
        assert_eq!(sem.value(), 2);
    });
    assert_events(
        &events,
        &[
            "0ns kid 1 asks",
            "0ns kid 1 in",
            "0ns kid 2 asks",
            "0ns kid 2 in",
            "0ns kid 3 asks",
            "0ns kid 4 asks",
            "500ms value 0, locked true",
            "1s kid 1 out",
            "1s kid 2 out",
            "1s kid 3 in",
            "1s kid 4 in",
            "1.5s value 0, locked true",
            "2s kid 3 out",
            "2s kid 4 out",
        ],
    );
}

#[test]
fn an_unbounded_semaphore_grows_past_its_initial_value() {
    run_virtual(|| {
        let sem = Semaphore::new(1);
        sem.release().unwrap();
        assert_eq!(sem.value(), 2);
        let a = sem.acquire().unwrap();
        let b = sem.acquire().unwrap();
        assert!(sem.locked());
        drop((a, b));
        assert_eq!(sem.value(), 2);
        // A forgotten guard keeps its unit until released by hand.
        sem.acquire().unwrap().forget();
        assert_eq!(sem.value(), 1);
        sem.release().unwrap();
        assert_eq!(sem.value(), 2);
    });
}

#[test]
fn an_unbounded_semaphore_refuses_a_release_it_cannot_count() {
    run_virtual(|| {
        let sem = Semaphore::new(usize::MAX);
        let err = sem.release().unwrap_err();
        assert_eq!(err.kind(), curio::ErrorKind::Usage);
        assert_eq!(sem.value(), usize::MAX);
    });
}

#[test]
fn bounded_semaphore_refuses_to_be_released_above_its_initial_value() {
    run_virtual(|| {
        let sem = BoundedSemaphore::new(2);
        let e = sem.release().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(e.to_string().contains("BoundedSemaphore"), "{e}");
        assert_eq!(sem.value(), 2, "a refused release changes nothing");

        let g = sem.acquire().unwrap();
        assert_eq!(sem.value(), 1);
        drop(g);
        assert_eq!(sem.value(), 2);

        sem.acquire().unwrap().forget();
        sem.release().unwrap();
        assert_eq!(sem.release().unwrap_err().kind(), ErrorKind::Usage);
        assert_eq!(sem.value(), 2);
    });
}

#[test]
fn bounded_semaphore_hands_a_release_to_a_waiter() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let sem = Rc::new(BoundedSemaphore::new(1));
        sem.acquire().unwrap().forget();
        let (s, l) = (sem.clone(), log.clone());
        let kid = curio::spawn(move || {
            let _g = s.acquire().unwrap();
            l.at(&sw, format!("kid in; value {}", s.value()));
        });
        curio::sleep(secs(1)).unwrap();
        sem.release().unwrap();
        kid.join().unwrap();
        assert_eq!(sem.value(), 1);
        assert!(sem.release().is_err());
    });
    assert_events(&events, &["1s kid in; value 0"]);
}

#[test]
fn a_cancelled_or_timed_out_semaphore_waiter_leaves_the_value_untouched() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let sem = Rc::new(Semaphore::new(1));
        let held = sem.acquire().unwrap();
        let (s, l) = (sem.clone(), log.clone());
        let a = curio::spawn(move || {
            let r = s.acquire();
            l.at(&sw, format!("A: {}", outcome(&r)));
        });
        let (s, l) = (sem.clone(), log.clone());
        let b = curio::spawn(move || {
            let r = curio::timeout_after(secs(2), || s.acquire());
            l.at(&sw, format!("B: {}", outcome(&r)));
        });
        let (s, l) = (sem.clone(), log.clone());
        let c = curio::spawn(move || {
            let g = s.acquire().unwrap();
            l.at(&sw, "C in");
            drop(g);
        });
        curio::sleep(secs(1)).unwrap();
        a.cancel().unwrap();
        curio::sleep(secs(2)).unwrap();
        log.at(&sw, format!("main releases; value {}", sem.value()));
        drop(held);
        c.join().unwrap();
        b.join().unwrap();
        assert_eq!(sem.value(), 1);
    });
    assert_events(
        &events,
        &[
            "1s A: Cancelled",
            "2s B: Timeout",
            "3s main releases; value 0",
            "3s C in",
        ],
    );
}

#[test]
fn semaphore_and_condition_wait_time_out_then_wait_again_without_a_stale_deadline() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let sem = Rc::new(Semaphore::new(0));
        let cond = Rc::new(Condition::new());
        let (s, c) = (sem.clone(), cond.clone());
        let _helper = curio::spawn(move || {
            curio::sleep(secs(3)).unwrap();
            s.release().unwrap();
            curio::sleep(secs(3)).unwrap();
            let g = c.lock().unwrap();
            c.notify(&g, 1).unwrap();
        });
        let r = curio::timeout_after(secs(1), || sem.acquire().map(|g| g.forget()));
        log.at(&sw, format!("semaphore, first: {}", outcome(&r)));
        let r = curio::timeout_after(secs(5), || sem.acquire().map(|g| g.forget()));
        log.at(&sw, format!("semaphore, second: {}", outcome(&r)));
        let mut g = cond.lock().unwrap();
        let r = curio::timeout_after(secs(1), || cond.wait(&mut g));
        log.at(&sw, format!("condition, first: {}", outcome(&r)));
        let r = cond.wait(&mut g);
        log.at(&sw, format!("condition, second: {}", outcome(&r)));
        drop(g);
        curio::sleep(secs(10)).unwrap();
        log.at(&sw, "slept undisturbed");
        assert_eq!(sem.value(), 0);
    });
    assert_events(
        &events,
        &[
            "1s semaphore, first: Timeout",
            "3s semaphore, second: ok",
            "4s condition, first: Timeout",
            "6s condition, second: ok",
            "16s slept undisturbed",
        ],
    );
}

// ---------------------------------------------------------------------------
// Condition
// ---------------------------------------------------------------------------

#[test]
fn condition_notify_wakes_n_waiters_and_notify_all_the_rest_in_fifo_order() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let cond = Rc::new(Condition::new());
        let waiters: Vec<_> = (1..=4)
            .map(|n| {
                let (c, log) = (cond.clone(), log.clone());
                curio::spawn(move || {
                    let mut g = c.lock().unwrap();
                    log.at(&sw, format!("waiter {n} waits"));
                    c.wait(&mut g).unwrap();
                    log.at(&sw, format!("waiter {n} notified"));
                    drop(g);
                })
            })
            .collect();
        curio::sleep(secs(1)).unwrap();
        let g = cond.lock().unwrap();
        cond.notify(&g, 2).unwrap();
        log.at(&sw, "main notifies 2 and keeps the lock");
        curio::sleep(secs(1)).unwrap();
        log.at(&sw, "main releases the lock");
        drop(g);
        curio::sleep(secs(1)).unwrap();
        let g = cond.lock().unwrap();
        cond.notify_all(&g).unwrap();
        log.at(&sw, "main notifies all");
        drop(g);
        for w in waiters {
            w.join().unwrap();
        }
    });
    assert_events(
        &events,
        &[
            "0ns waiter 1 waits",
            "0ns waiter 2 waits",
            "0ns waiter 3 waits",
            "0ns waiter 4 waits",
            "1s main notifies 2 and keeps the lock",
            "2s main releases the lock",
            "2s waiter 1 notified",
            "2s waiter 2 notified",
            "3s main notifies all",
            "3s waiter 3 notified",
            "3s waiter 4 notified",
        ],
    );
}

#[test]
fn condition_notify_skips_a_waiter_that_was_cancelled() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let cond = Rc::new(Condition::new());
        let waiters: Vec<_> = ["A", "B"]
            .into_iter()
            .map(|name| {
                let (c, log) = (cond.clone(), log.clone());
                curio::spawn(move || {
                    let mut g = c.lock().unwrap();
                    let r = c.wait(&mut g);
                    log.at(&sw, format!("{name}: wait {}", outcome(&r)));
                })
            })
            .collect();
        curio::sleep(secs(1)).unwrap();
        waiters[0].cancel().unwrap();
        curio::sleep(secs(1)).unwrap();
        let g = cond.lock().unwrap();
        cond.notify(&g, 1).unwrap();
        drop(g);
        for w in waiters {
            w.join().unwrap();
        }
    });
    assert_events(&events, &["1s A: wait Cancelled", "2s B: wait ok"]);
}

#[test]
fn a_cancelled_condition_wait_reacquires_the_lock_before_returning() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let cond = Rc::new(Condition::new());
        let (c, l) = (cond.clone(), log.clone());
        let kid = curio::spawn(move || {
            let mut g = c.lock().unwrap();
            l.at(&sw, "kid waits");
            let r = c.wait(&mut g);
            l.at(&sw, format!("kid: wait {}, holding the lock", outcome(&r)));
            c.notify(&g, 1).unwrap(); // the guard is still good
            curio::sleep(secs(1)).unwrap(); // cleanup may block
            l.at(&sw, "kid releases");
            drop(g);
        });
        curio::sleep(secs(1)).unwrap();
        let g = cond.lock().unwrap();
        log.at(&sw, "main holds the lock and cancels the kid");
        kid.cancel_nowait();
        curio::sleep(secs(2)).unwrap();
        log.at(&sw, "main releases");
        drop(g);
        let g = cond.lock().unwrap();
        log.at(&sw, "main has the lock again");
        drop(g);
        kid.join().unwrap();
    });
    assert_events(
        &events,
        &[
            "0ns kid waits",
            "1s main holds the lock and cancels the kid",
            "3s main releases",
            "3s kid: wait Cancelled, holding the lock",
            "4s kid releases",
            "4s main has the lock again",
        ],
    );
}

#[test]
fn a_timed_out_condition_wait_reacquires_the_lock_before_returning() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let cond = Rc::new(Condition::new());
        let (c, l) = (cond.clone(), log.clone());
        let kid = curio::spawn(move || {
            let mut g = c.lock().unwrap();
            let r = curio::timeout_after(secs(1), || c.wait(&mut g));
            l.at(&sw, format!("kid: wait {}, holding the lock", outcome(&r)));
            c.notify_all(&g).unwrap();
            // Another task cannot take the lock while we hold the guard.
            let c2 = c.clone();
            let l2 = l.clone();
            let probe = curio::spawn(move || {
                let r = curio::timeout_after(secs(1), || c2.lock());
                l2.at(&sw, format!("probe: lock {}", outcome(&r)));
            });
            probe.join().unwrap();
            drop(g);
        });
        curio::sleep(ms(500)).unwrap();
        let g = cond.lock().unwrap();
        curio::sleep(secs(2)).unwrap();
        log.at(&sw, "main releases");
        drop(g);
        kid.join().unwrap();
        let g = cond.lock().unwrap(); // free again
        drop(g);
    });
    assert_events(
        &events,
        &[
            "2.5s main releases",
            "2.5s kid: wait Timeout, holding the lock",
            "3.5s probe: lock Timeout",
        ],
    );
}

#[test]
fn condition_refuses_a_guard_of_another_lock() {
    run_virtual(|| {
        let cond = Condition::new();
        let other = Lock::new();
        let mut g = other.acquire().unwrap();
        assert_eq!(cond.wait(&mut g).unwrap_err().kind(), ErrorKind::Usage);
        assert_eq!(cond.notify(&g, 1).unwrap_err().kind(), ErrorKind::Usage);
        assert_eq!(cond.notify_all(&g).unwrap_err().kind(), ErrorKind::Usage);
        assert!(other.locked(), "the refused wait did not release the lock");
    });
}

#[test]
fn condition_wait_for_rechecks_the_predicate_on_each_notify() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let cond = Rc::new(Condition::new());
        let count = Rc::new(Cell::new(0));
        let (c, n, l) = (cond.clone(), count.clone(), log.clone());
        let kid = curio::spawn(move || {
            let mut g = c.lock().unwrap();
            c.wait_for(&mut g, || {
                l.at(&sw, format!("kid checks {}", n.get()));
                n.get() >= 3
            })
            .unwrap();
            l.at(&sw, "kid: the predicate holds");
            // Already true: returns without waiting.
            c.wait_for(&mut g, || true).unwrap();
        });
        for i in 1..=3 {
            curio::sleep(secs(1)).unwrap();
            let g = cond.lock().unwrap();
            count.set(i);
            cond.notify(&g, 1).unwrap();
        }
        kid.join().unwrap();
    });
    assert_events(
        &events,
        &[
            "0ns kid checks 0",
            "1s kid checks 1",
            "2s kid checks 2",
            "3s kid checks 3",
            "3s kid: the predicate holds",
        ],
    );
}

// ---------------------------------------------------------------------------
// ResultCell
// ---------------------------------------------------------------------------

#[test]
fn result_cell_hands_its_value_to_the_first_getter() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let cell = Rc::new(ResultCell::new());
        let kids: Vec<_> = ["A", "B"]
            .into_iter()
            .map(|name| {
                let (cell, log) = (cell.clone(), log.clone());
                curio::spawn(move || match cell.get() {
                    Ok(v) => log.at(&sw, format!("{name} got {v}")),
                    Err(e) => log.at(&sw, format!("{name}: {:?}", e.kind())),
                })
            })
            .collect();
        curio::sleep(secs(1)).unwrap();
        assert!(!cell.is_set());
        cell.set_value(42).unwrap();
        assert!(cell.is_set());
        for k in kids {
            k.join().unwrap();
        }
    });
    assert_events(&events, &["1s A got 42", "1s B: ResultTaken"]);
}

#[test]
fn result_cell_set_error_is_returned_by_get() {
    run_virtual(|| {
        let cell: ResultCell<u32> = ResultCell::new();
        cell.set_error(curio::Error::from(io::Error::other("disk on fire")))
            .unwrap();
        let e = cell.get().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.to_string().contains("disk on fire"), "{e}");
    });
}

#[test]
fn result_cell_can_be_set_only_once() {
    run_virtual(|| {
        let cell = ResultCell::new();
        cell.set_value("first").unwrap();
        let e = cell.set_value("second").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(e.to_string().contains("already set"), "{e}");
        let e = cell
            .set_error(curio::Error::from(io::Error::other("late")))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert_eq!(cell.get().unwrap(), "first");
    });
}

#[test]
fn result_cell_get_times_out_takes_nothing_and_gets_later() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let cell = Rc::new(ResultCell::new());
        let c = cell.clone();
        let _setter = curio::spawn(move || {
            curio::sleep(secs(3)).unwrap();
            c.set_value(String::from("late answer")).unwrap();
        });
        let r = curio::timeout_after(secs(1), || cell.get());
        log.at(&sw, format!("first get: {}", outcome(&r)));
        let v = cell.get().unwrap();
        log.at(&sw, format!("second get: {v}"));
    });
    assert_events(
        &events,
        &["1s first get: Timeout", "3s second get: late answer"],
    );
}

// ---------------------------------------------------------------------------
// Ties between a wake-up and a deadline
// ---------------------------------------------------------------------------

/// `arch-notes/timeouts.md` (Ties): deadlines due at the same virtual instant
/// are processed in the order they were set, as on a real clock, where the one
/// set later falls a little later. A task woken by an earlier-set deadline runs
/// before a later-set timeout is delivered, so what it does counts as in time;
/// a timeout set first fires first.
#[test]
fn an_event_set_exactly_at_the_waiters_deadline_counts_as_in_time() {
    for setter_first in [true, false] {
        let events = run_logged(move |log| {
            log.push(if setter_first {
                "setter armed first"
            } else {
                "deadline armed first"
            });
            let sw = Stopwatch::start();
            let evt = Rc::new(Event::new());
            let e = evt.clone();
            let setter = curio::spawn(move || {
                curio::sleep(secs(1)).unwrap();
                e.set();
            });
            if setter_first {
                curio::yield_now().unwrap(); // the setter's sleep is armed first
            }
            let r = curio::timeout_after(secs(1), || evt.wait());
            log.at(&sw, format!("wait: {}", outcome(&r)));
            setter.join().unwrap();
        });
        let first = if setter_first {
            "setter armed first"
        } else {
            "deadline armed first"
        };
        let expected = if setter_first {
            "1s wait: ok"
        } else {
            "1s wait: Timeout"
        };
        assert_events(&events, &[first, expected]);
    }
}

#[test]
fn a_lock_released_exactly_at_the_waiters_deadline_is_acquired() {
    for holder_first in [true, false] {
        let events = run_logged(move |log| {
            log.push(if holder_first {
                "holder armed first"
            } else {
                "deadline armed first"
            });
            let sw = Stopwatch::start();
            let lock = Rc::new(Lock::new());
            let guard = lock.acquire().unwrap();
            let (lk, l) = (lock.clone(), log.clone());
            let waiter = curio::spawn(move || {
                let r = curio::timeout_after(secs(1), || lk.acquire());
                l.at(&sw, format!("waiter: {}", outcome(&r)));
            });
            if !holder_first {
                curio::yield_now().unwrap(); // the waiter's deadline is armed first
            }
            curio::sleep(secs(1)).unwrap();
            drop(guard);
            waiter.join().unwrap();
            assert!(!lock.locked());
        });
        let first = if holder_first {
            "holder armed first"
        } else {
            "deadline armed first"
        };
        let expected = if holder_first {
            "1s waiter: ok"
        } else {
            "1s waiter: Timeout"
        };
        assert_events(&events, &[first, expected]);
    }
}

// ---------------------------------------------------------------------------
// States and deadlocks
// ---------------------------------------------------------------------------

#[test]
fn waiting_tasks_show_what_they_wait_for() {
    run_virtual(|| {
        let evt = Rc::new(Event::new());
        let lock = Rc::new(Lock::new());
        let rlock = Rc::new(RLock::new());
        let sem = Rc::new(Semaphore::new(0));
        let cond = Rc::new(Condition::new());
        let _g = lock.acquire().unwrap();
        rlock.acquire().unwrap();

        let (e, l, r, s, c) = (
            evt.clone(),
            lock.clone(),
            rlock.clone(),
            sem.clone(),
            cond.clone(),
        );
        let waiters = [
            curio::spawn(move || e.wait()).as_task_ref().clone(),
            curio::spawn(move || l.acquire().map(drop))
                .as_task_ref()
                .clone(),
            curio::spawn(move || r.acquire()).as_task_ref().clone(),
            curio::spawn(move || s.acquire().map(drop))
                .as_task_ref()
                .clone(),
            curio::spawn(move || {
                let mut g = c.lock()?;
                c.wait(&mut g)
            })
            .as_task_ref()
            .clone(),
        ];
        curio::yield_now().unwrap();
        let states: Vec<&str> = waiters.iter().map(|t| t.state().name()).collect();
        assert_eq!(
            states,
            [
                "EVENT_WAIT",
                "LOCK_ACQUIRE",
                "LOCK_ACQUIRE",
                "SEMA_ACQUIRE",
                "COND_WAIT"
            ]
        );
        for t in &waiters {
            t.cancel().unwrap();
        }
    });
}

#[test]
fn tasks_taking_two_locks_in_opposite_orders_are_reported_as_deadlocked() {
    let r = try_run_virtual(|| {
        let (a, b) = (Rc::new(Lock::new()), Rc::new(Lock::new()));
        let (a1, b1) = (a.clone(), b.clone());
        let t1 = curio::spawn(move || -> curio::Result<()> {
            let _ga = a1.acquire()?;
            curio::sleep(secs(1))?;
            let _gb = b1.acquire()?;
            Ok(())
        });
        let t2 = curio::spawn(move || -> curio::Result<()> {
            let _gb = b.acquire()?;
            curio::sleep(secs(1))?;
            let _ga = a.acquire()?;
            Ok(())
        });
        let _ = t1.join();
        let _ = t2.join();
    });
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Deadlock);
    let report = e.to_string();
    assert_eq!(report.matches("LOCK_ACQUIRE").count(), 2, "{report}");
}

#[test]
fn every_primitive_says_its_state_in_debug() {
    run_virtual(|| {
        let lock = Lock::new();
        let guard = lock.acquire().unwrap();
        assert_eq!(
            format!("{guard:?}"),
            "LockGuard { lock: Lock { locked: true } }"
        );
        drop(guard);
        let rlock = RLock::new();
        assert_eq!(format!("{rlock:?}"), "RLock { locked: false }");
        rlock.acquire().unwrap();
        rlock.acquire().unwrap();
        let me = curio::current_task().id();
        assert_eq!(
            format!("{rlock:?}"),
            format!("RLock {{ locked: true, owner: {me}, count: 2 }}")
        );
        let sem = Semaphore::new(2);
        let unit = sem.acquire().unwrap();
        assert_eq!(
            format!("{unit:?}"),
            "SemaphoreGuard { semaphore: Semaphore { value: 1 } }"
        );
        assert_eq!(
            format!("{:?}", BoundedSemaphore::new(3)),
            "Semaphore { value: 3, bound: 3 }"
        );
        assert_eq!(format!("{BoundedSemaphore:?}"), "BoundedSemaphore");
        let cond = Condition::new();
        let g = cond.lock().unwrap();
        assert_eq!(format!("{cond:?}"), "Condition { locked: true }");
        drop(g);
        let cell = ResultCell::new();
        assert_eq!(format!("{cell:?}"), r#"ResultCell { state: "unset" }"#);
        cell.set_value(1).unwrap();
        assert_eq!(format!("{cell:?}"), r#"ResultCell { state: "value" }"#);
        cell.get().unwrap();
        assert_eq!(format!("{cell:?}"), r#"ResultCell { state: "taken" }"#);
        let failed: ResultCell<()> = ResultCell::new();
        failed
            .set_error(curio::Error::from(io::Error::other("x")))
            .unwrap();
        assert_eq!(format!("{failed:?}"), r#"ResultCell { state: "error" }"#);
    });
}

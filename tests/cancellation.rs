//! Cancellation: every rule of `semantics.md` and `curio-reference.md` §5, and
//! every blocking call of the core (sleep, sleep_until, yield_now, join, wait,
//! cancel) under both a cancel and a timeout, checking that nothing is lost.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use curio::{Error, ErrorKind, TaskRef};

// ---------------------------------------------------------------------------
// Delivery
// ---------------------------------------------------------------------------

#[test]
fn cancel_wakes_a_sleeping_task_and_waits_for_it_to_finish() {
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let l = log.clone();
        let kid = curio::spawn(move || {
            l.at(&sw, "kid start");
            let r = curio::sleep(secs(10));
            l.at(&sw, format!("kid sleep: {}", outcome(&r)));
            r
        });
        curio::sleep(secs(1)).unwrap();
        log.at(&sw, "cancelling");
        kid.cancel().unwrap();
        log.at(&sw, "cancel returned");
        assert!(kid.is_cancelled() && kid.is_terminated());
        let e = kid.join().unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Cancelled);
        assert!(e.is_cancelled() && e.is_cancellation() && !e.is_timeout());
        log.assert_eq(&[
            "0ns kid start",
            "1s cancelling",
            "1s kid sleep: Cancelled",
            "1s cancel returned",
        ]);
    });
}

#[test]
fn cancellation_is_delivered_once_and_cleanup_may_block() {
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let l = log.clone();
        let kid = curio::spawn(move || {
            let r = curio::sleep(secs(10));
            l.at(&sw, format!("kid: {}", outcome(&r)));
            // Cleanup: every later cancel point works normally.
            for _ in 0..2 {
                curio::sleep(secs(1)).unwrap();
                curio::yield_now().unwrap();
            }
            curio::check_cancellation().unwrap();
            l.at(&sw, "kid cleanup done");
            "returned normally"
        });
        curio::sleep(secs(1)).unwrap();
        kid.cancel().unwrap();
        log.at(&sw, "cancel returned");
        // A task that caught the cancellation and returned normally has a value.
        assert!(kid.is_cancelled());
        assert_eq!(kid.join().unwrap(), "returned normally");
        log.assert_eq(&[
            "1s kid: Cancelled",
            "3s kid cleanup done",
            "3s cancel returned",
        ]);
    });
}

#[test]
fn a_second_cancel_only_waits_and_does_not_interrupt_the_cleanup() {
    // Curio's test_double_cancel.
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let l = log.clone();
        let kid = curio::spawn(move || {
            l.at(&sw, "start");
            if curio::sleep(secs(1)).is_ok() {
                l.push("not here");
            } else {
                l.at(&sw, "cancel request");
                let r = curio::sleep(secs(3));
                l.at(&sw, format!("cancelled, cleanup sleep: {}", outcome(&r)));
            }
        });
        curio::sleep(ms(500)).unwrap();
        let r = curio::timeout_after(secs(1), || kid.cancel());
        assert!(r.unwrap_err().is_timeout());
        log.at(&sw, "retry");
        kid.cancel().unwrap(); // must not abort anything in the kid
        log.at(&sw, "done cancel");
        log.assert_eq(&[
            "0ns start",
            "500ms cancel request",
            "1.5s retry",
            "3.5s cancelled, cleanup sleep: ok",
            "3.5s done cancel",
        ]);
    });
}

#[test]
fn cancel_during_cleanup_from_another_task_is_ignored() {
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let l = log.clone();
        let victim = curio::spawn(move || {
            let r = curio::sleep(secs(100));
            l.at(&sw, format!("victim: {}", outcome(&r)));
            let r = curio::sleep(secs(2));
            l.at(&sw, format!("victim cleanup: {}", outcome(&r)));
        });
        let v: TaskRef = (*victim).clone();
        let l = log.clone();
        let second = curio::spawn(move || {
            curio::sleep(secs(2)).unwrap();
            l.at(&sw, "second canceller cancels");
            v.cancel().unwrap();
            l.at(&sw, "second canceller returns");
        });
        curio::sleep(secs(1)).unwrap();
        victim.cancel().unwrap();
        log.at(&sw, "first canceller returns");
        second.join().unwrap();
        log.assert_eq(&[
            "1s victim: Cancelled",
            "2s second canceller cancels",
            "3s victim cleanup: ok",
            "3s first canceller returns",
            "3s second canceller returns",
        ]);
    });
}

#[test]
fn a_cancel_before_the_first_run_is_delivered_at_the_first_cancel_point() {
    run_virtual(|| {
        let log = Log::new();
        let l = log.clone();
        let kid = curio::spawn(move || {
            l.push("kid starts anyway");
            l.push("kid runs up to its first cancel point");
            let r = curio::yield_now();
            l.push(format!("kid yield_now: {}", outcome(&r)));
            let r = curio::sleep(secs(1));
            l.push(format!("kid sleep: {}", outcome(&r)));
        });
        kid.cancel().unwrap();
        log.push("cancel returned");
        log.assert_eq(&[
            "kid starts anyway",
            "kid runs up to its first cancel point",
            "kid yield_now: Cancelled",
            "kid sleep: ok",
            "cancel returned",
        ]);
    });
}

#[test]
fn a_task_that_never_reaches_a_cancel_point_finishes_normally() {
    run_virtual(|| {
        let kid = curio::spawn(|| 5);
        kid.cancel_nowait();
        kid.wait().unwrap();
        assert!(kid.is_cancelled(), "the request was made");
        assert_eq!(kid.join().unwrap(), 5);
    });
}

#[test]
fn cancelling_a_finished_task_does_nothing() {
    run_virtual(|| {
        let kid = curio::spawn(|| 6);
        kid.wait().unwrap();
        kid.cancel().unwrap();
        kid.cancel_nowait();
        assert!(!kid.is_cancelled());
        assert_eq!(kid.join().unwrap(), 6);
    });
}

#[test]
fn cancel_nowait_returns_at_once_and_the_task_cleans_up_later() {
    // Curio's test_task_cancel_not_blocking.
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let l = log.clone();
        let kid = curio::spawn(move || {
            let r = curio::sleep(secs(1000));
            l.at(&sw, format!("kid: {}", outcome(&r)));
            curio::sleep(secs(1)).unwrap();
            l.at(&sw, "kid cleanup done");
            r
        });
        curio::yield_now().unwrap();
        kid.cancel_nowait();
        log.at(&sw, "cancel requested");
        let e = kid.join().unwrap().unwrap_err();
        log.at(&sw, format!("joined: {:?}", e.kind()));
        log.assert_eq(&[
            "0ns cancel requested",
            "0ns kid: Cancelled",
            "1s kid cleanup done",
            "1s joined: Cancelled",
        ]);
    });
}

#[test]
fn self_cancel_with_cancel_nowait_lands_at_the_next_cancel_point() {
    run_virtual(|| {
        let log = Log::new();
        let l = log.clone();
        let kid = curio::spawn(move || {
            let me = curio::current_task();
            me.cancel_nowait();
            l.push(format!("requested, cancelled={}", me.is_cancelled()));
            let r = curio::sleep(secs(1));
            l.push(format!("sleep: {}", outcome(&r)));
            r
        });
        assert!(kid.join().unwrap().unwrap_err().is_cancelled());
        log.assert_eq(&["requested, cancelled=true", "sleep: Cancelled"]);
    });
}

#[test]
fn cancel_on_self_is_a_usage_error_and_requests_nothing() {
    run_virtual(|| {
        let sw = Stopwatch::start();
        let me = curio::current_task();
        let e = me.cancel().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(!e.is_cancellation());
        assert!(e.to_string().contains("cancel_nowait"), "{e}");
        assert!(!me.is_cancelled());
        curio::sleep(secs(1)).unwrap();
        assert_eq!(sw.elapsed(), secs(1));
    });
}

#[test]
fn cancellation_passes_through_a_cancelled_tree_child_first() {
    // Curio's test_task_child_cancel.
    run_virtual(|| {
        let log = Log::new();
        let l = log.clone();
        let grandparent = curio::spawn(move || {
            let lp = l.clone();
            let parent = curio::spawn(move || {
                let lc = lp.clone();
                let child = curio::spawn(move || {
                    lc.push("start");
                    match curio::sleep(ms(500)) {
                        Ok(()) => lc.push("end"),
                        Err(_) => lc.push("child cancelled"),
                    }
                });
                match curio::sleep(ms(500)) {
                    Ok(()) => lp.push("end parent"),
                    Err(_) => {
                        child.cancel().unwrap();
                        lp.push("parent cancelled");
                    }
                }
            });
            match curio::sleep(ms(500)) {
                Ok(()) => l.push("end grandparent"),
                Err(_) => {
                    parent.cancel().unwrap();
                    l.push("grandparent cancelled");
                }
            }
        });
        curio::sleep(ms(100)).unwrap();
        log.push("cancel start");
        curio::sleep(ms(100)).unwrap();
        log.push("cancelling");
        grandparent.cancel().unwrap();
        log.push("done");
        log.assert_eq(&[
            "start",
            "cancel start",
            "cancelling",
            "child cancelled",
            "parent cancelled",
            "grandparent cancelled",
            "done",
        ]);
    });
}

#[test]
fn cancelling_a_task_that_is_already_ready_takes_effect_at_its_next_cancel_point() {
    // Curio's test_task_ready_cancel: the kid's sleep ended in the same instant
    // as the cancel; it is on the ready queue, so the cancel lands later.
    run_virtual(|| {
        let log = Log::new();
        let l = log.clone();
        let kid = curio::spawn(move || {
            l.push("child sleep");
            let r = curio::sleep(secs(1));
            l.push(format!("child slept: {}", outcome(&r)));
            let r = curio::sleep(secs(1));
            l.push(format!("child second sleep: {}", outcome(&r)));
        });
        // main's sleep ends in the same instant as the kid's, just before it: the
        // kid is on the ready queue, not at a cancel point, when main cancels.
        curio::sleep(secs(1)).unwrap();
        log.push("cancel start");
        kid.cancel().unwrap();
        log.push("cancel done");
        log.assert_eq(&[
            "child sleep",
            "cancel start",
            "child slept: ok",
            "child second sleep: Cancelled",
            "cancel done",
        ]);
    });
}

// ---------------------------------------------------------------------------
// Cancellation and timeouts
// ---------------------------------------------------------------------------

#[test]
fn cancel_clears_armed_timeouts_so_cleanup_is_not_hit_by_an_outer_deadline() {
    // Curio's test_task_cancel_timeout.
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let l = log.clone();
        let kid = curio::spawn(move || {
            l.at(&sw, "child");
            let r = curio::timeout_after(secs(1), || {
                let r = curio::sleep(secs(5));
                if r.is_err() {
                    l.at(&sw, outcome(&r));
                    let c = curio::sleep(secs(1)); // past the 1 s deadline
                    l.at(&sw, format!("done cancel: {}", outcome(&c)));
                }
                r
            });
            l.at(&sw, format!("block: {}", outcome(&r)));
            r
        });
        curio::sleep(ms(500)).unwrap();
        kid.cancel().unwrap();
        assert!(kid.join().unwrap().unwrap_err().is_cancelled());
        log.assert_eq(&[
            "0ns child",
            "500ms Cancelled",
            "1.5s done cancel: ok",
            "1.5s block: Cancelled",
        ]);
    });
}

#[test]
fn a_new_timeout_block_in_cleanup_still_works() {
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let l = log.clone();
        let kid = curio::spawn(move || {
            let r = curio::timeout_after(secs(10), || curio::sleep(secs(100)));
            l.at(&sw, format!("kid: {}", outcome(&r)));
            let r = curio::timeout_after(secs(2), || curio::sleep(secs(100)));
            l.at(
                &sw,
                format!("cleanup with its own timeout: {}", outcome(&r)),
            );
        });
        curio::sleep(secs(1)).unwrap();
        kid.cancel().unwrap();
        log.assert_eq(&[
            "1s kid: Cancelled",
            "3s cleanup with its own timeout: Timeout",
        ]);
    });
}

#[test]
fn a_pending_cancellation_outranks_a_pending_timeout() {
    run_virtual(|| {
        let log = Log::new();
        let l = log.clone();
        let kid = curio::spawn(move || {
            let r = curio::timeout_after(Duration::ZERO, || {
                // A timeout is pending from the start; now a cancel arrives too.
                curio::current_task().cancel_nowait();
                curio::sleep(secs(1))
            });
            l.push(format!("block: {}", outcome(&r)));
            let r = curio::sleep(secs(1));
            l.push(format!("after: {}", outcome(&r)));
        });
        kid.join().unwrap();
        log.assert_eq(&["block: Cancelled", "after: ok"]);
    });
}

// ---------------------------------------------------------------------------
// Masking
// ---------------------------------------------------------------------------

#[test]
fn masked_cancellation_waits_for_the_first_cancel_point_after_the_outermost_mask() {
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let l = log.clone();
        let kid = curio::spawn(move || {
            curio::disable_cancellation(|| {
                l.at(&sw, "outer mask");
                let r = curio::sleep(secs(2)); // cancelled at 1 s: not interrupted
                l.at(&sw, format!("masked sleep: {}", outcome(&r)));
                curio::disable_cancellation(|| {
                    let r = curio::sleep(secs(1));
                    l.at(&sw, format!("inner masked sleep: {}", outcome(&r)));
                });
                // Still masked by the outer block.
                let r = curio::yield_now();
                l.at(&sw, format!("yield between masks: {}", outcome(&r)));
                let r = curio::check_cancellation();
                l.at(&sw, format!("check inside mask: {}", outcome(&r)));
                let r = curio::sleep(secs(1));
                l.at(&sw, format!("sleep after check: {}", outcome(&r)));
            });
            l.at(&sw, "unmasked");
            let r = curio::sleep(secs(10));
            l.at(&sw, format!("first cancel point: {}", outcome(&r)));
            let r = curio::sleep(secs(1));
            l.at(&sw, format!("next one: {}", outcome(&r)));
        });
        curio::sleep(secs(1)).unwrap();
        log.at(&sw, "cancel");
        kid.cancel().unwrap();
        log.at(&sw, "cancel returned");
        log.assert_eq(&[
            "0ns outer mask",
            "1s cancel",
            "2s masked sleep: ok",
            "3s inner masked sleep: ok",
            "3s yield between masks: ok",
            "3s check inside mask: Cancelled",
            "4s sleep after check: ok",
            "4s unmasked",
            "4s first cancel point: Cancelled",
            "5s next one: ok",
            "5s cancel returned",
        ]);
    });
}

#[test]
fn disable_cancellation_returns_the_value_of_its_closure() {
    run_virtual(|| {
        assert_eq!(curio::disable_cancellation(|| 41 + 1), 42);
        let r: curio::Result<u8> = curio::disable_cancellation(|| {
            curio::sleep(secs(1))?;
            Ok(3)
        });
        assert_eq!(r.unwrap(), 3);
    });
}

#[test]
fn check_cancellation_outside_a_mask_delivers_and_clears() {
    run_virtual(|| {
        assert!(curio::check_cancellation().is_ok(), "nothing pending");
        curio::current_task().cancel_nowait();
        let e = curio::check_cancellation().unwrap_err();
        assert!(e.is_cancelled());
        // Delivered: it is gone.
        curio::check_cancellation().unwrap();
        curio::sleep(secs(1)).unwrap();
        curio::disable_cancellation(curio::check_cancellation).unwrap();
    });
}

#[test]
fn check_cancellation_inside_a_mask_reports_without_clearing() {
    run_virtual(|| {
        let log = Log::new();
        let l = log.clone();
        let kid = curio::spawn(move || {
            curio::disable_cancellation(|| {
                let r = curio::check_cancellation();
                l.push(format!("check before: {}", outcome(&r)));
                curio::current_task().cancel_nowait();
                for _ in 0..2 {
                    let r = curio::check_cancellation();
                    l.push(format!("check: {}", outcome(&r)));
                }
                // Masked code may stop early by passing the error on.
                curio::check_cancellation()?;
                l.push("not here");
                Ok::<_, Error>(())
            })?;
            l.push("not here either");
            Ok::<_, Error>(())
        });
        let r = kid.join().unwrap();
        log.push(format!("kid: {}", outcome(&r)));
        log.assert_eq(&[
            "check before: ok",
            "check: Cancelled",
            "check: Cancelled",
            "kid: Cancelled",
        ]);
    });
}

#[test]
fn a_masked_error_returned_out_of_the_mask_still_leaves_the_cancel_pending() {
    // The masked closure returned the pending error; the cancel is still pending
    // and fires at the next cancel point (it is delivered there, once).
    run_virtual(|| {
        let kid = curio::spawn(|| {
            curio::current_task().cancel_nowait();
            let masked = curio::disable_cancellation(curio::check_cancellation);
            let next = curio::sleep(secs(1));
            let after = curio::sleep(secs(1));
            (outcome(&masked), outcome(&next), outcome(&after))
        });
        let (masked, next, after) = kid.join().unwrap();
        assert_eq!(
            (masked.as_str(), next.as_str(), after.as_str()),
            ("Cancelled", "Cancelled", "ok")
        );
    });
}

#[test]
fn a_timeout_inside_a_mask_is_pending_and_dropped_if_the_block_ends_first() {
    run_virtual(|| {
        let sw = Stopwatch::start();
        // No cancel point after the mask inside the block: not interrupted.
        let r = curio::timeout_after(secs(1), || {
            curio::disable_cancellation(|| curio::sleep(secs(3)))
        });
        assert_eq!(outcome(&r), "ok");
        assert_eq!(sw.elapsed(), secs(3));
        // A cancel point after the mask: the pending timeout lands there.
        let r = curio::timeout_after(secs(1), || {
            curio::disable_cancellation(|| curio::sleep(secs(3)))?;
            curio::yield_now()
        });
        let e = r.unwrap_err();
        assert!(e.is_timeout());
        assert_eq!(sw.elapsed(), secs(6));
        assert_eq!(e.clock(), Some(sw.at(secs(4))));
        curio::sleep(secs(1)).unwrap();
    });
}

// ---------------------------------------------------------------------------
// The canceller's wait is a cancel point
// ---------------------------------------------------------------------------

#[test]
fn a_cancellers_wait_can_time_out_while_the_victim_keeps_cleaning_up() {
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let l = log.clone();
        let victim = curio::spawn(move || {
            let r = curio::sleep(secs(100));
            l.at(&sw, format!("victim: {}", outcome(&r)));
            curio::sleep(secs(5)).unwrap();
            l.at(&sw, "victim cleanup done");
        });
        curio::yield_now().unwrap();
        let r = curio::timeout_after(secs(1), || victim.cancel());
        log.at(&sw, format!("canceller: {}", outcome(&r)));
        assert!(!victim.is_terminated());
        victim.wait().unwrap();
        log.at(&sw, "canceller saw the end");
        log.assert_eq(&[
            "0ns victim: Cancelled",
            "1s canceller: Timeout",
            "5s victim cleanup done",
            "5s canceller saw the end",
        ]);
    });
}

#[test]
fn a_canceller_cancelled_while_waiting_leaves_the_victim_cleaning_up() {
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let l = log.clone();
        let victim = curio::spawn(move || {
            let r = curio::sleep(secs(100));
            l.at(&sw, format!("victim: {}", outcome(&r)));
            curio::sleep(secs(5)).unwrap();
            l.at(&sw, "victim cleanup done");
        });
        let v: TaskRef = (*victim).clone();
        let l = log.clone();
        let canceller = curio::spawn(move || {
            let r = v.cancel();
            l.at(&sw, format!("canceller: {}", outcome(&r)));
            r
        });
        curio::sleep(secs(1)).unwrap();
        canceller.cancel().unwrap();
        log.at(&sw, "canceller cancelled");
        victim.join().unwrap();
        log.at(&sw, "victim joined");
        log.assert_eq(&[
            "0ns victim: Cancelled",
            "1s canceller: Cancelled",
            "1s canceller cancelled",
            "5s victim cleanup done",
            "5s victim joined",
        ]);
    });
}

// ---------------------------------------------------------------------------
// Every blocking call of the core under cancel and under timeout
// ---------------------------------------------------------------------------

/// Runs `op` in a kid, cancels the kid after 1 s, and returns how `op` ended
/// and when, plus whether the kid's next cancel point worked normally.
fn under_cancel(
    op: impl FnOnce() -> curio::Result<()> + 'static,
) -> (String, Duration, &'static str) {
    let sw = Stopwatch::start();
    let kid = curio::spawn(move || {
        let r = op();
        let at = sw.elapsed();
        let after = if curio::sleep(ms(1)).is_ok() {
            "next cancel point ok"
        } else {
            "cancelled twice"
        };
        (outcome(&r), at, after)
    });
    curio::sleep(secs(1)).unwrap();
    kid.cancel().unwrap();
    kid.join().unwrap()
}

/// Runs `op` under a 1 s timeout and returns how the block ended and when.
fn under_timeout(op: impl FnOnce() -> curio::Result<()>) -> (String, Duration) {
    let sw = Stopwatch::start();
    let r = curio::timeout_after(secs(1), op);
    (outcome(&r), sw.elapsed())
}

fn expect_cancelled_at_1s(got: (String, Duration, &'static str)) {
    assert_eq!(
        (got.0.as_str(), got.1, got.2),
        ("Cancelled", secs(1), "next cancel point ok")
    );
}

fn expect_timeout_at_1s(got: (String, Duration)) {
    assert_eq!((got.0.as_str(), got.1), ("Timeout", secs(1)));
}

#[test]
fn sleep_under_cancel_and_timeout() {
    run_virtual(|| {
        expect_cancelled_at_1s(under_cancel(|| curio::sleep(secs(10))));
        expect_timeout_at_1s(under_timeout(|| curio::sleep(secs(10))));
    });
}

#[test]
fn sleep_until_under_cancel_and_timeout() {
    run_virtual(|| {
        let far = curio::clock() + secs(100);
        expect_cancelled_at_1s(under_cancel(move || curio::sleep_until(far)));
        expect_timeout_at_1s(under_timeout(move || curio::sleep_until(far)));
    });
}

#[test]
fn yield_now_under_cancel_and_timeout() {
    run_virtual(|| {
        let log = Log::new();
        let l = log.clone();
        let spinner = curio::spawn(move || {
            let mut n = 0;
            loop {
                if let Err(e) = curio::yield_now() {
                    l.push(format!("spinner: {:?} after {n} yields", e.kind()));
                    return n;
                }
                n += 1;
            }
        });
        for _ in 0..3 {
            curio::yield_now().unwrap();
        }
        spinner.cancel().unwrap();
        assert_eq!(spinner.join().unwrap(), 3);
        // Virtual time does not pass while a task yields, so the timeout case
        // uses a deadline that has already passed.
        let r = curio::timeout_after(Duration::ZERO, || -> curio::Result<()> {
            loop {
                curio::yield_now()?;
            }
        });
        log.push(format!("yield loop in a block: {}", outcome(&r)));
        log.assert_eq(&[
            "spinner: Cancelled after 3 yields",
            "yield loop in a block: Timeout",
        ]);
    });
}

#[test]
fn join_under_cancel_and_timeout_takes_nothing() {
    run_virtual(|| {
        let target = curio::spawn(|| {
            curio::sleep(secs(5)).unwrap();
            "target's value"
        });
        let t = target.clone();
        expect_cancelled_at_1s(under_cancel(move || t.join().map(|_| ())));
        expect_timeout_at_1s(under_timeout(|| target.join().map(|_| ())));
        // The target ran on untouched, and its value is still there.
        assert!(!target.is_cancelled());
        assert_eq!(target.join().unwrap(), "target's value");
    });
}

#[test]
fn wait_under_cancel_and_timeout() {
    run_virtual(|| {
        let target = curio::spawn(|| curio::sleep(secs(5)).map(|_| 9));
        let t: TaskRef = (*target).clone();
        expect_cancelled_at_1s(under_cancel(move || t.wait()));
        expect_timeout_at_1s(under_timeout(|| target.wait()));
        assert!(!target.is_terminated() && !target.is_cancelled());
        target.wait().unwrap();
        assert_eq!(target.join().unwrap().unwrap(), 9);
    });
}

#[test]
fn cancel_under_cancel_and_timeout() {
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        // A victim whose cleanup takes 5 s.
        let victim = |log: &Log, name: &'static str| {
            let l = log.clone();
            curio::spawn(move || {
                let r = curio::sleep(secs(100));
                l.at(&sw, format!("{name}: {}", outcome(&r)));
                curio::sleep(secs(5)).unwrap();
                l.at(&sw, format!("{name} cleanup done"));
            })
        };
        let v1 = victim(&log, "v1");
        let t: TaskRef = (*v1).clone();
        expect_cancelled_at_1s(under_cancel(move || t.cancel()));
        let v2 = victim(&log, "v2");
        expect_timeout_at_1s(under_timeout(|| v2.cancel()));
        v1.wait().unwrap();
        v2.wait().unwrap();
        log.assert_eq(&[
            "0ns v1: Cancelled",
            "1.001s v2: Cancelled", // under_cancel's kid slept 1 ms after its cancel
            "5s v1 cleanup done",
            "6.001s v2 cleanup done",
        ]);
    });
}

// ---------------------------------------------------------------------------
// Many tasks
// ---------------------------------------------------------------------------

/// A small deterministic generator (xorshift64*), so the test needs no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn a_thousand_tasks_with_random_cancels_are_all_accounted_for() {
    const N: usize = 1000;
    run_virtual(|| {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let sw = Stopwatch::start();
        let finished: Rc<RefCell<Vec<usize>>> = Rc::default();
        let cancelled: Rc<RefCell<Vec<usize>>> = Rc::default();
        // Sleeps end on even milliseconds, cancels happen on odd ones: no ties.
        let mut sleep_ms = Vec::with_capacity(N);
        let mut tasks = Vec::with_capacity(N);
        for i in 0..N {
            let d = 2 * (1 + rng.below(500));
            sleep_ms.push(d);
            let (f, c) = (finished.clone(), cancelled.clone());
            tasks.push(curio::spawn(move || match curio::sleep(ms(d)) {
                Ok(()) => {
                    f.borrow_mut().push(i);
                    Ok(i)
                }
                Err(e) => {
                    assert!(e.is_cancelled(), "task {i}: {e:?}");
                    c.borrow_mut().push(i);
                    Err(e)
                }
            }));
        }
        let mut plan: Vec<(u64, usize)> = Vec::new();
        for i in 0..N {
            if rng.below(2) == 0 {
                plan.push((2 * rng.below(500) + 1, i));
            }
        }
        plan.sort();
        for (k, &(at, i)) in plan.iter().enumerate() {
            curio::sleep_until(sw.at(ms(at))).unwrap();
            assert_eq!(sw.elapsed(), ms(at));
            if k % 2 == 0 {
                tasks[i].cancel().unwrap();
            } else {
                tasks[i].cancel_nowait();
            }
        }
        let mut expect_cancelled = vec![false; N];
        for &(at, i) in &plan {
            expect_cancelled[i] = at < sleep_ms[i];
        }
        for (i, t) in tasks.iter().enumerate() {
            match t.join().unwrap() {
                Ok(v) => {
                    assert_eq!(v, i);
                    assert!(!expect_cancelled[i], "task {i} should have been cancelled");
                    assert!(!t.is_cancelled(), "task {i} ended before its cancel");
                }
                Err(e) => {
                    assert!(e.is_cancelled());
                    assert!(expect_cancelled[i], "task {i} should have finished");
                    assert!(t.is_cancelled());
                }
            }
            assert!(t.is_terminated());
        }
        let mut f = finished.borrow().clone();
        let mut c = cancelled.borrow().clone();
        let n_cancelled = expect_cancelled.iter().filter(|&&x| x).count();
        assert_eq!(c.len(), n_cancelled);
        assert_eq!(f.len(), N - n_cancelled);
        assert!(
            n_cancelled > 100 && n_cancelled < 500,
            "{n_cancelled} cancelled"
        );
        f.append(&mut c);
        f.sort();
        assert_eq!(
            f,
            (0..N).collect::<Vec<_>>(),
            "every task ended exactly once"
        );
        // main ended at the last cancel or the last natural finish, whichever is later.
        let last_cancel = plan.last().map_or(0, |&(at, _)| at);
        let last_finish = (0..N)
            .filter(|&i| !expect_cancelled[i])
            .map(|i| sleep_ms[i])
            .max()
            .unwrap_or(0);
        assert_eq!(sw.elapsed(), ms(last_cancel.max(last_finish)));
    });
}

// ---------------------------------------------------------------------------
// Nothing left behind
// ---------------------------------------------------------------------------

#[test]
fn a_cancelled_sleep_leaves_no_timer_that_ends_a_later_sleep_early() {
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let l = log.clone();
        let kid = curio::spawn(move || {
            let r = curio::sleep(secs(10));
            l.at(&sw, format!("kid: {}", outcome(&r)));
            let r = curio::sleep(secs(20)); // must not end at 10 s
            l.at(&sw, format!("kid cleanup sleep: {}", outcome(&r)));
        });
        curio::sleep(secs(1)).unwrap();
        kid.cancel().unwrap();
        log.assert_eq(&["1s kid: Cancelled", "21s kid cleanup sleep: ok"]);
    });
}

#[test]
fn a_cancelled_joiner_leaves_the_wait_as_if_it_never_waited() {
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let target = curio::spawn(|| curio::sleep(secs(5)));
        let mut joiners = Vec::new();
        for n in 1..=3 {
            let l = log.clone();
            let t: TaskRef = (*target).clone();
            joiners.push(curio::spawn(move || {
                let r = t.wait();
                l.at(&sw, format!("j{n}: {}", outcome(&r)));
            }));
        }
        curio::sleep(secs(1)).unwrap();
        joiners[1].cancel().unwrap();
        for j in &joiners {
            j.join().unwrap();
        }
        log.assert_eq(&["1s j2: Cancelled", "5s j1: ok", "5s j3: ok"]);
    });
}

#[test]
fn cleanup_is_not_hit_by_an_enclosing_deadline_after_an_inner_block_ends() {
    // semantics.md: "Cancelling clears the task's armed timeouts, so cleanup is
    // not hit by an enclosing deadline." Here the cleanup continues in the outer
    // block after the inner block (where the cancel landed) has ended.
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let l = log.clone();
        let kid = curio::spawn(move || {
            let r = curio::timeout_after(secs(1), || {
                let r = curio::timeout_after(secs(5), || curio::sleep(secs(100)));
                l.at(&sw, format!("inner: {}", outcome(&r)));
                // Cleanup, still inside the outer block, past its deadline.
                let c = curio::sleep(secs(2));
                l.at(&sw, format!("cleanup sleep: {}", outcome(&c)));
                r
            });
            l.at(&sw, format!("outer: {}", outcome(&r)));
        });
        curio::sleep(ms(500)).unwrap();
        kid.cancel().unwrap();
        log.assert_eq(&[
            "500ms inner: Cancelled",
            "2.5s cleanup sleep: ok",
            "2.5s outer: Cancelled",
        ]);
    });
}

#[test]
fn a_pending_cancel_from_shutdown_lands_after_a_masked_block() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let l = log.clone();
        curio::spawn(move || {
            let r = curio::disable_cancellation(|| curio::sleep(secs(5)));
            l.at(&sw, format!("masked sleep: {}", outcome(&r)));
            let r = curio::sleep(secs(100));
            l.at(&sw, format!("next sleep: {}", outcome(&r)));
        });
        curio::sleep(secs(1)).unwrap();
        log.at(&sw, "main returns");
    });
    assert_events(
        &events,
        &[
            "1s main returns",
            "5s masked sleep: ok",
            "5s next sleep: Cancelled",
        ],
    );
}

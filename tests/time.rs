//! Time: sleeping, the clock, and timeout blocks with Curio's nesting rules
//! (`curio-reference.md` §4.1). Everything runs on the virtual clock, so each
//! elapsed time below is exact.

mod common;

use std::io;
use std::time::Duration;

use common::*;
use curio::{Error, ErrorKind, TaskRef};

// ---------------------------------------------------------------------------
// sleep and the clock
// ---------------------------------------------------------------------------

#[test]
fn sleep_advances_the_virtual_clock_exactly() {
    run_virtual(|| {
        let sw = Stopwatch::start();
        curio::sleep(ms(1500)).unwrap();
        assert_eq!(sw.elapsed(), ms(1500));
        curio::sleep(secs(3600)).unwrap();
        assert_eq!(sw.elapsed(), secs(3600) + ms(1500));
        // Time stands still while tasks run.
        let before = curio::clock();
        let mut x = 0u64;
        for i in 0..100_000 {
            x = x.wrapping_add(std::hint::black_box(i));
        }
        std::hint::black_box(x);
        curio::yield_now().unwrap();
        assert_eq!(curio::clock(), before);
    });
}

#[test]
fn sleep_until_wakes_at_the_instant_and_a_past_instant_only_yields() {
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        curio::sleep_until(sw.at(secs(5))).unwrap();
        assert_eq!(sw.elapsed(), secs(5));
        let l = log.clone();
        let other = curio::spawn(move || l.push("other runs"));
        curio::sleep_until(sw.at(secs(1))).unwrap(); // in the past: a yield
        log.push("main after past sleep_until");
        assert_eq!(sw.elapsed(), secs(5));
        other.join().unwrap();
        log.assert_eq(&["other runs", "main after past sleep_until"]);
    });
}

#[test]
fn sleepers_wake_in_deadline_order_and_equal_deadlines_in_arrival_order() {
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let mut tasks = Vec::new();
        for (name, d) in [("a", 3), ("b", 1), ("c", 2), ("d", 1), ("e", 3)] {
            let l = log.clone();
            tasks.push(curio::spawn(move || {
                curio::sleep(secs(d)).unwrap();
                l.at(&sw, name);
            }));
        }
        for t in &tasks {
            t.join().unwrap();
        }
        log.assert_eq(&["1s b", "1s d", "2s c", "3s a", "3s e"]);
    });
}

// ---------------------------------------------------------------------------
// A single timeout block
// ---------------------------------------------------------------------------

#[test]
fn a_block_that_overruns_its_deadline_gets_timeout() {
    run_virtual(|| {
        let sw = Stopwatch::start();
        let r = curio::timeout_after(secs(2), || curio::sleep(secs(10)));
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(e.is_timeout() && e.is_cancellation() && !e.is_cancelled());
        assert_eq!(sw.elapsed(), secs(2));
        assert_eq!(e.clock(), Some(sw.at(secs(2))));
    });
}

#[test]
fn a_block_that_finishes_in_time_returns_its_value_and_leaves_no_deadline_behind() {
    run_virtual(|| {
        let sw = Stopwatch::start();
        let r = curio::timeout_after(secs(2), || {
            curio::sleep(secs(1))?;
            Ok::<_, Error>("done")
        });
        assert_eq!(r.unwrap(), "done");
        assert_eq!(sw.elapsed(), secs(1));
        // Past the old deadline: nothing fires.
        curio::sleep(secs(5)).unwrap();
        assert_eq!(sw.elapsed(), secs(6));
    });
}

#[test]
fn timeout_at_and_ignore_at_take_an_instant() {
    run_virtual(|| {
        let sw = Stopwatch::start();
        let e = curio::timeout_at(sw.at(secs(3)), || curio::sleep(secs(10))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert_eq!(sw.elapsed(), secs(3));
        let r = curio::ignore_at(sw.at(secs(4)), || curio::sleep(secs(10)));
        assert_eq!(r.unwrap(), None);
        assert_eq!(sw.elapsed(), secs(4));
        let r = curio::ignore_at(sw.at(secs(10)), || curio::sleep(secs(1)).map(|_| 5));
        assert_eq!(r.unwrap(), Some(5));
        assert_eq!(sw.elapsed(), secs(5));
        let r = curio::timeout_at(sw.at(secs(10)), || curio::sleep(secs(1)).map(|_| 6));
        assert_eq!(r.unwrap(), 6);
        assert_eq!(sw.elapsed(), secs(6));
    });
}

#[test]
fn ignore_after_turns_its_own_expiry_into_none() {
    run_virtual(|| {
        let sw = Stopwatch::start();
        let r = curio::ignore_after(secs(1), || curio::sleep(secs(10)).map(|_| 1));
        assert_eq!(r.unwrap(), None);
        assert_eq!(sw.elapsed(), secs(1));
        let r = curio::ignore_after(secs(5), || curio::sleep(secs(1)).map(|_| 2));
        assert_eq!(r.unwrap(), Some(2));
        assert_eq!(sw.elapsed(), secs(2));
    });
}

#[test]
fn ignore_after_lets_an_outer_timeout_pass_through() {
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let r = curio::timeout_after(secs(1), || {
            let r = curio::ignore_after(secs(5), || curio::sleep(secs(10)));
            log.at(&sw, format!("ignore_after: {}", outcome(&r)));
            r.map(|_| ())
        });
        log.at(&sw, format!("timeout_after: {}", outcome(&r)));
        log.assert_eq(&[
            "1s ignore_after: TimeoutCancelled",
            "1s timeout_after: Timeout",
        ]);
    });
}

// ---------------------------------------------------------------------------
// Zero and past deadlines; blocks without cancel points
// ---------------------------------------------------------------------------

#[test]
fn a_zero_or_past_deadline_fires_at_the_first_cancel_point() {
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let r = curio::timeout_after(Duration::ZERO, || {
            log.push("body runs");
            curio::sleep(secs(1))
        });
        log.at(&sw, format!("zero: {}", outcome(&r)));
        curio::sleep(secs(1)).unwrap();
        let r = curio::timeout_at(sw.at(Duration::ZERO), || curio::sleep(secs(1)));
        log.at(&sw, format!("past: {}", outcome(&r)));
        // sleep(0) and yield_now are cancel points too.
        let r = curio::timeout_after(Duration::ZERO, || curio::sleep(Duration::ZERO));
        log.at(&sw, format!("zero, sleep(0): {}", outcome(&r)));
        let r = curio::timeout_after(Duration::ZERO, curio::yield_now);
        log.at(&sw, format!("zero, yield_now: {}", outcome(&r)));
        let r = curio::ignore_after(Duration::ZERO, || curio::sleep(secs(1)));
        log.at(&sw, format!("ignore zero: {:?}", r.unwrap()));
        log.assert_eq(&[
            "body runs",
            "0ns zero: Timeout",
            "1s past: Timeout",
            "1s zero, sleep(0): Timeout",
            "1s zero, yield_now: Timeout",
            "1s ignore zero: None",
        ]);
    });
}

#[test]
fn a_pending_timeout_is_dropped_when_the_block_ends_before_a_cancel_point() {
    run_virtual(|| {
        let sw = Stopwatch::start();
        // The deadline has passed on entry, but the block never reaches a
        // cancel point: it is not interrupted, and nothing leaks out of it.
        let r = curio::timeout_after(Duration::ZERO, || Ok::<_, Error>(42));
        assert_eq!(r.unwrap(), 42);
        curio::sleep(secs(1)).unwrap();
        curio::yield_now().unwrap();
        let r = curio::ignore_after(Duration::ZERO, || Ok::<_, Error>(43));
        assert_eq!(r.unwrap(), Some(43));
        curio::sleep(secs(1)).unwrap();
        assert_eq!(sw.elapsed(), secs(2));
        // Same inside an outer block that does not expire.
        let r = curio::timeout_after(secs(10), || {
            let inner = curio::timeout_after(Duration::ZERO, || Ok::<_, Error>(1))?;
            curio::sleep(secs(1))?;
            Ok::<_, Error>(inner + 1)
        });
        assert_eq!(r.unwrap(), 2);
        assert_eq!(sw.elapsed(), secs(3));
    });
}

#[test]
fn a_block_without_cancel_points_is_never_interrupted() {
    // Virtual time cannot pass while a task runs, so this one scenario uses the
    // real clock: the block overruns a 5 ms deadline by busy-waiting 30 ms.
    let v = watchdog(|| {
        curio::Kernel::builder()
            .virtual_clock(false)
            .build()
            .run(|| {
                let r = curio::timeout_after(ms(5), || {
                    std::thread::sleep(ms(30)); // blocks the OS thread: no cancel point
                    Ok::<_, Error>("finished")
                });
                let v = r.unwrap();
                // The deadline passed inside the block and is gone after it.
                curio::sleep(ms(20)).unwrap();
                curio::yield_now().unwrap();
                v
            })
            .unwrap()
    });
    assert_eq!(v, "finished");
}

// ---------------------------------------------------------------------------
// Nesting
// ---------------------------------------------------------------------------

/// Records how a block ended, with the virtual time, and passes the result on.
fn note<T>(log: &Log, sw: &Stopwatch, what: &str, r: curio::Result<T>) -> curio::Result<T> {
    log.at(sw, format!("{what}: {}", outcome(&r)));
    r
}

#[test]
fn nested_three_deep_outer_expires_first() {
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let (l, s) = (&log, &sw);
        let r = curio::timeout_after(secs(1), || {
            let r = curio::timeout_after(secs(2), || {
                let r = curio::timeout_after(secs(3), || {
                    let r = curio::sleep(secs(10));
                    note(l, s, "body", r)
                });
                note(l, s, "inner", r)
            });
            note(l, s, "middle", r)
        });
        note(l, s, "outer", r).unwrap_err();
        log.assert_eq(&[
            "1s body: Timeout",
            "1s inner: TimeoutCancelled",
            "1s middle: TimeoutCancelled",
            "1s outer: Timeout",
        ]);
    });
}

#[test]
fn nested_three_deep_inner_expires_first_and_each_level_catches() {
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let (l, s) = (&log, &sw);
        let r = curio::timeout_after(secs(3), || {
            let r = curio::timeout_after(secs(2), || {
                let r = curio::timeout_after(secs(1), || {
                    let r = curio::sleep(secs(10));
                    note(l, s, "body", r)
                });
                let _ = note(l, s, "inner", r);
                // Caught: the middle block carries on until its own deadline.
                let r = curio::sleep(secs(10));
                note(l, s, "middle body", r)
            });
            let _ = note(l, s, "middle", r);
            let r = curio::sleep(secs(10));
            note(l, s, "outer body", r)
        });
        note(l, s, "outer", r).unwrap_err();
        log.assert_eq(&[
            "1s body: Timeout",
            "1s inner: Timeout",
            "2s middle body: Timeout",
            "2s middle: Timeout",
            "3s outer body: Timeout",
            "3s outer: Timeout",
        ]);
    });
}

#[test]
fn nested_three_deep_inner_expires_first_and_leaks_as_uncaught_timeout() {
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let (l, s) = (&log, &sw);
        let r = curio::timeout_after(secs(3), || {
            let r = curio::timeout_after(secs(2), || {
                let r = curio::timeout_after(secs(1), || {
                    let r = curio::sleep(secs(10));
                    note(l, s, "body", r)
                });
                note(l, s, "inner", r)
            });
            note(l, s, "middle", r)
        });
        note(l, s, "outer", r).unwrap_err();
        // The deadlines of the closed blocks (2 s, 3 s) do not fire later.
        curio::sleep(secs(5)).unwrap();
        log.at(&sw, "slept past the old deadlines");
        log.assert_eq(&[
            "1s body: Timeout",
            "1s inner: Timeout",
            "1s middle: UncaughtTimeout",
            "1s outer: UncaughtTimeout",
            "6s slept past the old deadlines",
        ]);
    });
}

#[test]
fn nested_three_deep_middle_expires_first() {
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let (l, s) = (&log, &sw);
        let r = curio::timeout_after(secs(3), || {
            let r = curio::timeout_after(secs(1), || {
                let r = curio::timeout_after(secs(2), || {
                    let r = curio::sleep(secs(10));
                    note(l, s, "body", r)
                });
                note(l, s, "inner", r)
            });
            note(l, s, "middle", r)
        });
        note(l, s, "outer", r).unwrap_err();
        log.assert_eq(&[
            "1s body: Timeout",
            "1s inner: TimeoutCancelled",
            "1s middle: Timeout",
            "1s outer: UncaughtTimeout",
        ]);
    });
}

#[test]
fn equal_deadlines_the_outer_block_is_the_one_that_expired() {
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let (l, s) = (&log, &sw);
        let r = curio::timeout_after(secs(1), || {
            let r = curio::timeout_after(secs(1), || curio::sleep(secs(10)));
            note(l, s, "inner", r)
        });
        note(l, s, "outer", r).unwrap_err();
        log.assert_eq(&["1s inner: TimeoutCancelled", "1s outer: Timeout"]);
    });
}

#[test]
fn an_inner_timeout_caught_inside_the_outer_block_lets_the_outer_continue() {
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let (l, s) = (&log, &sw);
        let r = curio::timeout_after(secs(5), || {
            let r = curio::timeout_after(secs(1), || curio::sleep(secs(10)));
            let _ = note(l, s, "inner", r);
            curio::sleep(secs(1))?;
            l.at(s, "outer body goes on");
            Ok::<_, Error>("outer done")
        });
        assert_eq!(note(l, s, "outer", r).unwrap(), "outer done");
        log.assert_eq(&["1s inner: Timeout", "2s outer body goes on", "2s outer: ok"]);
    });
}

#[test]
fn an_inner_timeout_leaking_into_an_unexpired_outer_block_is_uncaught() {
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let (l, s) = (&log, &sw);
        let r = curio::timeout_after(secs(10), || {
            l.push("coro1 start");
            curio::timeout_after(secs(1), || curio::sleep(secs(5)))
        });
        let e = note(l, s, "outer", r).unwrap_err();
        assert!(!e.is_cancellation(), "UncaughtTimeout is an ordinary error");
        log.assert_eq(&["coro1 start", "1s outer: UncaughtTimeout"]);
    });
}

#[test]
fn an_expired_outer_deadline_refires_at_the_next_cancel_point() {
    // Curio's test_nested_timeout.
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let l = &log;
        let r = curio::timeout_after(secs(1), || {
            let r = curio::timeout_after(secs(5), || {
                l.push("coro1 start");
                curio::sleep(secs(1))?;
                l.push("coro1 done");
                Ok::<_, Error>(())
            });
            match r {
                Ok(()) => l.push("coro1 success"),
                Err(e) if e.is_timeout() => l.push("coro1 timeout"),
                Err(e) if e.is_timeout_cancelled() => l.push("coro1 timeout cancel"),
                Err(e) => return Err(e),
            }
            l.push("coro2 start");
            curio::sleep(secs(1))?;
            l.push("coro2 done");
            Ok(())
        });
        match r {
            Err(e) if e.is_timeout() => log.at(&sw, "parent timeout"),
            other => log.push(format!("parent: {}", outcome(&other))),
        }
        log.assert_eq(&[
            "coro1 start",
            "coro1 timeout cancel",
            "coro2 start",
            "1s parent timeout",
        ]);
    });
}

#[test]
fn a_timeout_swallowed_inside_the_inner_block_refires_when_that_block_ends() {
    // As in Curio: a deadline fires once. Code that swallows it and goes on
    // inside the same inner block is not hit again there; when the inner block
    // ends, the outer deadline (already passed) is re-armed and fires at the
    // next cancel point.
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let (l, s) = (&log, &sw);
        let r = curio::timeout_after(secs(1), || {
            let r = curio::timeout_after(secs(5), || {
                let r = curio::sleep(secs(10));
                let _ = note(l, s, "inner body, first", r);
                let r = curio::sleep(secs(1));
                note(l, s, "inner body, second", r)
            });
            note(l, s, "inner", r)?;
            let r = curio::sleep(secs(10));
            note(l, s, "outer body", r)
        });
        let e = note(l, s, "outer", r).unwrap_err();
        assert_eq!(e.clock(), Some(sw.at(secs(2))));
        log.assert_eq(&[
            "1s inner body, first: Timeout",
            "2s inner body, second: ok",
            "2s inner: ok",
            "2s outer body: Timeout",
            "2s outer: Timeout",
        ]);
    });
}

// ---------------------------------------------------------------------------
// timeout_after(None, ..)
// ---------------------------------------------------------------------------

#[test]
fn a_none_block_has_no_deadline_of_its_own() {
    run_virtual(|| {
        let sw = Stopwatch::start();
        let r = curio::timeout_after(None::<Duration>, || {
            curio::sleep(secs(100))?;
            Ok::<_, Error>(7)
        });
        assert_eq!(r.unwrap(), 7);
        assert_eq!(sw.elapsed(), secs(100));
        let r = curio::ignore_after(None::<Duration>, || curio::sleep(secs(1)).map(|_| 8));
        assert_eq!(r.unwrap(), Some(8));
        // An inner block's timeout caught inside the None block is fine.
        let r = curio::timeout_after(None::<Duration>, || {
            let inner = curio::timeout_after(secs(1), || curio::sleep(secs(5)));
            assert!(inner.unwrap_err().is_timeout());
            curio::sleep(secs(1))?;
            Ok::<_, Error>(9)
        });
        assert_eq!(r.unwrap(), 9);
        assert_eq!(sw.elapsed(), secs(103));
    });
}

#[test]
fn a_none_block_reports_an_outer_expiry_as_timeout_cancelled() {
    // Curio's test_nested_timeout_none.
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let (l, s) = (&log, &sw);
        let r = curio::timeout_after(secs(1), || {
            let r = curio::timeout_after(None::<Duration>, || {
                l.push("coro1 start");
                curio::sleep(secs(2))?;
                l.push("coro1 done");
                Ok::<_, Error>(())
            });
            note(l, s, "none block", r)?;
            l.push("coro1 success");
            Ok(())
        });
        note(l, s, "outer", r).unwrap_err();
        log.assert_eq(&[
            "coro1 start",
            "1s none block: TimeoutCancelled",
            "1s outer: Timeout",
        ]);
    });
}

// ---------------------------------------------------------------------------
// io::Result closures
// ---------------------------------------------------------------------------

#[test]
fn io_result_closures_work_and_the_error_round_trips() {
    run_virtual(|| {
        let sw = Stopwatch::start();
        let r: io::Result<()> = curio::timeout_after(secs(1), || -> io::Result<()> {
            curio::sleep(secs(10))?;
            Ok(())
        });
        let e = r.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_ne!(e.kind(), io::ErrorKind::Interrupted);
        let back = Error::from(e);
        assert!(back.is_timeout());
        assert_eq!(back.clock(), Some(sw.at(secs(1))));

        // Relabelling works through io::Error too.
        let r = curio::timeout_after(secs(1), || -> io::Result<()> {
            let inner = curio::timeout_after(secs(5), || -> io::Result<()> {
                curio::sleep(secs(10))?;
                Ok(())
            });
            let ie = inner.unwrap_err();
            assert_eq!(ie.kind(), io::ErrorKind::TimedOut);
            assert!(Error::from(ie).is_timeout_cancelled());
            curio::sleep(secs(1))?; // the outer deadline re-fires here
            Ok(())
        });
        assert!(Error::from(r.unwrap_err()).is_timeout());

        // ignore_after with io::Result, and a plain I/O error passing through.
        let r = curio::ignore_after(secs(1), || -> io::Result<u8> {
            curio::sleep(secs(10))?;
            Ok(1)
        });
        assert_eq!(r.unwrap(), None);
        let r = curio::timeout_after(secs(1), || -> io::Result<u8> {
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "peer reset"))
        });
        let e = r.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(Error::from(e).kind(), ErrorKind::Io);
        assert_eq!(sw.elapsed(), secs(3));
    });
}

// ---------------------------------------------------------------------------
// Loops of timeouts: no stale deadlines
// ---------------------------------------------------------------------------

#[test]
fn the_kid_nags_every_second_with_no_stale_deadline() {
    // The tutorial's kid: "Can I play?" every second until the parent says yes.
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let l = log.clone();
        let start = curio::task::Builder::new()
            .name("start")
            .spawn(move || {
                curio::sleep(ms(4500)).unwrap();
                l.at(&sw, "Yes, go play");
            })
            .unwrap();
        let start_evt: TaskRef = (*start).clone();
        let l = log.clone();
        let kid = curio::task::Builder::new()
            .name("kid")
            .spawn(move || {
                loop {
                    l.at(&sw, "Can I play?");
                    match curio::timeout_after(secs(1), || start_evt.wait()) {
                        Ok(()) => break,
                        Err(e) if e.is_timeout() => l.at(&sw, "Wha!?!"),
                        Err(e) => return Err(e),
                    }
                }
                l.at(&sw, "Building the Millenium Falcon in Minecraft");
                if let Err(e) = curio::sleep(secs(1000)) {
                    l.at(&sw, "Fine. Saving my work.");
                    return Err(e);
                }
                Ok(())
            })
            .unwrap();
        curio::sleep(secs(10)).unwrap();
        log.at(&sw, "Let's go");
        kid.cancel().unwrap();
        assert!(kid.join().unwrap().unwrap_err().is_cancelled());
    });
    assert_events(
        &events,
        &[
            "0ns Can I play?",
            "1s Wha!?!",
            "1s Can I play?",
            "2s Wha!?!",
            "2s Can I play?",
            "3s Wha!?!",
            "3s Can I play?",
            "4s Wha!?!",
            "4s Can I play?",
            "4.5s Yes, go play",
            "4.5s Building the Millenium Falcon in Minecraft",
            "10s Let's go",
            "10s Fine. Saving my work.",
        ],
    );
}

#[test]
fn a_thousand_short_timeout_blocks_leave_nothing_behind() {
    run_virtual(|| {
        let sw = Stopwatch::start();
        for i in 0..1000u64 {
            // Alternately finishing in time and expiring.
            let r = curio::timeout_after(ms(10), || curio::sleep(ms(5 + 10 * (i % 2))));
            assert_eq!(r.is_err(), i % 2 == 1, "round {i}");
        }
        assert_eq!(sw.elapsed(), ms(500 * 5 + 500 * 10));
        curio::sleep(secs(100)).unwrap();
        assert_eq!(sw.elapsed(), ms(7500) + secs(100));
    });
}

#[test]
fn huge_durations_saturate() {
    run_virtual(|| {
        let sw = Stopwatch::start();
        let r = curio::timeout_after(Duration::MAX, || curio::sleep(secs(1)));
        assert_eq!(outcome(&r), "ok");
        let r = curio::timeout_after(secs(2), || curio::sleep(Duration::MAX));
        assert_eq!(outcome(&r), "Timeout");
        let r = curio::ignore_after(Duration::MAX, || curio::sleep(secs(1)).map(|_| 1));
        assert_eq!(r.unwrap(), Some(1));
        assert_eq!(sw.elapsed(), secs(4));
        let kid = curio::spawn(|| curio::sleep(Duration::MAX));
        curio::sleep(secs(1)).unwrap();
        kid.cancel().unwrap();
        assert!(kid.join().unwrap().unwrap_err().is_cancelled());
    });
}

#[test]
fn a_wake_and_a_timeout_due_at_the_same_instant_the_woken_task_runs_first() {
    // The kernel's choice (kernel.rs, expire_timers): when a wake-up and a
    // timeout fall due at the same instant, the woken tasks run first, so what
    // they do at that instant counts as in time. Here the kid ends exactly at
    // main's deadline, and main's join gets the value.
    run_virtual(|| {
        let log = Log::new();
        let sw = Stopwatch::start();
        let l = log.clone();
        let kid = curio::spawn(move || {
            curio::sleep(secs(1)).unwrap();
            l.at(&sw, "kid done");
            "value"
        });
        curio::yield_now().unwrap();
        let r = curio::timeout_after(secs(1), || kid.join());
        log.at(&sw, format!("main's join: {:?}", r.unwrap()));
        // The deferred deadline does not fire later.
        curio::sleep(secs(1)).unwrap();
        log.at(&sw, "main slept on");
        log.assert_eq(&[
            "1s kid done",
            "1s main's join: \"value\"",
            "2s main slept on",
        ]);
    });
}

#[test]
fn nested_ignore_after_blocks_each_swallow_only_their_own_expiry() {
    run_virtual(|| {
        let sw = Stopwatch::start();
        // Outer expires first: the inner passes TimeoutCancelled up, the outer swallows it.
        let r = curio::ignore_after(secs(1), || {
            let inner = curio::ignore_after(secs(5), || curio::sleep(secs(10)));
            assert_eq!(outcome(&inner), "TimeoutCancelled");
            inner
        });
        assert!(matches!(r, Ok(None)));
        assert_eq!(sw.elapsed(), secs(1));
        // Inner expires first: it swallows its own; the outer gets its value.
        let r = curio::ignore_after(secs(5), || {
            curio::ignore_after(secs(1), || curio::sleep(secs(10)))
        });
        assert!(matches!(r, Ok(Some(None))));
        assert_eq!(sw.elapsed(), secs(2));
    });
}

//! Nothing lost: every blocking call of `sync`, `queue`, `universal` and
//! `workers`, interrupted once by a cancel and once by a timeout.
//!
//! The rule (`semantics.md`, Cancellation and Synchronization and queues): a
//! waiter interrupted at a cancel point is woken at once and its wait is undone.
//! It holds no lock, took no unit or item, a put hands its item back, and the
//! primitive then behaves exactly as if it had never waited: what it would have
//! got goes to the next waiter. A waiter that was already handed something
//! before the cancel arrived keeps it, and the cancel waits for its next cancel
//! point.
//!
//! Each scenario runs twice: the interrupted task `A` is either cancelled by
//! another task at 1 s, or runs its call inside `timeout_after(1 s)`.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use common::*;
use curio::sync::{BoundedSemaphore, Condition, Event, Lock, RLock, ResultCell, Semaphore};
use curio::{
    CurioError, ErrorKind, LifoQueue, PriorityQueue, Queue, Task, UniversalEvent, UniversalQueue,
};

// ---------------------------------------------------------------------------
// The two ways to interrupt a wait
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Interrupt {
    /// Another task calls `cancel()` on the waiter at 1 s.
    Cancel,
    /// The waiter's call runs in `timeout_after(1 s)`.
    Timeout,
}

const BOTH: [Interrupt; 2] = [Interrupt::Cancel, Interrupt::Timeout];

impl Interrupt {
    fn kind(self) -> &'static str {
        match self {
            Interrupt::Cancel => "Cancelled",
            Interrupt::Timeout => "Timeout",
        }
    }
}

/// Spawns `op` as a task that will be interrupted by `how` at 1 s (see
/// [`interrupt`]). Spawned first, it is the first to wait.
fn start<T: 'static, E: CurioError + 'static>(
    how: Interrupt,
    op: impl FnOnce() -> Result<T, E> + 'static,
) -> Task<Result<T, E>> {
    curio::spawn(move || match how {
        Interrupt::Cancel => op(),
        Interrupt::Timeout => curio::timeout_after(secs(1), op),
    })
}

/// Interrupts the task made by [`start`] at 1 s and returns what its call returned.
fn interrupt<T, E>(how: Interrupt, task: &Task<Result<T, E>>) -> Result<T, E> {
    if let Interrupt::Cancel = how {
        curio::sleep(secs(1)).unwrap();
        task.cancel().unwrap();
    }
    task.join().unwrap()
}

/// `Ok`, or the kind of the curio error inside any error type.
fn kind_of<T, E: CurioError>(r: &Result<T, E>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("{:?}", e.as_curio().expect("a curio error").kind()),
    }
}

/// Asserts the events, with `{err}` in `expected` standing for the error kind
/// that `how` produces.
#[track_caller]
fn check(events: &[String], how: Interrupt, expected: &[&str]) {
    let expected: Vec<String> = expected
        .iter()
        .map(|e| e.replace("{err}", how.kind()))
        .collect();
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_events(events, &expected);
}

// ---------------------------------------------------------------------------
// sync
// ---------------------------------------------------------------------------

#[test]
fn event_wait() {
    for how in BOTH {
        let events = run_logged(move |log| {
            let sw = Stopwatch::start();
            let evt = Rc::new(Event::new());
            let e = evt.clone();
            let a = start(how, move || e.wait());
            let (e, l) = (evt.clone(), log.clone());
            let b = curio::spawn(move || {
                e.wait().unwrap();
                l.at(&sw, "B woke");
            });
            let r = interrupt(how, &a);
            log.at(&sw, format!("A: {}", kind_of(&r)));
            assert!(!evt.is_set());
            curio::sleep(secs(1)).unwrap();
            evt.set();
            b.join().unwrap();
        });
        check(&events, how, &["1s A: {err}", "2s B woke"]);
    }
}

#[test]
fn lock_acquire() {
    for how in BOTH {
        let events = run_logged(move |log| {
            let sw = Stopwatch::start();
            let lock = Rc::new(Lock::new());
            let guard = lock.acquire().unwrap();
            let lk = lock.clone();
            let a = start(how, move || lk.acquire().map(|_g| ()));
            let (lk, l) = (lock.clone(), log.clone());
            let b = curio::spawn(move || {
                let _g = lk.acquire().unwrap();
                l.at(&sw, "B has the lock");
            });
            let r = interrupt(how, &a);
            log.at(&sw, format!("A: {}", kind_of(&r)));
            curio::sleep(secs(1)).unwrap();
            log.at(&sw, "main releases");
            drop(guard);
            b.join().unwrap();
            assert!(!lock.locked());
        });
        check(
            &events,
            how,
            &["1s A: {err}", "2s main releases", "2s B has the lock"],
        );
    }
}

#[test]
fn rlock_acquire() {
    for how in BOTH {
        let events = run_logged(move |log| {
            let sw = Stopwatch::start();
            let r = Rc::new(RLock::new());
            r.acquire().unwrap();
            let (rl, l) = (r.clone(), log.clone());
            let a = start(how, move || {
                let res = rl.acquire();
                if res.is_err() {
                    // It holds nothing.
                    let bad = rl.release().unwrap_err();
                    l.at(&sw, format!("A: release {:?}", bad.kind()));
                }
                res
            });
            let (rl, l) = (r.clone(), log.clone());
            let b = curio::spawn(move || {
                rl.acquire().unwrap();
                l.at(&sw, "B has the rlock");
                rl.release().unwrap();
            });
            let res = interrupt(how, &a);
            log.at(&sw, format!("A: {}", kind_of(&res)));
            r.release().unwrap();
            b.join().unwrap();
            assert!(!r.locked());
        });
        check(
            &events,
            how,
            &["1s A: release Usage", "1s A: {err}", "1s B has the rlock"],
        );
    }
}

#[test]
fn semaphore_acquire() {
    for how in BOTH {
        let events = run_logged(move |log| {
            let sw = Stopwatch::start();
            let sem = Rc::new(Semaphore::new(1));
            let held = sem.acquire().unwrap();
            let s = sem.clone();
            let a = start(how, move || s.acquire().map(|_g| ()));
            let (s, l) = (sem.clone(), log.clone());
            let b = curio::spawn(move || {
                let _g = s.acquire().unwrap();
                l.at(&sw, format!("B in; value {}", s.value()));
            });
            let r = interrupt(how, &a);
            log.at(&sw, format!("A: {}; value {}", kind_of(&r), sem.value()));
            drop(held);
            b.join().unwrap();
            log.at(&sw, format!("value {}", sem.value()));
        });
        check(
            &events,
            how,
            &["1s A: {err}; value 0", "1s B in; value 0", "1s value 1"],
        );
    }
}

#[test]
fn bounded_semaphore_acquire() {
    for how in BOTH {
        run_virtual(move || {
            let sem = Rc::new(BoundedSemaphore::new(1));
            let held = sem.acquire().unwrap();
            let s = sem.clone();
            let a = start(how, move || s.acquire().map(|_g| ()));
            assert_eq!(kind_of(&interrupt(how, &a)), how.kind());
            drop(held);
            assert_eq!(sem.value(), 1);
            // The interrupted acquire left no unit behind to over-release.
            assert_eq!(sem.release().unwrap_err().kind(), ErrorKind::Usage);
            assert_eq!(sem.value(), 1);
        });
    }
}

#[test]
fn condition_wait() {
    for how in BOTH {
        let events = run_logged(move |log| {
            let sw = Stopwatch::start();
            let cond = Rc::new(Condition::new());
            let (c, l) = (cond.clone(), log.clone());
            let a = start(how, move || {
                let mut g = c.lock()?;
                let r = c.wait(&mut g);
                // The lock is ours again, whatever happened: hold it a while.
                l.at(&sw, format!("A: wait {}, holding the lock", kind_of(&r)));
                curio::sleep(secs(1)).unwrap();
                c.notify(&g, 1).unwrap();
                l.at(&sw, "A releases");
                drop(g);
                r
            });
            let (c, l) = (cond.clone(), log.clone());
            let b = curio::spawn(move || {
                let mut g = c.lock().unwrap();
                c.wait(&mut g).unwrap();
                l.at(&sw, "B notified");
            });
            let r = interrupt(how, &a);
            log.at(&sw, format!("A returned {}", kind_of(&r)));
            b.join().unwrap();
            let _g = cond.lock().unwrap(); // free again
        });
        check(
            &events,
            how,
            &[
                "1s A: wait {err}, holding the lock",
                "2s A releases",
                "2s B notified",
                "2s A returned {err}",
            ],
        );
    }
}

#[test]
fn condition_wait_for() {
    for how in BOTH {
        let events = run_logged(move |log| {
            let sw = Stopwatch::start();
            let cond = Rc::new(Condition::new());
            let ready = Rc::new(Cell::new(false));
            let (c, rd, l) = (cond.clone(), ready.clone(), log.clone());
            let a = start(how, move || {
                let mut g = c.lock()?;
                let r = c.wait_for(&mut g, || rd.get());
                l.at(&sw, format!("A: wait_for {}", kind_of(&r)));
                // Still holding the lock: a task trying it now must wait.
                let c2 = c.clone();
                let probe = curio::spawn(move || c2.lock().map(|_g| ()));
                curio::sleep(secs(1)).unwrap();
                assert!(!probe.is_terminated(), "A still holds the lock");
                drop(g);
                probe.join().unwrap().unwrap();
                r
            });
            let r = interrupt(how, &a);
            log.at(&sw, format!("A returned {}", kind_of(&r)));
            ready.set(true);
            let mut g = cond.lock().unwrap();
            cond.wait_for(&mut g, || ready.get()).unwrap(); // true: no wait
        });
        check(
            &events,
            how,
            &["1s A: wait_for {err}", "2s A returned {err}"],
        );
    }
}

#[test]
fn result_cell_get() {
    for how in BOTH {
        let events = run_logged(move |log| {
            let sw = Stopwatch::start();
            let cell = Rc::new(ResultCell::new());
            let c = cell.clone();
            let a = start(how, move || c.get());
            let r = interrupt(how, &a);
            log.at(&sw, format!("A: {}", kind_of(&r)));
            cell.set_value("the value").unwrap();
            log.at(&sw, format!("later get: {}", cell.get().unwrap()));
        });
        check(&events, how, &["1s A: {err}", "1s later get: the value"]);
    }
}

// ---------------------------------------------------------------------------
// queue
// ---------------------------------------------------------------------------

#[test]
fn queue_get() {
    for how in BOTH {
        let events = run_logged(move |log| {
            let sw = Stopwatch::start();
            let q = Rc::new(Queue::new(0));
            let q2 = q.clone();
            let a = start(how, move || q2.get());
            let (q2, l) = (q.clone(), log.clone());
            let b = curio::spawn(move || {
                let item = q2.get().unwrap();
                l.at(&sw, format!("B got {item}"));
            });
            let r = interrupt(how, &a);
            log.at(&sw, format!("A: {}", kind_of(&r)));
            q.put("first").unwrap();
            q.put("second").unwrap();
            b.join().unwrap();
            log.at(&sw, format!("left in the queue: {}", q.get().unwrap()));
        });
        check(
            &events,
            how,
            &[
                "1s A: {err}",
                "1s B got first",
                "1s left in the queue: second",
            ],
        );
    }
}

#[test]
fn lifo_and_priority_queue_get() {
    for how in BOTH {
        run_virtual(move || {
            let lifo = Rc::new(LifoQueue::new(0));
            let q2 = lifo.clone();
            let a = start(how, move || q2.get());
            assert_eq!(kind_of(&interrupt(how, &a)), how.kind());
            lifo.put(1).unwrap();
            lifo.put(2).unwrap();
            assert_eq!(lifo.get().unwrap(), 2);
            assert_eq!(lifo.get().unwrap(), 1);

            let prio = Rc::new(PriorityQueue::new(0));
            let q2 = prio.clone();
            let a = start(how, move || q2.get());
            assert_eq!(kind_of(&interrupt(how, &a)), how.kind());
            prio.put(2).unwrap();
            prio.put(1).unwrap();
            assert_eq!(prio.get().unwrap(), 1);
            assert_eq!(prio.get().unwrap(), 2);
        });
    }
}

#[test]
fn queue_put() {
    for how in BOTH {
        let events = run_logged(move |log| {
            let sw = Stopwatch::start();
            let q = Rc::new(Queue::new(1));
            q.put(String::from("already in")).unwrap();
            let q2 = q.clone();
            let a = start(how, move || q2.put(String::from("from A")));
            let (q2, l) = (q.clone(), log.clone());
            let b = curio::spawn(move || {
                q2.put(String::from("from B")).unwrap();
                l.at(&sw, "B put");
            });
            let r = interrupt(how, &a);
            log.at(&sw, format!("A: {}", kind_of(&r)));
            let back = r.unwrap_err().into_item();
            log.at(&sw, format!("A's item came back: {back:?}"));
            log.at(&sw, format!("qsize {}", q.qsize()));
            for _ in 0..2 {
                let item = q.get().unwrap();
                log.at(&sw, format!("main got {item}"));
            }
            b.join().unwrap();
            assert!(q.empty());
        });
        check(
            &events,
            how,
            &[
                "1s A: {err}",
                "1s A's item came back: Some(\"from A\")",
                "1s qsize 1",
                "1s main got already in",
                "1s B put",
                "1s main got from B",
            ],
        );
    }
}

#[test]
fn lifo_and_priority_queue_put() {
    for how in BOTH {
        run_virtual(move || {
            let lifo = Rc::new(LifoQueue::new(1));
            lifo.put(1).unwrap();
            let q2 = lifo.clone();
            let a = start(how, move || q2.put(2));
            assert_eq!(interrupt(how, &a).unwrap_err().into_item(), Some(2));
            assert_eq!(lifo.qsize(), 1);

            let prio = Rc::new(PriorityQueue::new(1));
            prio.put(5).unwrap();
            let q2 = prio.clone();
            let a = start(how, move || q2.put(0));
            assert_eq!(interrupt(how, &a).unwrap_err().into_item(), Some(0));
            assert_eq!(prio.get().unwrap(), 5);
            assert!(prio.empty());
        });
    }
}

#[test]
fn queue_join() {
    for how in BOTH {
        let events = run_logged(move |log| {
            let sw = Stopwatch::start();
            let q = Rc::new(Queue::new(0));
            q.put(1).unwrap();
            let q2 = q.clone();
            let a = start(how, move || q2.join());
            let (q2, l) = (q.clone(), log.clone());
            let b = curio::spawn(move || {
                q2.join().unwrap();
                l.at(&sw, "B: all done");
            });
            let r = interrupt(how, &a);
            log.at(&sw, format!("A: {}", kind_of(&r)));
            curio::sleep(secs(1)).unwrap();
            q.get().unwrap();
            q.task_done().unwrap();
            b.join().unwrap();
        });
        check(&events, how, &["1s A: {err}", "2s B: all done"]);
    }
}

// ---------------------------------------------------------------------------
// Woken first, interrupted second: the waiter keeps what it was handed
// ---------------------------------------------------------------------------

#[test]
fn a_waiter_cancelled_after_the_hand_off_keeps_what_it_was_handed() {
    let events = run_logged(|log| {
        let lock = Rc::new(Lock::new());
        let q = Rc::new(Queue::new(1));
        let sem = Rc::new(Semaphore::new(0));
        let guard = lock.acquire().unwrap();
        q.put("filler").unwrap();

        let (lk, l) = (lock.clone(), log.clone());
        let locker = curio::spawn(move || {
            let g = lk.acquire().unwrap();
            l.push("locker has the lock");
            let next = curio::sleep(secs(1)); // the pending cancel lands here
            l.push(format!("locker's next cancel point: {}", outcome(&next)));
            drop(g);
        });
        let (q2, l) = (q.clone(), log.clone());
        let putter = curio::spawn(move || {
            q2.put("put by the putter").unwrap();
            l.push("putter put");
        });
        let (s, l) = (sem.clone(), log.clone());
        let acquirer = curio::spawn(move || {
            s.acquire().unwrap().forget();
            l.push("acquirer has a unit");
        });
        curio::yield_now().unwrap(); // all three wait

        drop(guard); // handed to the locker
        let filler = q.get().unwrap(); // the slot is promised to the putter
        sem.release().unwrap(); // handed to the acquirer
        for t in [&*locker, &*putter, &*acquirer] {
            t.cancel_nowait();
        }
        locker.join().unwrap();
        putter.join().unwrap();
        acquirer.join().unwrap();
        log.push(format!(
            "queue holds {:?} after {filler:?}; lock free {}; value {}",
            q.try_get(),
            !lock.locked(),
            sem.value()
        ));

        // A getter woken with an item keeps the item.
        let (q2, l) = (q.clone(), log.clone());
        let getter = curio::spawn(move || {
            let item = q2.get().unwrap();
            l.push(format!("getter got {item}"));
        });
        curio::yield_now().unwrap();
        q.put("for the getter").unwrap();
        getter.cancel_nowait();
        getter.join().unwrap();
        assert!(q.empty());
    });
    assert_events(
        &events,
        &[
            "locker has the lock",
            "locker's next cancel point: Cancelled",
            "putter put",
            "acquirer has a unit",
            "queue holds Some(\"put by the putter\") after \"filler\"; lock free true; value 0",
            "getter got for the getter",
        ],
    );
}

// ---------------------------------------------------------------------------
// universal and workers
// ---------------------------------------------------------------------------

#[test]
fn universal_queue_get() {
    for how in BOTH {
        let events = run_logged(move |log| {
            let sw = Stopwatch::start();
            let q = UniversalQueue::new(0);
            let q2 = q.clone();
            let a = start(how, move || q2.get());
            let (q2, l) = (q.clone(), log.clone());
            let b = curio::spawn(move || {
                let item = q2.get().unwrap();
                l.at(&sw, format!("B got {item}"));
            });
            let r = interrupt(how, &a);
            log.at(&sw, format!("A: {}", kind_of(&r)));
            let q2 = q.clone();
            let feeder = thread::spawn(move || {
                q2.put("first").unwrap();
                q2.put("second").unwrap();
            });
            b.join().unwrap();
            curio::run_in_thread(move || feeder.join().unwrap()).unwrap();
            log.push(format!("left: {:?}", q.try_get()));
        });
        check(
            &events,
            how,
            &["1s A: {err}", "1s B got first", "left: Some(\"second\")"],
        );
    }
}

#[test]
fn universal_queue_put() {
    for how in BOTH {
        let events = run_logged(move |log| {
            let q = UniversalQueue::new(1);
            q.put(1).unwrap();
            let q2 = q.clone();
            let a = start(how, move || q2.put(2));
            let r = interrupt(how, &a);
            log.push(format!("A: {}", kind_of(&r)));
            log.push(format!("item back: {:?}", r.unwrap_err().into_item()));
            log.push(format!("queue: {:?}, {:?}", q.try_get(), q.try_get()));
        });
        check(
            &events,
            how,
            &["A: {err}", "item back: Some(2)", "queue: Some(1), None"],
        );
    }
}

#[test]
fn universal_event_wait() {
    for how in BOTH {
        let events = run_logged(move |log| {
            let sw = Stopwatch::start();
            let evt = UniversalEvent::new();
            let e = evt.clone();
            let a = start(how, move || e.wait());
            let (e, l) = (evt.clone(), log.clone());
            let b = curio::spawn(move || {
                e.wait().unwrap();
                l.at(&sw, "B woke");
            });
            let r = interrupt(how, &a);
            log.at(&sw, format!("A: {}", kind_of(&r)));
            assert!(!evt.is_set());
            let e = evt.clone();
            let setter = thread::spawn(move || e.set());
            b.join().unwrap();
            curio::run_in_thread(move || setter.join().unwrap()).unwrap();
        });
        check(&events, how, &["1s A: {err}", "1s B woke"]);
    }
}

#[test]
fn run_in_thread_call() {
    for how in BOTH {
        let events = run_logged(move |log| {
            let sw = Stopwatch::start();
            let finished = Arc::new(AtomicBool::new(false));
            let f = finished.clone();
            let a = start(how, move || {
                curio::run_in_thread(move || {
                    thread::sleep(Duration::from_millis(300));
                    f.store(true, Ordering::SeqCst);
                })
            });
            let r = interrupt(how, &a);
            log.at(
                &sw,
                format!(
                    "A: {}; function finished: {}",
                    kind_of(&r),
                    finished.load(Ordering::SeqCst)
                ),
            );
            // The kernel goes on; later calls work.
            assert_eq!(curio::run_in_thread(|| 3).unwrap(), 3);
        });
        check(&events, how, &["1s A: {err}; function finished: false"]);
    }
}

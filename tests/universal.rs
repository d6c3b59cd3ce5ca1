//! `UniversalQueue`, `UniversalEvent` and `UniversalResult`: shared by OS
//! threads (which block) and tasks (which suspend), at the same time.
//!
//! Traffic in both directions between several threads and several tasks with
//! every item received exactly once, a bounded queue blocking a thread until a
//! task makes room, a task getter that times out taking nothing, `task_done` and
//! `join` with workers and joiners on threads and on two kernels, events and
//! results set from either side, cancelled and timed-out waiters that leave
//! everything for the next one (also when a thread had already chosen them, and
//! across kernels), two kernels talking through one queue, and a kernel whose
//! only task waits on a thread not being reported as deadlocked
//! (`semantics.md`, Synchronization and queues; `curio-reference.md` §8).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use common::*;
use curio::{ErrorKind, Kernel, State, UniversalEvent, UniversalQueue, UniversalResult};

/// A log that OS threads and tasks can both write to.
#[derive(Clone, Default)]
struct SharedLog(Arc<Mutex<Vec<String>>>);

impl SharedLog {
    fn push(&self, event: impl Into<String>) {
        self.0.lock().unwrap().push(event.into());
    }

    fn events(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn position(&self, event: &str) -> Option<usize> {
        self.events().iter().position(|e| e == event)
    }
}

/// Lets real time pass without blocking the kernel (the pool thread sleeps).
fn real_sleep(d: Duration) {
    curio::run_in_thread(move || thread::sleep(d)).unwrap();
}

/// Suspends the calling task until `cond` holds, checking every few real
/// milliseconds.
fn wait_until(mut cond: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        real_sleep(Duration::from_millis(2));
    }
    panic!("condition not reached");
}

/// Joins an OS thread from a task without blocking the kernel.
fn join_thread<T: Send + 'static>(h: thread::JoinHandle<T>) -> T {
    curio::run_in_thread(move || h.join().expect("the thread panicked")).unwrap()
}

/// A small deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

// ---------------------------------------------------------------------------
// UniversalQueue: basic traffic
// ---------------------------------------------------------------------------

#[test]
fn items_from_a_thread_reach_a_task_in_order() {
    let got = watchdog(|| {
        let q = UniversalQueue::new(0);
        let q2 = q.clone();
        let producer = thread::spawn(move || {
            for n in 0..100 {
                q2.put(n).unwrap();
                if n % 10 == 0 {
                    thread::sleep(Duration::from_millis(1));
                }
            }
        });
        let got = virtual_kernel()
            .run(move || (0..100).map(|_| q.get().unwrap()).collect::<Vec<u32>>())
            .unwrap();
        producer.join().unwrap();
        got
    });
    assert_eq!(got, (0..100).collect::<Vec<_>>());
}

#[test]
fn items_from_a_task_reach_a_thread_in_order() {
    let got = watchdog(|| {
        let q = UniversalQueue::new(4);
        let q2 = q.clone();
        let consumer =
            thread::spawn(move || (0..100).map(|_| q2.get().unwrap()).collect::<Vec<u32>>());
        virtual_kernel()
            .run(move || {
                for n in 0..100 {
                    q.put(n).unwrap(); // suspends while the queue is full
                }
            })
            .unwrap();
        consumer.join().unwrap()
    });
    assert_eq!(got, (0..100).collect::<Vec<_>>());
}

#[test]
fn sizes_and_non_blocking_forms_work_from_threads_and_tasks() {
    let q = UniversalQueue::new(2);
    assert!(q.empty() && !q.full());
    assert_eq!(q.try_put('a'), Ok(()));
    assert_eq!(q.try_put('b'), Ok(()));
    assert_eq!(q.try_put('c'), Err('c'));
    assert!(q.full());
    assert_eq!(q.qsize(), 2);
    let q2 = q.clone();
    watchdog(move || {
        virtual_kernel()
            .run(move || {
                assert_eq!(q2.try_get(), Some('a'));
                assert_eq!(q2.try_put('d'), Ok(()));
                assert_eq!(q2.qsize(), 2);
            })
            .unwrap();
    });
    assert_eq!(q.try_get(), Some('b'));
    assert_eq!(q.try_get(), Some('d'));
    assert_eq!(q.try_get(), None);
    assert!(q.empty());
}

#[test]
fn traffic_between_several_threads_and_several_tasks_delivers_every_item_once() {
    const PER_PRODUCER: u64 = 400;
    const THREAD_PRODUCERS: u64 = 3;
    const TASK_PRODUCERS: u64 = 3;
    const THREAD_CONSUMERS: usize = 2;
    const TASK_CONSUMERS: usize = 3;
    let item = |producer: u64, i: u64| producer * 1_000_000 + i;

    let mut received = watchdog(move || {
        // `None` tells a consumer to stop; it comes after every real item.
        let q: UniversalQueue<Option<u64>> = UniversalQueue::new(8);
        let producers_done: UniversalQueue<()> = UniversalQueue::new(0);

        let thread_producers: Vec<_> = (0..THREAD_PRODUCERS)
            .map(|p| {
                let (q, done) = (q.clone(), producers_done.clone());
                thread::spawn(move || {
                    for i in 0..PER_PRODUCER {
                        q.put(Some(item(p, i))).unwrap();
                    }
                    done.put(()).unwrap();
                })
            })
            .collect();
        let thread_consumers: Vec<_> = (0..THREAD_CONSUMERS)
            .map(|_| {
                let q = q.clone();
                thread::spawn(move || {
                    let mut got = Vec::new();
                    while let Some(x) = q.get().unwrap() {
                        got.push(x);
                    }
                    got
                })
            })
            .collect();

        // A real-clock kernel: task getters and putters use short real timeouts,
        // so cancellations race with the threads' wake-ups.
        let q2 = q.clone();
        let mut got = Kernel::builder()
            .virtual_clock(false)
            .build()
            .run(move || {
                let q = q2;
                let task_producers: Vec<_> = (THREAD_PRODUCERS..THREAD_PRODUCERS + TASK_PRODUCERS)
                    .map(|p| {
                        let q = q.clone();
                        curio::spawn(move || {
                            let mut rng = Rng::new(p + 17);
                            let mut timeouts = 0;
                            for i in 0..PER_PRODUCER {
                                let mut next = Some(item(p, i));
                                loop {
                                    let d = ms(rng.below(3));
                                    match curio::timeout_after(d, || q.put(next)) {
                                        Ok(()) => break,
                                        Err(e) => {
                                            assert!(e.error().is_timeout(), "{e}");
                                            next = e.into_item().expect("the item comes back");
                                            timeouts += 1;
                                        }
                                    }
                                }
                            }
                            timeouts
                        })
                    })
                    .collect();
                let task_consumers: Vec<_> = (0..TASK_CONSUMERS as u64)
                    .map(|c| {
                        let q = q.clone();
                        curio::spawn(move || {
                            let mut rng = Rng::new(c + 99);
                            let mut got = Vec::new();
                            loop {
                                match curio::timeout_after(ms(1 + rng.below(3)), || q.get()) {
                                    Ok(Some(x)) => got.push(x),
                                    Ok(None) => return got,
                                    Err(e) => assert!(e.is_timeout(), "{e}"),
                                }
                            }
                        })
                    })
                    .collect();
                for p in task_producers {
                    p.join().unwrap();
                }
                for _ in 0..THREAD_PRODUCERS {
                    producers_done.get().unwrap(); // a task waiting on threads
                }
                for _ in 0..THREAD_CONSUMERS + TASK_CONSUMERS {
                    q.put(None).unwrap();
                }
                let mut got = Vec::new();
                for c in task_consumers {
                    got.extend(c.join().unwrap());
                }
                got
            })
            .unwrap();
        for t in thread_consumers {
            got.extend(t.join().unwrap());
        }
        for t in thread_producers {
            t.join().unwrap();
        }
        assert!(q.empty());
        got
    });
    received.sort_unstable();
    let expected: Vec<u64> = (0..THREAD_PRODUCERS + TASK_PRODUCERS)
        .flat_map(|p| (0..PER_PRODUCER).map(move |i| item(p, i)))
        .collect();
    let total = received.len();
    received.dedup();
    assert_eq!(received.len(), total, "an item was received twice");
    assert_eq!(received, expected, "an item was lost");
}

// ---------------------------------------------------------------------------
// UniversalQueue: blocking, timeouts and cancellation
// ---------------------------------------------------------------------------

#[test]
fn a_full_queue_blocks_a_thread_putter_until_a_task_gets() {
    let log = SharedLog::default();
    let l = log.clone();
    watchdog(move || {
        let log = l;
        let q = UniversalQueue::new(1);
        let (q2, tl) = (q.clone(), log.clone());
        let putter = thread::spawn(move || {
            q2.put(1).unwrap();
            tl.push("thread put 1");
            tl.push("thread puts 2");
            q2.put(2).unwrap();
            tl.push("thread's put 2 returned");
        });
        virtual_kernel()
            .run(move || {
                wait_until(|| log.position("thread puts 2").is_some());
                real_sleep(Duration::from_millis(50));
                assert!(q.full());
                log.push("task gets");
                let a = q.get().unwrap();
                log.push(format!("task got {a}"));
                let b = q.get().unwrap();
                log.push(format!("task got {b}"));
                join_thread(putter);
            })
            .unwrap();
    });
    let events = log.events();
    assert_events(
        &events[..3],
        &["thread put 1", "thread puts 2", "task gets"],
    );
    assert_eq!(events.len(), 6, "{events:?}");
    assert!(
        log.position("thread's put 2 returned") > Some(2),
        "{events:?}"
    );
    assert!(
        log.position("task got 1") < log.position("task got 2"),
        "{events:?}"
    );
}

#[test]
fn a_task_getter_that_times_out_takes_nothing_and_later_items_reach_other_getters() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let q = UniversalQueue::new(0);
        let getters: Vec<_> = ["A", "B"]
            .into_iter()
            .map(|name| {
                let (q, log) = (q.clone(), log.clone());
                curio::spawn(move || {
                    let r = if name == "A" {
                        curio::timeout_after(secs(1), || q.get())
                    } else {
                        q.get()
                    };
                    match r {
                        Ok(item) => log.at(&sw, format!("{name} got {item}")),
                        Err(e) => log.at(&sw, format!("{name}: get {:?}", e.kind())),
                    }
                })
            })
            .collect();
        curio::sleep(secs(2)).unwrap();
        let q2 = q.clone();
        let feeder = thread::spawn(move || q2.put("from a thread").unwrap());
        for g in getters {
            g.join().unwrap();
        }
        feeder.join().unwrap();
        assert!(q.empty());
    });
    assert_events(&events, &["1s A: get Timeout", "2s B got from a thread"]);
}

#[test]
fn a_cancelled_task_putter_gets_its_item_back_and_puts_nothing() {
    let got = watchdog(|| {
        let q = UniversalQueue::new(1);
        q.put(String::from("first")).unwrap();
        let q2 = q.clone();
        virtual_kernel()
            .run(move || {
                let q = q2.clone();
                let putter = curio::spawn(move || q.put(String::from("cancelled")));
                curio::sleep(secs(1)).unwrap();
                putter.cancel().unwrap();
                let e = putter.join().unwrap().unwrap_err();
                assert!(e.error().is_cancelled());
                assert_eq!(e.into_item().as_deref(), Some("cancelled"));
                assert_eq!(q2.qsize(), 1);
                // Timed out, the same.
                let e = curio::timeout_after(secs(1), || q2.put(String::from("timed out")))
                    .unwrap_err();
                assert!(e.error().is_timeout());
                assert_eq!(e.into_item().as_deref(), Some("timed out"));
            })
            .unwrap();
        let mut got = Vec::new();
        while let Some(s) = q.try_get() {
            got.push(s);
        }
        got
    });
    assert_eq!(got, ["first"]);
}

// ---------------------------------------------------------------------------
// UniversalEvent
// ---------------------------------------------------------------------------

#[test]
fn an_event_set_from_a_thread_wakes_waiting_tasks_in_fifo_order() {
    let events = run_logged(|log| {
        let evt = UniversalEvent::new();
        let waiters: Vec<_> = (1..=3)
            .map(|n| {
                let (evt, log) = (evt.clone(), log.clone());
                curio::spawn(move || {
                    log.push(format!("task {n} waits"));
                    evt.wait().unwrap();
                    log.push(format!("task {n} woke"));
                })
            })
            .collect();
        curio::yield_now().unwrap();
        let e = evt.clone();
        let setter = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            e.set();
        });
        for w in waiters {
            w.join().unwrap();
        }
        join_thread(setter);
        assert!(evt.is_set());
        evt.wait().unwrap(); // set: at once
    });
    assert_events(
        &events,
        &[
            "task 1 waits",
            "task 2 waits",
            "task 3 waits",
            "task 1 woke",
            "task 2 woke",
            "task 3 woke",
        ],
    );
}

#[test]
fn an_event_set_from_a_task_wakes_waiting_threads() {
    let woken = watchdog(|| {
        let evt = UniversalEvent::new();
        let woken = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (evt, woken) = (evt.clone(), woken.clone());
                thread::spawn(move || {
                    evt.wait().unwrap();
                    woken.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        let (e, w) = (evt.clone(), woken.clone());
        virtual_kernel()
            .run(move || {
                real_sleep(Duration::from_millis(30));
                assert_eq!(
                    w.load(Ordering::SeqCst),
                    0,
                    "a thread passed an unset event"
                );
                e.set(); // a plain call from a task: never blocks
                for t in threads {
                    join_thread(t);
                }
            })
            .unwrap();
        evt.clear();
        assert!(!evt.is_set());
        woken.load(Ordering::SeqCst)
    });
    assert_eq!(woken, 3);
}

#[test]
fn a_task_waiting_on_a_universal_event_can_be_cancelled_and_timed_out() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let evt = UniversalEvent::new();
        let spawn_waiter = |name: &'static str| {
            let (evt, log) = (evt.clone(), log.clone());
            curio::spawn(move || {
                let r = if name == "timed" {
                    curio::timeout_after(secs(2), || evt.wait())
                } else {
                    evt.wait()
                };
                log.at(&sw, format!("{name}: {}", outcome(&r)));
            })
        };
        let cancelled = spawn_waiter("cancelled");
        let timed = spawn_waiter("timed");
        let patient = spawn_waiter("patient");
        curio::sleep(secs(1)).unwrap();
        cancelled.cancel().unwrap();
        curio::sleep(secs(2)).unwrap();
        let e = evt.clone();
        let setter = thread::spawn(move || e.set());
        patient.join().unwrap();
        timed.join().unwrap();
        join_thread(setter);
    });
    assert_events(
        &events,
        &[
            "1s cancelled: Cancelled",
            "2s timed: Timeout",
            "3s patient: ok",
        ],
    );
}

// ---------------------------------------------------------------------------
// Across kernels, threads and the deadlock detector
// ---------------------------------------------------------------------------

#[test]
fn a_kernel_whose_only_task_waits_on_a_thread_is_not_deadlocked() {
    let (item, set) = watchdog(|| {
        let q = UniversalQueue::new(0);
        let evt = UniversalEvent::new();
        let (q2, e2) = (q.clone(), evt.clone());
        let feeder = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            q2.put(42).unwrap();
            thread::sleep(Duration::from_millis(100));
            e2.set();
        });
        let r = virtual_kernel().run(move || {
            let item = q.get().unwrap();
            evt.wait().unwrap();
            (item, evt.is_set())
        });
        feeder.join().unwrap();
        r.unwrap_or_else(|e| panic!("the kernel failed: {e}"))
    });
    assert_eq!((item, set), (42, true));
}

#[test]
fn two_kernels_on_two_threads_talk_through_universal_queues() {
    let replies = watchdog(|| {
        let ping = UniversalQueue::new(1);
        let pong = UniversalQueue::new(1);
        let (ping2, pong2) = (ping.clone(), pong.clone());
        let echo = thread::spawn(move || {
            virtual_kernel()
                .run(move || {
                    for _ in 0..200 {
                        let n: u32 = ping2.get().unwrap();
                        pong2.put(n + 1000).unwrap();
                    }
                })
                .unwrap();
        });
        let replies = virtual_kernel()
            .run(move || {
                (0..200)
                    .map(|n| {
                        ping.put(n).unwrap();
                        pong.get().unwrap()
                    })
                    .collect::<Vec<u32>>()
            })
            .unwrap();
        echo.join().unwrap();
        replies
    });
    assert_eq!(replies, (1000..1200).collect::<Vec<_>>());
}

#[test]
fn a_pool_thread_blocks_on_a_universal_queue_that_a_task_feeds() {
    let total = watchdog(|| {
        virtual_kernel()
            .run(|| {
                let q = UniversalQueue::new(2);
                let q2 = q.clone();
                let consumer = curio::spawn(move || {
                    curio::run_in_thread(move || (0..50).map(|_| q2.get().unwrap()).sum::<u64>())
                });
                for n in 1..=50 {
                    q.put(n).unwrap();
                }
                consumer.join().unwrap().unwrap()
            })
            .unwrap()
    });
    assert_eq!(total, 1275);
}

// ---------------------------------------------------------------------------
// A wake-up chosen by a thread, then the chosen task is cancelled
// ---------------------------------------------------------------------------

/// Busy-waits, without letting the kernel run, until `cond` holds. While the
/// calling task spins, the kernel cannot read its inbox, so a wake-up posted by
/// a thread stays unread.
fn spin_until(mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "condition not reached"
        );
        std::hint::spin_loop();
    }
}

#[test]
fn a_task_getter_cancelled_after_a_thread_chose_it_passes_the_item_on() {
    let events = run_logged(|log| {
        let q = UniversalQueue::new(0);
        let getters: Vec<_> = ["A", "B"]
            .into_iter()
            .map(|name| {
                let (q, log) = (q.clone(), log.clone());
                curio::spawn(move || match q.get() {
                    Ok(item) => log.push(format!("{name} got {item}")),
                    Err(e) => log.push(format!("{name}: get {:?}", e.kind())),
                })
            })
            .collect();
        curio::yield_now().unwrap(); // A, then B, wait
        assert_eq!(getters[0].state().name(), "QUEUE_GET");
        let q2 = q.clone();
        let feeder = thread::spawn(move || q2.put("the item").unwrap());
        // The thread has put the item and posted A's wake-up; A has not seen it.
        spin_until(|| q.qsize() == 1);
        getters[0].cancel_nowait();
        log.push("main cancelled A");
        for g in getters {
            g.join().unwrap();
        }
        join_thread(feeder);
        assert!(q.empty());
    });
    assert_events(
        &events,
        &["main cancelled A", "A: get Cancelled", "B got the item"],
    );
}

#[test]
fn a_task_putter_cancelled_after_a_thread_chose_it_passes_the_slot_on() {
    let events = run_logged(|log| {
        let q = UniversalQueue::new(1);
        q.put(0).unwrap();
        let putters: Vec<_> = [1, 2]
            .into_iter()
            .map(|n| {
                let (q, log) = (q.clone(), log.clone());
                curio::spawn(move || match q.put(n) {
                    Ok(()) => log.push(format!("putter {n} put")),
                    Err(e) => log.push(format!(
                        "putter {n}: put {:?}, item back {:?}",
                        e.error().kind(),
                        e.into_item()
                    )),
                })
            })
            .collect();
        curio::yield_now().unwrap(); // both wait
        let q2 = q.clone();
        let taker = thread::spawn(move || q2.get().unwrap());
        spin_until(|| q.qsize() == 0);
        putters[0].cancel_nowait();
        log.push("main cancelled putter 1");
        for p in putters {
            p.join().unwrap();
        }
        assert_eq!(join_thread(taker), 0);
        log.push(format!("queue: {:?}, {:?}", q.try_get(), q.try_get()));
    });
    assert_events(
        &events,
        &[
            "main cancelled putter 1",
            "putter 1: put Cancelled, item back Some(1)",
            "putter 2 put",
            "queue: Some(2), None",
        ],
    );
}

#[test]
fn waiting_tasks_show_what_they_wait_for() {
    run_logged(|_| {
        let q = UniversalQueue::<u32>::new(0);
        let full = UniversalQueue::new(1);
        full.put(0).unwrap();
        let evt = UniversalEvent::new();
        let (q2, f2, e2) = (q.clone(), full.clone(), evt.clone());
        let waiters = [
            curio::spawn(move || q2.get().map(drop))
                .as_task_ref()
                .clone(),
            curio::spawn(move || f2.put(1).map_err(curio::Error::from))
                .as_task_ref()
                .clone(),
            curio::spawn(move || e2.wait()).as_task_ref().clone(),
            curio::spawn(|| curio::run_in_thread(|| thread::sleep(Duration::from_millis(50))))
                .as_task_ref()
                .clone(),
        ];
        curio::yield_now().unwrap();
        let states: Vec<&str> = waiters.iter().map(|t| t.state().name()).collect();
        assert_eq!(
            states,
            ["QUEUE_GET", "QUEUE_PUT", "EVENT_WAIT", "FUTURE_WAIT"]
        );
        for t in &waiters {
            t.cancel().unwrap();
        }
    });
}

#[test]
fn shutdown_cancels_tasks_waiting_on_threads_and_leaves_the_queue_usable() {
    let (real, q) = watchdog(|| {
        let q = UniversalQueue::new(0);
        let q2 = q.clone();
        let t0 = std::time::Instant::now();
        virtual_kernel()
            .run(move || {
                let q3 = q2.clone();
                curio::spawn(move || q3.get());
                curio::spawn(|| curio::run_in_thread(|| thread::sleep(Duration::from_secs(3))));
                curio::yield_now().unwrap();
                // main ends: both are cancelled at shutdown
            })
            .unwrap();
        (t0.elapsed(), q)
    });
    assert!(real < Duration::from_secs(1), "shutdown took {real:?}");
    // The cancelled getter left no registration behind: items stay for the next getter.
    q.put(7).unwrap();
    assert_eq!(q.try_get(), Some(7));
}

// ---------------------------------------------------------------------------
// UniversalQueue: task_done and join
// ---------------------------------------------------------------------------

#[test]
fn a_task_joins_until_threads_have_marked_every_item_done() {
    let log = SharedLog::default();
    let l = log.clone();
    watchdog(move || {
        let log = l;
        let q = UniversalQueue::new(0);
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (q, log) = (q.clone(), log.clone());
                thread::spawn(move || {
                    for _ in 0..5 {
                        let n: u32 = q.get().unwrap();
                        thread::sleep(Duration::from_millis(2));
                        log.push(format!("done {n}"));
                        q.task_done().unwrap();
                    }
                })
            })
            .collect();
        virtual_kernel()
            .run(move || {
                for n in 0..10 {
                    q.put(n).unwrap();
                }
                assert_eq!(q.unfinished(), 10);
                q.join().unwrap();
                log.push("joined");
                assert_eq!((q.unfinished(), q.qsize()), (0, 0));
                q.join().unwrap(); // nothing unfinished: at once
                for w in workers {
                    join_thread(w);
                }
            })
            .unwrap();
    });
    let mut events = log.events();
    assert_eq!(events.pop().as_deref(), Some("joined"), "{events:?}");
    events.sort();
    let mut expected: Vec<String> = (0..10).map(|n| format!("done {n}")).collect();
    expected.sort();
    assert_eq!(events, expected);
}

#[test]
fn a_thread_joins_until_tasks_have_marked_every_item_done() {
    let log = SharedLog::default();
    let l = log.clone();
    watchdog(move || {
        let log = l;
        let q = UniversalQueue::new(0);
        for n in 0..9 {
            q.put(n).unwrap();
        }
        let (q2, tl) = (q.clone(), log.clone());
        let joiner = thread::spawn(move || {
            q2.join().unwrap(); // blocks the thread
            tl.push("thread joined");
        });
        virtual_kernel()
            .run(move || {
                let workers: Vec<_> = (0..3)
                    .map(|w| {
                        let (q, log) = (q.clone(), log.clone());
                        curio::spawn(move || {
                            for _ in 0..3 {
                                let n: u32 = q.get().unwrap();
                                real_sleep(Duration::from_millis(2));
                                log.push(format!("task {w} done {n}"));
                                q.task_done().unwrap();
                            }
                        })
                    })
                    .collect();
                for w in workers {
                    w.join().unwrap();
                }
                join_thread(joiner);
            })
            .unwrap();
    });
    let events = log.events();
    assert_eq!(events.len(), 10, "{events:?}");
    assert_eq!(
        log.position("thread joined"),
        Some(9),
        "the thread's join returned before every item was done: {events:?}"
    );
}

#[test]
fn joiners_on_threads_and_two_kernels_return_once_workers_on_both_sides_are_done() {
    const ITEMS: u64 = 300;
    const WORKERS: usize = 4; // two threads, a task in each kernel
    let (mut processed, joined_at) = watchdog(|| {
        // `None` stops a worker; it is an item like any other for task_done.
        let q: UniversalQueue<Option<u64>> = UniversalQueue::new(0);
        for n in 0..ITEMS {
            q.put(Some(n)).unwrap();
        }
        for _ in 0..WORKERS {
            q.put(None).unwrap();
        }
        let processed = Arc::new(Mutex::new(Vec::new()));
        // How many items were processed when each joiner returned.
        let joined_at = Arc::new(Mutex::new(Vec::new()));

        let work = |q: UniversalQueue<Option<u64>>, processed: Arc<Mutex<Vec<u64>>>| {
            move || {
                while let Some(n) = q.get().unwrap() {
                    processed.lock().unwrap().push(n);
                    q.task_done().unwrap();
                }
                q.task_done().unwrap();
            }
        };
        let join = |q: UniversalQueue<Option<u64>>,
                    processed: Arc<Mutex<Vec<u64>>>,
                    joined_at: Arc<Mutex<Vec<usize>>>| {
            move || {
                q.join().unwrap();
                let n = processed.lock().unwrap().len();
                joined_at.lock().unwrap().push(n);
            }
        };

        let mut threads = Vec::new();
        for _ in 0..2 {
            threads.push(thread::spawn(work(q.clone(), processed.clone())));
            threads.push(thread::spawn(join(
                q.clone(),
                processed.clone(),
                joined_at.clone(),
            )));
        }
        for _ in 0..2 {
            let (q, p, j) = (q.clone(), processed.clone(), joined_at.clone());
            threads.push(thread::spawn(move || {
                virtual_kernel()
                    .run(move || {
                        let worker = curio::spawn(work(q.clone(), p.clone()));
                        let joiner = curio::spawn(join(q.clone(), p.clone(), j.clone()));
                        // The main task joins too, with yields between the
                        // other tasks' gets.
                        join(q, p, j)();
                        worker.join().unwrap();
                        joiner.join().unwrap();
                    })
                    .unwrap()
            }));
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!((q.unfinished(), q.qsize()), (0, 0));
        let processed = processed.lock().unwrap().clone();
        let joined_at = joined_at.lock().unwrap().clone();
        (processed, joined_at)
    });
    assert_eq!(joined_at, [ITEMS as usize; 6], "a joiner returned early");
    processed.sort_unstable();
    assert_eq!(processed, (0..ITEMS).collect::<Vec<_>>(), "lost or doubled");
}

#[test]
fn task_done_more_often_than_items_were_put_is_a_usage_error() {
    let q = UniversalQueue::new(0);
    q.put('a').unwrap();
    q.get().unwrap();
    q.task_done().unwrap();
    let e = q.task_done().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Usage);
    assert!(e.to_string().contains("task_done called more times"), "{e}");
    assert_eq!(q.unfinished(), 0);
    let q2 = q.clone();
    run_virtual(move || {
        assert_eq!(q2.task_done().unwrap_err().kind(), ErrorKind::Usage);
        q2.join().unwrap(); // the count stayed at zero
    });
    q.join().unwrap();
}

#[test]
fn a_task_joiner_cancelled_or_timed_out_changes_nothing() {
    for how in BOTH {
        let events = run_logged(move |log| {
            let q = UniversalQueue::new(0);
            q.put("item").unwrap();
            q.get().unwrap();
            let (q2, l) = (q.clone(), log.clone());
            let patient = curio::spawn(move || {
                q2.join().unwrap();
                l.push("patient joined");
            });
            let (q, r) = interrupted(how, q, |q| q.join());
            let e = expect_interrupted(how, r);
            log.push(format!("joiner: {:?}", e.kind()));
            assert_eq!(q.unfinished(), 1);
            assert_eq!(patient.state(), State::QueueJoin);
            let q2 = q.clone();
            let finisher = thread::spawn(move || q2.task_done().unwrap());
            patient.join().unwrap();
            join_thread(finisher);
            assert_eq!((q.unfinished(), q.qsize()), (0, 0));
        });
        let interrupted = format!("joiner: {:?}", how.kind());
        assert_events(&events, &[&interrupted, "patient joined"]);
    }
}

#[test]
fn a_task_joiner_woken_at_zero_returns_even_if_an_item_is_put_before_it_runs() {
    let events = run_logged(|log| {
        let q = UniversalQueue::new(0);
        q.put(1).unwrap();
        q.get().unwrap();
        let (q2, l) = (q.clone(), log.clone());
        let joiner = curio::spawn(move || {
            q2.join().unwrap();
            l.push("joined");
        });
        until_state(joiner.as_task_ref(), State::QueueJoin);
        let q2 = q.clone();
        let thread = thread::spawn(move || {
            q2.task_done().unwrap(); // zero: wakes the joiner
            q2.put(2).unwrap(); // one again, before the joiner runs
        });
        // The joiner cannot run while this task spins.
        spin_until(|| q.qsize() == 1);
        log.push("item 2 put");
        joiner.join().unwrap();
        join_thread(thread);
        assert_eq!(q.unfinished(), 1);
    });
    assert_events(&events, &["item 2 put", "joined"]);
}

#[test]
fn a_thread_joiner_returns_even_if_an_item_is_put_just_after_the_count_hits_zero() {
    // Whether the thread wakes before or after the second put is up to the OS
    // scheduler: several rounds make "after" (the case that matters) likely.
    let unfinished = watchdog(|| {
        (0..20)
            .map(|_| {
                let q = UniversalQueue::new(0);
                q.put(1).unwrap();
                q.get().unwrap();
                let q2 = q.clone();
                let joiner = thread::spawn(move || q2.join().unwrap());
                virtual_kernel()
                    .run(move || {
                        real_sleep(Duration::from_millis(5)); // the thread blocks in join
                        q.task_done().unwrap();
                        q.put(2).unwrap(); // no cancel point between
                        join_thread(joiner);
                        q.unfinished()
                    })
                    .unwrap()
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(unfinished, [1; 20]);
}

#[test]
fn cancelling_a_joiner_in_one_kernel_leaves_another_kernels_joiner_registered() {
    let q: UniversalQueue<u32> = UniversalQueue::new(0);
    q.put(1).unwrap();
    q.get().unwrap();
    let (b_registered, registered) = mpsc::channel();
    let qb = q.clone();
    let b = thread::spawn(move || {
        Kernel::builder()
            .virtual_clock(false)
            .build()
            .run(move || {
                let joiner = curio::spawn(move || qb.join());
                until_state(joiner.as_task_ref(), State::QueueJoin);
                b_registered.send(()).unwrap();
                curio::timeout_after(Duration::from_secs(5), || joiner.join()).map(|r| r.unwrap())
            })
            .unwrap()
    });
    registered.recv().unwrap();
    let qa = q.clone();
    watchdog(move || {
        virtual_kernel()
            .run(move || {
                let joiner = curio::spawn(move || qa.join());
                until_state(joiner.as_task_ref(), State::QueueJoin);
                joiner.cancel().unwrap();
                assert!(joiner.join().unwrap().unwrap_err().is_cancelled());
            })
            .unwrap()
    });
    q.task_done().unwrap();
    b.join()
        .unwrap()
        .expect("kernel B's joiner was never woken");
}

// ---------------------------------------------------------------------------
// UniversalResult
// ---------------------------------------------------------------------------

#[test]
fn a_result_set_by_a_thread_wakes_the_task_waiting_for_it() {
    let events = run_logged(|log| {
        let r = UniversalResult::new();
        let (r2, l) = (r.clone(), log.clone());
        let waiter = curio::spawn(move || {
            l.push("task waits");
            let v = r2.get().unwrap();
            l.push(format!("task got {v}"));
        });
        until_state(waiter.as_task_ref(), State::EventWait);
        assert!(!r.is_set());
        let r2 = r.clone();
        let setter = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            r2.set_value(42).unwrap();
        });
        waiter.join().unwrap();
        join_thread(setter);
        assert!(r.is_set());
        log.push(format!("{r:?}"));
    });
    assert_events(
        &events,
        &[
            "task waits",
            "task got 42",
            r#"UniversalResult { state: "taken" }"#,
        ],
    );
}

#[test]
fn a_result_set_by_a_task_wakes_the_thread_waiting_for_it() {
    let got = watchdog(|| {
        let r = UniversalResult::new();
        let r2 = r.clone();
        let waiter = thread::spawn(move || r2.get()); // blocks the thread
        virtual_kernel()
            .run(move || {
                real_sleep(Duration::from_millis(30));
                assert!(!waiter.is_finished(), "a thread passed an unset result");
                assert_eq!(format!("{r:?}"), r#"UniversalResult { state: "unset" }"#);
                r.set_value(String::from("from a task")).unwrap(); // never blocks
                join_thread(waiter)
            })
            .unwrap()
    });
    assert_eq!(got.unwrap(), "from a task");
}

#[test]
fn getters_on_threads_and_two_kernels_at_once_one_takes_the_value_the_rest_hear_it_was_taken() {
    let outcomes = watchdog(|| {
        let r: UniversalResult<u32> = UniversalResult::new();
        let mut getters = Vec::new();
        for _ in 0..2 {
            let r = r.clone();
            getters.push(thread::spawn(move || vec![r.get().map_err(|e| e.kind())]));
        }
        for _ in 0..2 {
            let r = r.clone();
            getters.push(thread::spawn(move || {
                virtual_kernel()
                    .run(move || {
                        let tasks: Vec<_> = (0..2)
                            .map(|_| {
                                let r = r.clone();
                                curio::spawn(move || r.get().map_err(|e| e.kind()))
                            })
                            .collect();
                        tasks.into_iter().map(|t| t.join().unwrap()).collect()
                    })
                    .unwrap()
            }));
        }
        thread::sleep(Duration::from_millis(30)); // most are waiting by now
        r.set_value(7).unwrap();
        let mut outcomes: Vec<_> = getters
            .into_iter()
            .flat_map(|g| g.join().unwrap())
            .collect();
        outcomes.sort_by_key(|o| o.is_err());
        outcomes
    });
    let mut expected = vec![Ok(7)];
    expected.extend([Err(ErrorKind::ResultTaken); 5]);
    assert_eq!(outcomes, expected);
}

#[test]
fn setting_a_result_twice_is_a_usage_error_that_keeps_the_first() {
    let r = UniversalResult::new();
    r.set_value(1).unwrap();
    assert_eq!(format!("{r:?}"), r#"UniversalResult { state: "value" }"#);
    assert_eq!(r.set_value(2).unwrap_err().kind(), ErrorKind::Usage);
    let io = std::io::Error::new(std::io::ErrorKind::NotFound, "x");
    let e = r.set_error(io.into()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Usage);
    assert!(e.to_string().contains("already set"), "{e}");
    let r2 = r.clone();
    let got = run_virtual(move || r2.get().unwrap());
    assert_eq!(got, 1);
    assert!(r.is_set());
    assert_eq!(r.get().unwrap_err().kind(), ErrorKind::ResultTaken);
    // Still set, so still refused.
    assert_eq!(r.set_value(3).unwrap_err().kind(), ErrorKind::Usage);
}

#[test]
fn an_error_set_is_what_get_returns_on_either_side() {
    for from_task in [false, true] {
        let r: UniversalResult<()> = UniversalResult::new();
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such widget");
        r.set_error(io.into()).unwrap();
        let e = if from_task {
            let r2 = r.clone();
            run_virtual(move || r2.get().unwrap_err())
        } else {
            r.get().unwrap_err()
        };
        assert_eq!(e.kind(), ErrorKind::Io);
        assert_eq!(
            e.io_error().map(std::io::Error::kind),
            Some(std::io::ErrorKind::NotFound)
        );
        assert_eq!(e.to_string(), "no such widget");
    }
}

#[test]
fn a_task_waiting_for_a_result_cancelled_or_timed_out_takes_nothing() {
    for how in BOTH {
        let events = run_logged(move |log| {
            let r = UniversalResult::new();
            let (r2, l) = (r.clone(), log.clone());
            let patient = curio::spawn(move || {
                let v = r2.get().unwrap();
                l.push(format!("patient got {v}"));
            });
            let (r, got) = interrupted(how, r, |r| r.get());
            let e = expect_interrupted(how, got);
            log.push(format!("waiter: {:?}", e.kind()));
            assert!(!r.is_set());
            assert_eq!(patient.state(), State::EventWait);
            let r2 = r.clone();
            let setter = thread::spawn(move || r2.set_value("the value").unwrap());
            patient.join().unwrap();
            join_thread(setter);
        });
        let interrupted = format!("waiter: {:?}", how.kind());
        assert_events(&events, &[&interrupted, "patient got the value"]);
    }
}

#[test]
fn a_task_waiting_for_a_result_cancelled_after_a_thread_set_it_leaves_it_for_the_next() {
    let events = run_logged(|log| {
        let r = UniversalResult::new();
        let waiters: Vec<_> = ["A", "B"]
            .into_iter()
            .map(|name| {
                let (r, log) = (r.clone(), log.clone());
                curio::spawn(move || match r.get() {
                    Ok(v) => log.push(format!("{name} got {v}")),
                    Err(e) => log.push(format!("{name}: {:?}", e.kind())),
                })
            })
            .collect();
        curio::yield_now().unwrap(); // A, then B, wait
        assert_eq!(waiters[0].state(), State::EventWait);
        let r2 = r.clone();
        let setter = thread::spawn(move || r2.set_value("the value").unwrap());
        // The thread has set the value and posted both wake-ups; A has not seen its.
        spin_until(|| r.is_set());
        waiters[0].cancel_nowait();
        log.push("main cancelled A");
        for w in waiters {
            w.join().unwrap();
        }
        join_thread(setter);
    });
    assert_events(
        &events,
        &["main cancelled A", "A: Cancelled", "B got the value"],
    );
}

#[test]
fn cancelling_a_result_waiter_in_one_kernel_leaves_another_kernels_waiter_registered() {
    let r: UniversalResult<u32> = UniversalResult::new();
    let (b_registered, registered) = mpsc::channel();
    let rb = r.clone();
    let b = thread::spawn(move || {
        Kernel::builder()
            .virtual_clock(false)
            .build()
            .run(move || {
                let waiter = curio::spawn(move || rb.get());
                until_state(waiter.as_task_ref(), State::EventWait);
                b_registered.send(()).unwrap();
                curio::timeout_after(Duration::from_secs(5), || waiter.join()).map(|r| r.unwrap())
            })
            .unwrap()
    });
    registered.recv().unwrap();
    let ra = r.clone();
    watchdog(move || {
        virtual_kernel()
            .run(move || {
                let waiter = curio::spawn(move || ra.get());
                until_state(waiter.as_task_ref(), State::EventWait);
                waiter.cancel().unwrap();
            })
            .unwrap()
    });
    r.set_value(42).unwrap();
    let got = b.join().unwrap();
    assert_eq!(got.expect("kernel B's waiter was never woken"), 42);
}

#[test]
fn many_results_between_threads_and_two_kernels_lose_no_wake_up() {
    const PER_KERNEL: usize = 300;
    let totals = watchdog(|| {
        let results: Vec<UniversalResult<u64>> = (0..2 * PER_KERNEL)
            .map(|_| UniversalResult::new())
            .collect();
        let kernels: Vec<_> = (0..2)
            .map(|k| {
                let mine: Vec<_> = results[k * PER_KERNEL..(k + 1) * PER_KERNEL].to_vec();
                thread::spawn(move || {
                    virtual_kernel()
                        .run(move || {
                            let tasks: Vec<_> = mine
                                .into_iter()
                                .enumerate()
                                .map(|(i, r)| {
                                    curio::spawn(move || {
                                        if i % 2 == 0 {
                                            return r.get().unwrap(); // waits without a timeout
                                        }
                                        // Waiters that time out (and unregister)
                                        // while the setters run.
                                        loop {
                                            let d = Duration::from_micros(20 + i as u64 % 50);
                                            if let Some(v) =
                                                curio::ignore_after(d, || r.get()).unwrap()
                                            {
                                                return v;
                                            }
                                            curio::run_in_thread(|| ()).unwrap();
                                        }
                                    })
                                })
                                .collect();
                            tasks.into_iter().map(|t| t.join().unwrap()).sum::<u64>()
                        })
                        .unwrap()
                })
            })
            .collect();
        // Two setter threads, in a scrambled order.
        let setters: Vec<_> = (0..2)
            .map(|s| {
                let results = results.clone();
                thread::spawn(move || {
                    let mut rng = Rng::new(s + 5);
                    let mut order: Vec<usize> = (s as usize..results.len()).step_by(2).collect();
                    for i in (1..order.len()).rev() {
                        order.swap(i, rng.below(i as u64 + 1) as usize);
                    }
                    for i in order {
                        results[i].set_value(i as u64).unwrap();
                    }
                })
            })
            .collect();
        for s in setters {
            s.join().unwrap();
        }
        kernels
            .into_iter()
            .map(|k| k.join().unwrap())
            .collect::<Vec<u64>>()
    });
    let sum = |range: std::ops::Range<usize>| range.map(|i| i as u64).sum::<u64>();
    assert_eq!(
        totals,
        [sum(0..PER_KERNEL), sum(PER_KERNEL..2 * PER_KERNEL)]
    );
}

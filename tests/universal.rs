//! `UniversalQueue` and `UniversalEvent`: shared by OS threads (which block) and
//! tasks (which suspend), at the same time.
//!
//! Traffic in both directions between several threads and several tasks with
//! every item received exactly once, a bounded queue blocking a thread until a
//! task makes room, a task getter that times out taking nothing, events set
//! from either side, two kernels talking through one queue, and a kernel whose
//! only task waits on a thread not being reported as deadlocked
//! (`semantics.md`, Synchronization and queues; `curio-reference.md` §8).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;
use curio::{Kernel, UniversalEvent, UniversalQueue};

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

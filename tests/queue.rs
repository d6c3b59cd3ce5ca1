//! Queues between tasks: `Queue` (FIFO), `LifoQueue`, `PriorityQueue`.
//!
//! Order of items, getters served in arrival order (even when items are
//! present), bounded `put` and FIFO putters, the non-blocking forms,
//! `task_done`/`join`, and the "nothing lost" rules: a cancelled or timed-out
//! `get` takes nothing, a cancelled or timed-out `put` hands the item back.
//! Ends with a stress test that cancels random getters and putters while items
//! flow and checks every item was delivered exactly once.

mod common;

use std::collections::VecDeque;
use std::rc::Rc;

use common::*;
use curio::{ErrorKind, LifoQueue, PriorityQueue, Queue, Task};

// ---------------------------------------------------------------------------
// Order of items
// ---------------------------------------------------------------------------

#[test]
fn queue_is_first_in_first_out() {
    run_virtual(|| {
        let q = Queue::new(0);
        for n in [3, 1, 4, 1, 5] {
            q.put(n).unwrap();
        }
        let out: Vec<i32> = (0..5).map(|_| q.get().unwrap()).collect();
        assert_eq!(out, [3, 1, 4, 1, 5]);
    });
}

#[test]
fn lifo_queue_is_last_in_first_out() {
    run_virtual(|| {
        let q = LifoQueue::new(0);
        for n in [3, 1, 4, 1, 5] {
            q.put(n).unwrap();
        }
        let out: Vec<i32> = (0..5).map(|_| q.get().unwrap()).collect();
        assert_eq!(out, [5, 1, 4, 1, 3]);
    });
}

#[test]
fn priority_queue_hands_out_the_smallest_item_first() {
    run_virtual(|| {
        let q = PriorityQueue::new(0);
        for job in [(3, "low"), (1, "urgent"), (2, "normal"), (1, "also urgent")] {
            q.put(job).unwrap();
        }
        let out: Vec<_> = (0..4).map(|_| q.get().unwrap()).collect();
        assert_eq!(
            out,
            [(1, "also urgent"), (1, "urgent"), (2, "normal"), (3, "low")]
        );
    });
}

#[test]
fn a_waiting_getter_of_a_priority_queue_gets_the_smallest_item_present_when_it_runs() {
    let events = run_logged(|log| {
        let q = Rc::new(PriorityQueue::new(0));
        let (q2, l) = (q.clone(), log.clone());
        let kid = curio::spawn(move || {
            let n: u32 = q2.get().unwrap();
            l.push(format!("kid got {n}"));
        });
        curio::yield_now().unwrap(); // the kid waits
        q.put(5).unwrap(); // wakes the kid, which has not run yet
        q.put(2).unwrap();
        kid.join().unwrap();
        log.push(format!("left: {}", q.get().unwrap()));
    });
    assert_events(&events, &["kid got 2", "left: 5"]);
}

#[test]
fn sizes_and_bounds() {
    run_virtual(|| {
        let q = Queue::new(2);
        assert_eq!(q.maxsize(), 2);
        assert!(q.empty() && !q.full());
        q.put('a').unwrap();
        assert_eq!(q.qsize(), 1);
        assert!(!q.empty() && !q.full());
        q.put('b').unwrap();
        assert!(q.full());
        assert_eq!(q.get().unwrap(), 'a');
        assert!(!q.full());

        let unbounded = Queue::new(0);
        for n in 0..10_000 {
            unbounded.put(n).unwrap();
        }
        assert!(!unbounded.full(), "an unbounded queue is never full");
        assert_eq!(unbounded.qsize(), 10_000);
    });
}

#[test]
fn each_queue_type_names_itself_and_counts_unfinished_items_in_debug() {
    run_virtual(|| {
        let q = Queue::new(3);
        q.put(1).unwrap();
        q.put(2).unwrap();
        q.get().unwrap();
        assert_eq!(q.unfinished(), 2);
        assert_eq!(
            format!("{q:?}"),
            "Queue { qsize: 1, maxsize: 3, unfinished: 2 }"
        );
        let lifo: LifoQueue<u8> = LifoQueue::new(0);
        assert_eq!(
            format!("{lifo:?}"),
            "LifoQueue { qsize: 0, maxsize: 0, unfinished: 0 }"
        );
        let prio = PriorityQueue::new(0);
        prio.put("x").unwrap();
        assert_eq!(
            format!("{prio:?}"),
            "PriorityQueue { qsize: 1, maxsize: 0, unfinished: 1 }"
        );
    });
}

// ---------------------------------------------------------------------------
// Getters
// ---------------------------------------------------------------------------

#[test]
fn waiting_getters_are_served_in_arrival_order() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let q = Rc::new(Queue::new(0));
        let getters: Vec<_> = (1..=3)
            .map(|n| {
                let (q, log) = (q.clone(), log.clone());
                curio::spawn(move || {
                    log.at(&sw, format!("getter {n} waits"));
                    let item: &str = q.get().unwrap();
                    log.at(&sw, format!("getter {n} got {item}"));
                })
            })
            .collect();
        curio::sleep(secs(1)).unwrap();
        for item in ["a", "b", "c"] {
            q.put(item).unwrap();
        }
        log.at(&sw, "main put a, b, c without switching");
        for g in getters {
            g.join().unwrap();
        }
    });
    assert_events(
        &events,
        &[
            "0ns getter 1 waits",
            "0ns getter 2 waits",
            "0ns getter 3 waits",
            "1s main put a, b, c without switching",
            "1s getter 1 got a",
            "1s getter 2 got b",
            "1s getter 3 got c",
        ],
    );
}

#[test]
fn a_new_getter_queues_behind_waiting_getters_even_when_items_are_present() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let q = Rc::new(Queue::new(0));
        let getters: Vec<_> = ["A", "B"]
            .into_iter()
            .map(|name| {
                let (q, log) = (q.clone(), log.clone());
                curio::spawn(move || {
                    let n: u32 = q.get().unwrap();
                    log.at(&sw, format!("{name} got {n}"));
                })
            })
            .collect();
        let q2 = q.clone();
        let _producer = curio::spawn(move || {
            curio::sleep(secs(1)).unwrap();
            q2.put(3).unwrap();
        });
        curio::yield_now().unwrap(); // A and B wait
        q.put(1).unwrap();
        q.put(2).unwrap();
        // Two items are present, but both are promised to A and B.
        log.at(
            &sw,
            format!("main: qsize {}, try_get {:?}", q.qsize(), q.try_get()),
        );
        let n = q.get().unwrap();
        log.at(&sw, format!("main got {n}"));
        for g in getters {
            g.join().unwrap();
        }
    });
    assert_events(
        &events,
        &[
            "0ns main: qsize 2, try_get None",
            "0ns A got 1",
            "0ns B got 2",
            "1s main got 3",
        ],
    );
}

#[test]
fn try_get_and_try_put_never_wait() {
    run_virtual(|| {
        let q = Queue::new(1);
        assert_eq!(q.try_get(), None);
        assert_eq!(q.try_put("x"), Ok(()));
        assert_eq!(q.try_put("y"), Err("y"), "full: the item comes back");
        assert_eq!(q.try_get(), Some("x"));
        assert_eq!(q.try_get(), None);
    });
}

// ---------------------------------------------------------------------------
// Putters on a bounded queue
// ---------------------------------------------------------------------------

#[test]
fn put_on_a_full_queue_waits_and_putters_go_in_fifo_order() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let q = Rc::new(Queue::new(2));
        q.put(1).unwrap();
        q.put(2).unwrap();
        let putters: Vec<_> = (3..=5)
            .map(|n| {
                let (q, log) = (q.clone(), log.clone());
                curio::spawn(move || {
                    log.at(&sw, format!("putter {n} waits"));
                    q.put(n).unwrap();
                    log.at(&sw, format!("putter {n} put"));
                })
            })
            .collect();
        curio::sleep(secs(1)).unwrap();
        assert!(q.full());
        for i in 0..5 {
            let n = q.get().unwrap();
            log.at(&sw, format!("main got {n}"));
            if i < 3 {
                // The freed slot is promised to the first waiting putter.
                assert_eq!(q.try_put(99), Err(99));
            }
            curio::sleep(secs(1)).unwrap();
        }
        for p in putters {
            p.join().unwrap();
        }
        assert!(q.empty());
    });
    assert_events(
        &events,
        &[
            "0ns putter 3 waits",
            "0ns putter 4 waits",
            "0ns putter 5 waits",
            "1s main got 1",
            "1s putter 3 put",
            "2s main got 2",
            "2s putter 4 put",
            "3s main got 3",
            "3s putter 5 put",
            "4s main got 4",
            "5s main got 5",
        ],
    );
}

#[test]
fn put_on_a_queue_with_room_does_not_switch_tasks() {
    let events = run_logged(|log| {
        let q = Rc::new(Queue::new(0));
        let (q2, l) = (q.clone(), log.clone());
        let getter = curio::spawn(move || {
            let v: u32 = q2.get().unwrap();
            l.push(format!("getter got {v}"));
        });
        curio::yield_now().unwrap();
        q.put(7).unwrap();
        log.push("main: put returned before the getter ran");
        getter.join().unwrap();
    });
    assert_events(
        &events,
        &["main: put returned before the getter ran", "getter got 7"],
    );
}

// ---------------------------------------------------------------------------
// task_done and join
// ---------------------------------------------------------------------------

#[test]
fn join_waits_until_every_item_is_marked_done() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let q = Rc::new(Queue::new(0));
        q.join().unwrap(); // nothing unfinished: at once
        let (q2, l) = (q.clone(), log.clone());
        let worker = curio::spawn(move || {
            for _ in 0..3 {
                let job: &str = q2.get().unwrap();
                curio::sleep(secs(1)).unwrap();
                l.at(&sw, format!("worker done with {job}"));
                q2.task_done().unwrap();
            }
        });
        let joiners: Vec<_> = (1..=2)
            .map(|n| {
                let (q, log) = (q.clone(), log.clone());
                curio::spawn(move || {
                    q.join().unwrap();
                    log.at(&sw, format!("joiner {n} sees all done"));
                })
            })
            .collect();
        for job in ["a", "b", "c"] {
            q.put(job).unwrap();
        }
        q.join().unwrap();
        log.at(&sw, "main sees all done");
        for j in joiners {
            j.join().unwrap();
        }
        worker.join().unwrap();
    });
    assert_events(
        &events,
        &[
            "1s worker done with a",
            "2s worker done with b",
            "3s worker done with c",
            "3s main sees all done",
            "3s joiner 1 sees all done",
            "3s joiner 2 sees all done",
        ],
    );
}

#[test]
fn task_done_called_too_many_times_is_a_usage_error() {
    run_virtual(|| {
        let q = Queue::new(0);
        let e = q.task_done().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(e.to_string().contains("task_done"), "{e}");
        q.put(1).unwrap();
        q.get().unwrap();
        q.task_done().unwrap();
        assert_eq!(q.task_done().unwrap_err().kind(), ErrorKind::Usage);
        q.join().unwrap(); // the count did not go negative
    });
}

// ---------------------------------------------------------------------------
// Nothing lost: cancelled and timed-out gets and puts
// ---------------------------------------------------------------------------

#[test]
fn a_cancelled_getter_takes_nothing_and_the_next_item_goes_to_the_next_getter() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let q = Rc::new(Queue::new(0));
        let getters: Vec<_> = ["A", "B", "C"]
            .into_iter()
            .map(|name| {
                let (q, log) = (q.clone(), log.clone());
                curio::spawn(move || match q.get() {
                    Ok(item) => log.at(&sw, format!("{name} got {item}")),
                    Err(e) => log.at(&sw, format!("{name}: get {:?}", e.kind())),
                })
            })
            .collect();
        curio::sleep(secs(1)).unwrap();
        getters[0].cancel().unwrap();
        q.put("first").unwrap();
        q.put("second").unwrap();
        for g in getters {
            g.join().unwrap();
        }
        assert!(q.empty());
    });
    assert_events(
        &events,
        &["1s A: get Cancelled", "1s B got first", "1s C got second"],
    );
}

#[test]
fn a_timed_out_getter_takes_nothing_and_gets_again_without_a_stale_deadline() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let q = Rc::new(Queue::new(0));
        let (q2, l) = (q.clone(), log.clone());
        let other = curio::spawn(move || {
            curio::sleep(ms(500)).unwrap(); // arrives after main
            let item = q2.get().unwrap();
            l.at(&sw, format!("other got {item}"));
        });
        let r = curio::timeout_after(secs(1), || q.get());
        log.at(&sw, format!("main: get {}", outcome(&r)));
        let q3 = q.clone();
        let _producer = curio::spawn(move || {
            for item in ["x", "y"] {
                curio::sleep(secs(1)).unwrap();
                q3.put(item).unwrap();
            }
        });
        // "x" goes to the getter that was waiting when it came.
        let item = curio::timeout_after(secs(5), || q.get()).unwrap();
        log.at(&sw, format!("main got {item}"));
        curio::sleep(secs(10)).unwrap();
        log.at(&sw, "main slept undisturbed");
        other.join().unwrap();
    });
    assert_events(
        &events,
        &[
            "1s main: get Timeout",
            "2s other got x",
            "3s main got y",
            "13s main slept undisturbed",
        ],
    );
}

#[test]
fn a_cancelled_putter_gets_its_item_back_and_the_next_putter_takes_the_slot() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let q = Rc::new(Queue::new(1));
        q.put(String::from("in the queue")).unwrap();
        let putters: Vec<Task<Option<String>>> = ["A", "B"]
            .into_iter()
            .map(|name| {
                let (q, log) = (q.clone(), log.clone());
                curio::spawn(move || match q.put(format!("from {name}")) {
                    Ok(()) => {
                        log.at(&sw, format!("{name} put"));
                        None
                    }
                    Err(e) => {
                        log.at(&sw, format!("{name}: put {:?}", e.error().kind()));
                        e.into_item()
                    }
                })
            })
            .collect();
        curio::sleep(secs(1)).unwrap();
        putters[0].cancel().unwrap();
        assert_eq!(putters[0].join().unwrap().as_deref(), Some("from A"));
        assert_eq!(q.qsize(), 1, "the cancelled put added nothing");
        let first = q.get().unwrap();
        log.at(&sw, format!("main got {first}"));
        let second = q.get().unwrap();
        log.at(&sw, format!("main got {second}"));
        assert_eq!(putters[1].join().unwrap(), None);
        assert!(q.empty());
    });
    assert_events(
        &events,
        &[
            "1s A: put Cancelled",
            "1s main got in the queue",
            "1s B put",
            "1s main got from B",
        ],
    );
}

#[test]
fn a_put_timed_out_by_timeout_after_hands_the_item_back() {
    run_virtual(|| {
        let sw = Stopwatch::start();
        let q = Queue::new(1);
        q.put(vec![1, 2, 3]).unwrap();
        let e = curio::timeout_after(secs(2), || q.put(vec![4, 5, 6])).unwrap_err();
        assert!(e.error().is_timeout(), "{e}");
        assert_eq!(sw.elapsed(), secs(2));
        assert_eq!(e.into_item(), Some(vec![4, 5, 6]));
        assert_eq!(q.qsize(), 1);
        assert_eq!(q.get().unwrap(), vec![1, 2, 3]);

        // The same through ignore_after, and the whole error converts to curio::Error.
        q.put(vec![7]).unwrap();
        let r = curio::ignore_after(secs(1), || q.put(vec![8]));
        assert!(matches!(r, Ok(None)));
        let e: curio::Error = curio::timeout_after(secs(1), || q.put(vec![9]))
            .unwrap_err()
            .into();
        assert!(e.is_timeout());
        assert_eq!(q.get().unwrap(), vec![7]);
        assert!(q.empty());
    });
}

#[test]
fn a_cancelled_joiner_changes_nothing() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let q = Rc::new(Queue::new(0));
        q.put(1).unwrap();
        let joiners: Vec<_> = ["A", "B"]
            .into_iter()
            .map(|name| {
                let (q, log) = (q.clone(), log.clone());
                curio::spawn(move || {
                    let r = q.join();
                    log.at(&sw, format!("{name}: join {}", outcome(&r)));
                })
            })
            .collect();
        curio::sleep(secs(1)).unwrap();
        joiners[0].cancel().unwrap();
        curio::sleep(secs(1)).unwrap();
        q.get().unwrap();
        q.task_done().unwrap();
        for j in joiners {
            j.join().unwrap();
        }
    });
    assert_events(&events, &["1s A: join Cancelled", "2s B: join ok"]);
}

// ---------------------------------------------------------------------------
// Stress: random cancellation while items flow
// ---------------------------------------------------------------------------

/// A small deterministic PRNG (xorshift64*), so runs are repeatable.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Puts every item of `todo`, sometimes under a short timeout (a timed-out put
/// is retried with the item it handed back). When cancelled, returns the items
/// it did not put.
fn stress_putter(q: Rc<Queue<u32>>, mut todo: VecDeque<u32>, seed: u64) -> VecDeque<u32> {
    let mut rng = Rng::new(seed);
    while let Some(item) = todo.pop_front() {
        let r = if rng.below(3) == 0 {
            curio::timeout_after(ms(rng.below(5) + 1), || q.put(item))
        } else {
            q.put(item)
        };
        if let Err(e) = r {
            let (err, back) = e.into_parts();
            todo.push_front(back.expect("a failed put hands its item back"));
            if err.is_cancelled() {
                return todo;
            }
            assert!(err.is_timeout(), "unexpected put error: {err}");
        }
        if rng.below(4) == 0 && curio::sleep(ms(rng.below(3))).is_err() {
            return todo;
        }
    }
    todo
}

/// Gets items until cancelled, sometimes under a short timeout; returns them.
fn stress_getter(q: Rc<Queue<u32>>, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    let mut got = Vec::new();
    loop {
        let r = if rng.below(3) == 0 {
            curio::timeout_after(ms(rng.below(5) + 1), || q.get())
        } else {
            q.get()
        };
        match r {
            Ok(item) => got.push(item),
            Err(e) if e.is_timeout() => {}
            Err(e) => {
                assert!(e.is_cancelled(), "unexpected get error: {e}");
                return got;
            }
        }
        if rng.below(4) == 0 && curio::sleep(ms(rng.below(3))).is_err() {
            return got;
        }
    }
}

#[test]
fn stress_cancelling_random_getters_and_putters_loses_and_duplicates_nothing() {
    const ITEMS: u32 = 3000;
    const PUTTERS: usize = 6;
    const GETTERS: usize = 5;
    let (delivered, cancels) = run_virtual(|| {
        let q = Rc::new(Queue::new(3));
        let mut rng = Rng::new(0x5eed_cafe);
        let mut shares = vec![VecDeque::new(); PUTTERS];
        for item in 0..ITEMS {
            shares[item as usize % PUTTERS].push_back(item);
        }
        let mut putters: Vec<Task<VecDeque<u32>>> = shares
            .into_iter()
            .map(|share| {
                let (q, seed) = (q.clone(), rng.next());
                curio::spawn(move || stress_putter(q, share, seed))
            })
            .collect();
        let mut getters: Vec<Task<Vec<u32>>> = (0..GETTERS)
            .map(|_| {
                let (q, seed) = (q.clone(), rng.next());
                curio::spawn(move || stress_getter(q, seed))
            })
            .collect();
        let mut delivered = Vec::new();
        let mut cancels = 0;
        for _ in 0..400 {
            curio::sleep(ms(rng.below(4))).unwrap();
            if rng.below(2) == 0 {
                let i = rng.below(GETTERS as u64) as usize;
                getters[i].cancel().unwrap();
                delivered.extend(getters[i].join().unwrap());
                let (q, seed) = (q.clone(), rng.next());
                getters[i] = curio::spawn(move || stress_getter(q, seed));
            } else {
                // The replacement putter finishes what the cancelled one left.
                let i = rng.below(PUTTERS as u64) as usize;
                putters[i].cancel().unwrap();
                let left = putters[i].join().unwrap();
                let (q, seed) = (q.clone(), rng.next());
                putters[i] = curio::spawn(move || stress_putter(q, left, seed));
            }
            cancels += 1;
        }
        for p in putters {
            assert!(p.join().unwrap().is_empty());
        }
        for g in getters {
            g.cancel().unwrap();
            delivered.extend(g.join().unwrap());
        }
        while let Some(item) = q.try_get() {
            delivered.push(item);
        }
        (delivered, cancels)
    });
    assert_eq!(cancels, 400);
    let mut sorted = delivered.clone();
    sorted.sort_unstable();
    let mut dupes = sorted.clone();
    dupes.dedup();
    assert_eq!(
        dupes.len(),
        sorted.len(),
        "an item was delivered twice ({} deliveries)",
        sorted.len()
    );
    let missing: Vec<u32> = (0..ITEMS)
        .filter(|i| sorted.binary_search(i).is_err())
        .collect();
    assert!(missing.is_empty(), "items lost: {missing:?}");
    assert_eq!(sorted, (0..ITEMS).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------
// States and deadlocks
// ---------------------------------------------------------------------------

#[test]
fn waiting_tasks_show_what_they_wait_for() {
    run_virtual(|| {
        let empty = Rc::new(Queue::<u32>::new(0));
        let full = Rc::new(Queue::new(1));
        full.put(0).unwrap();
        let (e, f, j) = (empty.clone(), full.clone(), full.clone());
        let waiters = [
            curio::spawn(move || e.get().map(drop))
                .as_task_ref()
                .clone(),
            curio::spawn(move || f.put(1).map_err(curio::Error::from))
                .as_task_ref()
                .clone(),
            curio::spawn(move || j.join()).as_task_ref().clone(),
        ];
        curio::yield_now().unwrap();
        let states: Vec<&str> = waiters.iter().map(|t| t.state().name()).collect();
        assert_eq!(states, ["QUEUE_GET", "QUEUE_PUT", "QUEUE_JOIN"]);
        for t in &waiters {
            t.cancel().unwrap();
        }
    });
}

#[test]
fn a_getter_waiting_on_a_queue_nobody_fills_is_reported_as_deadlocked() {
    let r = try_run_virtual(|| {
        let q = Queue::<u32>::new(0);
        q.get()
    });
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Deadlock);
    assert!(e.to_string().contains("QUEUE_GET"), "{e}");
}

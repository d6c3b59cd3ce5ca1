//! Task groups under every wait policy, with failing, cancelled and daemon
//! members; the group's join always leaves no member running.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use curio::{ErrorKind, Kernel, TaskGroup, Wait};

type Log = Rc<RefCell<Vec<String>>>;

fn log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

fn push(log: &Log, s: impl Into<String>) {
    log.borrow_mut().push(s.into());
}

fn events(log: &Log) -> Vec<String> {
    log.borrow().clone()
}

fn run<T>(f: impl FnOnce() -> T) -> T {
    Kernel::builder()
        .virtual_clock(true)
        .build()
        .run(f)
        .expect("kernel run")
}

/// `"ok"`, or the error's kind.
fn outcome<T>(r: &curio::Result<T>) -> String {
    match r {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("{:?}", e.kind()),
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A member that sleeps `n` seconds, logging how it ends, and returns `Ok(n)`.
fn sleeper(log: &Log, n: u64) -> impl FnOnce() -> curio::Result<u64> + 'static {
    let log = log.clone();
    move || match curio::sleep(secs(n)) {
        Ok(()) => {
            push(&log, format!("{n} done"));
            Ok(n)
        }
        Err(e) => {
            push(&log, format!("{n} {:?}", e.kind()));
            Err(e)
        }
    }
}

#[test]
fn wait_all_waits_for_every_member() {
    let l = log();
    run(|| {
        let g = TaskGroup::new();
        for n in [3, 1, 2] {
            g.spawn(sleeper(&l, n)).unwrap();
        }
        g.join().unwrap();
        assert_eq!(events(&l), ["1 done", "2 done", "3 done"]);
        let values: Vec<u64> = g
            .results()
            .unwrap()
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(values, [3, 1, 2], "results are in task-id order");
        assert_eq!(
            g.completed().unwrap().id(),
            3,
            "completed is the first to finish"
        );
    });
}

#[test]
fn wait_any_stops_at_the_first_and_cancels_the_rest() {
    let l = log();
    run(|| {
        let t0 = curio::clock();
        let g = TaskGroup::with_wait(Wait::Any);
        for n in [3, 1, 2] {
            g.spawn(sleeper(&l, n)).unwrap();
        }
        g.join().unwrap();
        assert_eq!(curio::clock() - t0, secs(1));
        assert_eq!(g.result().unwrap().unwrap(), 1);
        let mut e = events(&l);
        e.sort();
        assert_eq!(e, ["1 done", "2 Cancelled", "3 Cancelled"]);
        assert!(g.tasks().iter().all(|t| t.is_terminated()));
    });
}

#[test]
fn wait_first_value_skips_none_results() {
    run(|| {
        let g: TaskGroup<Option<&str>> = TaskGroup::with_wait(Wait::FirstValue);
        g.spawn(|| {
            curio::sleep(secs(1)).ok()?;
            None
        })
        .unwrap();
        g.spawn(|| {
            curio::sleep(secs(2)).ok()?;
            Some("second")
        })
        .unwrap();
        let slow = g
            .spawn(|| {
                curio::sleep(secs(3)).ok()?;
                Some("third")
            })
            .unwrap();
        g.join().unwrap();
        assert_eq!(g.result().unwrap(), Some("second"));
        assert!(slow.is_cancelled());
        assert_eq!(slow.join().unwrap(), None);
    });
}

#[test]
fn wait_none_cancels_everything_at_once() {
    let l = log();
    run(|| {
        let g = TaskGroup::with_wait(Wait::None);
        g.spawn(sleeper(&l, 5)).unwrap();
        g.spawn(sleeper(&l, 6)).unwrap();
        curio::yield_now().unwrap(); // let them start sleeping
        g.join().unwrap();
        assert_eq!(events(&l), ["5 Cancelled", "6 Cancelled"]);
        assert!(g.completed().is_none());
    });
}

#[test]
fn a_failing_member_stops_wait_all() {
    let l = log();
    run(|| {
        let g = TaskGroup::new();
        g.spawn(sleeper(&l, 10)).unwrap();
        g.spawn(|| {
            curio::sleep(secs(1))?;
            Err(curio::Error::from(std::io::Error::other("boom")))
        })
        .unwrap();
        g.join().unwrap();
        assert_eq!(events(&l), ["10 Cancelled"]);
        let results = g.results().unwrap();
        assert_eq!(
            results[0].as_ref().unwrap_err().kind(),
            ErrorKind::Cancelled
        );
        assert_eq!(results[1].as_ref().unwrap_err().to_string(), "boom");
    });
}

#[test]
fn a_panicking_member_is_reported_and_stops_the_wait() {
    run(|| {
        let g: TaskGroup<u32> = TaskGroup::new();
        let slow = g
            .spawn(|| {
                let _ = curio::sleep(secs(100));
                1
            })
            .unwrap();
        g.spawn(|| panic!("member exploded")).unwrap();
        g.join().unwrap();
        assert!(slow.is_cancelled());
        let ex = g.exceptions();
        assert!(ex[0].is_none());
        let e = ex[1].as_ref().unwrap();
        assert!(e.is_panic());
        assert!(e.to_string().contains("member exploded"));
        assert!(g.results().unwrap_err().is_panic());
    });
}

#[test]
fn a_member_cancelled_from_outside_stops_the_wait() {
    let l = log();
    run(|| {
        let g = TaskGroup::new();
        let a = g.spawn(sleeper(&l, 10)).unwrap();
        g.spawn(sleeper(&l, 20)).unwrap();
        let _killer = curio::spawn(move || {
            curio::sleep(secs(1)).unwrap();
            a.cancel().unwrap();
        });
        g.join().unwrap();
        assert_eq!(events(&l), ["10 Cancelled", "20 Cancelled"]);
    });
}

#[test]
fn daemons_are_ignored_by_the_policy_but_cancelled_at_join() {
    let l = log();
    run(|| {
        let g = TaskGroup::new();
        g.spawn_with(curio::task::Builder::new().daemon(true), sleeper(&l, 100))
            .unwrap();
        g.spawn(sleeper(&l, 1)).unwrap();
        g.join().unwrap();
        assert_eq!(events(&l), ["1 done", "100 Cancelled"]);
        assert_eq!(g.tasks().len(), 1, "daemons are not listed");
    });
}

#[test]
fn a_cancelled_join_still_cancels_and_waits_for_every_member() {
    let l = log();
    run(|| {
        let g = TaskGroup::new();
        let l2 = l.clone();
        g.spawn(move || {
            let r = curio::sleep(secs(100));
            // Cleanup that blocks: the group still waits for it.
            curio::sleep(secs(1)).unwrap();
            push(&l2, "member cleaned up");
            r
        })
        .unwrap();
        let r = curio::timeout_after(secs(5), || g.join());
        push(&l, format!("join: {:?}", r.unwrap_err().kind()));
        assert!(g.tasks().iter().all(|t| t.is_terminated()));
        assert_eq!(events(&l), ["member cleaned up", "join: Timeout"]);
    });
}

#[test]
fn next_done_returns_members_in_completion_order() {
    let l = log();
    run(|| {
        let g = TaskGroup::new();
        for n in [3, 1, 2] {
            g.spawn(sleeper(&l, n)).unwrap();
        }
        let mut order = Vec::new();
        while let Some(t) = g.next_done().unwrap() {
            order.push(t.join().unwrap().unwrap());
        }
        assert_eq!(order, [1, 2, 3]);
        assert!(g.next_result().unwrap_err().kind() == ErrorKind::Usage);
        g.join().unwrap();
        assert!(g.results().unwrap().is_empty(), "next_done removed them");
    });
}

#[test]
fn cancel_remaining_spares_daemons() {
    let l = log();
    run(|| {
        let g = TaskGroup::new();
        g.spawn(sleeper(&l, 10)).unwrap();
        g.spawn_with(curio::task::Builder::new().daemon(true), sleeper(&l, 20))
            .unwrap();
        curio::sleep(secs(1)).unwrap();
        g.cancel_remaining();
        assert_eq!(events(&l), ["10 Cancelled"]);
        g.join().unwrap();
        assert_eq!(events(&l), ["10 Cancelled", "20 Cancelled"]);
    });
}

#[test]
fn misuse_is_a_clear_error() {
    run(|| {
        let g1: TaskGroup<u32> = TaskGroup::new();
        let g2: TaskGroup<u32> = TaskGroup::new();
        let t = g1.spawn(|| 1).unwrap();
        assert_eq!(g2.add_task(&t).unwrap_err().kind(), ErrorKind::Usage);
        assert_eq!(
            g2.result().unwrap_err().kind(),
            ErrorKind::Usage,
            "result before join"
        );
        g1.join().unwrap();
        let e = g1.spawn(|| 2).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(e.to_string().contains("already been joined"));
        let empty: TaskGroup<u32> = TaskGroup::new();
        empty.join().unwrap();
        assert!(empty.results().unwrap().is_empty());
        assert_eq!(empty.result().unwrap_err().kind(), ErrorKind::Usage);
    });
}

#[test]
fn add_task_adopts_running_and_finished_tasks() {
    run(|| {
        let done = curio::spawn(|| 1u32);
        curio::yield_now().unwrap();
        let running = curio::spawn(|| {
            curio::sleep(secs(1)).unwrap();
            2u32
        });
        let g = TaskGroup::new();
        g.add_task(&done).unwrap();
        g.add_task(&running).unwrap();
        g.join().unwrap();
        assert_eq!(g.results().unwrap(), [1, 2]);
    });
}

#[test]
fn dropping_an_unjoined_group_cancels_its_members_then_joins() {
    let l = log();
    run(|| {
        {
            // Wait::All, but the group is left without a join: the error exit.
            let g = TaskGroup::new();
            g.spawn(sleeper(&l, 50)).unwrap();
            curio::yield_now().unwrap();
        }
        assert_eq!(events(&l), ["50 Cancelled"]);
    });
}

/// Issue 9, item 1: a body that fails through `?` cancels the members, as
/// Curio's `async with TaskGroup()` does when its body raises, instead of
/// waiting for them by the policy (here: forever, a deadlock report).
#[test]
fn a_group_body_that_fails_with_question_mark_cancels_its_members() {
    let l = log();
    run(|| {
        let never = Rc::new(curio::Event::new());
        let body = || -> curio::Result<()> {
            let g = TaskGroup::new();
            for i in 0..3 {
                let (n, l) = (never.clone(), l.clone());
                g.spawn(move || {
                    let r = n.wait();
                    push(&l, format!("member {i}: {}", outcome(&r)));
                    r
                })?;
            }
            curio::yield_now()?;
            Err(curio::Error::from(std::io::Error::other("the body failed")))?;
            g.join()
        };
        let e = body().unwrap_err();
        assert_eq!(e.to_string(), "the body failed");
        push(&l, "body returned its error");
    });
    assert_eq!(
        events(&l),
        [
            "member 0: Cancelled",
            "member 1: Cancelled",
            "member 2: Cancelled",
            "body returned its error"
        ]
    );
}

/// The scoped form: the closure's `Err` cancels the members first and comes
/// back out of `scope`.
#[test]
fn a_scope_whose_closure_fails_cancels_its_members_and_returns_the_error() {
    let l = log();
    run(|| {
        let never = curio::Event::new();
        let r: curio::Result<()> = TaskGroup::scope(Wait::All, |g| {
            for i in 0..3 {
                let l = l.clone();
                let never = &never;
                g.spawn(move || {
                    let r = never.wait();
                    push(&l, format!("member {i}: {}", outcome(&r)));
                    r
                })?;
            }
            curio::yield_now()?;
            Err(curio::Error::from(std::io::Error::other("the body failed")))
        });
        assert_eq!(r.unwrap_err().to_string(), "the body failed");
    });
    assert_eq!(
        events(&l),
        [
            "member 0: Cancelled",
            "member 1: Cancelled",
            "member 2: Cancelled"
        ]
    );
}

/// Issue 9, item 2: joining a member through its own handle takes it out of
/// the group, as Curio's `Task.join` does: `results`, `tasks`, `completed`
/// and the wait policy no longer see it.
#[test]
fn joining_a_member_takes_it_out_of_its_group() {
    run(|| {
        let g = TaskGroup::new();
        let a = g.spawn(|| Ok::<_, curio::Error>(1)).unwrap();
        let failing = g
            .spawn(|| Err::<u32, _>(curio::Error::from(std::io::Error::other("boom"))))
            .unwrap();
        let c = g
            .spawn(|| {
                curio::sleep(secs(1))?;
                Ok::<_, curio::Error>(3)
            })
            .unwrap();
        assert_eq!(a.join().unwrap().unwrap(), 1);
        assert!(failing.join().unwrap().is_err()); // a failure, joined: no longer the group's
        g.join().unwrap();
        // Wait::All went on past the joined failure and waited for `c`.
        assert!(c.is_terminated() && !c.is_cancelled());
        let ids: Vec<u64> = g.tasks().iter().map(|t| t.id()).collect();
        assert_eq!(ids, [c.id()]);
        let results: Vec<u32> = g
            .results()
            .unwrap()
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(results, [3]);
        assert_eq!(g.completed().unwrap().id(), c.id());
        // A joined member is free to join another group.
        let h = TaskGroup::new();
        h.add_task(&a).unwrap();
        h.join().unwrap();
    });
}

#[test]
fn scoped_members_borrow_from_the_parent_stack() {
    run(|| {
        let words = vec!["curio".to_string(), "in".to_string(), "rust".to_string()];
        let total = RefCell::new(0);
        let spawned = TaskGroup::scope(Wait::All, |g| {
            for w in &words {
                let total = &total;
                g.spawn(move || {
                    curio::sleep(secs(w.len() as u64)).unwrap();
                    *total.borrow_mut() += w.len();
                })?;
            }
            Ok::<_, curio::Error>(words.len())
        })
        .unwrap();
        assert_eq!(spawned, 3);
        assert_eq!(*total.borrow(), 11);
    });
}

#[test]
fn a_panic_in_the_scope_still_ends_every_member_first() {
    let l = log();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(|| {
            let borrowed = String::from("on the parent's stack");
            let l2 = l.clone();
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                TaskGroup::<()>::scope(Wait::All, |g| {
                    let b = &borrowed;
                    let l3 = l2.clone();
                    g.spawn(move || {
                        if curio::sleep(secs(100)).is_err() {
                            push(&l3, format!("member still sees: {b}"));
                        }
                    })
                    .unwrap();
                    curio::yield_now().unwrap();
                    panic!("scope body failed");
                    #[allow(unreachable_code)]
                    Ok::<(), curio::Error>(())
                })
            }));
            push(&l2, "after scope");
        })
    }));
    assert!(result.is_ok());
    assert_eq!(
        events(&l),
        ["member still sees: on the parent's stack", "after scope"]
    );
}

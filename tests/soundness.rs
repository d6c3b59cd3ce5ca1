//! Soundness: programs that once reached undefined behaviour from safe code.
//!
//! Each test is the program that showed a hole (issue 8), kept as a
//! regression test. Where the hole crashed the process (a null dereference, a
//! double free), the program runs in a child process and the test checks that
//! the child ends normally with a clear report. Where it was a use-after-free,
//! the test checks the logical promise whose breach allowed it (a scope never
//! returns while a member runs), and CI also runs this file under valgrind
//! (`.ci/run`), which reports any invalid read.
#![allow(unsafe_code)] // one test installs its own SIGBUS handler with libc

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::*;
use curio::{ErrorKind, Event, TaskGroup, UniversalEvent, UniversalQueue, Wait};

// ---------------------------------------------------------------------------
// Hole 1: a scope member spawned after the body joined the group
// ---------------------------------------------------------------------------

/// The body joins the scope's group, then spawns a member that borrows from
/// the caller. Spawning into a joined group is refused; and whatever the body
/// did with the group, nothing it spawned is still running when `scope`
/// returns.
#[test]
fn a_scope_refuses_members_after_a_join_and_never_returns_while_one_runs() {
    run_virtual(|| {
        // On the heap, so that valgrind reports a read after it is freed.
        let words: Vec<String> = ["on", "the", "caller's", "stack"]
            .map(String::from)
            .to_vec();
        let spawned = TaskGroup::<usize>::scope(Wait::All, |g| {
            g.group().join().unwrap();
            Ok::<_, curio::Error>(g.spawn(|| {
                curio::disable_cancellation(|| curio::sleep(secs(1))).unwrap();
                words.iter().map(|w| w.len()).sum()
            }))
        })
        .unwrap();
        match spawned {
            Err(e) => assert_eq!(e.kind(), ErrorKind::Usage, "{e}"),
            Ok(t) => panic!(
                "a member was spawned into a joined group; terminated when scope returned: {}",
                t.is_terminated()
            ),
        }
    });
}

/// Members the body took out of the group (`next_done`, `cancel_remaining`)
/// or that ended the group's wait early are still waited for by the scope.
#[test]
fn a_scope_waits_for_members_the_group_no_longer_lists() {
    run_virtual(|| {
        let sw = Stopwatch::start();
        let log = Log::new();
        let local = String::from("caller's data");
        TaskGroup::<()>::scope(Wait::Any, |g| {
            let l = log.clone();
            g.spawn(|| {})?;
            g.spawn(move || {
                // Ignores cancellation until its work is done.
                curio::disable_cancellation(|| curio::sleep(secs(2))).unwrap();
                l.push(format!("slow member read {local}"));
            })?;
            // The first member ends the wait at once.
            Ok::<_, curio::Error>(())
        })
        .unwrap();
        log.push(format!("scope returned at {}", sw.stamp()));
        log.assert_eq(&["slow member read caller's data", "scope returned at 2s"]);
    });
}

/// A member's outcome that panics when the group looks at it.
struct Tantrum;

impl curio::Outcome for Tantrum {
    fn is_failure(&self) -> bool {
        panic!("Outcome::is_failure panics")
    }
    fn is_value(&self) -> bool {
        false
    }
}

/// The group's join runs user code (`Outcome`); if that panics, the scope is
/// left by unwinding after its body returned, and must still wait for every
/// member first.
#[test]
fn a_panic_in_the_scopes_join_still_ends_every_member_first() {
    run_virtual(|| {
        let log = Log::new();
        let data = ["borrowed", "data"].map(String::from).to_vec();
        let l = log.clone();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            TaskGroup::<Tantrum>::scope(Wait::All, |g| {
                g.spawn(|| Tantrum)?;
                g.spawn(|| {
                    curio::disable_cancellation(|| curio::sleep(secs(1))).unwrap();
                    l.push(format!("slow member read {}", data.join(" ")));
                    Tantrum
                })?;
                Ok::<_, curio::Error>(())
            })
        }));
        assert!(r.is_err(), "the Outcome's panic comes out of scope");
        log.push("scope unwound");
        log.assert_eq(&["slow member read borrowed data", "scope unwound"]);
    });
}

// ---------------------------------------------------------------------------
// Hole 2: waiters carried from one kernel into another
// ---------------------------------------------------------------------------

/// An event that outlives a kernel carries a stale waiter into the next one.
/// Setting it there must not end an unrelated wait, here the scope owner's
/// masked clean-up wait for a member that is still running.
#[test]
fn a_stale_waiter_from_an_earlier_kernel_wakes_nothing_in_a_later_one() {
    watchdog(|| {
        let event: &'static Event = Box::leak(Box::new(Event::new()));
        // Kernel 1: main's first wait is on the event; it times out, leaving
        // a stale entry (main's slot, the kernel's first wait id) behind.
        virtual_kernel()
            .run(|| {
                let r = curio::timeout_after(ms(1), || event.wait());
                assert!(r.unwrap_err().is_timeout());
            })
            .unwrap();
        // Kernel 2: main's first wait is the scope's clean-up wait for its
        // member (Wait::None cancels at once). The member, masked, sets the
        // event while main waits, then works for a second more.
        let member_done = Rc::new(Cell::new(false));
        let done = member_done.clone();
        virtual_kernel()
            .run(move || {
                let data = [1u64, 2, 3].to_vec(); // on the heap, for valgrind
                TaskGroup::<()>::scope(Wait::None, |g| {
                    g.spawn(|| {
                        curio::disable_cancellation(|| {
                            event.set();
                            curio::sleep(secs(1)).unwrap();
                            assert_eq!(data.iter().sum::<u64>(), 6);
                        });
                        done.set(true);
                    })?;
                    Ok::<_, curio::Error>(())
                })
                .unwrap();
                assert!(
                    done.get(),
                    "the scope returned while its member was still running"
                );
            })
            .unwrap();
        assert!(member_done.get());
    });
}

/// Two kernels on two threads run the same code: a getter each, on one
/// `UniversalQueue`. Cancelling kernel A's getter must remove A's
/// registration, not B's, so an item put afterwards reaches B's getter.
#[test]
fn cancelling_a_universal_getter_in_one_kernel_leaves_another_kernels_getter_registered() {
    let q: UniversalQueue<u32> = UniversalQueue::new(0);
    let (b_registered, registered) = mpsc::channel();
    let qb = q.clone();
    let b = thread::spawn(move || {
        // The real clock: the item comes from another thread, in real time.
        real_kernel()
            .run(move || {
                let getter = curio::spawn(move || qb.get());
                until_state(&getter, curio::State::QueueGet);
                b_registered.send(()).unwrap();
                curio::timeout_after(Duration::from_secs(5), || getter.join()).map(|r| r.unwrap())
            })
            .unwrap()
    });
    registered.recv().unwrap();
    let qa = q.clone();
    thread::spawn(move || {
        virtual_kernel()
            .run(move || {
                let getter = curio::spawn(move || qa.get());
                until_state(&getter, curio::State::QueueGet);
                getter.cancel().unwrap();
                assert!(getter.join().unwrap().unwrap_err().is_cancelled());
            })
            .unwrap()
    })
    .join()
    .unwrap();
    q.put(42).unwrap();
    let got = b.join().unwrap();
    assert_eq!(got.expect("kernel B's getter was never woken"), 42);
}

/// The same collision with a `UniversalEvent`.
#[test]
fn cancelling_a_universal_event_waiter_in_one_kernel_leaves_another_kernels_waiter_registered() {
    let evt = UniversalEvent::new();
    let (b_registered, registered) = mpsc::channel();
    let eb = evt.clone();
    let b = thread::spawn(move || {
        // The real clock: the item comes from another thread, in real time.
        real_kernel()
            .run(move || {
                let waiter = curio::spawn(move || eb.wait());
                until_state(&waiter, curio::State::EventWait);
                b_registered.send(()).unwrap();
                curio::timeout_after(Duration::from_secs(5), || waiter.join()).map(|r| r.unwrap())
            })
            .unwrap()
    });
    registered.recv().unwrap();
    let ea = evt.clone();
    thread::spawn(move || {
        virtual_kernel()
            .run(move || {
                let waiter = curio::spawn(move || ea.wait());
                until_state(&waiter, curio::State::EventWait);
                waiter.cancel().unwrap();
            })
            .unwrap()
    })
    .join()
    .unwrap();
    evt.set();
    b.join()
        .unwrap()
        .expect("kernel B's waiter was never woken");
}

/// Wait identities are unique in the process: many threads and two kernels
/// hammering one queue and one event never lose a wake-up.
#[test]
fn a_stress_of_threads_and_kernels_on_universal_primitives_loses_no_wake_up() {
    const ITEMS: u32 = 2000;
    let q: UniversalQueue<u32> = UniversalQueue::new(4);
    let mut kernels = Vec::new();
    for k in 0..2 {
        let q = q.clone();
        kernels.push(thread::spawn(move || {
            virtual_kernel()
                .run(move || {
                    let mut sum = 0u64;
                    let mut got = 0;
                    while got < ITEMS / 2 {
                        // Getters that time out (and unregister) between
                        // those that take an item.
                        if let Some(v) =
                            curio::ignore_after(Duration::from_micros(50 + k), || q.get()).unwrap()
                        {
                            sum += u64::from(v);
                            got += 1;
                        }
                    }
                    sum
                })
                .unwrap()
        }));
    }
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let q = q.clone();
            thread::spawn(move || {
                for i in 0..ITEMS / 4 {
                    q.put(p * (ITEMS / 4) + i).unwrap();
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let total: u64 = kernels.into_iter().map(|k| k.join().unwrap()).sum();
        tx.send(total).unwrap();
    });
    let total = rx
        .recv_timeout(watchdog_limit())
        .expect("a kernel's getter was never woken although items were queued");
    assert_eq!(total, (0..u64::from(ITEMS)).sum::<u64>());
}

// ---------------------------------------------------------------------------
// Holes 3 and 4: a task spawned while shutdown force-unwinds another
// ---------------------------------------------------------------------------

const TEARDOWN_CHILD: &str = "CURIO_TEST_TEARDOWN_CHILD";

/// Panics when dropped.
struct PanicOnDrop(&'static str);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("{}", self.0);
    }
}

/// Calls curio when dropped and prints what it got.
struct YieldOnDrop;

impl Drop for YieldOnDrop {
    fn drop(&mut self) {
        let me = curio::current_task();
        let r = curio::yield_now();
        eprintln!(
            "destructor in task {}: yield_now -> {}",
            me.id(),
            match r {
                Ok(()) => "ok".to_string(),
                Err(e) => e.to_string(),
            }
        );
    }
}

/// Spawns, when dropped, a task whose closure holds `payload`.
struct SpawnOnDrop(Option<Box<dyn FnOnce() + 'static>>);

impl Drop for SpawnOnDrop {
    fn drop(&mut self) {
        let f = self.0.take().unwrap();
        let t = curio::spawn(f);
        eprintln!("spawned task {} during the forced unwind", t.id());
    }
}

/// Main leaves behind a task stuck in a masked wait nobody will end, so
/// shutdown deadlocks and force-unwinds it; its destructor spawns a task that
/// never runs and is unwound in turn when the kernel ends.
fn shutdown_force_unwinds_a_task_that_spawns(payload: impl FnOnce() + 'static) {
    let spawner = SpawnOnDrop(Some(Box::new(payload)));
    let r = virtual_kernel().run(move || {
        let never = Rc::new(Event::new());
        curio::spawn(move || {
            let _spawner = spawner;
            curio::disable_cancellation(|| never.wait())
        });
        curio::yield_now().unwrap();
    });
    eprintln!("run returned: {}", if r.is_ok() { "ok" } else { "error" });
}

#[test]
fn teardown_child() {
    let Some(which) = std::env::var_os(TEARDOWN_CHILD) else {
        return;
    };
    match which.to_str().unwrap() {
        "panicking-closure" => {
            let bomb = PanicOnDrop("the never-started task's closure panics when dropped");
            shutdown_force_unwinds_a_task_that_spawns(move || drop(bomb));
        }
        "yielding-closure" => {
            let y = YieldOnDrop;
            shutdown_force_unwinds_a_task_that_spawns(move || drop(y));
        }
        other => panic!("unknown child scenario {other}"),
    }
    eprintln!("child finished");
}

fn teardown_scenario(which: &str) -> (std::process::ExitStatus, String) {
    let out = run_test_in_child_with("teardown_child", TEARDOWN_CHILD, &[(TEARDOWN_CHILD, which)]);
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Hole 3: the never-started task's closure is dropped exactly once, and its
/// panic is reported (corosensei 0.3.4 would drop it twice: double free).
#[test]
fn a_never_started_task_whose_closure_panics_on_drop_is_dropped_once() {
    let (status, stderr) = teardown_scenario("panicking-closure");
    assert!(status.success(), "child failed ({status}):\n{stderr}");
    assert!(
        stderr.contains("spawned task 3 during the forced unwind"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the never-started task's closure panics when dropped"),
        "{stderr}"
    );
    assert_eq!(
        stderr
            .matches("the never-started task's closure panics when dropped")
            .count(),
        1,
        "reported once, dropped once:\n{stderr}"
    );
    assert!(stderr.contains("child finished"), "{stderr}");
}

/// Hole 4: a destructor of a never-started task that blocks gets a clear
/// error instead of switching with no yielder.
#[test]
fn a_never_started_tasks_destructor_that_blocks_gets_a_clear_error() {
    let (status, stderr) = teardown_scenario("yielding-closure");
    assert!(status.success(), "child failed ({status}):\n{stderr}");
    assert!(
        stderr.contains("destructor in task 3: yield_now -> "),
        "{stderr}"
    );
    assert!(stderr.contains("being torn down"), "{stderr}");
    assert!(stderr.contains("child finished"), "{stderr}");
}

/// Sets an event when dropped.
struct SetOnDrop(Rc<Event>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

/// While shutdown force-unwinds, one task's destructor wakes another task
/// (queueing it), whose own destructor then tries to block: it gets an error,
/// and the kernel ends with nothing left in its ready queue (checked by the
/// kernel's own assertion in debug builds).
#[test]
fn a_task_woken_during_the_forced_unwind_is_unwound_out_of_the_ready_queue() {
    let r = watchdog(|| {
        virtual_kernel().run(|| {
            let wakes_x = Rc::new(Event::new());
            let never = Rc::new(Event::new());
            let e = wakes_x.clone();
            curio::spawn(move || {
                let _y = YieldOnDrop;
                curio::disable_cancellation(|| e.wait())
            });
            let n = never.clone();
            curio::spawn(move || {
                let _set = SetOnDrop(wakes_x);
                curio::disable_cancellation(|| n.wait())
            });
            curio::yield_now().unwrap();
        })
    });
    r.unwrap();
}

// ---------------------------------------------------------------------------
// Hole 5: destructors that call curio while the kernel itself unwinds
// ---------------------------------------------------------------------------

const KERNEL_PANIC_CHILD: &str = "CURIO_TEST_KERNEL_PANIC_CHILD";

/// Names the current task when dropped.
struct NameOnDrop;

impl Drop for NameOnDrop {
    fn drop(&mut self) {
        eprintln!("destructor sees task {}", curio::current_task().id());
    }
}

/// A detached task's result panics when dropped by the kernel, while another
/// task, whose stack holds a value that calls curio when dropped, is parked.
#[test]
fn kernel_panic_child() {
    if !in_child(KERNEL_PANIC_CHILD) {
        return;
    }
    let r = virtual_kernel().run(|| {
        curio::spawn(|| {
            let _n = NameOnDrop;
            curio::sleep(secs(3600))
        });
        drop(curio::spawn(|| {
            PanicOnDrop("a detached result panics when dropped")
        }));
        curio::sleep(secs(1)).unwrap();
        "main ended"
    });
    eprintln!("run returned {:?}", r.map_err(|e| e.to_string()));
}

#[test]
fn a_panicking_drop_in_the_kernel_is_reported_and_destructors_can_still_call_curio() {
    let out = run_test_in_child("kernel_panic_child", KERNEL_PANIC_CHILD);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child failed ({}):\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains("a detached result panics when dropped"),
        "{stderr}"
    );
    assert!(stderr.contains("destructor sees task 2"), "{stderr}");
    assert!(
        stderr.contains("run returned Ok(\"main ended\")"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------
// The overflow handler chains SIGBUS as it chains SIGSEGV
// ---------------------------------------------------------------------------

const SIGBUS_CHILD: &str = "CURIO_TEST_SIGBUS_CHILD";

extern "C" fn own_sigbus_handler(_sig: libc::c_int) {
    let msg = b"the program's own SIGBUS handler ran\n";
    // SAFETY: write(2) and _exit(2) are async-signal-safe; `msg` is static.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(7);
    }
}

/// Installs a SIGBUS handler, runs a kernel (which installs curio's overflow
/// handler), then touches a mapping past the end of its file: a real SIGBUS.
#[test]
fn sigbus_child() {
    if !in_child(SIGBUS_CHILD) {
        return;
    }
    // SAFETY: a zeroed sigaction with a plain handler and an empty mask.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = own_sigbus_handler as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut()), 0);
    }
    curio::run(|| curio::yield_now().unwrap());
    let path = std::env::temp_dir().join(format!("curio-sigbus-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap(); // empty
    let _ = std::fs::remove_file(&path);
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh shared mapping of one page of an empty file; reading it
    // raises SIGBUS, which the handler above turns into _exit(7).
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        let v = std::ptr::read_volatile(p as *const u8);
        eprintln!("unreachable: read {v} past the end of the file");
    }
}

#[test]
fn a_sigbus_handler_installed_before_run_still_runs() {
    let out = run_test_in_child("sigbus_child", SIGBUS_CHILD);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{}:\n{stderr}", out.status);
    assert!(
        stderr.contains("the program's own SIGBUS handler ran"),
        "{stderr}"
    );
}

fn real_kernel() -> curio::Kernel {
    curio::Kernel::builder().virtual_clock(false).build()
}

//! The monitor and debugging (issue 12): `where` that does not disturb the
//! task, hooks in Curio's order, the dump, long blocks, and the monitor
//! driven by `nc`, by raw sockets sending bad input, and by a person through
//! `tmux` replaying the tutorial's session.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use common::{Stopwatch, ms, run_logged, run_virtual, secs, watchdog, watchdog_within};
use curio::debug::{Hook, LongBlock, TaskInfo};
use curio::{Kernel, Queue, State};

// ---------------------------------------------------------------------------
// where / traceback from code
// ---------------------------------------------------------------------------

fn sleepy_kid() -> curio::Result<()> {
    curio::sleep(secs(10))
}

#[test]
fn traceback_names_the_kids_function_and_its_sleep_ends_on_time() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let l = log.clone();
        let kid = curio::spawn(move || {
            let r = sleepy_kid();
            l.at(&sw, format!("kid woke: {}", common::outcome(&r)));
        });
        for _ in 0..3 {
            curio::sleep(secs(2)).unwrap();
            let t = kid.traceback().unwrap();
            assert_eq!(
                t.task(),
                format!("Task(id=2, name='{}', state=TIME_SLEEP)", kid.name())
            );
            let users: Vec<&str> = t.user_frames().map(|f| f.function()).collect();
            assert!(users.iter().any(|f| f.ends_with("sleepy_kid")), "{t}");
            assert!(t.to_string().contains("[in curio::time::sleep"), "{t}");
            assert!(t.full().to_string().contains("curio::time::sleep"));
            log.at(&sw, format!("where: {}", kid.state()));
        }
        kid.join().unwrap();
    });
    common::assert_events(
        &events,
        &[
            "2s where: TIME_SLEEP",
            "4s where: TIME_SLEEP",
            "6s where: TIME_SLEEP",
            "10s kid woke: ok",
        ],
    );
}

#[test]
fn where_leaves_a_queue_getter_waiting_and_it_gets_its_item() {
    let events = run_logged(|log| {
        let q = Rc::new(Queue::new(0));
        let (q2, l) = (q.clone(), log.clone());
        let getter = curio::spawn(move || {
            let item: u32 = q2.get().unwrap();
            l.push(format!("got {item}"));
        });
        curio::yield_now().unwrap();
        let before = getter.cycles();
        for _ in 0..5 {
            let t = getter.traceback().unwrap();
            assert!(t.to_string().contains("QUEUE_GET"), "{t}");
        }
        assert_eq!(getter.cycles(), before, "a capture is not a slice");
        assert_eq!(getter.state(), State::QueueGet);
        q.put(7).unwrap();
        q.put(8).unwrap();
        getter.join().unwrap();
        log.push(format!("left {}", q.qsize()));
    });
    common::assert_events(&events, &["got 7", "left 1"]);
}

#[test]
fn where_inside_a_timeout_block_keeps_the_deadline() {
    let events = run_logged(|log| {
        let sw = Stopwatch::start();
        let l = log.clone();
        let kid = curio::spawn(move || {
            let r = curio::timeout_after(secs(5), || curio::sleep(secs(10)));
            l.at(&sw, format!("kid: {}", common::outcome(&r)));
        });
        curio::sleep(secs(1)).unwrap();
        kid.traceback().unwrap();
        let snap = curio::debug::snapshot();
        let row = snap.task(kid.id()).unwrap();
        assert_eq!(row.timeout, Some(secs(4)), "{snap}");
        assert_eq!(row.sleep, Some(secs(9)), "{snap}");
        kid.join().unwrap();
    });
    common::assert_events(&events, &["5s kid: Timeout"]);
}

#[test]
fn a_ready_task_captured_before_it_runs_still_gets_its_cancellation() {
    let events = run_logged(|log| {
        let l = log.clone();
        let kid = curio::spawn(move || {
            let r = curio::sleep(secs(10));
            l.push(format!("kid: {}", common::outcome(&r)));
        });
        curio::yield_now().unwrap();
        kid.cancel_nowait(); // the kid is READY now, with Cancelled as its reply
        assert_eq!(kid.state(), State::Ready);
        let t = kid.traceback().unwrap();
        assert!(t.task().contains("state=READY"), "{t:?}");
        kid.wait().unwrap();
    });
    common::assert_events(&events, &["kid: Cancelled"]);
}

#[test]
fn traceback_of_self_unstarted_and_finished_tasks() {
    run_virtual(|| {
        let me = curio::current_task().traceback().unwrap();
        assert!(
            me.user_frames()
                .any(|f| f.function().contains("traceback_of_self")),
            "{me}"
        );
        let kid = curio::spawn(|| 5);
        let e = kid.traceback().unwrap_err();
        assert!(e.to_string().contains("has not started yet"), "{e}");
        kid.wait().unwrap();
        let e = kid.traceback().unwrap_err();
        assert!(e.to_string().contains("has finished"), "{e}");
    });
}

#[test]
fn a_task_with_too_little_stack_left_is_not_captured() {
    /// Recurses until less than `left` bytes of a `size`-byte stack whose
    /// top is near `top` remain, then sleeps there.
    #[inline(never)]
    fn deep(top: usize, size: usize, left: usize) -> curio::Result<()> {
        let here = 0u8;
        let at = std::hint::black_box(&here) as *const u8 as usize;
        if top - at > size - left {
            curio::sleep(secs(1))
        } else {
            let pad = std::hint::black_box([0u8; 256]);
            deep(top, size, left)?;
            std::hint::black_box(pad);
            Ok(())
        }
    }
    run_virtual(|| {
        const SIZE: usize = 64 * 1024;
        let kid = curio::task::Builder::new()
            .stack_size(SIZE)
            .spawn(|| {
                let top = 0u8;
                deep(
                    std::hint::black_box(&top) as *const u8 as usize,
                    SIZE,
                    9 * 1024,
                )
            })
            .unwrap();
        curio::yield_now().unwrap();
        let e = kid.traceback().unwrap_err();
        assert!(e.to_string().contains("too few to capture"), "{e}");
        kid.join().unwrap().unwrap();
    });
}

#[test]
fn dump_string_shows_every_task_and_its_stack() {
    run_virtual(|| {
        let kid = curio::task::Builder::new()
            .name("kid")
            .spawn(sleepy_kid)
            .unwrap();
        curio::yield_now().unwrap();
        let dump = curio::debug::dump_string();
        assert!(dump.starts_with("curio: dump of kernel"), "{dump}");
        assert!(
            dump.contains("Stack of Task(id=1, name='main', state=RUNNING)"),
            "{dump}"
        );
        assert!(
            dump.contains("Stack of Task(id=2, name='kid', state=TIME_SLEEP)"),
            "{dump}"
        );
        assert!(dump.contains("sleepy_kid"), "{dump}");
        kid.cancel().unwrap();
    });
}

// ---------------------------------------------------------------------------
// Hooks
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Recorder {
    fn push(&self, what: &str, t: &TaskInfo<'_>) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{what} {} {}", t.id(), t.state()));
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Hook for Recorder {
    fn activate(&self, _: &curio::debug::KernelHandle) {
        self.0.lock().unwrap().push("activate".into());
    }
    fn created(&self, t: &TaskInfo<'_>) {
        self.push("created", t);
    }
    fn running(&self, t: &TaskInfo<'_>) {
        self.push("running", t);
    }
    fn suspended(&self, t: &TaskInfo<'_>) {
        self.push("suspended", t);
    }
    fn terminated(&self, t: &TaskInfo<'_>) {
        self.push("terminated", t);
    }
    fn crashed(&self, t: &TaskInfo<'_>, report: &str) {
        assert!(report.contains("boom"));
        self.push("crashed", t);
    }
    fn deactivate(&self) {
        self.0.lock().unwrap().push("deactivate".into());
    }
}

#[test]
fn hooks_see_curios_sequence_of_events() {
    let rec = Arc::new(Recorder::default());
    let r2 = rec.clone();
    watchdog(move || {
        Kernel::builder()
            .virtual_clock(true)
            .debug(r2)
            .build()
            .run(|| {
                let kid = curio::spawn(|| curio::sleep(secs(1)));
                kid.join().unwrap().unwrap();
                let bad = curio::spawn(|| panic!("boom"));
                let _ = bad.join();
            })
            .unwrap();
    });
    common::assert_events(
        &rec.take(),
        &[
            "activate",
            "created 1 READY",
            "running 1 RUNNING",
            "created 2 READY",
            "suspended 1 TASK_JOIN",
            "running 2 RUNNING",
            "suspended 2 TIME_SLEEP",
            "running 2 RUNNING",
            "suspended 2 RUNNING",
            "terminated 2 TERMINATED",
            "running 1 RUNNING",
            "created 3 READY",
            "suspended 1 TASK_JOIN",
            "running 3 RUNNING",
            "crashed 3 RUNNING",
            "suspended 3 RUNNING",
            "terminated 3 TERMINATED",
            "running 1 RUNNING",
            "suspended 1 RUNNING",
            "terminated 1 TERMINATED",
            "deactivate",
        ],
    );
}

#[test]
fn a_panicking_hook_is_reported_and_the_kernel_goes_on() {
    struct Bad;
    impl Hook for Bad {
        fn created(&self, _: &TaskInfo<'_>) {
            panic!("a bad hook");
        }
    }
    let v = watchdog(|| {
        Kernel::builder()
            .virtual_clock(true)
            .debug(Arc::new(Bad))
            .build()
            .run(|| curio::spawn(|| 6).join().unwrap() * 7)
            .unwrap()
    });
    assert_eq!(v, 42);
}

/// Long blocks, as a hook hears them.
struct Blocks {
    threshold: Duration,
    reports: Mutex<Vec<LongBlock>>,
    /// Set by the report made while the task runs; the task polls it.
    seen_running: AtomicBool,
}

impl Blocks {
    fn new(threshold: Duration) -> Arc<Blocks> {
        Arc::new(Blocks {
            threshold,
            reports: Mutex::default(),
            seen_running: AtomicBool::new(false),
        })
    }
}

impl Hook for Blocks {
    fn switches(&self) -> bool {
        false
    }
    fn long_block_threshold(&self) -> Option<Duration> {
        Some(self.threshold)
    }
    fn long_block(&self, r: &LongBlock) {
        if r.still_running() {
            self.seen_running.store(true, Ordering::Release);
        }
        self.reports.lock().unwrap().push(r.clone());
    }
}

fn spin_until(flag: &AtomicBool, limit: Duration) -> bool {
    let start = Instant::now();
    while !flag.load(Ordering::Acquire) {
        if start.elapsed() > limit {
            return false;
        }
        std::hint::spin_loop();
    }
    true
}

/// Runs `body` as one task named `name` in a kernel watched by `hooks`;
/// returns what it returned.
fn one_watched_task<T: 'static>(
    hooks: Arc<Blocks>,
    name: &str,
    body: impl FnOnce() -> T + 'static,
) -> T {
    let name = name.to_string();
    Kernel::builder()
        .debug(hooks)
        .build()
        .run(move || {
            let kid = curio::task::Builder::new().name(name).spawn(body).unwrap();
            kid.join().unwrap()
        })
        .unwrap()
}

fn cruncher(b: Arc<Blocks>) -> bool {
    curio::sleep(ms(10)).unwrap();
    let seen = spin_until(&b.seen_running, secs(5));
    curio::sleep(ms(10)).unwrap();
    seen
}

#[test]
fn a_long_block_is_reported_while_it_runs_and_when_it_suspends() {
    let blocks = Blocks::new(ms(100));
    let b = blocks.clone();
    let seen = watchdog(move || one_watched_task(b.clone(), "cruncher", move || cruncher(b)));
    assert!(seen, "the report made while it ran never came");
    let reports = blocks.reports.lock().unwrap();
    assert_eq!(reports.len(), 2, "{reports:?}");
    let (during, after) = (&reports[0], &reports[1]);
    assert!(during.still_running() && !after.still_running());
    assert_eq!((during.task_id(), during.name()), (2, "cruncher"));
    assert_eq!(during.resumed_from(), State::TimeSleep);
    assert!(during.ran() >= ms(100), "{during}");
    assert!(after.ran() >= during.ran(), "{after}");
    let at = after.suspended_at().expect("where it suspended");
    assert!(
        at.user_frames().any(|f| f.function().contains("cruncher")),
        "{at}"
    );
    assert!(after.to_string().contains("ran for"), "{after}");
}

#[test]
fn a_task_yielding_in_a_loop_is_many_slices_and_its_one_long_slice_is_reported() {
    // The watchdog tells slices apart by (task, cycles): the kernel keeps
    // running the same task, one slice after another, for 10 thresholds,
    // and no long block is reported; then one slice of that task spins
    // past the threshold, and that one is.
    let blocks = Blocks::new(ms(20));
    let b = blocks.clone();
    let seen = watchdog(move || {
        one_watched_task(b.clone(), "yielder", move || {
            let start = Instant::now();
            while start.elapsed() < ms(200) {
                curio::yield_now().unwrap();
            }
            let quiet = b.reports.lock().unwrap().is_empty();
            let seen = spin_until(&b.seen_running, secs(5));
            // The kernel sees the end when it next looks outside.
            curio::sleep(ms(1)).unwrap();
            (quiet, seen)
        })
    });
    assert_eq!(
        seen,
        (true, true),
        "(no report while it yielded, the spin seen)"
    );
    let reports = blocks.reports.lock().unwrap();
    assert_eq!(reports.len(), 2, "{reports:?}");
    let (during, after) = (&reports[0], &reports[1]);
    assert!(during.still_running() && !after.still_running());
    assert_eq!((during.task_id(), during.name()), (2, "yielder"));
    assert_eq!(during.resumed_from(), State::Ready);
    assert_eq!(after.task_id(), 2);
    assert!(after.ran() >= ms(20), "{after}");
}

/// Records `created` and `terminated` only (no switch hooks: the cheaper
/// watched form of the loop).
#[derive(Default)]
struct Births(Mutex<Vec<String>>);

impl Births {
    fn created_ids(&self) -> Vec<u64> {
        let v = self.0.lock().unwrap();
        v.iter()
            .filter_map(|e| e.strip_prefix("created ")?.parse().ok())
            .collect()
    }
}

impl Hook for Births {
    fn switches(&self) -> bool {
        false
    }
    fn created(&self, t: &TaskInfo<'_>) {
        self.0.lock().unwrap().push(format!("created {}", t.id()));
    }
    fn terminated(&self, t: &TaskInfo<'_>) {
        self.0
            .lock()
            .unwrap()
            .push(format!("terminated {}", t.id()));
    }
}

#[test]
fn every_task_is_announced_before_it_first_runs_and_before_it_ends() {
    let births = Arc::new(Births::default());
    let b = births.clone();
    let announced_first = watchdog(move || {
        Kernel::builder()
            .virtual_clock(true)
            .debug(b.clone())
            .build()
            .run(move || {
                let me = |b: Arc<Births>| {
                    move || b.created_ids().contains(&curio::task::current_task().id())
                };
                // A task with a stack of its own (made at spawn: its first
                // run has no cold path), alone; a task of the kernel's stack
                // size (its stack comes at its first run), and one spawned
                // by a task spawned in the same slice.
                let own = curio::task::Builder::new()
                    .stack_size(128 * 1024)
                    .spawn(me(b.clone()))
                    .unwrap();
                let own = own.join();
                let plain = curio::spawn(me(b.clone()));
                let b2 = b.clone();
                let parent = curio::spawn(move || {
                    let kid = curio::spawn(me(b2.clone()));
                    me(b2)() && kid.join().unwrap()
                });
                // Two that never run: the kernel ends first.
                curio::task::Builder::new()
                    .daemon(true)
                    .spawn(|| curio::sleep(secs(1)))
                    .unwrap();
                curio::task::Builder::new()
                    .daemon(true)
                    .stack_size(128 * 1024)
                    .spawn(|| curio::sleep(secs(1)))
                    .unwrap();
                [own, plain.join(), parent.join()]
                    .into_iter()
                    .all(|r| r.unwrap())
            })
            .unwrap()
    });
    assert!(announced_first, "a task ran before the hooks heard of it");
    let events = births.0.lock().unwrap().clone();
    for id in 1..=7 {
        let created = events.iter().position(|e| *e == format!("created {id}"));
        let ended = events.iter().position(|e| *e == format!("terminated {id}"));
        match (created, ended) {
            (Some(c), Some(t)) => assert!(c < t, "task {id}: {events:?}"),
            _ => panic!("task {id} not created and terminated once each: {events:?}"),
        }
    }
    assert_eq!(events.len(), 14, "{events:?}");
}

// ---------------------------------------------------------------------------
// The monitor, over TCP
// ---------------------------------------------------------------------------

/// A kernel with its monitor on a free loopback port, running `main` on a
/// thread of its own; gives the monitor's address, and the kernel thread.
fn watched<F>(main: F) -> (SocketAddr, thread::JoinHandle<()>)
where
    F: FnOnce() + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let t = thread::spawn(move || {
        Kernel::builder()
            .monitor_address("127.0.0.1:0".parse().unwrap())
            .build()
            .run(move || {
                tx.send(curio::monitor::address().expect("the monitor listens"))
                    .unwrap();
                main();
            })
            .unwrap();
    });
    let addr = rx.recv_timeout(secs(5)).expect("the kernel started");
    (addr, t)
}

/// A raw monitor session: sends lines, reads up to each prompt.
struct Client {
    out: TcpStream,
    input: BufReader<TcpStream>,
}

const PROMPT: &str = "curio > ";

impl Client {
    fn connect(addr: SocketAddr) -> (Client, String) {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(secs(5))).unwrap();
        let mut c = Client {
            out: s.try_clone().unwrap(),
            input: BufReader::new(s),
        };
        let greeting = c.until_prompt();
        (c, greeting)
    }

    fn until_prompt(&mut self) -> String {
        let mut got = Vec::new();
        loop {
            let mut b = [0u8; 1];
            match self.input.read(&mut b) {
                Ok(0) => break,
                Ok(_) => got.push(b[0]),
                Err(e) => panic!(
                    "reading the monitor: {e}; got so far {:?}",
                    String::from_utf8_lossy(&got)
                ),
            }
            if got.ends_with(PROMPT.as_bytes()) {
                got.truncate(got.len() - PROMPT.len());
                break;
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    fn ask(&mut self, line: &str) -> String {
        self.out.write_all(line.as_bytes()).unwrap();
        self.out.write_all(b"\n").unwrap();
        self.until_prompt()
    }
}

#[test]
fn the_monitor_answers_ps_where_parents_and_cancel() {
    watchdog(|| {
        let (done_tx, done_rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let (addr, kernel) = watched(move || {
            let kid = curio::task::Builder::new()
                .name("kid")
                .spawn(|| match curio::sleep(secs(1000)) {
                    Err(e) if e.is_cancelled() => "Fine. Saving my work.",
                    _ => "woke",
                })
                .unwrap();
            // The monitor learns of new tasks when the slice that made them
            // ends: suspend once before the client connects.
            curio::sleep(Duration::ZERO).unwrap();
            ready_tx.send(()).unwrap();
            let said = kid.join().unwrap();
            done_tx.send(said).unwrap();
        });
        ready_rx.recv_timeout(secs(5)).unwrap();
        let (mut c, greeting) = Client::connect(addr);
        assert_eq!(
            greeting,
            "\nCurio Monitor: 2 tasks running\nType help for commands\n"
        );
        let ps = c.ask("ps");
        let lines: Vec<&str> = ps.lines().collect();
        assert!(
            lines[0].starts_with("Task   State        Cycles     Timeout"),
            "{ps}"
        );
        assert!(lines[2].starts_with("1      TASK_JOIN    2 "), "{ps}");
        assert!(lines[2].ends_with(" main"), "{ps}");
        assert!(
            lines[3].starts_with("2      TIME_SLEEP   1          sleep 99"),
            "{ps}"
        );
        assert!(lines[3].contains("/256K"), "{ps}");
        assert!(lines[3].ends_with(" kid"), "{ps}");
        let w = c.ask("where 2");
        assert!(
            w.starts_with("Stack of Task(id=2, name='kid', state=TIME_SLEEP)"),
            "{w}"
        );
        assert!(w.contains("[in curio::time::sleep"), "{w}");
        assert!(w.contains("tests/monitor.rs"), "{w}");
        assert!(c.ask("w 2 full").contains("curio::time::sleep"));
        assert_eq!(
            c.ask("parents 2"),
            "2        TIME_SLEEP kid\n1         TASK_JOIN main\n"
        );
        assert_eq!(c.ask("where 99"), "No task 99\n");
        assert_eq!(c.ask("cancel 99"), "No task 99\n");
        assert_eq!(c.ask("cancel 2"), "Cancelling task 2\n");
        assert_eq!(
            done_rx.recv_timeout(secs(5)).unwrap(),
            "Fine. Saving my work."
        );
        kernel.join().unwrap();
    });
}

#[test]
fn the_monitor_refuses_bad_commands_with_one_line_each() {
    watchdog(|| {
        let (addr, kernel) = watched(|| curio::sleep(ms(1500)).unwrap());
        let (mut c, _) = Client::connect(addr);
        assert_eq!(c.ask("frobnicate"), "Unknown command. Type help.\n");
        assert_eq!(
            c.ask("where"),
            "Bad command. where needs a task id: where 3 (or where 3 full, or where all)\n"
        );
        assert_eq!(
            c.ask("cancel two"),
            "Bad command. \"two\" is not a task id; cancel takes a number, as in cancel 3\n"
        );
        assert_eq!(c.ask("signal SIGNOPE"), "Unknown signal SIGNOPE\n");
        assert_eq!(
            c.ask("parents"),
            "Bad command. parents needs one task id: parents 3\n"
        );
        assert_eq!(c.ask(""), "");
        assert!(c.ask("help").contains("where taskid"));
        assert!(c.ask("where 1").contains("Stack of Task(id=1, name='main'"));
        c.out.write_all(b"quit\n").unwrap();
        let mut rest = String::new();
        c.input.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "Leaving monitor. Hit Ctrl-C to exit\n");
        kernel.join().unwrap();
    });
}

#[test]
fn the_monitor_survives_huge_lines_garbage_disconnects_and_fifty_clients() {
    watchdog_within(secs(30), || {
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let (addr, kernel) = watched(move || {
            // The program under watch: a ticker that notices any stall.
            let mut worst = Duration::ZERO;
            let mut last = Instant::now();
            let stop = curio::UniversalEvent::new();
            let s2 = stop.clone();
            thread::spawn(move || {
                let _ = stop_rx.recv();
                s2.set();
            });
            while !stop.is_set() {
                curio::sleep(ms(5)).unwrap();
                worst = worst.max(last.elapsed());
                last = Instant::now();
            }
            assert!(worst < ms(500), "the program stalled for {worst:?}");
        });
        // A megabyte without a newline, then a command: one refusal, then an answer.
        let (mut c, _) = Client::connect(addr);
        c.out.write_all(&vec![b'x'; 1 << 20]).unwrap();
        let r = c.ask("");
        assert!(r.starts_with("Bad command. A line of 1048"), "{r}");
        assert!(c.ask("ps").contains("main"));
        // Binary garbage, newlines included.
        let garbage: Vec<u8> = (0..20_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        c.out.write_all(&garbage).unwrap();
        c.out.write_all(b"\nps\n").unwrap();
        let mut seen = String::new();
        while !seen.contains("main\n") {
            seen.push_str(&c.until_prompt());
        }
        // A client that disconnects in the middle of a command.
        for _ in 0..10 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"whe").unwrap();
            drop(s);
            let s = TcpStream::connect(addr).unwrap();
            let _ = (&s).write_all(b"ps\n");
            s.shutdown(Shutdown::Both).unwrap();
        }
        // Fifty at once, each asking for the table.
        let clients: Vec<_> = (0..50)
            .map(|_| {
                thread::spawn(move || {
                    let (mut c, _) = Client::connect(addr);
                    let ps = c.ask("ps");
                    assert!(ps.contains(" main"), "{ps}");
                    c.ask("where 1")
                })
            })
            .collect();
        for t in clients {
            let w = t.join().unwrap();
            assert!(w.contains("Stack of"), "{w}");
        }
        assert!(
            c.ask("ps").contains("main"),
            "the first session still works"
        );
        stop_tx.send(()).unwrap();
        kernel.join().unwrap();
    });
}

#[test]
fn a_task_in_a_cpu_loop_does_not_silence_the_monitor() {
    watchdog_within(secs(20), || {
        // The task spins until the test has asked its questions (a
        // deadline of its own would make a slow machine's answers race it).
        let stop = Arc::new(AtomicBool::new(false));
        let spinning = stop.clone();
        let (addr, kernel) = watched(move || {
            let spin = curio::task::Builder::new()
                .name("spin")
                .spawn(move || {
                    let mut x = 0u64;
                    while !spinning.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                    x
                })
                .unwrap();
            spin.join().unwrap();
        });
        let (mut c, _) = Client::connect(addr);
        thread::sleep(ms(500)); // the spin task is well into its loop
        for _ in 0..5 {
            let asked = Instant::now();
            let ps = c.ask("ps");
            let took = asked.elapsed();
            // Answered by the monitor thread, not the busy kernel: well
            // under a second even on a loaded machine.
            assert!(took < secs(1), "ps took {took:?}");
            assert!(ps.contains("kernel busy in task 2 ('spin') for "), "{ps}");
            let w = c.ask("where 2");
            assert!(
                w.starts_with("Task 2 is running: kernel busy in task 2 ('spin')"),
                "{w}"
            );
            thread::sleep(ms(100));
        }
        stop.store(true, Ordering::Relaxed);
        kernel.join().unwrap();
    });
}

#[test]
fn the_monitor_sends_signals() {
    watchdog(|| {
        let (addr, kernel) = watched(|| {
            let set = curio::SignalSet::new(&[curio::signal::SIGUSR2]).unwrap();
            assert_eq!(set.wait().unwrap(), curio::signal::SIGUSR2);
        });
        let (mut c, _) = Client::connect(addr);
        assert_eq!(
            c.ask("ps").lines().nth(2).map(|l| &l[..19]),
            Some("1      SIGNAL_WAIT ")
        );
        assert_eq!(c.ask("signal SIGUSR2"), "Sending SIGUSR2\n");
        kernel.join().unwrap();
    });
}

/// `nc`, a client nobody here wrote: the protocol is lines of text.
#[test]
fn nc_drives_the_monitor() {
    let Some(nc) = common::external_tool("nc", "netcat-openbsd") else {
        return;
    };
    watchdog(move || {
        let (addr, kernel) = watched(|| {
            let _kid = curio::task::Builder::new()
                .name("kid")
                .spawn(sleepy_kid)
                .unwrap();
            curio::sleep(ms(1500)).unwrap();
        });
        let mut child = Command::new(nc)
            .args(["-q", "1", "127.0.0.1", &addr.port().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"ps\nwhere 2\nquit\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Curio Monitor: 2 tasks running"), "{text}");
        assert!(
            text.contains("2      TIME_SLEEP   1          sleep"),
            "{text}"
        );
        assert!(text.contains("sleepy_kid"), "{text}");
        assert!(
            text.ends_with("Leaving monitor. Hit Ctrl-C to exit\n"),
            "{text}"
        );
        kernel.join().unwrap();
    });
}

// ---------------------------------------------------------------------------
// SIGQUIT
// ---------------------------------------------------------------------------

#[test]
fn sigquit_writes_the_dump_to_stderr_and_the_program_goes_on() {
    const CHILD: &str = "CURIO_TEST_SIGQUIT_CHILD";
    if common::in_child(CHILD) {
        Kernel::builder()
            .dump_on_sigquit(true)
            .build()
            .run(|| {
                let _kid = curio::task::Builder::new()
                    .name("kid")
                    .spawn(sleepy_kid)
                    .unwrap();
                curio::sleep(ms(100)).unwrap();
                curio::signal::send(std::process::id(), curio::signal::SIGQUIT).unwrap();
                curio::sleep(ms(500)).unwrap();
                println!("still here");
            })
            .unwrap();
        return;
    }
    let out = common::run_test_in_child(
        "sigquit_writes_the_dump_to_stderr_and_the_program_goes_on",
        CHILD,
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("still here"), "{stdout}");
    assert!(stderr.contains("curio: dump of kernel"), "{stderr}");
    assert!(
        stderr.contains("Stack of Task(id=2, name='kid', state=TIME_SLEEP)"),
        "{stderr}"
    );
    assert!(stderr.contains("sleepy_kid"), "{stderr}");
}

// ---------------------------------------------------------------------------
// The tutorial's session, as a person would replay it
// ---------------------------------------------------------------------------

/// Starts `several_tasks --monitor` in one tmux pane and the client in a
/// second, and types the tutorial's commands: `ps`, `where` on the kid,
/// `cancel` the kid; then the kid saves its work and the program ends.
#[test]
fn the_tutorials_monitor_session_replayed_in_tmux() {
    let Some(tmux) = common::external_tool("tmux", "tmux") else {
        return;
    };
    let example = common::example("several_tasks");
    let client = env!("CARGO_BIN_EXE_curio-monitor");
    watchdog_within(secs(60), move || {
        let port = free_port();
        let session = format!("curio-monitor-test-{}", std::process::id());
        let socket = format!("curio-test-{}", std::process::id());
        let tm = |args: &[&str]| {
            let out = Command::new(&tmux)
                .args(["-L", &socket])
                .args(args)
                .output()
                .expect("run tmux");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let program = format!(
            "CURIO_MONITOR_ADDR=127.0.0.1:{port} {} --monitor; echo PROGRAM-ENDED; sleep 60",
            example.display()
        );
        tm(&[
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "160",
            "-y",
            "50",
            &program,
        ]);
        let screen = |pane: &str| tm(&["capture-pane", "-p", "-J", "-S", "-200", "-t", pane]);
        let wait_for = |pane: &str, text: &str, limit: Duration| -> String {
            let start = Instant::now();
            loop {
                let s = screen(pane);
                if s.contains(text) {
                    return s;
                }
                assert!(
                    start.elapsed() < limit,
                    "{text:?} never appeared in pane {pane}:\n{s}"
                );
                thread::sleep(ms(100));
            }
        };
        let main_pane = format!("{session}:0.0");
        wait_for(&main_pane, "Building the Millenium Falcon", secs(10));
        tm(&[
            "split-window",
            "-t",
            &session,
            &format!("{client} --port {port}"),
        ]);
        let client_pane = format!("{session}:0.1");
        wait_for(&client_pane, "Type help for commands", secs(10));
        let type_line = |line: &str| {
            tm(&["send-keys", "-t", &client_pane, line, "Enter"]);
        };
        type_line("ps");
        let s = wait_for(&client_pane, "several_tasks::kid", secs(5));
        assert!(s.contains("TIME_SLEEP"), "{s}");
        type_line("where 2");
        let s = wait_for(&client_pane, "Stack of Task(id=2", secs(5));
        let s = if s.contains("[the task's start") {
            s
        } else {
            wait_for(&client_pane, "[the task's start", secs(5))
        };
        assert!(
            s.contains("several_tasks::kid\n"),
            "the kid's own function: {s}"
        );
        assert!(s.contains("examples/several_tasks.rs"), "{s}");
        type_line("cancel 2");
        wait_for(&client_pane, "Cancelling task 2", secs(5));
        wait_for(&main_pane, "Fine. Saving my work.", secs(5));
        let end = wait_for(&main_pane, "PROGRAM-ENDED", secs(30));
        assert!(end.contains("Leaving!"), "{end}");
        tm(&["kill-server"]);
    });
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

//! `run_in_process`: functions run in worker processes (this test binary,
//! started again), values and panics come back, a crash is named, and a
//! cancelled call kills its worker at once (`semantics.md`, Workers;
//! `curio-reference.md` §11.3).
//!
//! This target has `harness = false`: workers re-run this binary, so `main`
//! must call `curio::process::init()` before anything else, which libtest's
//! `main` cannot. `main` below is a small harness in libtest's style (a name
//! filter, `--exact`, the same summary line).

mod common;

use std::time::{Duration, Instant};

use common::*;
use curio::ErrorKind;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------
// Functions the workers run
// ---------------------------------------------------------------------------

fn fib(n: u64) -> u64 {
    if n <= 2 { 1 } else { fib(n - 1) + fib(n - 2) }
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Order {
    item: String,
    counts: Vec<u32>,
    rush: Option<bool>,
}

fn summarise(o: Order) -> (String, u64) {
    (
        o.item.to_uppercase(),
        o.counts.iter().map(|&c| c as u64).sum(),
    )
}

fn reverse(mut v: Vec<u8>) -> Vec<u8> {
    v.reverse();
    v
}

fn worker_pid(_: ()) -> u32 {
    std::process::id()
}

fn boom(msg: String) -> u64 {
    panic!("boom: {msg}");
}

/// Never returns: only a kill ends it.
fn spin_forever(_: ()) {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

/// Computes for about `ms` milliseconds.
fn spin_for(ms: u64) -> u32 {
    let end = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < end {
        std::hint::spin_loop();
    }
    std::process::id()
}

fn abort(_: ()) {
    std::process::abort();
}

#[allow(unsafe_code)]
fn segfault(_: ()) {
    // SAFETY: signal() and raise() have no memory-safety preconditions. The
    // default action (std installs a handler that returns for a raised
    // SIGSEGV) ends the worker process.
    unsafe {
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        libc::raise(libc::SIGSEGV);
    }
    unreachable!("SIGSEGV's default action ends the process");
}

/// Sends `sig` to process `pid`; true if it was sent.
#[allow(unsafe_code)]
fn kill(pid: u32, sig: i32) -> bool {
    // SAFETY: kill() takes two integers and touches no memory.
    unsafe { libc::kill(pid as libc::pid_t, sig) == 0 }
}

fn exit_with(code: i32) {
    std::process::exit(code);
}

fn not_registered(n: u64) -> u64 {
    n
}

curio::process_fn!(
    fib,
    summarise,
    reverse,
    worker_pid,
    boom,
    spin_forever,
    spin_for,
    abort,
    segfault,
    exit_with,
);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Runs `main` on a real-clock kernel under the watchdog, then checks that the
/// kernel's end left no worker process (running or zombie) and no extra fd.
fn run_checked<T: Send + 'static>(main: impl FnOnce() -> T + Send + 'static) -> T {
    let fds = open_fds();
    let v = run_real(main);
    assert_eq!(child_processes(), [], "a worker outlived its kernel");
    assert_eq!(open_fds(), fds, "the kernel's end left fds open");
    v
}

/// The pids of the worker processes alive now.
fn workers() -> Vec<u32> {
    child_processes().into_iter().map(|(pid, _)| pid).collect()
}

// ---------------------------------------------------------------------------
// Values and panics
// ---------------------------------------------------------------------------

fn values_come_back() {
    run_checked(|| {
        assert_eq!(curio::run_in_process(fib, 20).unwrap(), 6765);
        let order = Order {
            item: "falcon".into(),
            counts: vec![1, 2, 3],
            rush: Some(true),
        };
        assert_eq!(
            curio::run_in_process(summarise, order).unwrap(),
            ("FALCON".to_string(), 6)
        );
        let big: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        let mut want = big.clone();
        want.reverse();
        assert_eq!(curio::run_in_process(reverse, big).unwrap(), want);
        let pid = curio::run_in_process(worker_pid, ()).unwrap();
        assert_ne!(pid, std::process::id(), "it ran in another process");
        assert!(
            workers().contains(&pid),
            "the worker is this process's child"
        );
    });
}

fn a_warm_worker_is_reused() {
    run_checked(|| {
        let first = curio::run_in_process(worker_pid, ()).unwrap();
        for _ in 0..20 {
            assert_eq!(curio::run_in_process(worker_pid, ()).unwrap(), first);
        }
        assert_eq!(curio::process::idle_workers(), 1);
    });
}

fn a_panic_comes_back_with_its_message_and_the_worker_survives() {
    run_checked(|| {
        let before = curio::run_in_process(worker_pid, ()).unwrap();
        let e = curio::run_in_process(boom, "in the worker".to_string()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TaskPanicked, "{e}");
        let text = e.to_string();
        assert!(text.contains("boom: in the worker"), "{text}");
        assert!(text.contains("tests/process.rs"), "names where: {text}");
        assert!(text.contains("boom"), "names the function: {text}");
        assert_eq!(curio::run_in_process(worker_pid, ()).unwrap(), before);
    });
}

fn an_unregistered_function_is_a_clear_error() {
    run_checked(|| {
        let e = curio::run_in_process(not_registered, 1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(e.to_string().contains("not_registered"), "names it: {e}");
        assert!(e.to_string().contains("process_fn!"), "{e}");
        // A pointer may point to any function of its type, registered or
        // not: refused, even when it points to a registered one.
        let pointer: fn(u64) -> u64 = fib;
        let e = curio::run_in_process(pointer, 1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(e.to_string().contains("function item"), "{e}");
        let offset = 5;
        let e = curio::run_in_process(move |n: u64| n + offset, 1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert_eq!(child_processes(), [], "no worker was started");
    });
}

/// A generic function registered per instantiation.
fn total<T: Into<u64>>(v: Vec<T>) -> u64 {
    v.into_iter().map(Into::into).sum()
}
curio::process_fn!(total::<u32>);

fn a_generic_instantiation_can_be_registered() {
    run_checked(|| {
        assert_eq!(
            curio::run_in_process(total::<u32>, vec![1, 2, 3]).unwrap(),
            6
        );
        let e = curio::run_in_process(total::<u8>, vec![1, 2]).unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::Usage,
            "another instantiation is not registered"
        );
    });
}

fn without_init_it_refuses_instead_of_starting_the_program_again() {
    // This binary called init(); a child that did not is the test's only
    // way to see the refusal, so run this very check in one.
    if std::env::var_os("CURIO_TEST_NO_INIT").is_some() {
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("CURIO_TEST_NO_INIT", "1")
        .arg("--exact")
        .arg("child_without_init")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("test child_without_init ... ok"),
        "{stdout}"
    );
}

/// Run only in the child of the test above, whose main skipped init().
fn child_without_init() {
    if std::env::var_os("CURIO_TEST_NO_INIT").is_none() {
        return;
    }
    run_real(|| {
        let e = curio::run_in_process(fib, 3).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(e.to_string().contains("curio::process::init()"), "{e}");
    });
}

// ---------------------------------------------------------------------------
// Crashes
// ---------------------------------------------------------------------------

fn a_crash_names_the_signal_and_the_next_call_gets_a_new_worker() {
    run_checked(|| {
        let before = curio::run_in_process(worker_pid, ()).unwrap();
        let e = curio::run_in_process(abort, ()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WorkerDied, "{e}");
        assert!(
            e.to_string().contains("killed by signal SIGABRT (6)"),
            "{e}"
        );
        assert!(!process_exists(before), "the dead worker was reaped");

        let e = curio::run_in_process(segfault, ()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WorkerDied, "{e}");
        assert!(
            e.to_string().contains("killed by signal SIGSEGV (11)"),
            "{e}"
        );

        let e = curio::run_in_process(exit_with, 3).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WorkerDied, "{e}");
        assert!(e.to_string().contains("exited with status 3"), "{e}");

        let after = curio::run_in_process(worker_pid, ()).unwrap();
        assert_ne!(after, before);
        assert_eq!(workers(), [after], "every dead worker was reaped");
    });
}

fn a_worker_killed_while_idle_is_replaced() {
    run_checked(|| {
        let first = curio::run_in_process(worker_pid, ()).unwrap();
        assert!(kill(first, libc::SIGKILL));
        // Let the kill land before the next call reuses the worker.
        curio::sleep(ms(20)).unwrap();
        let second = curio::run_in_process(worker_pid, ()).unwrap();
        assert_ne!(second, first);
    });
}

// ---------------------------------------------------------------------------
// Cancellation
// ---------------------------------------------------------------------------

fn cancelling_kills_the_worker_within_10_ms() {
    for how in BOTH {
        run_checked(move || {
            // Discussion: on a loaded machine the timer's own lateness and
            // the scheduler can add milliseconds that are not ours; the best
            // of three tries must make it, and every try must leave no process.
            let mut best = Duration::MAX;
            for _ in 0..3 {
                let started = Instant::now();
                let (r, took) = match how {
                    Interrupt::Cancel => {
                        let task = curio::spawn(|| curio::run_in_process(spin_forever, ()));
                        curio::sleep(ms(100)).unwrap();
                        let pids = workers();
                        assert_eq!(pids.len(), 1, "one worker spins: {pids:?}");
                        let t0 = Instant::now();
                        task.cancel().unwrap();
                        (task.join().unwrap(), t0.elapsed())
                    }
                    Interrupt::Timeout => {
                        let r = curio::timeout_after(ms(100), || {
                            curio::run_in_process(spin_forever, ())
                        });
                        (r, started.elapsed().saturating_sub(ms(100)))
                    }
                };
                let e = expect_interrupted(how, r);
                assert!(e.is_cancellation());
                assert_eq!(
                    child_processes(),
                    [],
                    "{how:?}: the worker was killed and reaped before the call returned"
                );
                assert_eq!(
                    curio::process::idle_workers(),
                    0,
                    "a killed worker is not reused"
                );
                best = best.min(took);
            }
            assert!(
                best < ms(10),
                "{how:?}: the call returned {best:?} after the interruption (best of 3)"
            );
            // The pool still works.
            assert_eq!(curio::run_in_process(fib, 10).unwrap(), 55);
        });
    }
}

fn a_cancelled_wait_for_a_worker_takes_nothing() {
    run_checked(|| {
        let n = curio::process::max_workers();
        let busy: Vec<_> = (0..n)
            .map(|_| curio::spawn(|| curio::run_in_process(spin_for, 300)))
            .collect();
        curio::sleep(ms(50)).unwrap();
        // Every worker is busy: this call waits for one, and times out there.
        let e = curio::timeout_after(ms(20), || curio::run_in_process(fib, 5)).unwrap_err();
        assert!(e.is_timeout());
        assert_eq!(workers().len(), n, "no worker was started for it");
        for t in busy {
            t.join().unwrap().unwrap();
        }
        assert_eq!(curio::run_in_process(fib, 5).unwrap(), 5);
    });
}

fn the_kernel_stays_responsive_and_the_pool_is_bounded() {
    run_checked(|| {
        let n = curio::process::max_workers();
        let ticks = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let t = ticks.clone();
        let ticker = curio::spawn(move || -> curio::Result<()> {
            loop {
                curio::sleep(ms(10))?;
                t.set(t.get() + 1);
            }
        });
        let peak = std::rc::Rc::new(std::cell::Cell::new(0usize));
        let p = peak.clone();
        let watcher = curio::spawn(move || -> curio::Result<()> {
            loop {
                p.set(p.get().max(workers().len()));
                curio::sleep(ms(5))?;
            }
        });
        let calls: Vec<_> = (0..2 * n)
            .map(|_| curio::spawn(|| curio::run_in_process(spin_for, 150)))
            .collect();
        let pids: std::collections::HashSet<u32> =
            calls.iter().map(|c| c.join().unwrap().unwrap()).collect();
        ticker.cancel().unwrap();
        watcher.cancel().unwrap();
        assert!(pids.len() <= n, "{} workers for a pool of {n}", pids.len());
        assert!(
            peak.get() <= n,
            "{} workers at once for a pool of {n}",
            peak.get()
        );
        assert!(
            ticks.get() >= 10,
            "the kernel ticked only {} times",
            ticks.get()
        );
    });
}

fn a_thousand_calls_leave_no_zombie_and_no_fd() {
    run_checked(|| {
        let mut interrupted = 0;
        for i in 0..1000u64 {
            if i % 100 == 99 {
                let r = curio::timeout_after(ms(2), || curio::run_in_process(spin_forever, ()));
                assert!(r.unwrap_err().is_timeout());
                interrupted += 1;
            } else {
                assert_eq!(
                    curio::run_in_process(fib, i % 20 + 1).unwrap(),
                    fib(i % 20 + 1)
                );
            }
            let kids = child_processes();
            assert!(kids.iter().all(|&(_, s)| s != 'Z'), "a zombie: {kids:?}");
            assert!(kids.len() <= curio::process::max_workers(), "{kids:?}");
        }
        assert_eq!(interrupted, 10);
    });
}

// ---------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------

fn main() {
    if std::env::var_os("CURIO_TEST_NO_INIT").is_none() {
        curio::process::init();
    }

    let tests: &[(&str, fn())] = &[
        ("values_come_back", values_come_back),
        ("a_warm_worker_is_reused", a_warm_worker_is_reused),
        (
            "a_panic_comes_back_with_its_message_and_the_worker_survives",
            a_panic_comes_back_with_its_message_and_the_worker_survives,
        ),
        (
            "an_unregistered_function_is_a_clear_error",
            an_unregistered_function_is_a_clear_error,
        ),
        (
            "a_generic_instantiation_can_be_registered",
            a_generic_instantiation_can_be_registered,
        ),
        (
            "without_init_it_refuses_instead_of_starting_the_program_again",
            without_init_it_refuses_instead_of_starting_the_program_again,
        ),
        ("child_without_init", child_without_init),
        (
            "a_crash_names_the_signal_and_the_next_call_gets_a_new_worker",
            a_crash_names_the_signal_and_the_next_call_gets_a_new_worker,
        ),
        (
            "a_worker_killed_while_idle_is_replaced",
            a_worker_killed_while_idle_is_replaced,
        ),
        (
            "cancelling_kills_the_worker_within_10_ms",
            cancelling_kills_the_worker_within_10_ms,
        ),
        (
            "a_cancelled_wait_for_a_worker_takes_nothing",
            a_cancelled_wait_for_a_worker_takes_nothing,
        ),
        (
            "the_kernel_stays_responsive_and_the_pool_is_bounded",
            the_kernel_stays_responsive_and_the_pool_is_bounded,
        ),
        (
            "a_thousand_calls_leave_no_zombie_and_no_fd",
            a_thousand_calls_leave_no_zombie_and_no_fd,
        ),
    ];
    std::process::exit(harness(tests));
}

/// Runs the tests whose name matches the command line (a substring, or the
/// exact name with `--exact`) one after another, in libtest's format.
fn harness(tests: &[(&str, fn())]) -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        return 0;
    }
    if args.iter().any(|a| a == "--ignored") {
        // None of these tests is ignored.
        println!("\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed\n");
        return 0;
    }
    let exact = args.iter().any(|a| a == "--exact");
    let filter = args.iter().find(|a| !a.starts_with('-'));
    let chosen: Vec<_> = tests
        .iter()
        .filter(|(name, _)| match filter {
            None => true,
            Some(f) if exact => name == f,
            Some(f) => name.contains(f.as_str()),
        })
        .collect();
    let started = Instant::now();
    println!("\nrunning {} tests", chosen.len());
    let mut failed = Vec::new();
    for (name, test) in &chosen {
        let r = std::panic::catch_unwind(test);
        println!(
            "test {name} ... {}",
            if r.is_ok() { "ok" } else { "FAILED" }
        );
        if r.is_err() {
            failed.push(*name);
        }
    }
    if !failed.is_empty() {
        println!("\nfailures:");
        for name in &failed {
            println!("    {name}");
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed; 0 ignored; 0 measured; {} filtered out; \
         finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        chosen.len() - failed.len(),
        failed.len(),
        tests.len() - chosen.len(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() { 0 } else { 101 }
}

//! Task stacks at their limits: sizes out of range, running out of guarded
//! stacks, and memory coming back after a peak of tasks.

mod common;

use std::time::Duration;

use common::*;
use curio::{ErrorKind, Kernel};

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

const MIB: u64 = 1024 * 1024;

/// Recurses through `depth` frames of 1 KiB each, touching them.
#[inline(never)]
fn touch_stack(depth: u32) -> u64 {
    let frame = std::hint::black_box([u64::from(depth); 128]);
    if depth == 0 {
        return frame[0];
    }
    touch_stack(depth - 1).wrapping_add(frame[7])
}

// ---------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------

#[test]
fn a_stack_size_out_of_range_is_an_error_not_a_crash() {
    for bytes in [0, 1, 4096, usize::MAX, curio::MAX_STACK_SIZE + 1] {
        let e = Kernel::builder()
            .stack_size(bytes)
            .build()
            .run(|| ())
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage, "{bytes}: {e}");
        assert!(e.to_string().contains("task stack of"), "{e}");
    }
    run_virtual(|| {
        for bytes in [0, 1, usize::MAX, usize::MAX - 4095] {
            let e = curio::task::Builder::new()
                .stack_size(bytes)
                .spawn(|| ())
                .unwrap_err();
            assert_eq!(
                e.io_error().map(|io| io.kind()),
                Some(std::io::ErrorKind::InvalidInput),
                "{bytes}: {e}"
            );
        }
        // The edges are fine.
        for bytes in [curio::MIN_STACK_SIZE, curio::MAX_STACK_SIZE] {
            let t = curio::task::Builder::new()
                .stack_size(bytes)
                .spawn(|| 1)
                .unwrap();
            t.join().unwrap();
        }
    });
}

// ---------------------------------------------------------------------------
// Running out of guarded stacks (the mprotect fallback)
// ---------------------------------------------------------------------------

const MAPS_CHILD: &str = "CURIO_TEST_MAPS_CHILD";

/// Spawns sleeping tasks with `builder` until spawning fails, then carries
/// on: every task spawned runs up to its sleep (each got its stack), all are
/// cancelled, and spawning works again.
fn exhaust_stacks_and_go_on(builder: impl Fn() -> curio::task::Builder) {
    let mut tasks = Vec::new();
    let err = loop {
        match builder().spawn(|| curio::sleep(Duration::from_secs(3600))) {
            Ok(t) => tasks.push(t),
            Err(e) => break e,
        }
        if tasks.len() > 1_000_000 {
            panic!("no limit reached");
        }
    };
    eprintln!("spawned {} tasks, then: {err}", tasks.len());
    curio::yield_now().unwrap();
    assert!(tasks.iter().all(|t| t.state() == curio::State::TimeSleep));
    for t in &tasks {
        t.cancel_nowait();
    }
    for t in &tasks {
        t.wait().unwrap();
    }
    drop(tasks);
    // The stacks are free again: spawning works.
    let again = curio::spawn(|| 7);
    assert_eq!(again.join().unwrap(), 7);
    eprintln!("went on");
}

/// In the child (with `CURIO_GUARD_PAGES=mprotect`): tasks with a stack size
/// of their own, which take their stack at spawn.
#[test]
fn out_of_maps_child() {
    if !in_child(MAPS_CHILD) {
        return;
    }
    run_virtual(|| {
        exhaust_stacks_and_go_on(|| curio::task::Builder::new().stack_size(curio::MIN_STACK_SIZE));
    });
}

/// The same with the kernel's own stack size: a task of that size takes its
/// stack only when it first runs (issue 11, item 9), but spawn still fails
/// when no stack could be had for it, never the task later.
#[test]
fn out_of_maps_lazy_child() {
    if !in_child(MAPS_CHILD) {
        return;
    }
    let kernel = Kernel::builder().stack_size(curio::MIN_STACK_SIZE).build();
    kernel
        .run(|| exhaust_stacks_and_go_on(curio::task::Builder::new))
        .unwrap();
}

/// Runs the test `child` in a child process with mprotect-guarded stacks
/// and few mappings allowed; checks it succeeded and hit the mapping limit;
/// returns what it wrote to stderr.
fn run_out_of_maps_child(child: &str) -> String {
    let out = run_test_in_child_with(child, MAPS_CHILD, &[("CURIO_GUARD_PAGES", "mprotect")]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "child failed ({}):\n{stderr}",
        out.status
    );
    assert!(stderr.contains("vm.max_map_count"), "{stderr}");
    stderr
}

#[test]
fn running_out_of_stacks_for_tasks_not_yet_run_is_an_error_at_spawn() {
    let stderr = run_out_of_maps_child("out_of_maps_lazy_child");
    assert!(stderr.contains("spawned "), "{stderr}");
    assert!(stderr.contains("went on"), "{stderr}");
}

#[test]
fn running_out_of_mprotect_guarded_stacks_is_an_error_and_the_program_goes_on() {
    let stderr = run_out_of_maps_child("out_of_maps_child");
    assert!(
        stderr.contains("sysctl"),
        "the error says what to do:\n{stderr}"
    );
    assert!(stderr.contains("went on"), "{stderr}");
    // The start-up warning promises what was then achieved.
    let promised: usize = stderr
        .split("allows about ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no figure in the warning:\n{stderr}"));
    let spawned: usize = stderr
        .split("spawned ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count:\n{stderr}"));
    // Within 1% (main's own stack, and the test harness's own mappings).
    assert!(
        spawned * 100 >= promised * 99 && spawned <= promised + 1024,
        "the warning promised about {promised} tasks, {spawned} were spawned:\n{stderr}"
    );
}

// ---------------------------------------------------------------------------
// A stack at first run
// ---------------------------------------------------------------------------

/// The address of a local of the running task: where on which stack it runs.
#[inline(never)]
fn where_my_frame_is() -> usize {
    let x = 0u8;
    std::hint::black_box(&x) as *const u8 as usize
}

/// Issue 11, item 9: a task takes its stack when it first runs, not when it
/// is spawned. A batch spawned together and run one after another runs on
/// the stack the task before it has just given back (still in cache), not
/// on a thousand different ones.
#[test]
fn a_batch_of_tasks_run_one_after_another_reuses_one_stack() {
    run_virtual(|| {
        let tasks: Vec<_> = (0..1000).map(|_| curio::spawn(where_my_frame_is)).collect();
        let mut frames: Vec<usize> = tasks.iter().map(|t| t.join().unwrap()).collect();
        frames.dedup();
        assert_eq!(frames.len(), 1, "the batch ran on {} stacks", frames.len());
        // Tasks alive at once still each have their own.
        let sleepers: Vec<_> = (0..10)
            .map(|_| {
                curio::spawn(|| {
                    let at = where_my_frame_is();
                    curio::sleep(Duration::from_millis(1)).unwrap();
                    at
                })
            })
            .collect();
        let mut frames: Vec<usize> = sleepers.iter().map(|t| t.join().unwrap()).collect();
        frames.sort_unstable();
        frames.dedup();
        assert_eq!(frames.len(), 10);
    });
}

// ---------------------------------------------------------------------------
// Memory after a peak
// ---------------------------------------------------------------------------

/// Issue 9, item 7: after a peak of tasks has ended and the kernel goes idle,
/// the memory their stacks touched goes back to the operating system, beyond
/// the warm stacks the kernel keeps (`Builder::idle_stacks`).
#[test]
fn stack_memory_comes_back_after_a_peak_of_tasks() {
    watchdog(|| {
        Kernel::builder()
            .virtual_clock(true)
            .idle_stacks(64)
            .build()
            .run(|| {
                let before = rss();
                // 2 000 tasks each touch some 32 KiB of stack or more.
                let tasks: Vec<_> = (0..2000)
                    .map(|_| {
                        curio::spawn(|| {
                            touch_stack(32);
                            curio::sleep(Duration::from_millis(10))
                        })
                    })
                    .collect();
                curio::sleep(Duration::from_millis(1)).unwrap();
                let peak = rss();
                for t in &tasks {
                    t.join().unwrap().unwrap();
                }
                drop(tasks);
                curio::sleep(Duration::from_millis(1)).unwrap(); // the kernel idles
                let after = rss();
                eprintln!(
                    "RSS before {} MiB, peak {} MiB, after {} MiB",
                    before / MIB,
                    peak / MIB,
                    after / MIB
                );
                let grew = peak.saturating_sub(before);
                assert!(
                    grew > 60 * MIB,
                    "the peak was not a peak: {} MiB",
                    grew / MIB
                );
                let kept = after.saturating_sub(before);
                assert!(
                    kept < grew / 10,
                    "{} of the {} MiB the peak took stayed resident",
                    kept / MIB,
                    grew / MIB
                );
            })
            .unwrap();
    });
}

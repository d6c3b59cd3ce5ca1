//! A panic is never silent: a task's crash reaches stderr, with the task's name
//! and the message, also when the process aborts instead of unwinding (issue 9,
//! item 6). Each scenario runs the `task_crash` example as its own process.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::example;

fn run(bin: &Path, args: &[&str]) -> (Output, String) {
    let out = Command::new(bin)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run task_crash");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

#[test]
fn a_task_crash_is_reported_and_main_goes_on() {
    let (out, stderr) = run(&example("task_crash"), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}:\n{stderr}", out.status);
    assert!(
        stderr.contains("curio: task crash: Task(id=2, name='cruncher', state=RUNNING) panicked at examples/task_crash.rs:"),
        "{stderr}"
    );
    assert!(stderr.contains("index out of bounds"), "{stderr}");
    assert_eq!(
        stderr.matches("index out of bounds").count(),
        1,
        "reported once:\n{stderr}"
    );
    assert!(
        stdout.contains("cruncher failed: task panicked: index out of bounds"),
        "{stdout}"
    );
    assert!(stdout.contains("main goes on"), "{stdout}");
}

/// A destructor panics while the task unwinds: Rust aborts the process. Both
/// panics, and the task, are named before it does.
#[test]
fn a_panic_in_a_destructor_during_a_tasks_unwind_is_reported_before_the_abort() {
    let (out, stderr) = run(&example("task_crash"), &["in-drop"]);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "{}:\n{stderr}",
        out.status
    );
    assert!(stderr.contains("Task(id=2, name='cruncher'"), "{stderr}");
    assert!(stderr.contains("index out of bounds"), "{stderr}");
    assert!(
        stderr.contains("Fragile broke while being dropped"),
        "{stderr}"
    );
    assert!(
        stderr.contains("a destructor panicked while task 2 ('cruncher') was unwinding"),
        "{stderr}"
    );
}

/// The example built with `panic = "abort"` (the `panic-abort` profile in
/// Cargo.toml), in its own target directory.
fn panic_abort_build() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("panic-abort");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--profile",
            "panic-abort",
            "--example",
            "task_crash",
        ])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo");
    assert!(
        status.success(),
        "building task_crash with panic = \"abort\" failed"
    );
    target
        .join("panic-abort")
        .join("examples")
        .join("task_crash")
}

#[test]
fn with_panic_abort_a_task_crash_is_reported_before_the_abort() {
    let bin = panic_abort_build();
    let (out, stderr) = run(&bin, &[]);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "{}:\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains("curio: task crash: Task(id=2, name='cruncher', state=RUNNING) panicked at examples/task_crash.rs:"),
        "{stderr}"
    );
    assert!(stderr.contains("index out of bounds"), "{stderr}");
}

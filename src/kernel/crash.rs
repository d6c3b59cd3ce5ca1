//! Task crashes: a panic that ends a task is reported on stderr, once, naming
//! the task, and handed to its joiner; the kernel runs on.
//!
//! # Invariants
//!
//! - A panic inside a task that will unwind to the task boundary is kept quiet
//!   at the panic site (the hook captures where and why) and reported at the
//!   boundary as `curio: task crash: Task(id=3, name='kid', state=RUNNING)
//!   panicked at src/x.rs:9:5:` with the message and a backtrace (or how to
//!   get one).
//! - A panic that cannot reach the boundary (a `panic = "abort"` build, or a
//!   destructor panicking while a task unwinds, which aborts) is reported by
//!   the hook itself, before the process ends. A panic is never silent.
//! - Panics outside tasks, and in main (which resumes out of `run`), go to the
//!   hook that was installed before.
//! - A failure a task reports without panicking (a server's connection handler
//!   that returned an error) is printed the same way, as
//!   `curio: task crash: Task(…) failed:` and the failure on the next line.
//!
//! # Example
//!
//! ```text
//! curio: task crash: Task(id=2, name='cruncher', state=RUNNING) panicked at examples/task_crash.rs:38:17:
//! index out of bounds: the len is 3 but the index is 4
//! note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace
//! ```

use std::any::Any;
use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::RefCell;
use std::panic;
use std::sync::Once;

use super::core::{try_current_record, with_core};
use super::record::{TaskRecord, panic_message};

/// A panic in a task, captured by the hook for the crash report.
struct Captured {
    task: u64,
    location: String,
    message: String,
    backtrace: Backtrace,
}

/// How many captured panics a thread holds at most (older ones are dropped):
/// the one that is unwinding, one raised by a destructor meanwhile, and a few
/// that user code caught.
const CAPTURED_MAX: usize = 4;

thread_local! {
    /// Panics of tasks on this thread that have not reached the task boundary
    /// yet, oldest first.
    static LAST_PANIC: RefCell<Vec<Captured>> = const { RefCell::new(Vec::new()) };
}

/// What the runtime passes to the hook when a destructor panics while a panic
/// unwinds; the process aborts right after the hook returns.
const NESTED_PANIC: &str = "panic in a destructor during cleanup";

/// Installs (once per process) a panic hook for panics inside curio tasks.
///
/// A panic that will unwind to the task boundary is kept quiet at the panic
/// site: the kernel reports it there, once, as a task crash naming the task.
/// A panic that cannot get there is reported by the hook itself, at once, since
/// the process is about to abort: with `panic = "abort"`, and when a destructor
/// panics while a panic unwinds (the runtime then aborts; both panics are
/// reported). Panics elsewhere, and in main (which resumes out of `run`), go to
/// the hook that was installed before.
pub(super) fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let in_plain_task = try_current_record(|h| !h.is_main()).unwrap_or(false);
            if !in_plain_task {
                return previous(info);
            }
            let task = try_current_record(|h| h.id()).unwrap_or(0);
            let message = panic_message(info.payload());
            let captured = Captured {
                task,
                location: info.location().map(|l| l.to_string()).unwrap_or_default(),
                message,
                backtrace: Backtrace::capture(),
            };
            if cfg!(panic = "abort") {
                // Nothing will reach the task boundary: report now.
                let report = try_current_record(|h| crash_report(h, &captured)).unwrap_or_default();
                eprintln!("{report}");
                return;
            }
            if captured.message == NESTED_PANIC {
                // The process aborts after this hook: report what this task's
                // unwinding was about, and the destructor's own panic.
                let held: Vec<Captured> = LAST_PANIC.with(|p| std::mem::take(&mut *p.borrow_mut()));
                let mut report = String::new();
                try_current_record(|h| {
                    for c in held.iter().filter(|c| c.task == task) {
                        report.push_str(&crash_report(h, c));
                        report.push('\n');
                    }
                    report.push_str(&format!(
                        "curio: a destructor panicked while task {} ('{}') was unwinding; \
                         the process aborts",
                        h.id(),
                        h.name()
                    ));
                });
                eprintln!("{report}");
                return;
            }
            LAST_PANIC.with(|p| {
                let mut held = p.borrow_mut();
                held.retain(|c| c.task == task);
                if held.len() == CAPTURED_MAX {
                    held.remove(0);
                }
                held.push(captured);
            });
        }));
    });
}

/// `curio: task crash: Task(id=3, name='kid', state=RUNNING) panicked at src/x.rs:9:5:`
/// followed by the message and the backtrace (or how to get one).
fn crash_report(h: &TaskRecord, c: &Captured) -> String {
    let mut report = format!(
        "curio: task crash: {} panicked at {}:\n{}",
        h.describe(),
        c.location,
        c.message
    );
    match c.backtrace.status() {
        BacktraceStatus::Captured => {
            report.push_str(&format!("\nstack backtrace:\n{}", c.backtrace))
        }
        _ => report.push_str(
            "\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
        ),
    }
    report
}

pub(super) fn report_crash(h: &TaskRecord, payload: &(dyn Any + Send)) {
    // The panic that reached the boundary is the newest this task raised.
    let captured = LAST_PANIC.with(|p| {
        let mut held = p.borrow_mut();
        let last = held
            .iter()
            .rposition(|c| c.task == h.id())
            .map(|i| held.remove(i));
        held.retain(|c| c.task != h.id());
        last
    });
    if with_core(|core| core.is_unwinding()) {
        return; // a forced unwind at shutdown, not a crash
    }
    let report = match &captured {
        Some(c) => crash_report(h, c),
        None => format!(
            "curio: task crash: {} panicked:\n{}",
            h.describe(),
            panic_message(payload)
        ),
    };
    eprintln!("{report}");
    with_core(|core| core.note_crash(h, &report));
}

/// `curio: task crash: Task(id=7, name='…', state=RUNNING) failed:` and
/// `what` on the next line: a failure that ends a task's work without a
/// panic, reported as a crash is.
pub(super) fn report_failure(h: &TaskRecord, what: &str) {
    let report = format!("curio: task crash: {} failed:\n{what}", h.describe());
    eprintln!("{report}");
    // The debug hooks hear of it as of a panic (`Hook::crashed`).
    with_core(|core| core.note_crash(h, &report));
}

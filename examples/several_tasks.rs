//! The tutorial's "Tasks" section: a parent spawns a kid who builds the
//! Millenium Falcon in Minecraft, runs a countdown, then gives the kid ten
//! seconds to finish before cancelling them. The kid catches the cancellation
//! and saves their work.
//!
//! ```text
//! $ cargo run --example several_tasks
//! Building the Millenium Falcon in Minecraft
//! Let's go
//! T-minus 10
//! ...
//! T-minus 1
//! We're leaving!
//! I warned you!
//! Fine. Saving my work.
//! Leaving!
//! ```
//!
//! (It takes 25 seconds; `CURIO_CLOCK=virtual` runs it on the virtual clock, instantly.)
//!
//! With `--monitor` (or `CURIO_MONITOR=1`) it runs with the monitor on, as in
//! the tutorial's "Debugging" part: while the kid plays, in another terminal,
//!
//! ```text
//! $ cargo run --bin curio-monitor
//!
//! Curio Monitor: 2 tasks running
//! Type help for commands
//! curio > ps
//! Task   State        Cycles     Timeout       CPU       Stack       Task
//! ------ ------------ ---------- ------------- --------- ----------- ------------------
//! 1      TIME_SLEEP   1          sleep 3.21043 0.000     8K/256K     main
//! 2      TIME_SLEEP   1          sleep 998.210 0.000     8K/256K     several_tasks::kid
//! curio > where 2
//! Stack of Task(id=2, name='several_tasks::kid', state=TIME_SLEEP), most recent call first:
//!   [in curio::time::sleep: 3 runtime frames folded]
//!   several_tasks::kid
//!       at examples/several_tasks.rs:59:11
//!   [the task's start: 9 runtime frames folded]
//! curio > cancel 2
//! Cancelling task 2
//! ```
//!
//! and the kid says "Fine. Saving my work." at once.

use std::time::Duration;

fn countdown(mut n: u32) -> curio::Result<()> {
    while n > 0 {
        println!("T-minus {n}");
        curio::sleep(Duration::from_secs(1))?;
        n -= 1;
    }
    Ok(())
}

fn kid() -> curio::Result<()> {
    println!("Building the Millenium Falcon in Minecraft");
    match curio::sleep(Duration::from_secs(1000)) {
        Err(e) if e.is_cancelled() => {
            println!("Fine. Saving my work.");
            Ok(())
        }
        other => other,
    }
}

fn parent() -> curio::Result<()> {
    let kid_task = curio::spawn(kid);
    curio::sleep(Duration::from_secs(5))?;

    println!("Let's go");
    let count_task = curio::spawn(|| countdown(10));
    count_task.join_flatten()?;

    println!("We're leaving!");
    match curio::timeout_after(Duration::from_secs(10), || kid_task.join()) {
        Err(e) if e.is_timeout() => {
            println!("I warned you!");
            kid_task.cancel()?;
        }
        other => other??,
    }
    println!("Leaving!");
    Ok(())
}

fn main() -> curio::Result<()> {
    let mut kernel = curio::Kernel::builder();
    if std::env::args().any(|a| a == "--monitor") {
        kernel = kernel.with_monitor(true);
    }
    kernel.build().run(parent)?
}

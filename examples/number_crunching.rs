//! The tutorial's "Number Crunching and Blocking Operations" section: the kid's
//! exponential Fibonacci would hog the kernel, so each call runs in a worker
//! process with `run_in_process`, and the kernel stays responsive: the
//! parent's countdown keeps ticking, and cancelling the kid kills the worker
//! in the middle of its computation.
//!
//! With `--thread`, each call runs on a worker thread with `run_in_thread`
//! instead (the tutorial's other form): the kernel stays responsive just the
//! same, but a cancelled call's thread cannot be stopped and finishes its
//! Fibonacci number in the background (until the program exits).
//!
//! The parent says "Yes, go play" before the kid asks: spawning does not
//! switch, so the kid first runs when the parent sleeps, and finds the event
//! already set. The kid's results then come while the countdown ticks, once a
//! second, and the cancellation after "T-minus 1" stops it. Both forms print
//! the same lines; how far the kid gets depends on the machine and the build.
//! One run:
//!
//! ```text
//! $ cargo run --release --example number_crunching     # or: -- --thread
//! Yes, go play
//! Can I play?
//! Building the Millenium Falcon in Minecraft
//! fib(30) = 832040
//! ...
//! fib(40) = 102334155
//! Let's go
//! T-minus 3
//! fib(41) = 165580141
//! T-minus 2
//! fib(42) = 267914296
//! T-minus 1
//! fib(43) = 433494437
//! Fine. Saving my work. (total so far: 1133556901)
//! ```
//!
//! It takes four seconds. With `CURIO_CLOCK=virtual` the countdown does not
//! wait for real seconds, so the kid is cancelled after a few numbers.

use std::rc::Rc;
use std::time::Duration;

use curio::sync::Event;

fn fib(n: u64) -> u64 {
    if n <= 2 { 1 } else { fib(n - 1) + fib(n - 2) }
}

// What run_in_process may call: workers find `fib` by this registration.
curio::process_fn!(fib);

fn kid(start_evt: Rc<Event>, in_thread: bool) -> curio::Result<()> {
    println!("Can I play?");
    start_evt.wait()?;
    println!("Building the Millenium Falcon in Minecraft");
    let mut total = 0;
    for n in 30..50 {
        let r = if in_thread {
            curio::run_in_thread(move || fib(n))
        } else {
            curio::run_in_process(fib, n)
        };
        match r {
            Ok(f) => {
                println!("fib({n}) = {f}");
                total += f;
            }
            Err(e) if e.is_cancelled() => {
                println!("Fine. Saving my work. (total so far: {total})");
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn main() -> curio::Result<()> {
    // First thing: in a worker process this serves `fib` and never returns.
    curio::process::init();
    let in_thread = std::env::args().any(|a| a == "--thread");

    curio::run(|| {
        let start_evt = Rc::new(Event::new());
        let evt = start_evt.clone();
        let kid_task = curio::spawn(move || kid(evt, in_thread));
        println!("Yes, go play");
        start_evt.set();
        // The tutorial's parent waits here for SIGHUP (or the monitor's
        // `signal SIGHUP`: run with CURIO_MONITOR=1 and attach
        // `cargo run --bin curio-monitor`) instead of sleeping. With
        // run_in_process the kernel stays free to answer both while the kid
        // crunches: `ps` shows the kid in FUTURE_WAIT. With `--thread` too;
        // only a Fibonacci computed in the task itself would wedge the
        // kernel, and then the monitor says so ("kernel busy in task 2").
        curio::sleep(Duration::from_secs(1))?;
        println!("Let's go");
        for n in (1..=3).rev() {
            println!("T-minus {n}");
            curio::sleep(Duration::from_secs(1))?;
        }
        kid_task.cancel()?;
        kid_task.join()?
    })
}

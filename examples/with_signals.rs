//! The tutorial's "Signals" section: the parent lets the kid play until a
//! `SIGHUP` arrives, then counts down and cancels the kid.
//!
//! ```text
//! $ cargo run --example with_signals
//! Parent PID 36069
//! Can I play?
//! Wha!?!
//! ...
//! Can I play?
//! Yes, go play
//! Building the Millenium Falcon in Minecraft
//!                                   # in another terminal: kill -HUP 36069
//! Let's go
//! T-minus 10
//! ...
//! We're leaving!
//! I warned you!
//! Fine. Saving my work.
//! Leaving!
//! ```
//!
//! With `--monitor` (or `CURIO_MONITOR=1`) the monitor is on, and its
//! `signal SIGHUP` does what `kill -HUP` does (`cargo run --bin curio-monitor`,
//! then `ps`: the parent is in `SIGNAL_WAIT`, the kid in `TIME_SLEEP`).
//!
//! `SignalSet::new(&[SIGHUP])?.wait()` is the tutorial's
//! `await curio.SignalSet(signal.SIGHUP).wait()`: it watches for `SIGHUP` for
//! the length of that one wait. A `SIGHUP` sent before it ends the program, as
//! `SIGHUP` normally does; enter the set earlier (`let set = SignalSet::new(..)?`)
//! to have such a signal queued instead.
//!
//! Run it on the real clock. On the virtual clock (`CURIO_CLOCK=virtual`),
//! once the parent waits for the signal the kid's 1000-second sleep is the
//! only timer left and the clock jumps over it: the kid has stopped playing
//! before `SIGHUP` comes, and the story ends with "We're leaving!" and
//! "Leaving!" only.

use std::rc::Rc;
use std::time::Duration;

use curio::signal::{SIGHUP, SignalSet};
use curio::sync::Event;

fn countdown(mut n: u32) -> curio::Result<()> {
    while n > 0 {
        println!("T-minus {n}");
        curio::sleep(Duration::from_secs(1))?;
        n -= 1;
    }
    Ok(())
}

fn kid(start_evt: Rc<Event>) -> curio::Result<()> {
    loop {
        println!("Can I play?");
        match curio::timeout_after(Duration::from_secs(1), || start_evt.wait()) {
            Ok(()) => break,
            Err(e) if e.is_timeout() => println!("Wha!?!"),
            Err(e) => return Err(e),
        }
    }
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
    println!("Parent PID {}", std::process::id());
    let start_evt = Rc::new(Event::new());
    let evt = start_evt.clone();
    let kid_task = curio::spawn(move || kid(evt));
    curio::sleep(Duration::from_secs(5))?;

    println!("Yes, go play");
    start_evt.set();

    SignalSet::new(&[SIGHUP])?.wait()?;

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

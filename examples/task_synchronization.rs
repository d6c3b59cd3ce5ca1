//! The tutorial's "Task Synchronization" section: the kid must wait for the
//! parent's permission (an `Event`) before playing, and nags every second with
//! a timeout while waiting.
//!
//! ```text
//! $ cargo run --example task_synchronization
//! Can I play?
//! Wha!?!
//! ...
//! Can I play?
//! Yes, go play
//! Building the Millenium Falcon in Minecraft
//! Let's go
//! T-minus 10
//! ...
//! We're leaving!
//! I warned you!
//! Fine. Saving my work.
//! Leaving!
//! ```
//!
//! (It takes 30 seconds; `CURIO_CLOCK=virtual` runs it on the virtual clock, instantly.)

use std::rc::Rc;
use std::time::Duration;

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
    let start_evt = Rc::new(Event::new());
    let evt = start_evt.clone();
    let kid_task = curio::spawn(move || kid(evt));
    curio::sleep(Duration::from_secs(5))?;

    println!("Yes, go play");
    start_evt.set();
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
    curio::run(parent)
}

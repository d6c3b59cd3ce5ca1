//! The tutorial's "Number Crunching and Blocking Operations" section: the kid's
//! exponential Fibonacci would hog the kernel, so each call runs on a worker
//! thread with `run_in_thread` and the kernel stays responsive: the parent's
//! countdown keeps ticking and its cancellation still reaches the kid.
//!
//! ```text
//! $ cargo run --release --example number_crunching
//! Can I play?
//! Yes, go play
//! Building the Millenium Falcon in Minecraft
//! fib(30) = 832040
//! ...
//! Let's go
//! T-minus 3
//! ...
//! Fine. Saving my work.
//! ```

use std::rc::Rc;
use std::time::Duration;

use curio::sync::Event;

fn fib(n: u64) -> u64 {
    if n <= 2 { 1 } else { fib(n - 1) + fib(n - 2) }
}

fn kid(start_evt: Rc<Event>) -> curio::Result<()> {
    println!("Can I play?");
    start_evt.wait()?;
    println!("Building the Millenium Falcon in Minecraft");
    let mut total = 0;
    for n in 30..45 {
        match curio::run_in_thread(move || fib(n)) {
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
    curio::run(|| {
        let start_evt = Rc::new(Event::new());
        let evt = start_evt.clone();
        let kid_task = curio::spawn(move || kid(evt));
        println!("Yes, go play");
        start_evt.set();
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

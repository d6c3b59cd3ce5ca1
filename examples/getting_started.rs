//! The tutorial's first program: a task that prints a countdown while you wait
//! for your kid to put their shoes on.
//!
//! ```text
//! $ cargo run --example getting_started
//! T-minus 10
//! ...
//! T-minus 1
//! ```
//!
//! (It takes 10 seconds; `CURIO_CLOCK=virtual` runs it on the virtual clock, instantly.)

use std::time::Duration;

fn countdown(mut n: u32) -> curio::Result<()> {
    while n > 0 {
        println!("T-minus {n}");
        curio::sleep(Duration::from_secs(1))?;
        n -= 1;
    }
    Ok(())
}

fn main() -> curio::Result<()> {
    curio::run(|| countdown(10))
}

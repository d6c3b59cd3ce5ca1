//! What a crashing task looks like: a task panics, the kernel reports the
//! crash on stderr (task id, name, where, the message) and goes on, and the
//! task's joiner gets the panic as an error.
//!
//! ```text
//! cargo run --example task_crash            # the crash is reported, main goes on
//! cargo run --example task_crash -- in-drop # a destructor panics while the task unwinds
//! ```
//!
//! With `in-drop`, Rust aborts the process (a panic in a destructor during
//! unwinding), and with `panic = "abort"` in the build profile every panic
//! aborts; in both cases curio reports the crash before the process ends, so
//! the message and the task's name always reach stderr.

/// Panics when dropped.
struct Fragile;

impl Drop for Fragile {
    fn drop(&mut self) {
        panic!("Fragile broke while being dropped");
    }
}

fn main() {
    let in_drop = std::env::args().nth(1).as_deref() == Some("in-drop");
    curio::run(|| {
        let cruncher = curio::task::Builder::new()
            .name("cruncher")
            .spawn(move || {
                // Not `then_some`: that would build (and drop) a Fragile either way.
                let _fragile = if in_drop { Some(Fragile) } else { None };
                let numbers: Vec<u32> = vec![1, 2, 3];
                let i = numbers.len() + std::hint::black_box(1);
                numbers[i] // index out of bounds: the task panics
            })
            .expect("spawn");
        match cruncher.join() {
            Ok(v) => println!("cruncher returned {v}"),
            Err(e) => println!("cruncher failed: {e}"),
        }
        println!("main goes on");
    });
}

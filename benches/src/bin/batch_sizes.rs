//! Spawn + join in batches of several sizes, curio against tokio
//! current_thread in the same process, alternating: nanoseconds per task and
//! the ratio, for batches that fit in a core's cache and batches whose task
//! boxes must go to memory and back on any machine.
//!
//! ```text
//! batch_sizes [ROUNDS]   ROUNDS alternating rounds per size (default 7); medians
//! ```

use std::time::Duration;

use curio_benches::{curio_timed, loops, tokio_runtime};

/// `iters` tasks in batches of `batch`, in a curio kernel.
fn curio_batches(iters: u64, batch: u64) -> Duration {
    curio_timed(|| loops::curio_spawn_batches_of(iters, batch))
}

/// The same in tokio's `current_thread` runtime.
fn tokio_batches(rt: &tokio::runtime::Runtime, iters: u64, batch: u64) -> Duration {
    loops::tokio_spawn_batches_of(rt, iters, batch)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(7, |s| s.parse().expect("ROUNDS is a number"));
    let rt = tokio_runtime(false);
    println!("batch      curio ns/task  tokio ns/task  tokio/curio");
    for batch in [1_000u64, 10_000, 100_000, 1_000_000] {
        // At least two batches and about two million tasks per measurement.
        let iters = (2_000_000 / batch).max(2) * batch;
        // Warm both up: the free lists, the allocator, the page tables.
        curio_batches(batch, batch);
        tokio_batches(&rt, batch, batch);
        let (mut c, mut t) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            c.push(curio_batches(iters, batch).as_nanos() as f64 / iters as f64);
            t.push(tokio_batches(&rt, iters, batch).as_nanos() as f64 / iters as f64);
        }
        let (c, t) = (median(c), median(t));
        println!("{batch:>9}  {c:>13.1}  {t:>13.1}  {:>10.2}", t / c);
    }
}

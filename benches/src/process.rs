//! The subprocess and signal loops measured by `benches/process.rs` and the
//! `process_rounds` binary: spawn + wait of `/bin/true`, and the time from
//! `kill(2)` to a waiting task's wake-up, for curio and its peers.
//!
//! The latency loops use different signals for curio (`SIGUSR1`) and tokio
//! (`SIGUSR2`): tokio registers its action through signal-hook too, and a
//! signal curio has given back to its default action would end the process
//! when tokio's turn came (see `arch-notes/signals.md`).

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::curio_timed;

/// A tokio `current_thread` runtime with every driver (I/O, signals, processes, time).
pub fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio current_thread runtime")
}

/// `iters` times: start `/bin/true` with `std::process` and wait (blocking).
pub fn std_true(iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        let s = std::process::Command::new("/bin/true").status().unwrap();
        black_box(s);
    }
    start.elapsed()
}

/// `iters` times: start `/bin/true` with curio's `Command::status`, from a task.
pub fn curio_true(iters: u64) -> Duration {
    curio_timed(|| {
        for _ in 0..iters {
            let s = curio::subprocess::Command::new("/bin/true")
                .status()
                .unwrap();
            black_box(s);
        }
    })
}

/// `iters` times: start `/bin/true` with `tokio::process` and await its status.
pub fn tokio_true(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    rt.block_on(async move {
        let start = Instant::now();
        for _ in 0..iters {
            let s = tokio::process::Command::new("/bin/true")
                .status()
                .await
                .unwrap();
            black_box(s);
        }
        start.elapsed()
    })
}

/// The sending side of the latency loop: `iters` times, waits until the task
/// says it is about to wait, lets it park, records the time and sends `sig`.
fn sender(iters: u64, sig: i32, armed: Arc<AtomicBool>, sent: Arc<Mutex<Instant>>) {
    for _ in 0..iters {
        while !armed.swap(false, Ordering::AcqRel) {
            std::hint::spin_loop();
        }
        std::thread::sleep(Duration::from_micros(200));
        *sent.lock().unwrap() = Instant::now();
        curio::signal::send(std::process::id(), sig).unwrap();
    }
}

/// Total time from `kill(2)` (by another thread) to a task waiting in
/// `SignalSet::wait` running again, over `iters` signals (`SIGUSR1`).
pub fn curio_latency(iters: u64) -> Duration {
    let armed = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(Instant::now()));
    let set = curio::signal::SignalSet::new(&[curio::signal::SIGUSR1]).unwrap();
    let (a, s) = (armed.clone(), sent.clone());
    let t = std::thread::spawn(move || sender(iters, curio::signal::SIGUSR1, a, s));
    let total = curio::run(|| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            armed.store(true, Ordering::Release);
            set.wait().unwrap();
            total += sent.lock().unwrap().elapsed();
        }
        total
    });
    t.join().unwrap();
    total
}

/// As [`curio_latency`], for a tokio task awaiting `Signal::recv` (`SIGUSR2`).
pub fn tokio_latency(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    use tokio::signal::unix::{SignalKind, signal};
    let armed = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(Instant::now()));
    let (a, s) = (armed.clone(), sent.clone());
    rt.block_on(async move {
        let mut sig = signal(SignalKind::user_defined2()).unwrap();
        let t = std::thread::spawn(move || sender(iters, libc::SIGUSR2, a, s));
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            armed.store(true, Ordering::Release);
            sig.recv().await.unwrap();
            total += sent.lock().unwrap().elapsed();
        }
        t.join().unwrap();
        total
    })
}

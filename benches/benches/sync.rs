//! Synchronization and the thread bridge: curio against its peers, same run.
//!
//! - `event_pingpong`: two tasks hand control back and forth through two events
//!   (ns per round trip). Peers: tokio current_thread with `Notify`,
//!   std threads with a `Mutex` + `Condvar` pair. (`may`'s channels are in the
//!   queue group.)
//! - `queue_pingpong`: the same through two queues. Peers: tokio `mpsc`
//!   (unbounded), `may` channels (one worker), std `mpsc` between two threads.
//! - `run_in_thread`: a tiny closure sent to the thread pool and back. Peer:
//!   tokio's `spawn_blocking`.
//! - `lock_uncontended`: `Lock::acquire` plus release of a free lock.

use std::hint::black_box;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use curio::sync::Lock;

use curio_benches::{criterion_config, curio_timed, loops, may_one_worker, may_run};

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime")
}

fn curio_event_pingpong(n: u64) -> Duration {
    curio_timed(|| loops::curio_event_pingpong(n))
}

fn tokio_notify_pingpong(n: u64) -> Duration {
    tokio_rt().block_on(async move {
        let (a, b) = (
            Arc::new(tokio::sync::Notify::new()),
            Arc::new(tokio::sync::Notify::new()),
        );
        let (a2, b2) = (a.clone(), b.clone());
        let start = Instant::now();
        let peer = tokio::spawn(async move {
            for _ in 0..n {
                a2.notified().await;
                b2.notify_one();
            }
        });
        for _ in 0..n {
            a.notify_one();
            b.notified().await;
        }
        peer.await.unwrap();
        start.elapsed()
    })
}

fn std_condvar_pingpong(n: u64) -> Duration {
    // state: 0 = ping's turn, 1 = pong's turn.
    let shared = Arc::new((Mutex::new(0u8), Condvar::new()));
    let s2 = shared.clone();
    let start = Instant::now();
    let t = std::thread::spawn(move || {
        let (m, c) = &*s2;
        for _ in 0..n {
            let mut g = c.wait_while(m.lock().unwrap(), |s| *s != 1).unwrap();
            *g = 0;
            c.notify_one();
        }
    });
    let (m, c) = &*shared;
    for _ in 0..n {
        let mut g = m.lock().unwrap();
        *g = 1;
        c.notify_one();
        drop(c.wait_while(g, |s| *s != 0).unwrap());
    }
    t.join().unwrap();
    start.elapsed()
}

fn curio_queue_pingpong(n: u64) -> Duration {
    curio_timed(|| loops::curio_queue_pingpong(n))
}

fn tokio_mpsc_pingpong(n: u64) -> Duration {
    tokio_rt().block_on(async move {
        let (tx1, mut rx1) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let (tx2, mut rx2) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let start = Instant::now();
        let peer = tokio::spawn(async move {
            for _ in 0..n {
                let v = rx1.recv().await.unwrap();
                tx2.send(v).unwrap();
            }
        });
        for i in 0..n {
            tx1.send(i).unwrap();
            black_box(rx2.recv().await.unwrap());
        }
        peer.await.unwrap();
        start.elapsed()
    })
}

fn may_channel_pingpong(n: u64) -> Duration {
    may_one_worker();
    may_run(move || {
        let (tx1, rx1) = may::sync::mpsc::channel::<u64>();
        let (tx2, rx2) = may::sync::mpsc::channel::<u64>();
        let start = Instant::now();
        // SAFETY (may's API): the coroutine uses no thread-local storage.
        let peer = unsafe {
            may::coroutine::spawn(move || {
                for _ in 0..n {
                    let v = rx1.recv().unwrap();
                    tx2.send(v).unwrap();
                }
            })
        };
        for i in 0..n {
            tx1.send(i).unwrap();
            black_box(rx2.recv().unwrap());
        }
        peer.join().unwrap();
        start.elapsed()
    })
}

fn std_mpsc_pingpong(n: u64) -> Duration {
    let (tx1, rx1) = std::sync::mpsc::channel::<u64>();
    let (tx2, rx2) = std::sync::mpsc::channel::<u64>();
    let start = Instant::now();
    let t = std::thread::spawn(move || {
        for _ in 0..n {
            let v = rx1.recv().unwrap();
            tx2.send(v).unwrap();
        }
    });
    for i in 0..n {
        tx1.send(i).unwrap();
        black_box(rx2.recv().unwrap());
    }
    t.join().unwrap();
    start.elapsed()
}

fn curio_run_in_thread(n: u64) -> Duration {
    curio::run(|| {
        let start = Instant::now();
        for i in 0..n {
            black_box(curio::run_in_thread(move || i + 1).unwrap());
        }
        start.elapsed()
    })
}

fn tokio_spawn_blocking(n: u64) -> Duration {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async move {
            let start = Instant::now();
            for i in 0..n {
                black_box(tokio::task::spawn_blocking(move || i + 1).await.unwrap());
            }
            start.elapsed()
        })
}

fn curio_lock_uncontended(n: u64) -> Duration {
    curio::run(|| {
        let lock = Lock::new();
        let start = Instant::now();
        for _ in 0..n {
            let guard = black_box(lock.acquire().unwrap());
            drop(guard); // release: the measured pair is acquire + release
        }
        start.elapsed()
    })
}

/// Round trips per criterion iteration: large, so kernel start-up is amortised.
const ROUNDS: u64 = 20_000;

fn bench(c: &mut Criterion) {
    type Peer = (&'static str, fn(u64) -> Duration);
    let groups: [(&str, u64, Vec<Peer>); 4] = [
        (
            "event_pingpong",
            ROUNDS,
            vec![
                ("curio/event", curio_event_pingpong),
                ("tokio/notify", tokio_notify_pingpong),
                ("std_thread/condvar", std_condvar_pingpong),
            ],
        ),
        (
            "queue_pingpong",
            ROUNDS,
            vec![
                ("curio/queue", curio_queue_pingpong),
                ("tokio/mpsc", tokio_mpsc_pingpong),
                ("may/mpsc", may_channel_pingpong),
                ("std_thread/mpsc", std_mpsc_pingpong),
            ],
        ),
        (
            "run_in_thread",
            2_000,
            vec![
                ("curio/run_in_thread", curio_run_in_thread),
                ("tokio/spawn_blocking", tokio_spawn_blocking),
            ],
        ),
        (
            "lock_uncontended",
            1_000_000,
            vec![("curio/lock", curio_lock_uncontended)],
        ),
    ];
    for (name, per_iter, peers) in groups {
        let mut g = c.benchmark_group(name);
        for (peer, f) in peers {
            g.bench_function(peer, |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += f(per_iter);
                    }
                    total / per_iter as u32
                })
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = bench
}
criterion_main!(benches);

//! Spawn + wait of `/bin/true`, and `kill(2)` to wake-up latency, with the
//! peers interleaved: each round runs every peer once, in a rotating order, so
//! that the machine's drift (other work on a shared VM) falls on all peers
//! alike. Prints each peer's median over the rounds and its ratio to tokio.
//!
//! ```text
//! process_rounds [ROUNDS] [CHILDREN] [SIGNALS]   defaults: 15 rounds, 200 children, 300 signals per round
//! ```

use std::time::Duration;

use curio_benches::process::{
    curio_latency, curio_true, std_true, tokio_latency, tokio_rt, tokio_true,
};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn report(what: &str, unit: &str, names: &[&str], samples: &mut [Vec<f64>]) {
    println!("{what} (median of {} rounds)", samples[0].len());
    let meds: Vec<f64> = samples.iter_mut().map(|s| median(s)).collect();
    let tokio = meds[names.iter().position(|n| n.starts_with("tokio")).unwrap()];
    for ((name, m), s) in names.iter().zip(&meds).zip(samples.iter()) {
        let (lo, hi) = (s[0], s[s.len() - 1]);
        println!(
            "  {name:<22} {m:>10.1} {unit}   {:.3} x tokio   (rounds from {lo:.1} to {hi:.1})",
            m / tokio
        );
    }
}

fn per(d: Duration, n: u64, scale: f64) -> f64 {
    d.as_secs_f64() * scale / n as f64
}

fn main() {
    let arg = |i: usize, default: u64| {
        std::env::args()
            .nth(i)
            .map_or(default, |a| a.parse().expect("a number"))
    };
    let (rounds, children, signals) = (arg(1, 15), arg(2, 200), arg(3, 300));
    let rt = tokio_rt();

    let names = ["std", "curio", "tokio/current_thread"];
    let mut spawn: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let latency_names = ["curio", "tokio/current_thread"];
    let mut latency: Vec<Vec<f64>> = vec![Vec::new(); 2];
    for round in 0..rounds as usize {
        for k in 0..3 {
            let peer = (round + k) % 3;
            let d = match peer {
                0 => std_true(children),
                1 => curio_true(children),
                _ => tokio_true(&rt, children),
            };
            spawn[peer].push(per(d, children, 1e6));
        }
        for k in 0..2 {
            let peer = (round + k) % 2;
            let d = match peer {
                0 => curio_latency(signals),
                _ => tokio_latency(&rt, signals),
            };
            latency[peer].push(per(d, signals, 1e6));
        }
    }
    report(
        "spawn + wait of /bin/true, per child",
        "µs",
        &names,
        &mut spawn,
    );
    report(
        "kill(2) to the waiting task's wake-up",
        "µs",
        &latency_names,
        &mut latency,
    );
}

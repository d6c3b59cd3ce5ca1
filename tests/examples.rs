//! The tutorial's programs, run as a user would run them, with their output
//! compared line by line to what the tutorial shows. They run on the virtual
//! clock (`CURIO_CLOCK=virtual`), so the 25-second stories take milliseconds.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The compiled example `name` (cargo builds examples for `cargo test`).
fn example(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary path");
    dir.pop(); // the test binary
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "example binary {} not built; run `cargo build --examples`",
        path.display()
    );
    path
}

/// Runs an example on the virtual clock and returns its stdout lines.
fn run_virtual(name: &str) -> Vec<String> {
    let start = Instant::now();
    let out = Command::new(example(name))
        .env("CURIO_CLOCK", "virtual")
        .output()
        .expect("run example");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{name} took too long"
    );
    assert!(
        out.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn countdown(from: u32) -> Vec<String> {
    (1..=from).rev().map(|n| format!("T-minus {n}")).collect()
}

#[test]
fn getting_started_prints_the_countdown() {
    assert_eq!(run_virtual("getting_started"), countdown(10));
}

#[test]
fn several_tasks_matches_the_tutorial() {
    let mut expected = vec![
        "Building the Millenium Falcon in Minecraft".to_string(),
        "Let's go".into(),
    ];
    expected.extend(countdown(10));
    expected.extend(
        [
            "We're leaving!",
            "I warned you!",
            "Fine. Saving my work.",
            "Leaving!",
        ]
        .map(String::from),
    );
    assert_eq!(run_virtual("several_tasks"), expected);
}

//! The tutorial's programs, run as a user would run them, with their output
//! compared line by line to what the tutorial shows. They run on the virtual
//! clock (`CURIO_CLOCK=virtual`), so the 25-second stories take milliseconds.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::example;

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

/// The ending `several_tasks` and `task_synchronization` share: the parent's
/// timeout expires, it cancels the kid, and the kid saves its work.
fn timeout_then_cancel_ending() -> Vec<String> {
    [
        "We're leaving!",
        "I warned you!",
        "Fine. Saving my work.",
        "Leaving!",
    ]
    .map(String::from)
    .to_vec()
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
    expected.extend(timeout_then_cancel_ending());
    assert_eq!(run_virtual("several_tasks"), expected);
}

#[test]
fn task_synchronization_matches_the_tutorial() {
    let mut expected = Vec::new();
    for _ in 0..4 {
        expected.extend(["Can I play?", "Wha!?!"].map(String::from));
    }
    expected.extend(
        [
            "Can I play?",
            "Yes, go play",
            "Building the Millenium Falcon in Minecraft",
            "Let's go",
        ]
        .map(String::from),
    );
    expected.extend(countdown(10));
    expected.extend(timeout_then_cancel_ending());
    assert_eq!(run_virtual("task_synchronization"), expected);
}

#[test]
fn intertask_communication_hands_every_item_over_then_the_producer_finishes() {
    let mut expected: Vec<String> = (0..10)
        .map(|n| format!("consumer {} got {n}", n % 2 + 1))
        .collect();
    expected.push("Producer done".into());
    assert_eq!(run_virtual("intertask_communication"), expected);
}

/// Tests that need this test process to react within milliseconds
/// (`with_signals`) do not run while `number_crunching` keeps both CPUs busy.
static CPU_HOG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The real clock here: the point is that the kernel keeps ticking while the
/// worker threads crunch, and that cancellation reaches the kid in its wait.
#[test]
fn number_crunching_keeps_the_kernel_responsive() {
    let _hog = CPU_HOG.lock().unwrap_or_else(|e| e.into_inner());
    let start = Instant::now();
    let out = Command::new(example("number_crunching"))
        .arg("--thread")
        .output()
        .expect("run example");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    check_number_crunching(&lines);
    // Cancelled after ~4 s although fib(44) would take far longer.
    assert!(start.elapsed() < Duration::from_secs(15));
}

/// The order the tutorial shows: the kid builds while the countdown ticks, and
/// the cancellation after the countdown reaches it.
fn check_number_crunching(lines: &[String]) {
    let pos = |s: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(s))
            .unwrap_or_else(|| panic!("no {s:?} in {lines:?}"))
    };
    assert!(pos("Building") < pos("Let's go"));
    assert!(pos("T-minus 3") < pos("T-minus 2") && pos("T-minus 2") < pos("T-minus 1"));
    assert!(pos("T-minus 1") < pos("Fine. Saving my work."));
    assert!(lines.iter().any(|l| l == "fib(30) = 832040"), "{lines:?}");
}

/// The children of process `pid` (its `run_in_process` workers).
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// The tutorial's form: the Fibonacci numbers are computed in a worker
/// process while the countdown ticks, and cancelling the kid kills that
/// worker in the middle of fib(4x): by the time the kid says it saves its
/// work, the worker is gone.
#[test]
fn number_crunching_in_a_process_is_killed_when_the_kid_is_cancelled() {
    use std::io::BufRead;
    let start = Instant::now();
    let mut child = Command::new(example("number_crunching"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run example");
    let pid = child.id();
    let mut lines = Vec::new();
    let mut workers_during = 0;
    let mut workers_after_cancel = None;
    let mut when = std::collections::HashMap::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.starts_with("T-minus") {
            workers_during = workers_during.max(children_of(pid).len());
        }
        if line.starts_with("Fine. Saving my work.") {
            workers_after_cancel = Some(children_of(pid));
        }
        when.insert(
            line.split(' ').next().unwrap_or("").to_string(),
            start.elapsed(),
        );
        lines.push(line);
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "too slow: {lines:?}"
        );
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    check_number_crunching(&lines);
    assert_eq!(
        workers_during, 1,
        "one worker crunched during the countdown"
    );
    assert_eq!(
        workers_after_cancel,
        Some(vec![]),
        "the worker was killed and reaped when the kid was cancelled"
    );
    // The countdown ticked on time while the worker crunched: three ticks a
    // second apart, and the cancellation a second after the last.
    let t = |w: &str| when[w];
    assert!(
        t("Fine.") - t("Let's") < Duration::from_millis(3900),
        "{when:?}"
    );
}

/// Runs `with_signals` on the virtual clock, sending it `SIGHUP` (with
/// `kill(2)`, from this process, as `kill -HUP PID` would) as soon as the kid
/// starts playing; returns its output after the PID line.
fn with_signals_run() -> Vec<String> {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = Command::new(example("with_signals"))
        .env("CURIO_CLOCK", "virtual")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run example");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a first line").unwrap();
    assert_eq!(first, format!("Parent PID {}", child.id()));
    let mut rest = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let playing = line == "Building the Millenium Falcon in Minecraft";
        rest.push(line);
        if playing {
            curio::signal::send(child.id(), curio::signal::SIGHUP).unwrap();
            break;
        }
    }
    rest.extend(lines.map(Result::unwrap));
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "with_signals failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    rest
}

/// The tutorial's "Signals": the kid plays until `SIGHUP` arrives, then the
/// parent counts down and cancels the kid.
///
/// Discussion: while the parent waits for the signal, the kid's 1000-second
/// sleep is the only deadline. A virtual clock waits 5 ms of real time for
/// the outside world before it jumps to a deadline (the kernel's
/// `AUTOJUMP_GRACE`), so the signal must land within 5 ms of the kid's
/// "Building ..." line, or the kid finishes playing before it: a run whose
/// output is exactly that story ("We're leaving!" then "Leaving!", nothing to
/// cancel) was slow, not wrong, and is run again, up to three times. Any other
/// output fails at once. The test never runs beside the CPU-bound
/// `number_crunching`.
#[test]
fn with_signals_matches_the_tutorial_when_sighup_arrives() {
    let _quiet = CPU_HOG.lock().unwrap_or_else(|e| e.into_inner());
    let mut expected = Vec::new();
    for _ in 0..4 {
        expected.extend(["Can I play?", "Wha!?!"].map(String::from));
    }
    expected.extend(
        [
            "Can I play?",
            "Yes, go play",
            "Building the Millenium Falcon in Minecraft",
            "Let's go",
        ]
        .map(String::from),
    );
    expected.extend(countdown(10));
    let mut too_late = expected.clone();
    too_late.extend(["We're leaving!", "Leaving!"].map(String::from));
    expected.extend(timeout_then_cancel_ending());
    for attempt in 1..=3 {
        let got = with_signals_run();
        if got == too_late && attempt < 3 {
            eprintln!("with_signals: the SIGHUP landed after the virtual clock jumped; again");
            continue;
        }
        assert_eq!(got, expected, "attempt {attempt}");
        return;
    }
}

/// `simple_subprocess` prints each line of its command's output as it comes,
/// not when the command ends.
#[test]
fn simple_subprocess_follows_the_output_as_it_comes() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let start = Instant::now();
    let mut child = Command::new(example("simple_subprocess"))
        .args(["sh", "-c", "echo one; sleep 1; echo two"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run example");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "Got: one");
    let first = start.elapsed();
    assert_eq!(lines.next().unwrap().unwrap(), "Got: two");
    let second = start.elapsed();
    assert!(child.wait().unwrap().success());
    assert!(
        first < Duration::from_millis(800) && second >= Duration::from_millis(900),
        "the first line came after {first:?}, the second after {second:?}"
    );
}

#[test]
fn subprocess_check_output_prints_the_output_or_says_it_failed() {
    let run = |args: &[&str]| {
        let out = Command::new(example("subprocess_check_output"))
            .args(args)
            .output()
            .expect("run example");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(
        run(&["echo", "hello", "world"]),
        (true, "hello world\n".into(), String::new())
    );
    let (ok, out, _) = run(&["sh", "-c", "echo partial; exit 3"]);
    assert!(ok);
    assert_eq!(
        out,
        "It failed! command failed: `sh -c echo partial; exit 3` exited with status 3; \
         its status and output are in Error::output()\n"
    );
    let (ok, _, err) = run(&["curio-no-such-command"]);
    assert!(!ok);
    assert!(
        err.contains("cannot run `curio-no-such-command`: command not found"),
        "{err}"
    );
}

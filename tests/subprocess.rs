//! Subprocesses: exit statuses, a command that does not exist, a child killed
//! by a signal, 10 MB each way at once without a deadlock, output followed as
//! it comes, pipelines, and every blocking call (`wait`, `communicate`, `run`,
//! `output`, `check_output`, `status`) cancelled and timed out: the child is
//! killed and reaped, the output read so far is kept. 1 000 children in a row
//! leave no zombie and no fd behind (checked in `/proc`), and the same checks
//! (with 300 children) run again with `CURIO_NO_PIDFD=1` (the `SIGCHLD` path).
//!
//! Tests here count this process's fds and children, so they take one lock
//! and run one at a time. Real clock: the children are real.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use curio::ErrorKind;
use curio::subprocess::{Child, Command, Stdio};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Tests count this process's fds and children: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// This process's child processes, with their state letter (`Z` for a zombie).
fn children() -> Vec<(u32, char)> {
    let me = std::process::id();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) S ppid ...": comm may hold spaces, so split after the ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let mut fields = rest.split(' ');
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: u32 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if ppid == me {
            out.push((pid, state));
        }
    }
    out
}

/// True if process `pid` is gone (reaped), not even a zombie.
fn reaped(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.args(["-c", script]);
    c
}

/// `n` bytes of a recognisable pattern.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A child that prints, then sleeps long: interrupted calls find output to keep.
const CHATTY_SLEEPER: &str = "echo partial; echo oops >&2; exec sleep 30";

// ---------------------------------------------------------------------------
// Statuses and errors
// ---------------------------------------------------------------------------

#[test]
fn exit_statuses_come_back_and_run_turns_failure_into_an_error_with_the_output() {
    let _g = serial();
    run_real(|| {
        assert!(Command::new("true").status().unwrap().success());
        assert_eq!(sh("exit 7").status().unwrap().code(), Some(7));

        let out = sh("echo out; echo err >&2; exit 3").output().unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");

        let e = sh("echo out; echo err >&2; exit 3").run().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProcessFailed);
        let msg = e.to_string();
        assert!(
            msg.contains("`sh -c echo out; echo err >&2; exit 3` exited with status 3"),
            "{msg}"
        );
        let out = e.output().expect("the failed command's output");
        assert_eq!(
            (out.status.code(), &out.stdout[..], &out.stderr[..]),
            (Some(3), &b"out\n"[..], &b"err\n"[..])
        );

        let ok = sh("echo fine").run().unwrap();
        assert_eq!(ok.stdout, b"fine\n");
        assert_eq!(
            Command::new("echo").arg("hi").check_output().unwrap(),
            b"hi\n"
        );
        let e = sh("echo half; exit 1").check_output().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProcessFailed);
        assert_eq!(e.output().unwrap().stdout, b"half\n");
    });
}

#[test]
fn a_command_that_does_not_exist_is_a_not_found_error_naming_it() {
    let _g = serial();
    run_real(|| {
        let before = children().len();
        let e = Command::new("curio-no-such-command")
            .arg("x")
            .spawn()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert_eq!(e.io_error().unwrap().kind(), std::io::ErrorKind::NotFound);
        let msg = e.to_string();
        assert!(
            msg.contains("`curio-no-such-command`") && msg.contains("command not found"),
            "{msg}"
        );
        // The same through the run-to-the-end calls.
        let e = Command::new("curio-no-such-command").run().unwrap_err();
        assert!(e.to_string().contains("curio-no-such-command"), "{e}");
        let e = Command::new("/etc/passwd").status().unwrap_err();
        assert!(e.to_string().contains("permission denied"), "{e}");
        assert_eq!(children().len(), before);
    });
}

#[test]
fn a_child_killed_by_a_signal_reports_the_signal() {
    let _g = serial();
    run_real(|| {
        let status = sh("kill -TERM $$").status().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        let e = sh("echo before; kill -TERM $$").run().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProcessFailed);
        assert!(e.to_string().contains("was killed by SIGTERM"), "{e}");
        assert_eq!(e.output().unwrap().stdout, b"before\n");

        // A child killed from here, while we wait for it.
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        curio::signal::send(pid, libc::SIGUSR1).unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGUSR1));
        assert!(reaped(pid));
    });
}

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

#[test]
fn ten_megabytes_out_and_err_while_ten_go_in_do_not_deadlock() {
    let _g = serial();
    run_real(|| {
        const MB10: usize = 10_000_000;
        let input = pattern(MB10);
        // `cat` echoes stdin to stdout while `head` fills stderr, at once: a
        // caller that wrote all input before reading would block forever.
        let mut child = sh("head -c 10000000 /dev/zero >&2 & cat; wait")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (out, err) = child.communicate(&input).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(out.len(), MB10);
        assert!(out == input, "stdout differs from stdin");
        assert_eq!(err.len(), MB10);
        assert!(err.iter().all(|&b| b == 0));

        // The same through `output` with `input`.
        let out = sh("cat; head -c 1000000 /dev/zero >&2")
            .input(pattern(3_000_000))
            .output()
            .unwrap();
        assert_eq!(out.stdout, pattern(3_000_000));
        assert_eq!(out.stderr.len(), 1_000_000);
    });
}

#[test]
fn output_is_followed_line_by_line_while_the_child_runs() {
    let _g = serial();
    run_real(|| {
        let mut child = sh("echo one; sleep 0.3; echo two")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let stdout = child.stdout.as_mut().unwrap();
        assert_eq!(stdout.readline().unwrap(), b"one\n");
        assert!(start.elapsed() < Duration::from_millis(250));
        assert_eq!(child.try_wait().unwrap(), None, "still running");
        let rest: Vec<Vec<u8>> = child
            .stdout
            .as_mut()
            .unwrap()
            .lines()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rest, [b"two\n".to_vec()]);
        assert!(child.wait().unwrap().success());
    });
}

#[test]
fn a_pipeline_passes_one_childs_stdout_to_the_next() {
    let _g = serial();
    run_real(|| {
        let mut first = Command::new("echo")
            .arg("hello")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let upper = Command::new("tr")
            .args(["a-z", "A-Z"])
            .stdin(first.stdout.take().unwrap())
            .check_output()
            .unwrap();
        assert_eq!(upper, b"HELLO\n");
        assert!(first.wait().unwrap().success());
    });
}

#[test]
fn communicate_tolerates_a_child_that_stops_reading_and_refuses_input_without_a_pipe() {
    let _g = serial();
    run_real(|| {
        let mut child = sh("exec 0<&-; echo done")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (out, _) = child.communicate(&pattern(1_000_000)).unwrap();
        assert_eq!(out, b"done\n");
        assert!(child.wait().unwrap().success());

        let mut child = Command::new("true").spawn().unwrap();
        let e = child.communicate(b"x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(e.to_string().contains("stdin is not a pipe"), "{e}");
        assert!(child.wait().unwrap().success());
    });
}

// ---------------------------------------------------------------------------
// Cancellation and timeouts
// ---------------------------------------------------------------------------

/// Checks an interrupted run-to-the-end call: the right error, the child
/// killed by SIGKILL and reaped, and what it had printed kept in the error.
#[track_caller]
fn check_killed_with_output(how: Interrupt, r: curio::Result<impl std::fmt::Debug>, err: bool) {
    let e = expect_interrupted(how, r);
    let out = e.output().expect("the output so far rides on the error");
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{how:?}");
    assert_eq!(out.stdout, b"partial\n", "{how:?}");
    let want_err: &[u8] = if err { b"oops\n" } else { b"" };
    assert_eq!(out.stderr, want_err, "{how:?}");
    assert!(
        children().is_empty(),
        "{how:?}: children left: {:?}",
        children()
    );
}

#[test]
fn run_output_and_check_output_interrupted_kill_and_reap_the_child_and_keep_its_output() {
    let _g = serial();
    run_real(|| {
        for how in BOTH {
            let (_, r) = interrupted(how, (), |_| sh(CHATTY_SLEEPER).run());
            check_killed_with_output(how, r, true);
            let (_, r) = interrupted(how, (), |_| sh(CHATTY_SLEEPER).output());
            check_killed_with_output(how, r, true);
            let (_, r) = interrupted(how, (), |_| {
                sh(CHATTY_SLEEPER).stderr(Stdio::null()).check_output()
            });
            check_killed_with_output(how, r, false); // stderr not captured
            // With input going in as well (three streams, two reader tasks).
            let (_, r) = interrupted(how, (), |_| sh(CHATTY_SLEEPER).input("in").output());
            check_killed_with_output(how, r, true);
        }
    });
}

#[test]
fn timeout_after_around_run_reports_the_timeout_with_the_output() {
    let _g = serial();
    run_real(|| {
        let start = Instant::now();
        let r = curio::timeout_after(ms(200), || sh(CHATTY_SLEEPER).run());
        check_killed_with_output(Interrupt::Timeout, r, true);
        assert!(start.elapsed() < Duration::from_secs(5));
        // An outer deadline seen inside an inner block keeps the output too.
        let r = curio::timeout_after(ms(100), || {
            curio::timeout_after(secs(20), || sh(CHATTY_SLEEPER).run())
        });
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
        assert_eq!(e.output().unwrap().stdout, b"partial\n");
    });
}

#[test]
fn wait_and_communicate_interrupted_kill_and_reap_the_child() {
    let _g = serial();
    run_real(|| {
        for how in BOTH {
            let child = sh(CHATTY_SLEEPER)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let pid = child.id();
            let (mut child, r) = interrupted(how, child, |c: &mut Child| c.wait());
            expect_interrupted(how, r);
            assert!(reaped(pid), "{how:?}: pid {pid} not reaped");
            assert_eq!(
                child.try_wait().unwrap().and_then(|s| s.signal()),
                Some(libc::SIGKILL)
            );
            // What it printed is still in its stdout.
            assert_eq!(
                child.stdout.as_mut().unwrap().read_all().unwrap(),
                b"partial\n"
            );

            let child = sh(CHATTY_SLEEPER)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let pid = child.id();
            let (_, r) = interrupted(how, child, |c: &mut Child| c.communicate(b"in"));
            check_killed_with_output(how, r, true);
            assert!(reaped(pid));

            let (_, r) = interrupted(how, (), |_| Command::new("sleep").arg("30").status());
            expect_interrupted(how, r);
            assert!(children().is_empty(), "{how:?}: {:?}", children());
        }
    });
}

// ---------------------------------------------------------------------------
// Nothing left behind
// ---------------------------------------------------------------------------

#[test]
fn a_dropped_child_is_killed_and_reaped_at_once() {
    let _g = serial();
    run_real(|| {
        let child = Command::new("sleep")
            .arg("30")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        drop(child);
        assert!(reaped(pid));
    });
    // Dropped after its kernel has ended, too.
    let gone = watchdog(|| {
        let kernel = curio::Kernel::builder().virtual_clock(false).build();
        let child = kernel
            .run(|| Command::new("sleep").arg("30").spawn().unwrap())
            .unwrap();
        let pid = child.id();
        drop(child);
        reaped(pid)
    });
    assert!(gone);
}

/// Spawns `n` short children in a row and checks, in `/proc`, that no child
/// and no fd is left. Also run by the `SIGCHLD` fallback child below.
fn children_in_a_row_leave_nothing(n: usize) {
    let fds = run_real(move || {
        // Warm up: the first spawn may set up lasting state (the signal
        // dispatcher's socket on the SIGCHLD path).
        assert!(Command::new("true").status().unwrap().success());
        let before = open_fds();
        for i in 0..n {
            let status = match i % 4 {
                0 => Command::new("true").status().unwrap(),
                1 => sh("exit 0").output().unwrap().status,
                2 => {
                    let mut c = Command::new("true").stdout(Stdio::piped()).spawn().unwrap();
                    c.wait().unwrap()
                }
                _ => {
                    // Dropped without a wait: killed and reaped.
                    drop(Command::new("sleep").arg("30").spawn().unwrap());
                    continue;
                }
            };
            assert!(status.success(), "child {i}: {status}");
        }
        (before, open_fds())
    });
    assert_eq!(fds.0, fds.1, "fds before and after {n} children");
    assert!(children().is_empty(), "children left: {:?}", children());
}

#[test]
fn a_thousand_children_in_a_row_leave_no_zombie_and_no_fd() {
    let _g = serial();
    children_in_a_row_leave_nothing(1000);
}

const FALLBACK_ENV: &str = "CURIO_SUBPROCESS_FALLBACK_CHILD";

/// In a child process with `CURIO_NO_PIDFD=1`: the same checks through `SIGCHLD`.
#[test]
fn sigchld_fallback_child() {
    if !in_child(FALLBACK_ENV) {
        return;
    }
    run_real(|| {
        assert_eq!(sh("exit 5").status().unwrap().code(), Some(5));
        let out = sh("echo x; exit 1").output().unwrap();
        assert_eq!((out.status.code(), &out.stdout[..]), (Some(1), &b"x\n"[..]));
        for how in BOTH {
            let (_, r) = interrupted(how, (), |_| sh(CHATTY_SLEEPER).run());
            check_killed_with_output(how, r, true);
        }
    });
    children_in_a_row_leave_nothing(300);
    println!("fallback ok");
}

#[test]
fn without_pidfds_waiting_falls_back_to_sigchld() {
    let _g = serial();
    let out = run_test_in_child_with(
        "sigchld_fallback_child",
        FALLBACK_ENV,
        &[("CURIO_NO_PIDFD", "1")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("fallback ok"),
        "the child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

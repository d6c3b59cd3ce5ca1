//! Signals sent for real, with `kill(2)` from this process to a child test
//! process (this binary re-run with one test selected): a burst of 1 000
//! realtime signals arrives whole and in order, a burst of 1 000 `SIGUSR1`s
//! may merge (POSIX) but its last one always arrives, dispositions come back
//! when the last set is dropped (`SIG_DFL` terminates again, `SIG_IGN`
//! ignores again), `SIGINT` with no set watching ends the process by `SIGINT`,
//! the ignore scope drops signals, and waits are cancel points in `SIGNAL_WAIT`.
//!
//! Every test that catches or raises a signal does it in a child process, so
//! the other tests of this binary are never disturbed. The child reports
//! through lines `@@word value` on its stdout (libtest may print other text
//! on the same line, so the marker is searched for, not the line's start).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::*;
use curio::signal::{self, SIGINT, SIGUSR1, SIGUSR2, SignalEvent, SignalSet};
use curio::{ErrorKind, State};

// ---------------------------------------------------------------------------
// The child-process harness
// ---------------------------------------------------------------------------

/// A child test process, its stdout as a stream of `@@` reports.
struct Kid {
    child: Child,
    reports: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Kid {
    /// Runs test `name` of this binary in a child with `env=mode`; with
    /// `ignoring`, the child starts with that signal set to `SIG_IGN` (as
    /// `nohup` does for `SIGHUP`).
    fn start(name: &str, env: &str, mode: &str, ignoring: Option<&str>) -> Kid {
        let exe = std::env::current_exe().unwrap();
        let test_args = [name, "--exact", "--nocapture", "--test-threads=1"];
        let mut cmd = match ignoring {
            None => Command::new(&exe),
            Some(sig) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("trap '' {sig}; exec \"$0\" \"$@\""))
                    .arg(&exe);
                c
            }
        };
        let mut child = cmd
            .args(test_args)
            .env(env, mode)
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the child test");
        let stdout = child.stdout.take().unwrap();
        let (tx, reports) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(i) = line.find("@@") {
                    if tx.send(line[i + 2..].to_string()).is_err() {
                        return;
                    }
                }
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        Kid {
            child,
            reports,
            stderr: Some(stderr),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next report, which must start with `word`; returns the rest.
    #[track_caller]
    fn expect(&mut self, word: &str) -> String {
        match self.reports.recv_timeout(watchdog_limit()) {
            Ok(r) => {
                let rest = r
                    .strip_prefix(word)
                    .unwrap_or_else(|| panic!("expected @@{word}, got @@{r}"));
                rest.trim().to_string()
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                panic!("no @@{word} from the child within {:?}", watchdog_limit());
            }
            Err(RecvTimeoutError::Disconnected) => {
                let (status, err) = self.finish();
                panic!("the child ended ({status}) before @@{word}:\n{err}");
            }
        }
    }

    /// Sends `sig` to the child (from this process: a real, external signal).
    fn send(&self, sig: i32) {
        signal::send(self.pid(), sig).unwrap();
    }

    /// Waits for the child to end; returns its status and stderr.
    fn finish(&mut self) -> (ExitStatus, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > watchdog_limit() {
                let _ = self.child.kill();
                panic!("the child did not end within {:?}", watchdog_limit());
            }
            thread::sleep(Duration::from_millis(5));
        };
        let err = self
            .stderr
            .take()
            .map(|h| h.join().unwrap())
            .unwrap_or_default();
        (status, err)
    }

    #[track_caller]
    fn expect_success(&mut self) {
        let (status, err) = self.finish();
        assert!(status.success(), "the child failed ({status}):\n{err}");
    }

    #[track_caller]
    fn expect_killed_by(&mut self, sig: i32) {
        let (status, err) = self.finish();
        assert_eq!(
            status.signal(),
            Some(sig),
            "the child should have died of signal {sig}; it ended with {status}:\n{err}"
        );
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prints a report for the parent.
fn report(what: impl std::fmt::Display) {
    println!("@@{what}");
}

/// Sleeps the child's thread (real time): a signal that should have ended the
/// process has this long to do it before the child says it survived.
fn linger() {
    thread::sleep(Duration::from_secs(5));
    report("survived");
}

// ---------------------------------------------------------------------------
// Bursts
// ---------------------------------------------------------------------------

const BURST_ENV: &str = "CURIO_SIGNAL_BURST_CHILD";

#[test]
fn burst_child() {
    if !in_child(BURST_ENV) {
        return;
    }
    let rt = signal::sigrtmin() + 1;
    run_real(move || {
        let set = SignalSet::new(&[rt, SIGUSR1]).unwrap();
        report("ready");
        // Realtime: every one of the 1 000, and not one more.
        let mut rts = 0;
        while rts < 1000 {
            match curio::timeout_after(secs(5), || set.wait()) {
                Ok(s) if s == rt => rts += 1,
                Ok(other) => panic!("unexpected signal {other}"),
                Err(e) if e.is_timeout() => break,
                Err(e) => panic!("{e}"),
            }
        }
        let extra = curio::ignore_after(ms(200), || set.wait()).unwrap();
        report(format!("rt {rts} extra {extra:?}"));
        // SIGUSR1: whatever the kernel did not merge, until quiet.
        let mut usr1s = 0;
        let mut patience = secs(5);
        while let Some(s) = curio::ignore_after(patience, || set.wait()).unwrap() {
            assert_eq!(s, SIGUSR1);
            usr1s += 1;
            patience = ms(300);
        }
        report(format!("usr1 {usr1s}"));
        // And one sent after the burst still arrives.
        let after = curio::timeout_after(secs(5), || set.wait()).unwrap();
        report(format!("after {after}"));
    });
}

/// Realtime signals are queued by the kernel, one per send, and curio loses
/// none: exactly 1 000 arrive. A standard signal sent again while still
/// pending is merged by the kernel (POSIX allows it), so of 1 000 `SIGUSR1`s
/// sent in a burst between 1 and 1 000 arrive, never more, and one sent after
/// the burst arrives as usual.
#[test]
fn a_burst_of_1000_signals_realtime_ones_arrive_whole_standard_ones_may_merge() {
    let mut kid = Kid::start("burst_child", BURST_ENV, "1", None);
    kid.expect("ready");
    let rt = signal::sigrtmin() + 1;
    for _ in 0..1000 {
        kid.send(rt);
    }
    assert_eq!(kid.expect("rt"), "1000 extra None");
    for _ in 0..1000 {
        kid.send(SIGUSR1);
    }
    let n: u32 = kid.expect("usr1").parse().unwrap();
    assert!((1..=1000).contains(&n), "{n} SIGUSR1s arrived");
    eprintln!("{n} of 1000 SIGUSR1s sent in a burst arrived separately");
    kid.send(SIGUSR1);
    assert_eq!(kid.expect("after"), SIGUSR1.to_string());
    kid.expect_success();
}

// ---------------------------------------------------------------------------
// Dispositions
// ---------------------------------------------------------------------------

const RESTORE_ENV: &str = "CURIO_SIGNAL_RESTORE_CHILD";

/// Bit `sig - 1` of a signal mask line of `/proc/self/status` (`SigIgn` …).
fn in_proc_mask(field: &str, sig: i32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap();
    let mask = u64::from_str_radix(line.trim(), 16).unwrap();
    mask & (1 << (sig - 1)) != 0
}

/// Catches one `sig` in a set, drops the set, and lingers.
fn catch_one_then_release(sig: i32) {
    run_real(move || {
        let set = SignalSet::new(&[sig]).unwrap();
        report("ready");
        assert_eq!(set.wait().unwrap(), sig);
        report("caught");
    });
    report("released");
}

#[test]
fn restore_child() {
    let Ok(mode) = std::env::var(RESTORE_ENV) else {
        return;
    };
    match mode.as_str() {
        "default" => {
            catch_one_then_release(SIGUSR1);
            linger();
        }
        "ignored" => {
            assert!(
                in_proc_mask("SigIgn", SIGUSR2),
                "started with SIGUSR2 ignored"
            );
            catch_one_then_release(SIGUSR2);
            run_real(|| {
                let marker = SignalSet::new(&[SIGUSR1]).unwrap();
                report("listening");
                assert_eq!(marker.wait().unwrap(), SIGUSR1);
            });
            thread::sleep(Duration::from_millis(200));
            report("alive");
        }
        "sigint_never_watched" => {
            // The machinery is up (a set came and went), but never for SIGINT.
            drop(SignalSet::new(&[SIGUSR1]).unwrap());
            report("ready");
            linger();
        }
        "sigint_after_a_set" => {
            catch_one_then_release(SIGINT);
            linger();
        }
        other => panic!("unknown mode {other}"),
    }
}

#[test]
fn after_the_last_set_a_default_signal_terminates_the_process_again() {
    let mut kid = Kid::start("restore_child", RESTORE_ENV, "default", None);
    kid.expect("ready");
    kid.send(SIGUSR1);
    kid.expect("caught");
    kid.expect("released");
    kid.send(SIGUSR1);
    kid.expect_killed_by(SIGUSR1);
}

#[test]
fn after_the_last_set_an_ignored_signal_is_ignored_again() {
    let mut kid = Kid::start("restore_child", RESTORE_ENV, "ignored", Some("USR2"));
    kid.expect("ready");
    kid.send(SIGUSR2);
    kid.expect("caught");
    kid.expect("released");
    kid.expect("listening");
    kid.send(SIGUSR2); // ignored, as before the set
    kid.send(SIGUSR1);
    kid.expect("alive");
    kid.expect_success();
}

#[test]
fn sigint_with_no_set_watching_ends_the_process_by_sigint() {
    let mut kid = Kid::start("restore_child", RESTORE_ENV, "sigint_never_watched", None);
    kid.expect("ready");
    kid.send(SIGINT);
    kid.expect_killed_by(SIGINT);

    let mut kid = Kid::start("restore_child", RESTORE_ENV, "sigint_after_a_set", None);
    kid.expect("ready");
    kid.send(SIGINT);
    kid.expect("caught");
    kid.expect("released");
    kid.send(SIGINT);
    kid.expect_killed_by(SIGINT);
}

// ---------------------------------------------------------------------------
// The ignore scope
// ---------------------------------------------------------------------------

const IGNORE_ENV: &str = "CURIO_SIGNAL_IGNORE_CHILD";

#[test]
fn ignore_child() {
    if !in_child(IGNORE_ENV) {
        return;
    }
    run_real(|| {
        let set = SignalSet::new(&[SIGUSR1]).unwrap();
        let marker = SignalSet::new(&[SIGUSR2]).unwrap();
        {
            let _ignoring = set.ignore();
            report("ignoring");
            // SIGUSR1 is lower-numbered: any pending one is handled first.
            assert_eq!(marker.wait().unwrap(), SIGUSR2);
        }
        assert_eq!(set.pending(), 0, "signals sent while ignoring were dropped");
        report("listening");
        assert_eq!(set.wait().unwrap(), SIGUSR1);
        curio::sleep(ms(100)).unwrap();
        report(format!("pending {}", set.pending()));
    });
}

#[test]
fn signals_sent_during_the_ignore_scope_are_dropped_then_caught_again() {
    let mut kid = Kid::start("ignore_child", IGNORE_ENV, "1", None);
    kid.expect("ignoring");
    for _ in 0..3 {
        kid.send(SIGUSR1);
    }
    // A process-directed signal may be handled by any of the kid's threads:
    // give the handlers time to run (and drop these) before the marker ends
    // the ignore scope, or one could land just after it.
    thread::sleep(Duration::from_millis(200));
    kid.send(SIGUSR2);
    kid.expect("listening");
    kid.send(SIGUSR1);
    assert_eq!(kid.expect("pending"), "0");
    kid.expect_success();
}

// ---------------------------------------------------------------------------
// Waiting: cancel points, several watchers, events (signals raised in-process)
// ---------------------------------------------------------------------------

const WAITS_ENV: &str = "CURIO_SIGNAL_WAITS_CHILD";

#[test]
fn waits_child() {
    if !in_child(WAITS_ENV) {
        return;
    }
    run_virtual(|| {
        let set = SignalSet::new(&[SIGUSR1, SIGUSR2]).unwrap();

        // A wait is a cancel point; interrupted, it takes nothing, and the
        // signal raised afterwards is the next wait's.
        for how in BOTH {
            let (set2, r) = interrupted(how, SignalSet::new(&[SIGUSR1]).unwrap(), |s| s.wait());
            expect_interrupted(how, r);
            signal::raise(SIGUSR1).unwrap();
            assert_eq!(set2.wait().unwrap(), SIGUSR1);
            assert_eq!(set2.pending(), 0);
        }
        // Waiting is SIGNAL_WAIT; the one-shot form watches for that wait only.
        let waiter = curio::spawn(|| SignalSet::new(&[signal::SIGWINCH])?.wait());
        until_state(&waiter, State::SignalWait);
        signal::raise(signal::SIGWINCH).unwrap();
        assert_eq!(waiter.join().unwrap().unwrap(), signal::SIGWINCH);

        // One waiter per set: a second task waiting at the same time is refused.
        let shared = std::rc::Rc::new(SignalSet::new(&[signal::SIGURG]).unwrap());
        let s2 = shared.clone();
        let first = curio::spawn(move || s2.wait());
        until_state(&first, State::SignalWait);
        let e = shared.wait().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ResourceBusy);
        signal::raise(signal::SIGURG).unwrap();
        assert_eq!(first.join().unwrap().unwrap(), signal::SIGURG);

        // Every set watching a signal gets it (`set` saw the two SIGUSR1s
        // above), in arrival order across signals.
        for s in [SIGUSR2, SIGUSR1, SIGUSR2] {
            signal::raise(s).unwrap();
        }
        let got: Vec<i32> = (0..5).map(|_| set.wait().unwrap()).collect();
        assert_eq!(got, [SIGUSR1, SIGUSR1, SIGUSR2, SIGUSR1, SIGUSR2]);
        assert_eq!(set.try_wait(), None);

        // An event: several deliveries before a wait amount to one.
        let ev = SignalEvent::new(&[SIGUSR2]).unwrap();
        assert!(!ev.is_set());
        for _ in 0..3 {
            signal::raise(SIGUSR2).unwrap();
        }
        ev.wait().unwrap();
        ev.clear();
        assert!(!ev.is_set());
        for how in BOTH {
            let (ev, r) = interrupted(how, SignalEvent::new(&[SIGUSR2]).unwrap(), |e| e.wait());
            expect_interrupted(how, r);
            assert!(!ev.is_set());
        }
        for _ in 0..3 {
            assert_eq!(set.wait().unwrap(), SIGUSR2);
        }

        // A set in another kernel, on another thread, gets the signal too.
        let (ready_tx, ready_rx) = mpsc::channel();
        let other = thread::spawn(move || {
            curio::run(|| {
                let set = SignalSet::new(&[SIGUSR1]).unwrap();
                ready_tx.send(()).unwrap();
                set.wait().unwrap()
            })
        });
        ready_rx.recv().unwrap();
        signal::raise(SIGUSR1).unwrap();
        assert_eq!(other.join().unwrap(), SIGUSR1);
        assert_eq!(set.wait().unwrap(), SIGUSR1);

        // Sets refuse what cannot be waited for.
        let e = SignalSet::new(&[signal::SIGKILL]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
    });
    report("done");
}

#[test]
fn waits_are_cancel_points_and_every_watcher_gets_each_signal() {
    let mut kid = Kid::start("waits_child", WAITS_ENV, "1", None);
    kid.expect("done");
    kid.expect_success();
}

//! `curio::Error` as a user sees it: `Debug` reads like a message, because
//! `fn main() -> Result<(), curio::Error>` prints the error it returns with
//! `Debug`. The example `error_from_main` is run as a child program and its
//! stderr compared line by line; the formats of causes, progress and the
//! structured `{:#?}` are checked in process.

mod common;

use std::fmt;
use std::io;
use std::process::Command;

use common::*;
use curio::ErrorKind;

/// Runs the example `error_from_main` in an empty directory; returns its exit
/// code, stdout and stderr.
fn error_from_main(args: &[&str]) -> (Option<i32>, String, String) {
    let dir = std::env::temp_dir().join(format!("curio-error-from-main-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(example("error_from_main"))
        .args(args)
        .current_dir(&dir)
        .output()
        .expect("run the example");
    std::fs::remove_dir_all(&dir).unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_io_error_returned_from_main_prints_its_message_and_its_kind() {
    let (code, out, err) = watchdog(|| error_from_main(&[]));
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert_eq!(
        err,
        "Error: curio-example-settings.toml: No such file or directory (os error 2)\n\
         \n\
         Details:\n    \
         kind: Io (NotFound)\n"
    );
}

#[test]
fn a_failed_command_returned_from_main_prints_its_status_and_stderr() {
    let (code, out, err) = watchdog(|| error_from_main(&["--command"]));
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert_eq!(
        err,
        "Error: command failed: `sh -c echo 'settings: no port given' >&2; exit 3` \
         exited with status 3; its status and output are in Error::output()\n\
         \n\
         Details:\n    \
         kind: ProcessFailed\n    \
         status: exit status: 3\n    \
         stdout: 0 bytes\n    \
         stderr:\n        \
         settings: no port given\n"
    );
}

#[test]
fn an_error_with_nothing_more_to_say_is_just_its_message() {
    let e = run_virtual(|| curio::timeout_after(secs(1), || curio::sleep(secs(2))).unwrap_err());
    assert_eq!(format!("{e:?}"), "timed out");
    assert_eq!(format!("{e:?}"), e.to_string());
    let e = run_virtual(|| curio::Kernel::builder().build().run(|| ()).unwrap_err());
    assert_eq!(e.kind(), ErrorKind::NestedKernel);
    assert_eq!(format!("{e:?}"), e.to_string());
}

#[test]
fn application_code_makes_errors_of_its_own_and_of_curios_kinds() {
    let e = curio::Error::other("no such user: ada");
    assert_eq!(e.kind(), ErrorKind::Other);
    assert_eq!(e.to_string(), "no such user: ada");
    assert_eq!(format!("{e:?}"), "no such user: ada");
    let back = curio::Error::from(io::Error::from(e));
    assert_eq!(back.kind(), ErrorKind::Other);

    let e = curio::Error::new(ErrorKind::Cancelled, "giving up");
    assert!(e.is_cancelled() && e.is_cancellation());
    assert_eq!(e.to_string(), "task cancelled: giving up");

    // An I/O kind carries a real io::Error, so it converts back like one.
    let e = curio::Error::new(ErrorKind::Io, "disk on fire");
    assert_eq!(e.kind(), ErrorKind::Io);
    let io = io::Error::from(e);
    assert_eq!(io.kind(), io::ErrorKind::Other);
    assert_eq!(io.to_string(), "disk on fire");
}

/// An error with an optional cause, to build chains.
#[derive(Debug)]
struct Layer {
    text: &'static str,
    cause: Option<Box<Layer>>,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text)
    }
}

impl std::error::Error for Layer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|c| c as _)
    }
}

fn chain(texts: &[&'static str]) -> Layer {
    let mut layer: Option<Box<Layer>> = None;
    for text in texts.iter().rev() {
        layer = Some(Box::new(Layer { text, cause: layer }));
    }
    *layer.unwrap()
}

#[test]
fn the_causes_of_a_wrapped_error_follow_as_anyhow_prints_them() {
    let one = curio::Error::from(io::Error::new(
        io::ErrorKind::InvalidData,
        chain(&["bad settings", "line 3: no port"]),
    ));
    assert_eq!(
        format!("{one:?}"),
        "bad settings\n\nDetails:\n    kind: Io (InvalidData)\n\nCaused by:\n    line 3: no port"
    );
    let several = curio::Error::from(io::Error::other(chain(&[
        "handshake failed",
        "bad certificate",
        "expired",
    ])));
    assert_eq!(
        format!("{several:?}"),
        "handshake failed\n\nDetails:\n    kind: Io (Other)\n\n\
         Caused by:\n    0: bad certificate\n    1: expired"
    );
}

#[test]
fn bytes_done_is_a_detail_and_alternate_debug_is_structured() {
    let e = run_real(|| {
        let (c, s) = tcp_pair();
        c.sendall(b"hello").unwrap();
        drop(c);
        s.as_stream().read_exactly(10).unwrap_err()
    });
    assert_eq!(
        format!("{e:?}"),
        "early eof\n\nDetails:\n    kind: Io (UnexpectedEof)\n    bytes done: 5"
            .replace("early eof", &e.to_string())
    );
    let structured = format!("{e:#?}");
    assert!(
        structured.starts_with("Error {\n    kind: Io,\n"),
        "{structured}"
    );
    assert!(structured.contains("bytes_done: 5,"), "{structured}");
}

#[test]
fn a_cancelled_command_shows_what_it_wrote_before_it_was_killed() {
    let e = run_real(|| {
        curio::timeout_after(ms(500), || {
            curio::subprocess::Command::new("sh")
                .args(["-c", "echo starting >&2; exec sleep 10"])
                .output()
        })
        .unwrap_err()
    });
    assert!(e.is_timeout(), "{e:?}");
    assert_eq!(
        format!("{e:?}"),
        "timed out\n\nDetails:\n    kind: Timeout\n    status: signal: 9 (SIGKILL)\n    \
         stdout: 0 bytes\n    stderr:\n        starting"
    );
}

//! Files on the thread pool (Curio's `aopen`): round trips, lines with and
//! without a final newline, errors that name the path, and cancellation that
//! returns at once and loses nothing (`curio-reference.md` §16).

mod common;

use std::io::{SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A fresh directory for one test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("curio-fs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn io_kind(e: &curio::Error) -> std::io::ErrorKind {
    e.io_error()
        .map_or(std::io::ErrorKind::Other, |io| io.kind())
}

/// A named pipe at `path`: reads on it block until someone writes, which is
/// how these tests hold an operation in flight.
fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(ok.success());
}

/// A FIFO opened read-write (so opening does not block): curio's handle and a
/// std handle to feed it.
fn fifo_pair(dir: &TempDir) -> (curio::fs::File, std::fs::File) {
    let path = dir.path("fifo");
    mkfifo(&path);
    let mut o = std::fs::OpenOptions::new();
    o.read(true).write(true);
    let feeder = o.open(&path).unwrap();
    let f = curio::fs::open_with(&path, o).unwrap();
    (f, feeder)
}

// ---------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------

#[test]
fn write_then_read_round_trips() {
    let dir = TempDir::new("round");
    let p = dir.path("data.bin");
    run_real(move || {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
        let mut f = curio::fs::create(&p).unwrap();
        f.write_all(&data[..100_000]).unwrap();
        f.write_all(&data[100_000..]).unwrap();
        f.flush().unwrap();
        f.sync_all().unwrap();
        assert_eq!(f.tell().unwrap(), 300_000);
        f.close().unwrap();

        let mut f = curio::fs::open(&p).unwrap();
        let head = f.read_some(10).unwrap();
        assert_eq!(head, data[..10]);
        assert_eq!(
            f.tell().unwrap(),
            10,
            "the caller's position, not the read-ahead"
        );
        let rest = f.read_all().unwrap();
        assert_eq!(rest, data[10..]);
        assert_eq!(f.read_some(10).unwrap(), b"", "end of file");
        assert_eq!(f.metadata().unwrap().len(), 300_000);

        assert_eq!(curio::fs::read(&p).unwrap(), data);
        curio::fs::write(&p, "short").unwrap();
        assert_eq!(curio::fs::read_to_string(&p).unwrap(), "short");
    });
}

#[test]
fn seek_and_write_after_reading_ahead_land_where_the_caller_is() {
    let dir = TempDir::new("seek");
    let p = dir.path("text");
    std::fs::write(&p, "one\ntwo\nthree\n").unwrap();
    run_real(move || {
        let mut o = std::fs::OpenOptions::new();
        o.read(true).write(true);
        let mut f = curio::fs::open_with(&p, o).unwrap();
        assert_eq!(f.readline().unwrap(), b"one\n");
        // The whole file was read ahead, but the write goes after "one\n".
        f.write_all("TWO\n").unwrap();
        assert_eq!(f.readline().unwrap(), b"three\n");
        assert_eq!(f.seek(SeekFrom::Start(0)).unwrap(), 0);
        assert_eq!(f.read_to_string().unwrap(), "one\nTWO\nthree\n");
        assert_eq!(f.seek(SeekFrom::Start(4)).unwrap(), 4);
        assert_eq!(f.read_some(2).unwrap(), b"TW");
        assert_eq!(f.seek(SeekFrom::Current(-1)).unwrap(), 5);
        assert_eq!(f.read_some(3).unwrap(), b"WO\n");
        f.set_len(3).unwrap();
        assert_eq!(f.seek(SeekFrom::End(0)).unwrap(), 3);
    });
}

#[test]
fn lines_with_and_without_a_final_newline() {
    let dir = TempDir::new("lines");
    let cases: [(&str, &[&[u8]]); 4] = [
        ("a\nbb\nccc\n", &[b"a\n", b"bb\n", b"ccc\n"]),
        ("a\nbb\nccc", &[b"a\n", b"bb\n", b"ccc"]),
        ("", &[]),
        ("\n\n", &[b"\n", b"\n"]),
    ];
    let paths: Vec<(PathBuf, Vec<Vec<u8>>)> = cases
        .iter()
        .enumerate()
        .map(|(i, (text, lines))| {
            let p = dir.path(&format!("case{i}"));
            std::fs::write(&p, text).unwrap();
            (p, lines.iter().map(|l| l.to_vec()).collect())
        })
        .collect();
    run_real(move || {
        for (p, want) in paths {
            let mut f = curio::fs::open(&p).unwrap();
            let got: Vec<Vec<u8>> = f.lines().collect::<curio::Result<_>>().unwrap();
            assert_eq!(got, want, "{}", p.display());
            assert_eq!(f.readline().unwrap(), b"", "still at end of file");
        }
    });
}

#[test]
fn a_line_over_the_limit_is_an_error_and_stays_buffered() {
    let dir = TempDir::new("long");
    let p = dir.path("long");
    std::fs::write(&p, format!("{}\nshort\n", "x".repeat(100))).unwrap();
    run_real(move || {
        let mut f = curio::fs::open(&p).unwrap();
        f.set_max_line(50);
        let e = f.readline().unwrap_err();
        assert_eq!(io_kind(&e), std::io::ErrorKind::InvalidData);
        f.set_max_line(1000);
        assert_eq!(f.readline().unwrap().len(), 101);
        assert_eq!(f.readline().unwrap(), b"short\n");
    });
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

#[test]
fn a_missing_file_is_not_found_and_names_the_path() {
    let dir = TempDir::new("missing");
    let p = dir.path("nope.txt");
    run_real(move || {
        let e = curio::fs::open(&p).unwrap_err();
        assert_eq!(io_kind(&e), std::io::ErrorKind::NotFound);
        assert!(e.to_string().contains("nope.txt"), "{e}");
        for e in [
            curio::fs::read(&p).unwrap_err(),
            curio::fs::read_to_string(&p).unwrap_err(),
            curio::fs::write(p.join("under-a-file"), "x").unwrap_err(),
        ] {
            assert_eq!(io_kind(&e), std::io::ErrorKind::NotFound, "{e}");
        }
    });
}

#[test]
fn permission_denied_is_reported() {
    let dir = TempDir::new("perm");
    let p = dir.path("secret");
    std::fs::write(&p, "x").unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    // Root reads any regular file; a read-only sysfs file refuses a writer
    // even to root.
    let denied = if std::fs::File::open(&p).is_err() {
        (p.clone(), false)
    } else {
        (PathBuf::from("/sys/kernel/notes"), true)
    };
    run_real(move || {
        let (path, write) = denied;
        let e = if write {
            let mut o = std::fs::OpenOptions::new();
            o.write(true);
            curio::fs::open_with(&path, o).unwrap_err()
        } else {
            curio::fs::open(&path).unwrap_err()
        };
        assert_eq!(io_kind(&e), std::io::ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
    });
}

#[test]
fn invalid_utf8_is_invalid_data() {
    let dir = TempDir::new("utf8");
    let p = dir.path("bin");
    std::fs::write(&p, [0xff, 0xfe]).unwrap();
    run_real(move || {
        let e = curio::fs::read_to_string(&p).unwrap_err();
        assert_eq!(io_kind(&e), std::io::ErrorKind::InvalidData);
        let e = curio::fs::open(&p).unwrap().read_to_string().unwrap_err();
        assert_eq!(io_kind(&e), std::io::ErrorKind::InvalidData);
    });
}

// ---------------------------------------------------------------------------
// Cancellation and timeouts
// ---------------------------------------------------------------------------

#[test]
fn an_interrupted_read_returns_at_once_and_loses_nothing() {
    for how in BOTH {
        let dir = TempDir::new(&format!("read-{how:?}"));
        run_real(move || {
            let (f, mut feeder) = fifo_pair(&dir);
            // Nothing to read: the job blocks in read(2) on its pool thread.
            let (f, r) = interrupted(how, f, |f| f.read_some(100));
            expect_interrupted(how, r);
            // The late job still reads; its bytes stay in the file's buffer.
            feeder.write_all(b"first\nsecond\n").unwrap();
            let mut f = f;
            assert_eq!(f.readline().unwrap(), b"first\n", "{how:?}");
            assert_eq!(f.readline().unwrap(), b"second\n", "{how:?}");
        });
    }
}

#[test]
fn each_operation_waits_behind_a_running_job_and_can_be_interrupted_there() {
    type Op = fn(&mut curio::fs::File) -> curio::Result<()>;
    let ops: [(&str, Op); 9] = [
        ("read", |f| f.read_some(1).map(drop)),
        ("read_all", |f| f.read_all().map(drop)),
        ("readline", |f| f.readline().map(drop)),
        ("lines", |f| f.lines().next().unwrap().map(drop)),
        ("write", |f| f.write_all("w")),
        ("seek", |f| f.seek(SeekFrom::Start(0)).map(drop)),
        ("tell", |f| f.tell().map(drop)),
        ("flush", |f| f.flush()),
        ("sync_all", |f| f.sync_all()),
    ];
    for how in BOTH {
        for (name, op) in ops {
            let dir = TempDir::new(&format!("op-{name}-{how:?}"));
            run_real(move || {
                let (f, mut feeder) = fifo_pair(&dir);
                // A read holds the file on its pool thread.
                let (f, r) = interrupted(how, f, |f| f.read_some(100));
                expect_interrupted(how, r);
                // The next operation waits behind it, and is interrupted there.
                let (mut f, r) = interrupted(how, f, op);
                expect_interrupted(how, r);
                // The read completes; its bytes are there, and the abandoned
                // operation did not run (a write would have reached the pipe).
                feeder.write_all(b"data\n").unwrap();
                assert_eq!(f.readline().unwrap(), b"data\n", "{name} {how:?}");
                assert!(
                    !has_pending(&feeder),
                    "{name} {how:?}: the abandoned operation wrote"
                );
            });
        }
    }
}

/// True if the FIFO has bytes waiting (looked at for 20 ms).
fn has_pending(f: &std::fs::File) -> bool {
    use std::os::fd::AsFd;
    let dup = f.as_fd().try_clone_to_owned().unwrap();
    let mut stream = curio::FileStream::from_fd(dup).unwrap();
    curio::timeout_after(ms(20), || stream.read_some(8)).is_ok()
}

#[test]
fn the_whole_file_helpers_return_at_once_when_interrupted() {
    for how in BOTH {
        let dir = TempDir::new(&format!("helpers-{how:?}"));
        let fifos: Vec<PathBuf> = (0..3).map(|i| dir.path(&format!("fifo{i}"))).collect();
        for f in &fifos {
            mkfifo(f);
        }
        run_real(move || {
            // On a FIFO, open blocks until the other side comes: each helper
            // is in flight on its pool thread when it is interrupted.
            let p = fifos[0].clone();
            let (_, r) = interrupted(how, (), move |_| curio::fs::read(&p).map(drop));
            expect_interrupted(how, r);
            let p = fifos[1].clone();
            let (_, r) = interrupted(how, (), move |_| curio::fs::read_to_string(&p).map(drop));
            expect_interrupted(how, r);
            let p = fifos[2].clone();
            let (_, r) = interrupted(how, (), move |_| curio::fs::write(&p, "late"));
            expect_interrupted(how, r);
            // The late jobs finish on their threads once the other sides
            // come: the late readers see end of file, the late write arrives.
            for p in &fifos[..2] {
                drop(std::fs::OpenOptions::new().write(true).open(p).unwrap());
            }
            let got = std::fs::read(&fifos[2]).unwrap();
            assert_eq!(got, b"late", "{how:?}: the write ran late, as documented");
        });
    }
}

#[test]
fn an_interrupted_open_leaves_no_fd() {
    const ENV: &str = "CURIO_TEST_FS_FD_CHILD";
    if !in_child(ENV) {
        let out = run_test_in_child("an_interrupted_open_leaves_no_fd", ENV);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    for how in BOTH {
        let dir = TempDir::new(&format!("open-{how:?}"));
        let path = dir.path("fifo");
        mkfifo(&path);
        let fds = open_fds();
        let p = path.clone();
        run_real(move || {
            // Opening a FIFO read-only blocks until a writer comes.
            let (_, r) = interrupted(how, (), move |_| curio::fs::open(&p).map(drop));
            expect_interrupted(how, r);
            // The writer comes: the late open succeeds on its thread and
            // its file is closed there.
            let w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            drop(w);
        });
        for _ in 0..200 {
            if open_fds() == fds {
                break;
            }
            std::thread::sleep(ms(5));
        }
        assert_eq!(open_fds(), fds, "{how:?}");
    }
}

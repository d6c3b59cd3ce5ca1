//! I/O: the `Socket` methods and the buffered streams over real sockets on
//! 127.0.0.1 (and pipes): end of file in the middle of a read, the line-length
//! limit, one reader and one writer per socket, every blocking call under both
//! a cancel and a timeout (nothing read is lost, the socket stays usable),
//! `std::io` interop through third-party-style code, and `blocking()`.
//!
//! The tests run on the real clock (the peers are real sockets) under the
//! watchdog from `common`, with short timeouts.

mod common;

use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

use common::*;
use curio::io::DEFAULT_MAX_LINE;
use curio::net::{TcpListener, TcpStream, UnixStream};
use curio::{ErrorKind, FileStream, Socket, State};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A TCP pair whose buffers are small, so a writer whose peer never reads is
/// soon blocked: (writer, reader).
fn tcp_pair_small_buffers() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind(any_port()).unwrap();
    listener.socket().set_recv_buffer_size(4096).unwrap(); // inherited by accepted sockets
    let writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    writer.socket().set_send_buffer_size(4096).unwrap();
    let (reader, _) = listener.accept().unwrap();
    (writer, reader)
}

/// Sends on the raw non-blocking socket until the kernel's buffers are full
/// (no cancel point); returns how many bytes went in.
fn fill_send_buffer(sock: &Socket) -> usize {
    let chunk = [b'f'; 4096];
    let mut total = 0;
    loop {
        match sock.socket().send(&chunk) {
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return total,
            Err(e) => panic!("filling the send buffer: {e}"),
        }
    }
}

/// `n` bytes of a recognisable pattern.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Reads until end of file with plain `recv`.
fn recv_to_eof(sock: &Socket) -> Vec<u8> {
    let mut all = Vec::new();
    loop {
        let chunk = sock.recv(65536).unwrap();
        if chunk.is_empty() {
            return all;
        }
        all.extend_from_slice(&chunk);
    }
}

// ---------------------------------------------------------------------------
// Plain socket calls
// ---------------------------------------------------------------------------

#[test]
fn recv_send_and_recv_into_round_trip() {
    run_real(|| {
        let (c, s) = tcp_pair();
        assert_eq!(c.send(b"hello").unwrap(), 5);
        assert_eq!(s.recv(100).unwrap(), b"hello");
        s.sendall(b"world").unwrap();
        let mut buf = [0u8; 16];
        let n = c.recv_into(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"world");
        drop(s);
        assert_eq!(
            c.recv(100).unwrap(),
            b"",
            "an empty read means the peer closed"
        );
    });
}

#[test]
fn a_4_mib_transfer_between_two_tasks_arrives_intact() {
    run_real(|| {
        let (c, s) = tcp_pair();
        let data = pattern(4 << 20);
        let expected = data.clone();
        let sender = curio::spawn(move || {
            let r = c.sendall(&data);
            drop(c);
            r
        });
        let got = recv_to_eof(&s);
        sender.join().unwrap().unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "4 MiB arrived intact");
    });
}

#[test]
fn a_second_reader_on_one_socket_gets_resource_busy() {
    run_real(|| {
        let (c, s) = tcp_pair();
        let s = Rc::new(s);
        let s1 = s.clone();
        let first = curio::spawn(move || s1.recv(100));
        until_state(&first, State::ReadWait);

        let e = s.recv(100).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ResourceBusy, "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("already") && msg.contains("read"),
            "the message says another task is already reading: {msg}"
        );
        assert!(
            msg.contains("one reader per socket"),
            "and what to do: {msg}"
        );
        // Through std::io the same error comes out as ResourceBusy and back.
        let io_err = (&**s).read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(io_err.kind(), io::ErrorKind::ResourceBusy);
        assert_eq!(curio::Error::from(io_err).kind(), ErrorKind::ResourceBusy);

        // The first reader was not disturbed.
        c.sendall(b"for the first").unwrap();
        assert_eq!(first.join().unwrap().unwrap(), b"for the first");
        // With the first reader gone, anyone may read.
        c.sendall(b"next").unwrap();
        assert_eq!(s.recv(100).unwrap(), b"next");
    });
}

#[test]
fn a_reader_and_a_writer_may_share_a_socket() {
    run_real(|| {
        let (c, s) = tcp_pair();
        let s = Rc::new(s);
        let s1 = s.clone();
        let reader = curio::spawn(move || s1.recv(100));
        until_state(&reader, State::ReadWait);
        s.sendall(b"written while a reader waits").unwrap();
        assert_eq!(c.recv(100).unwrap(), b"written while a reader waits");
        c.sendall(b"answer").unwrap();
        assert_eq!(reader.join().unwrap().unwrap(), b"answer");
    });
}

#[test]
fn a_second_writer_on_a_full_socket_gets_resource_busy() {
    run_real(|| {
        let (w, r) = tcp_pair_small_buffers();
        let w = Rc::new(w);
        let w1 = w.clone();
        let big = pattern(8 << 20);
        let expected = big.clone();
        let first = curio::spawn(move || w1.sendall(&big));
        until_state(&first, State::WriteWait);

        let e = w.send(b"x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ResourceBusy, "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("already") && msg.contains("writ"),
            "the message says another task is already writing: {msg}"
        );

        // Cancel the first writer: it says how far it got, and exactly that
        // much reaches the peer, followed by what we send next.
        first.cancel().unwrap();
        let e = first.join().unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Cancelled);
        let sent = e.bytes_done().expect("sendall reports its progress");
        assert!(sent > 0 && sent < expected.len(), "sent {sent}");
        let reader = curio::spawn(move || recv_to_eof(&r));
        w.sendall(b"END").unwrap();
        drop(w);
        let got = reader.join().unwrap();
        assert_eq!(got.len(), sent + 3);
        assert!(got[..sent] == expected[..sent] && got.ends_with(b"END"));

        // Checked last, so the rest is checked whatever the wording: the
        // message says what to do, in words (style.md, habit 5).
        assert!(
            msg.contains("one writer per socket"),
            "and what to do: {msg}"
        );
    });
}

// ---------------------------------------------------------------------------
// Cancel and timeout of the socket calls
// ---------------------------------------------------------------------------

#[test]
fn recv_and_recv_into_cancelled_or_timed_out_read_nothing_and_the_socket_stays_usable() {
    run_real(|| {
        for how in BOTH {
            let (c, s) = tcp_pair();
            let (s, r) = interrupted(how, s, |s| s.recv(100));
            expect_interrupted(how, r);
            c.sendall(b"after").unwrap();
            assert_eq!(s.recv(100).unwrap(), b"after");

            let (s, r) = interrupted(how, s, |s| s.recv_into(&mut [0u8; 16]));
            expect_interrupted(how, r);
            c.sendall(b"again").unwrap();
            assert_eq!(s.recv(100).unwrap(), b"again");
        }
    });
}

#[test]
fn send_into_a_full_buffer_cancelled_or_timed_out_sends_nothing() {
    run_real(|| {
        for how in BOTH {
            let (w, r) = tcp_pair_small_buffers();
            let filled = fill_send_buffer(&w);
            let (w, res) = interrupted(how, w, |w| w.send(b"lost?"));
            expect_interrupted(how, res);
            // Still usable: once the peer reads, the next send goes through.
            let reader = curio::spawn(move || recv_to_eof(&r));
            w.sendall(b"ok").unwrap();
            drop(w);
            let got = reader.join().unwrap();
            assert_eq!(
                got.len(),
                filled + 2,
                "{how:?}: nothing of the interrupted send"
            );
            assert!(got.ends_with(b"fok"));
        }
    });
}

#[test]
fn sendall_cancelled_or_timed_out_reports_exactly_what_was_sent() {
    run_real(|| {
        for how in BOTH {
            let (w, r) = tcp_pair_small_buffers();
            let big = pattern(8 << 20);
            let expected = big.clone();
            let (w, res) = interrupted(how, w, move |w| w.sendall(&big));
            let e = expect_interrupted(how, res);
            let sent = e.bytes_done().expect("sendall reports its progress");
            assert!(sent > 0 && sent < expected.len(), "{how:?}: sent {sent}");

            let reader = curio::spawn(move || recv_to_eof(&r));
            w.sendall(b"END").unwrap();
            drop(w);
            let got = reader.join().unwrap();
            assert_eq!(got.len(), sent + 3, "{how:?}");
            assert!(got[..sent] == expected[..sent] && got.ends_with(b"END"));
        }
    });
}

#[test]
fn a_zero_timeout_fires_at_the_first_cancel_point_of_a_recv() {
    run_real(|| {
        let (c, s) = tcp_pair();
        let r = curio::timeout_after(Duration::ZERO, || s.recv(10));
        assert!(r.unwrap_err().is_timeout());
        c.sendall(b"z").unwrap();
        assert_eq!(s.recv(10).unwrap(), b"z");
    });
}

// ---------------------------------------------------------------------------
// Streams: end of file
// ---------------------------------------------------------------------------

#[test]
fn read_exactly_at_end_of_file_reports_the_bytes_that_came_and_keeps_them() {
    run_real(|| {
        let (c, s) = tcp_pair();
        c.sendall(b"hello").unwrap();
        drop(c);
        let mut st = s.as_stream();
        let e = st.read_exactly(10).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io, "{e:?}");
        assert_eq!(
            e.io_error().map(io::Error::kind),
            Some(io::ErrorKind::UnexpectedEof)
        );
        assert_eq!(e.bytes_done(), Some(5));
        assert_eq!(st.buffered(), b"hello");
        assert_eq!(
            st.read_some(100).unwrap(),
            b"hello",
            "the next read returns them"
        );
        assert_eq!(st.read_some(100).unwrap(), b"");
    });
}

#[test]
fn read_exactly_collects_bytes_that_arrive_in_pieces() {
    run_real(|| {
        let (c, s) = tcp_pair();
        let writer = curio::spawn(move || -> curio::Result<()> {
            for piece in [&b"abc"[..], b"de", b"fghij", b"klm"] {
                c.sendall(piece)?;
                curio::sleep(ms(5))?;
            }
            Ok(())
        });
        let mut st = s.as_stream();
        assert_eq!(st.read_exactly(10).unwrap(), b"abcdefghij");
        assert_eq!(st.read_exactly(3).unwrap(), b"klm");
        assert_eq!(st.read_exactly(0).unwrap(), b"");
        writer.join().unwrap().unwrap();
    });
}

#[test]
fn readline_returns_the_partial_last_line_at_end_of_file_then_nothing() {
    run_real(|| {
        let (c, s) = tcp_pair();
        c.sendall(b"one\ntwo\r\nthree").unwrap();
        drop(c);
        let mut st = s.as_stream();
        assert_eq!(st.readline().unwrap(), b"one\n");
        assert_eq!(st.readline().unwrap(), b"two\r\n");
        assert_eq!(st.readline().unwrap(), b"three");
        assert_eq!(st.readline().unwrap(), b"");
        assert_eq!(st.readline().unwrap(), b"", "end of file stays end of file");
    });
}

#[test]
fn readlines_and_lines_read_to_end_of_file() {
    run_real(|| {
        let (c, s) = tcp_pair();
        c.sendall(b"a\nbb\nccc").unwrap();
        drop(c);
        let mut st = s.as_stream();
        assert_eq!(
            st.readlines().unwrap(),
            vec![b"a\n".to_vec(), b"bb\n".to_vec(), b"ccc".to_vec()]
        );

        let (c, s) = tcp_pair();
        c.sendall(b"x\ny\n").unwrap();
        drop(c);
        let mut st = s.as_stream();
        // `curio::Stream::lines` (with `std::io::BufRead` in scope, `st.lines()`
        // would pick std's `BufRead::lines`).
        let lines: Vec<Vec<u8>> = curio::Stream::lines(&mut st).map(Result::unwrap).collect();
        assert_eq!(lines, vec![b"x\n".to_vec(), b"y\n".to_vec()]);
    });
}

#[test]
fn read_exactly_read_all_and_writelines() {
    run_real(|| {
        let (c, s) = tcp_pair();
        let data = pattern(300_000);
        let expected = data.clone();
        let writer = curio::spawn(move || -> curio::Result<()> {
            let mut w = c.as_stream();
            w.writelines([&data[..100_000], &data[100_000..]])?;
            w.flush()?;
            w.close().unwrap();
            Ok(())
        });
        let mut st = s.as_stream();
        assert!(st.read_exactly(1000).unwrap() == expected[..1000]);
        let rest = st.read_all().unwrap();
        assert!(rest[..] == expected[1000..]);
        writer.join().unwrap().unwrap();
        assert_eq!(st.readinto(&mut [0u8; 10]).unwrap(), 0, "end of file");
    });
}

#[test]
fn readinto_reads_until_the_buffer_is_full() {
    // Curio's `readinto(buf)`: buffered bytes first, then keep reading until
    // `buf` is full or end of file (curio-reference.md §12.2).
    run_real(|| {
        let (c, s) = tcp_pair();
        let writer = curio::spawn(move || -> curio::Result<()> {
            c.sendall(b"abc")?;
            curio::sleep(ms(20))?;
            c.sendall(b"defghij")?;
            curio::sleep(ms(20))?;
            c.sendall(b"xy")?;
            Ok(())
        });
        let mut st = s.as_stream();
        let mut buf = [0u8; 10];
        let n = st.readinto(&mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            b"abcdefghij",
            "readinto stops only when the buffer is full"
        );
        writer.join().unwrap().unwrap();
        let mut buf = [0u8; 10];
        let n = st.readinto(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"xy", "or at end of file");
    });
}

// ---------------------------------------------------------------------------
// Streams: the line-length limit
// ---------------------------------------------------------------------------

#[test]
fn readline_refuses_a_line_over_the_limit_without_buffering_without_bound() {
    run_real(|| {
        let (c, s) = tcp_pair();
        // A peer that sends `x` forever, never a newline.
        let flood = curio::spawn(move || -> curio::Result<()> {
            let chunk = [b'x'; 16384];
            loop {
                c.sendall(&chunk)?;
            }
        });
        let mut st = s.as_stream();
        st.set_max_line(100);
        let e = st.readline().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io, "{e:?}");
        assert_eq!(
            e.io_error().map(io::Error::kind),
            Some(io::ErrorKind::InvalidData)
        );
        assert!(e.to_string().contains("set_max_line"), "{e}");
        assert!(
            st.buffered().len() <= 100 + 64 * 1024,
            "buffered {} bytes for a 100-byte limit",
            st.buffered().len()
        );

        // The default limit holds too.
        let mut st = tcp_flooded_stream();
        let e = st.readline().unwrap_err();
        assert_eq!(
            e.io_error().map(io::Error::kind),
            Some(io::ErrorKind::InvalidData)
        );
        assert!(st.buffered().len() <= 2 * DEFAULT_MAX_LINE);
        flood.cancel().unwrap();
    });
}

/// A stream whose peer task floods it with a line that never ends (the task is
/// cancelled at shutdown).
fn tcp_flooded_stream() -> curio::SocketStream {
    let (c, s) = tcp_pair();
    curio::spawn(move || -> curio::Result<()> {
        let chunk = [b'y'; 16384];
        loop {
            c.sendall(&chunk)?;
        }
    });
    s.as_stream()
}

#[test]
fn readline_accepts_a_line_exactly_at_the_limit() {
    run_real(|| {
        let (c, s) = tcp_pair();
        c.sendall(b"123456789\nabc\n").unwrap();
        let mut st = s.as_stream();
        st.set_max_line(10); // newline included
        assert_eq!(st.readline().unwrap(), b"123456789\n");
        assert_eq!(st.readline().unwrap(), b"abc\n");
    });
}

#[test]
fn readline_refuses_an_over_long_line_even_when_it_arrives_whole() {
    // The limit must not depend on how the bytes were split into segments: a
    // 201-byte line is over a 100-byte limit whether or not its newline came
    // in the same read.
    run_real(|| {
        let (c, s) = tcp_pair();
        let mut line = vec![b'z'; 200];
        line.push(b'\n');
        c.sendall(&line).unwrap();
        curio::sleep(ms(20)).unwrap(); // the whole line is in the socket buffer
        let mut st = s.as_stream();
        st.set_max_line(100);
        let r = st.readline();
        let e = r
            .map(|l| l.len())
            .expect_err("a 201-byte line is over a 100-byte limit");
        assert_eq!(
            e.io_error().map(io::Error::kind),
            Some(io::ErrorKind::InvalidData)
        );
    });
}

// ---------------------------------------------------------------------------
// Streams: cancel and timeout keep what was read
// ---------------------------------------------------------------------------

#[test]
fn stream_read_and_readinto_interrupted_lose_nothing() {
    run_real(|| {
        for how in BOTH {
            let (c, s) = tcp_pair();
            let (mut st, r) = interrupted(how, s.as_stream(), |st| st.read_some(100));
            expect_interrupted(how, r);
            c.sendall(b"data").unwrap();
            assert_eq!(st.read_some(100).unwrap(), b"data");

            let (mut st, r) = interrupted(how, st, |st| st.readinto(&mut [0u8; 32]));
            expect_interrupted(how, r);
            c.sendall(b"more").unwrap();
            let mut buf = [0u8; 4];
            assert_eq!(st.readinto(&mut buf).unwrap(), 4);
            assert_eq!(&buf, b"more");
        }
    });
}

#[test]
fn stream_readline_interrupted_keeps_the_partial_line_for_the_next_readline() {
    run_real(|| {
        for how in BOTH {
            let (c, s) = tcp_pair();
            c.sendall(b"partial").unwrap();
            let (mut st, r) = interrupted(how, s.as_stream(), |st| st.readline());
            expect_interrupted(how, r);
            assert_eq!(st.buffered(), b"partial", "{how:?}");
            c.sendall(b" line\nnext\n").unwrap();
            assert_eq!(st.readline().unwrap(), b"partial line\n");
            assert_eq!(st.readline().unwrap(), b"next\n");
        }
    });
}

#[test]
fn stream_read_exactly_interrupted_keeps_the_bytes_it_had() {
    run_real(|| {
        for how in BOTH {
            let (c, s) = tcp_pair();
            c.sendall(b"1234").unwrap();
            let (mut st, r) = interrupted(how, s.as_stream(), |st| st.read_exactly(10));
            let e = expect_interrupted(how, r);
            assert_eq!(e.bytes_done(), Some(4), "{how:?}");
            assert_eq!(st.buffered(), b"1234");
            c.sendall(b"567890").unwrap();
            assert_eq!(st.read_exactly(10).unwrap(), b"1234567890");
        }
    });
}

#[test]
fn stream_read_all_interrupted_keeps_everything_read_so_far() {
    run_real(|| {
        for how in BOTH {
            let (c, s) = tcp_pair();
            c.sendall(b"abc").unwrap();
            let (mut st, r) = interrupted(how, s.as_stream(), |st| st.read_all());
            let e = expect_interrupted(how, r);
            assert_eq!(e.bytes_done(), Some(3), "{how:?}");
            c.sendall(b"de").unwrap();
            drop(c);
            assert_eq!(st.read_all().unwrap(), b"abcde");
        }
    });
}

#[test]
fn stream_readlines_interrupted_puts_the_lines_back() {
    run_real(|| {
        for how in BOTH {
            let (c, s) = tcp_pair();
            c.sendall(b"l1\nl2\npart").unwrap();
            let (mut st, r) = interrupted(how, s.as_stream(), |st| st.readlines());
            let e = expect_interrupted(how, r);
            assert_eq!(e.bytes_done(), Some(6), "{how:?}: the two complete lines");
            c.sendall(b"ial\n").unwrap();
            drop(c);
            assert_eq!(
                st.readlines().unwrap(),
                vec![b"l1\n".to_vec(), b"l2\n".to_vec(), b"partial\n".to_vec()]
            );
        }
    });
}

#[test]
fn stream_write_and_writelines_interrupted_report_what_was_written() {
    run_real(|| {
        for how in BOTH {
            // write
            let (w, r) = tcp_pair_small_buffers();
            let big = pattern(8 << 20);
            let expected = big.clone();
            let (mut st, res) = interrupted(how, w.as_stream(), move |st| st.write_all(&big));
            let e = expect_interrupted(how, res);
            let wrote = e.bytes_done().expect("write reports its progress");
            assert!(wrote > 0 && wrote < expected.len(), "{how:?}: {wrote}");
            let drain = curio::spawn(move || recv_to_eof(&r));
            st.write_all(b"!").unwrap();
            st.close().unwrap();
            let got = drain.join().unwrap();
            assert_eq!(got.len(), wrote + 1, "{how:?}");
            assert!(got[..wrote] == expected[..wrote]);

            // writelines: the count includes the lines already written
            let (w, r) = tcp_pair_small_buffers();
            let lines = vec![vec![b'a'; 1000], vec![b'b'; 8 << 20]];
            let (mut st, res) = interrupted(how, w.as_stream(), move |st| st.writelines(&lines));
            let e = expect_interrupted(how, res);
            let wrote = e.bytes_done().expect("writelines reports its progress");
            assert!(
                wrote > 1000,
                "{how:?}: counts the completed first line: {wrote}"
            );
            let drain = curio::spawn(move || recv_to_eof(&r));
            st.write_all(b"!").unwrap();
            st.close().unwrap();
            let got = drain.join().unwrap();
            assert_eq!(got.len(), wrote + 1, "{how:?}");
        }
    });
}

// ---------------------------------------------------------------------------
// What incremental parsers need (issue 11, item 6)
// ---------------------------------------------------------------------------

#[test]
fn read_more_appends_to_the_bytes_not_yet_consumed() {
    run_real(|| {
        let (c, s) = tcp_pair();
        let mut st = s.as_stream();
        c.sendall(b"*2\r\n$4\r\nEC").unwrap();
        assert_eq!(st.read_more().unwrap(), 10);
        assert_eq!(st.buffered(), b"*2\r\n$4\r\nEC");
        st.consume(4); // the parser used "*2\r\n"
        c.sendall(b"HO\r\n").unwrap();
        assert_eq!(st.read_more().unwrap(), 4);
        assert_eq!(
            st.buffered(),
            b"$4\r\nECHO\r\n",
            "old and new bytes together"
        );
        st.consume(100);
        assert_eq!(st.buffered(), b"");
        drop(c);
        assert_eq!(st.read_more().unwrap(), 0, "end of file");

        // More than one chunk arrives whole, however much was kept.
        let (c, s) = tcp_pair();
        let mut st = s.as_stream();
        let data = pattern(100_000);
        let expected = data.clone();
        let sender = curio::spawn(move || c.sendall(&data));
        let (mut total, mut consumed) = (0, 0);
        while total < 100_000 {
            let n = st.read_more().unwrap();
            assert!(n > 0);
            total += n;
            st.consume(1); // keep almost everything
            consumed += 1;
        }
        sender.join().unwrap().unwrap();
        assert!(
            st.buffered() == &expected[consumed..],
            "nothing lost or reordered"
        );
    });
}

#[test]
fn read_more_interrupted_leaves_the_buffer_as_it_was() {
    run_real(|| {
        for how in BOTH {
            let (c, s) = tcp_pair();
            c.sendall(b"keep").unwrap();
            let mut st = s.as_stream();
            st.read_more().unwrap();
            let (mut st, r) = interrupted(how, st, |st| st.read_more());
            expect_interrupted(how, r);
            assert_eq!(st.buffered(), b"keep", "{how:?}");
            c.sendall(b" me").unwrap();
            st.read_more().unwrap();
            assert_eq!(st.buffered(), b"keep me");
        }
    });
}

#[test]
fn readline_ref_and_read_exactly_ref_lend_bytes_from_the_buffer() {
    run_real(|| {
        let (c, s) = tcp_pair();
        let mut st = s.as_stream();
        c.sendall(b"SET k 5\r\nhello\r\nPING\r\n").unwrap();
        assert_eq!(st.readline_ref().unwrap(), b"SET k 5\r\n");
        assert_eq!(st.read_exactly_ref(5).unwrap(), b"hello");
        assert_eq!(st.readline_ref().unwrap(), b"\r\n");
        assert_eq!(st.readline_ref().unwrap(), b"PING\r\n");
        drop(c);
        assert_eq!(st.readline_ref().unwrap(), b"", "end of file");

        for how in BOTH {
            let (c, s) = tcp_pair();
            c.sendall(b"half a li").unwrap();
            let (st, r) = interrupted(how, s.as_stream(), |st| st.readline_ref().map(|_| ()));
            expect_interrupted(how, r);
            assert_eq!(st.buffered(), b"half a li", "{how:?}");
            let (mut st, r) = interrupted(how, st, |st| st.read_exactly_ref(20).map(|_| ()));
            let e = expect_interrupted(how, r);
            assert_eq!(e.bytes_done(), Some(9));
            c.sendall(b"ne\n").unwrap();
            assert_eq!(st.readline_ref().unwrap(), b"half a line\n");
        }
    });
}

#[test]
fn buffered_writes_go_out_on_flush_or_when_the_buffer_is_full() {
    run_real(|| {
        let (c, s) = tcp_pair();
        let mut st = s.as_stream();
        st.set_write_buffer(16);
        st.write_all(b"+OK\r\n").unwrap();
        st.write_all(b"$1\r\nx\r\n").unwrap();
        assert_eq!(st.unflushed(), b"+OK\r\n$1\r\nx\r\n");
        let r = curio::timeout_after(ms(20), || c.recv(100));
        assert!(
            r.unwrap_err().is_timeout(),
            "nothing is sent before the flush"
        );
        st.flush().unwrap();
        assert_eq!(st.unflushed(), b"");
        assert_eq!(c.recv(100).unwrap(), b"+OK\r\n$1\r\nx\r\n");

        // Bytes that do not fit push out what was buffered, in order.
        st.write_all(b"first ").unwrap();
        st.write_all(b"and a second, longer part").unwrap();
        assert_eq!(st.unflushed(), b"", "too big to buffer: written at once");
        let mut got = Vec::new();
        while got.len() < 31 {
            got.extend(c.recv(100).unwrap());
        }
        assert_eq!(got, b"first and a second, longer part");
        // std::io::Write on the stream buffers too, and its flush sends.
        Write::write_all(&mut st, b"std").unwrap();
        assert_eq!(st.unflushed(), b"std");
        Write::flush(&mut st).unwrap();
        assert_eq!(c.recv(100).unwrap(), b"std");
        // close() flushes.
        st.write_all(b"bye").unwrap();
        st.close().unwrap();
        assert_eq!(recv_to_eof(&c), b"bye");
    });
}

#[test]
fn flush_interrupted_keeps_what_was_not_written_for_the_next_flush() {
    run_real(|| {
        for how in BOTH {
            let (w, r) = tcp_pair_small_buffers();
            let mut st = w.as_stream();
            let big = pattern(4 << 20);
            st.set_write_buffer(big.len() + 1);
            st.write_all(&big).unwrap();
            let (st, res) = interrupted(how, st, |st| st.flush());
            let e = expect_interrupted(how, res);
            let wrote = e.bytes_done().expect("flush reports its progress");
            assert!(wrote < big.len(), "{how:?}");
            assert_eq!(st.unflushed().len(), big.len() - wrote, "{how:?}");
            let drain = curio::spawn(move || recv_to_eof(&r));
            st.close().unwrap();
            let got = drain.join().unwrap();
            assert!(got == big, "{how:?}: everything arrived once, in order");
        }
    });
}

#[test]
fn recv_uninit_and_recv_append_read_into_memory_not_zeroed_first() {
    run_real(|| {
        let (c, mut s) = tcp_pair();
        c.sendall(b"into uninit").unwrap();
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 64];
        assert_eq!(s.recv_uninit(&mut buf).unwrap(), b"into uninit");
        let mut v = b"kept:".to_vec();
        c.sendall(b"appended").unwrap();
        assert_eq!(s.recv_append(&mut v, 100).unwrap(), 8);
        assert_eq!(v, b"kept:appended");
        c.sendall(b"0123456789").unwrap();
        assert_eq!(s.recv_append(&mut v, 4).unwrap(), 4, "at most max bytes");
        assert_eq!(v, b"kept:appended0123");
        assert_eq!(s.recv_append(&mut v, 100).unwrap(), 6);
        for how in BOTH {
            let (s1, r) = interrupted(how, s, |s| {
                let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 8];
                s.recv_uninit(&mut buf).map(|b| b.len())
            });
            expect_interrupted(how, r);
            let ((s1, v), r) =
                interrupted(how, (s1, b"old".to_vec()), |(s, v)| s.recv_append(v, 8));
            expect_interrupted(how, r);
            assert_eq!(v, b"old", "{how:?}: the vector is unchanged");
            c.sendall(b"after").unwrap();
            let mut v = Vec::new();
            assert_eq!(s1.recv_append(&mut v, 8).unwrap(), 5, "nothing was lost");
            assert_eq!(v, b"after");
            s = s1;
        }
    });
}

// ---------------------------------------------------------------------------
// One system call per read (issue 11, item 10)
// ---------------------------------------------------------------------------

/// `read(2)` calls made so far by the calling OS thread (`syscr` in
/// /proc/thread-self/io; every call counts, also one that answers `EAGAIN`;
/// `recv(2)` does not count, so the streams below are `FileStream`s, which read
/// with `read(2)`, over a TCP socket and a pipe). Reading the file costs reads
/// of its own, the same number each time.
fn thread_read_calls() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("syscr:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a syscr line")
}

/// Request and reply with a peer on an OS thread: after a read that returned
/// less than it asked for (the socket's buffer was drained), the next read
/// waits for readiness at once instead of first trying and getting `EAGAIN`.
/// Returns read calls per round.
fn read_calls_per_reply(
    st: &mut FileStream,
    rounds: u64,
    mut ask: impl FnMut(&mut FileStream),
) -> f64 {
    // A first round registers the fd with the poller.
    ask(st);
    assert_eq!(st.readline().unwrap(), b"pong\n");
    let cost = thread_read_calls();
    let cost = thread_read_calls() - cost; // of reading the counter
    let before = thread_read_calls();
    for _ in 1..rounds {
        ask(st);
        assert_eq!(st.readline().unwrap(), b"pong\n");
    }
    let reads = thread_read_calls() - before - cost;
    reads as f64 / (rounds - 1) as f64
}

#[test]
fn after_a_short_read_the_next_read_waits_without_trying_first() {
    const ROUNDS: u64 = 200;
    let (tcp, pipe) = run_real(|| {
        // A TCP socket, its peer on an OS thread.
        let listener = TcpListener::bind(any_port()).unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            let mut buf = [0u8; 5];
            for _ in 0..ROUNDS {
                c.read_exact(&mut buf).unwrap();
                c.write_all(b"pong\n").unwrap();
            }
        });
        let (s, _) = listener.accept().unwrap();
        let fd: std::os::fd::OwnedFd = s.into_socket().into();
        let mut st = FileStream::from_fd(fd).unwrap();
        let tcp = read_calls_per_reply(&mut st, ROUNDS, |st| st.write_all(b"ping\n").unwrap());
        curio::run_in_thread(move || peer.join().unwrap()).unwrap();

        // Two pipes, the other ends on an OS thread.
        let (to_peer_r, to_peer_w) = io::pipe().unwrap();
        let (from_peer_r, from_peer_w) = io::pipe().unwrap();
        let peer = std::thread::spawn(move || {
            let (mut r, mut w) = (to_peer_r, from_peer_w);
            let mut buf = [0u8; 5];
            for _ in 0..ROUNDS {
                r.read_exact(&mut buf).unwrap();
                w.write_all(b"pong\n").unwrap();
            }
        });
        let mut out = FileStream::from_fd(to_peer_w).unwrap();
        let mut st = FileStream::from_fd(from_peer_r).unwrap();
        let pipe = read_calls_per_reply(&mut st, ROUNDS, |_| out.write_all(b"ping\n").unwrap());
        curio::run_in_thread(move || peer.join().unwrap()).unwrap();
        (tcp, pipe)
    });
    for (what, per_round) in [("tcp", tcp), ("pipe", pipe)] {
        assert!(
            per_round <= 1.05,
            "{what}: {per_round:.2} read calls per reply: a read answered EAGAIN before waiting"
        );
    }
}

/// The readiness that a wait relies on after a short read is not lost when it
/// arrives while no task waits: at once after the read, during a wait that is
/// then cancelled or timed out, or between two waits.
#[test]
fn readiness_that_comes_while_no_task_waits_is_not_lost() {
    run_real(|| {
        for how in BOTH {
            let (c, s) = tcp_pair();
            c.sendall(b"short").unwrap();
            assert_eq!(s.recv(100).unwrap(), b"short"); // drained
            // Data at once after the short read, before any wait.
            c.sendall(b"at once").unwrap();
            let r = curio::timeout_after(secs(2), || s.recv(100));
            assert_eq!(r.unwrap(), b"at once", "{how:?}");
            // A wait interrupted, then data while nobody waits.
            let (s, r) = interrupted(how, s, |s| s.recv(100));
            expect_interrupted(how, r);
            c.sendall(b"while nobody waits").unwrap();
            curio::sleep(ms(20)).unwrap(); // the kernel polls and sees it
            let r = curio::timeout_after(secs(2), || s.recv(100));
            assert_eq!(r.unwrap(), b"while nobody waits", "{how:?}");
        }
        // The same through a stream over a pipe, and a Unix socket pair.
        let (r, w) = io::pipe().unwrap();
        let mut rd = FileStream::from_fd(r).unwrap();
        let mut wr = FileStream::from_fd(w).unwrap();
        wr.write_all(b"one\n").unwrap();
        assert_eq!(rd.readline().unwrap(), b"one\n");
        wr.write_all(b"two\n").unwrap();
        let got = curio::timeout_after(secs(2), || rd.readline());
        assert_eq!(got.unwrap(), b"two\n");
        let (a, b) = UnixStream::pair().unwrap();
        a.sendall(b"x").unwrap();
        assert_eq!(b.recv(10).unwrap(), b"x");
        a.sendall(b"y").unwrap();
        assert_eq!(curio::timeout_after(secs(2), || b.recv(10)).unwrap(), b"y");
    });
}

/// End of file that comes with the last bytes (one readiness event for both)
/// is seen after the short read of those bytes: no further event will come.
#[test]
fn end_of_file_that_came_with_the_last_bytes_is_not_missed() {
    run_real(|| {
        // No task waiting when the bytes and the end of file arrive.
        let (c, s) = tcp_pair();
        assert!(curio::timeout_after(ms(10), || s.recv(100)).is_err()); // registers s
        c.sendall(b"last").unwrap();
        drop(c);
        curio::sleep(ms(20)).unwrap();
        assert_eq!(s.recv(100).unwrap(), b"last");
        let r = curio::timeout_after(secs(2), || s.recv(100));
        assert_eq!(r.unwrap(), b"", "end of file");

        // A task waiting, the peer writing and closing at once (one event).
        for _ in 0..20 {
            let listener = TcpListener::bind(any_port()).unwrap();
            let addr = listener.local_addr().unwrap();
            let peer = std::thread::spawn(move || {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                std::thread::sleep(Duration::from_millis(20));
                c.write_all(b"bye").unwrap();
            });
            let (s, _) = listener.accept().unwrap();
            let mut st = s.as_stream();
            let r = curio::timeout_after(secs(2), || st.read_all());
            assert_eq!(r.unwrap(), b"bye");
            curio::run_in_thread(move || peer.join().unwrap()).unwrap();
        }
        // Through a pipe: the writer's last bytes and its close.
        let (r, w) = io::pipe().unwrap();
        let mut rd = FileStream::from_fd(r).unwrap();
        let mut wr = FileStream::from_fd(w).unwrap();
        wr.write_all(b"x\n").unwrap();
        assert_eq!(rd.readline().unwrap(), b"x\n");
        wr.write_all(b"end").unwrap();
        wr.close().unwrap();
        let got = curio::timeout_after(secs(2), || rd.read_all());
        assert_eq!(got.unwrap(), b"end");
    });
}

/// A datagram shorter than the buffer does not mean the socket is drained:
/// the next datagram, already queued, brings no new readiness event.
#[test]
fn a_short_datagram_does_not_make_the_next_receive_wait() {
    run_real(|| {
        let a = curio::net::UdpSocket::bind(any_port()).unwrap();
        let b = curio::net::UdpSocket::bind(any_port()).unwrap();
        let to = b.local_addr().unwrap();
        // Register b with the poller: one wait that times out.
        let mut buf = [0u8; 100];
        assert!(curio::timeout_after(ms(10), || b.recvfrom(&mut buf)).is_err());
        a.sendto(b"first", to).unwrap();
        a.sendto(b"second", to).unwrap();
        curio::sleep(ms(20)).unwrap();
        let (n, _) = b.recvfrom(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"first");
        let r = curio::timeout_after(secs(2), || b.recvfrom(&mut buf));
        let (n, _) = r.expect("the queued datagram is read without waiting");
        assert_eq!(&buf[..n], b"second");
        // recv (not recvfrom) on a connected datagram socket as well.
        let s = curio::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        s.socket().bind(&any_port().into()).unwrap();
        let to = s.socket().local_addr().unwrap().as_socket().unwrap();
        let u = curio::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        assert!(curio::timeout_after(ms(10), || s.recv(100)).is_err());
        u.sendto(b"d1", &to.into()).unwrap();
        u.sendto(b"d2", &to.into()).unwrap();
        curio::sleep(ms(20)).unwrap();
        assert_eq!(s.recv(100).unwrap(), b"d1");
        assert_eq!(
            curio::timeout_after(secs(2), || s.recv(100)).unwrap(),
            b"d2"
        );
    });
}

// ---------------------------------------------------------------------------
// std::io interop
// ---------------------------------------------------------------------------

/// Third-party-style code: parses `key: value` lines up to an empty line from
/// any `BufRead`.
fn parse_headers(r: &mut impl BufRead) -> io::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Ok(out);
        }
        let (k, v) = line
            .split_once(": ")
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no colon"))?;
        out.push((k.to_string(), v.to_string()));
    }
}

#[test]
fn std_bufreader_read_line_and_read_exact_suspend_only_the_task() {
    run_real(|| {
        let (c, s) = tcp_pair();
        let writer = curio::spawn(move || -> curio::Result<()> {
            for piece in [&b"hello "[..], b"world\nsec", b"ond\n", b"0123456789"] {
                c.sendall(piece)?;
                curio::sleep(ms(5))?;
            }
            Ok(())
        });
        let mut reader = BufReader::new(&s);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "hello world\n");
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "second\n");
        let mut ten = [0u8; 10];
        reader.read_exact(&mut ten).unwrap();
        assert_eq!(&ten, b"0123456789");
        writer.join().unwrap().unwrap();
    });
}

#[test]
fn a_third_party_parser_runs_on_a_stream_through_bufread() {
    run_real(|| {
        let (c, s) = tcp_pair();
        let writer = curio::spawn(move || -> io::Result<()> {
            let mut w = &c;
            w.write_all(b"Host: example\r\nAcc")?;
            curio::sleep(ms(5)).map_err(io::Error::from)?;
            w.write_all(b"ept: */*\r\n\r\nbody")?;
            w.flush()
        });
        let mut st = s.as_stream();
        let headers = parse_headers(&mut st).unwrap();
        assert_eq!(
            headers,
            vec![
                ("Host".to_string(), "example".to_string()),
                ("Accept".to_string(), "*/*".to_string())
            ]
        );
        let mut body = [0u8; 4];
        st.read_exact(&mut body).unwrap();
        assert_eq!(&body, b"body");
        writer.join().unwrap().unwrap();
    });
}

#[test]
fn io_copy_between_curio_sockets() {
    run_real(|| {
        let (src_w, src_r) = tcp_pair();
        let (dst_w, dst_r) = tcp_pair();
        let data = pattern(2 << 20);
        let expected = data.clone();
        let producer = curio::spawn(move || {
            let r = (&src_w).write_all(&data);
            drop(src_w);
            r
        });
        let copier = curio::spawn(move || {
            let n = io::copy(&mut &src_r, &mut &dst_w);
            drop(dst_w);
            n
        });
        let mut got = Vec::new();
        (&dst_r).read_to_end(&mut got).unwrap();
        assert_eq!(copier.join().unwrap().unwrap(), expected.len() as u64);
        producer.join().unwrap().unwrap();
        assert!(got == expected);
    });
}

#[test]
fn a_cancellation_through_read_exact_is_still_a_cancellation_and_not_interrupted() {
    run_real(|| {
        let (c, s) = tcp_pair();
        c.sendall(b"abc").unwrap(); // part of what read_exact wants
        let kid = curio::spawn(move || {
            let mut buf = [0u8; 10];
            let r = (&s).read_exact(&mut buf);
            (s, r)
        });
        curio::sleep(ms(50)).unwrap();
        kid.cancel().unwrap();
        let (s, r) = kid.join().unwrap();
        let io_err = r.expect_err("read_exact was cancelled");
        assert_ne!(io_err.kind(), io::ErrorKind::Interrupted);
        assert!(curio::Error::from(io_err).is_cancelled());
        // The socket still works.
        c.sendall(b"later").unwrap();
        let mut five = [0u8; 5];
        (&s).read_exact(&mut five).unwrap();
        assert_eq!(&five, b"later");
    });
}

#[test]
fn a_timeout_through_std_io_is_timed_out_and_still_recognised() {
    run_real(|| {
        let (_c, s) = tcp_pair();
        let mut buf = [0u8; 10];
        let r: io::Result<()> = curio::timeout_after(ms(30), || (&s).read_exact(&mut buf));
        let io_err = r.unwrap_err();
        assert_eq!(io_err.kind(), io::ErrorKind::TimedOut);
        assert_ne!(io_err.kind(), io::ErrorKind::Interrupted);
        assert!(curio::Error::from(io_err).is_timeout());

        // Through a stream's BufRead too.
        let mut st = s.as_stream();
        let mut line = Vec::new();
        let r = curio::timeout_after(ms(30), || st.read_until(b'\n', &mut line));
        assert!(curio::Error::from(r.unwrap_err()).is_timeout());
    });
}

// ---------------------------------------------------------------------------
// blocking()
// ---------------------------------------------------------------------------

#[test]
fn blocking_lends_a_handle_whose_calls_wait_while_the_socket_stays_non_blocking() {
    run_real(|| {
        let (c, s) = tcp_pair();
        assert!(s.socket().nonblocking().unwrap());
        let mode = s
            .blocking(|raw| {
                raw.write_all(b"sync write").unwrap();
                raw.socket().unwrap().nonblocking().unwrap()
            })
            .unwrap();
        assert!(
            mode,
            "lending leaves the shared file description non-blocking"
        );
        assert_eq!(c.recv(100).unwrap(), b"sync write");

        // A read on the handle waits for data (here on the kernel thread, so
        // the whole kernel waits: the data comes from an OS thread).
        let raw_c = c.blocking(|raw| raw.try_clone()).unwrap().unwrap();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            raw_c.write_all(b"late").unwrap();
        });
        let got = s
            .blocking(|raw| {
                let mut buf = [0u8; 4];
                raw.read_exact(&mut buf).map(|()| buf)
            })
            .unwrap()
            .unwrap();
        assert_eq!(&got, b"late");
        sender.join().unwrap();

        // A read timeout on the handle.
        let e = s
            .blocking(|raw| {
                raw.set_read_timeout(Some(Duration::from_millis(30)));
                raw.read(&mut [0u8; 4])
            })
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");

        // A duplicate handed to a worker thread, like blocking_io_in_thread.
        c.sendall(b"threa").unwrap();
        let reply = s
            .blocking(|raw| -> curio::Result<Vec<u8>> {
                let dup = raw.try_clone()?;
                let r = curio::run_in_thread(move || {
                    let mut buf = [0u8; 5];
                    dup.read_exact(&mut buf).map(|()| buf.to_vec())
                })??;
                Ok(r)
            })
            .unwrap();
        assert!(s.socket().nonblocking().unwrap());
        assert_eq!(reply.unwrap(), b"threa");

        // The handle of a stream over a pipe is a file, not a socket.
        let (r, _w) = io::pipe().unwrap();
        let mut rd = FileStream::from_fd(r).unwrap();
        let e = rd
            .blocking(|raw| raw.socket().map(|_| ()))
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
    });
}

#[test]
fn a_panic_inside_blocking_leaves_the_socket_usable_and_non_blocking() {
    run_real(|| {
        // A std client on an OS thread: if the socket stayed in blocking mode
        // the recv below would block the kernel until this late send (made
        // only when the test says so, or after 10 s), and the test fails on
        // the result instead of hanging.
        let listener = TcpListener::bind(any_port()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (go, go_rx) = std::sync::mpsc::channel::<()>();
        let late = std::thread::spawn(move || {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            let _ = go_rx.recv_timeout(Duration::from_secs(10));
            let _ = c.write_all(b"late");
            std::thread::sleep(Duration::from_millis(200));
        });
        let (s, _) = listener.accept().unwrap();

        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            s.blocking(|raw| {
                assert!(raw.socket().unwrap().nonblocking().unwrap());
                panic!("boom inside blocking()");
            })
        }));
        assert!(r.is_err(), "the panic came through");
        assert!(s.socket().nonblocking().unwrap(), "non-blocking again");

        let ticks = Rc::new(Cell::new(0u32));
        let t = ticks.clone();
        let ticker = curio::spawn(move || -> curio::Result<()> {
            loop {
                curio::sleep(ms(2))?;
                t.set(t.get() + 1);
            }
        });
        let r = curio::timeout_after(ms(100), || s.recv(10));
        assert_eq!(
            outcome(&r),
            "Timeout",
            "an empty recv times out instead of blocking the kernel: {r:?}"
        );
        assert!(ticks.get() > 5, "the kernel kept running other tasks");
        ticker.cancel().unwrap();

        // Streams restore the mode as well.
        let mut st = s.as_stream();
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            st.blocking(|_fd| panic!("boom inside Stream::blocking()"))
        }));
        assert!(r.is_err());
        assert!(st.get_ref().socket().nonblocking().unwrap());
        let r = curio::timeout_after(ms(50), || st.read_some(10));
        assert_eq!(outcome(&r), "Timeout");
        go.send(()).unwrap();
        curio::run_in_thread(move || late.join().unwrap()).unwrap();
    });
}

/// Issue 10, item 3: a task that lends a socket (here, to a worker thread, as
/// `examples/blocking_io_in_thread` does) and waits meanwhile must not turn
/// another task's I/O on the same socket into a call that blocks the kernel.
#[test]
fn lending_a_socket_does_not_stall_other_tasks_using_it() {
    let (recv_took, outcome_text, worst_gap) = run_real(|| {
        let listener = TcpListener::bind(any_port()).unwrap();
        let addr = listener.local_addr().unwrap();
        // The peer sends nothing for 1.5 s, then one byte, then reads the reply.
        let peer = std::thread::spawn(move || {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            std::thread::sleep(Duration::from_millis(1500));
            c.write_all(b"x").unwrap();
            let mut reply = [0u8; 5];
            c.read_exact(&mut reply).unwrap();
            reply
        });
        let (s, _) = listener.accept().unwrap();
        let s = Rc::new(s);

        let lent = Rc::new(Cell::new(false));
        let (s1, l1) = (s.clone(), lent.clone());
        let writer = curio::spawn(move || -> curio::Result<()> {
            s1.blocking(|raw| -> curio::Result<()> {
                let dup = raw.try_clone()?;
                l1.set(true);
                curio::run_in_thread(move || {
                    std::thread::sleep(Duration::from_millis(600));
                    dup.write_all(b"reply")
                })??;
                Ok(())
            })?
        });
        let gaps = Rc::new(Cell::new(Duration::ZERO));
        let g = gaps.clone();
        let heartbeat = curio::spawn(move || -> curio::Result<()> {
            let mut last = std::time::Instant::now();
            loop {
                curio::sleep(ms(20))?;
                let now = std::time::Instant::now();
                g.set(g.get().max(now - last));
                last = now;
            }
        });
        while !lent.get() {
            curio::sleep(ms(1)).unwrap();
        }
        // The socket is lent; the writer waits for its thread. A reader now:
        let t0 = std::time::Instant::now();
        let r = curio::timeout_after(ms(200), || s.recv(10));
        let took = t0.elapsed();
        writer.join().unwrap().unwrap();
        heartbeat.cancel().unwrap();
        assert_eq!(s.recv(10).unwrap(), b"x");
        assert_eq!(
            curio::run_in_thread(move || peer.join().unwrap()).unwrap(),
            *b"reply"
        );
        (took, outcome(&r), gaps.get())
    });
    assert_eq!(outcome_text, "Timeout");
    assert!(
        recv_took < Duration::from_millis(600),
        "a 200 ms recv took {recv_took:?}: it blocked the kernel"
    );
    assert!(
        worst_gap < Duration::from_millis(400),
        "a 20 ms heartbeat saw a gap of {worst_gap:?}"
    );
}

/// Issue 10, item 3: the documented use, a clone handed to a worker thread,
/// keeps working after `blocking()` has returned.
#[test]
fn a_clone_handed_to_a_thread_blocks_there_after_blocking_returns() {
    let got = run_real(|| {
        let (c, s) = tcp_pair();
        let (tx, rx) = std::sync::mpsc::channel();
        s.blocking(|raw| {
            let dup = raw.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 5];
                let r = dup.read_exact(&mut buf).map(|()| buf);
                let _ = tx.send(r.map_err(|e| e.to_string()));
            });
        })
        .unwrap();
        curio::sleep(ms(200)).unwrap(); // blocking() is over; the thread waits
        c.sendall(b"hello").unwrap();
        curio::run_in_thread(move || rx.recv().unwrap()).unwrap()
    });
    assert_eq!(got, Ok(*b"hello"));
}

/// Issue 9, item 3: a stream holding unread bytes refuses to lend its fd, as
/// Curio does ("There is unread buffered data."), for sockets and pipes alike.
#[test]
fn blocking_refuses_while_a_stream_holds_unread_bytes() {
    run_real(|| {
        let (c, s) = tcp_pair();
        let mut st = s.as_stream();
        c.sendall(b"line one\nline two\n").unwrap();
        assert_eq!(st.readline().unwrap(), b"line one\n");
        let ran = Cell::new(false);
        let e = st.blocking(|_| ran.set(true)).unwrap_err();
        assert!(!ran.get(), "the closure ran past unread bytes");
        assert!(
            e.to_string().contains("unread buffered data"),
            "the message says why: {e}"
        );
        assert_eq!(st.readline().unwrap(), b"line two\n", "nothing was lost");
        st.blocking(|_| ran.set(true)).unwrap();
        assert!(ran.get(), "with nothing buffered, blocking() lends the fd");

        let (r, w) = io::pipe().unwrap();
        let mut rd = FileStream::from_fd(r).unwrap();
        let mut wr = FileStream::from_fd(w).unwrap();
        wr.write_all(b"a\nb\n").unwrap();
        assert_eq!(rd.readline().unwrap(), b"a\n");
        let e = rd.blocking(|_| ()).unwrap_err();
        assert!(e.to_string().contains("unread buffered data"), "{e}");
        assert_eq!(rd.readline().unwrap(), b"b\n");
        rd.blocking(|_| ()).unwrap();
    });
}

// ---------------------------------------------------------------------------
// Unix socket pairs and pipes
// ---------------------------------------------------------------------------

#[test]
fn unix_pair_streams_and_half_close() {
    run_real(|| {
        let (a, b) = UnixStream::pair().unwrap();
        a.sendall(b"ping\n").unwrap();
        a.shutdown(std::net::Shutdown::Write).unwrap();
        let mut st = b.as_stream();
        assert_eq!(st.readline().unwrap(), b"ping\n");
        assert_eq!(
            st.readline().unwrap(),
            b"",
            "end of file after the half-close"
        );
        st.write_all(b"pong").unwrap();
        assert_eq!(
            a.recv(10).unwrap(),
            b"pong",
            "the other direction still works"
        );
    });
}

#[test]
fn file_stream_over_a_pipe_reads_lines_and_survives_a_timeout() {
    run_real(|| {
        let (r, w) = io::pipe().unwrap();
        let mut rd = FileStream::from_fd(r).unwrap();
        let mut wr = FileStream::from_fd(w).unwrap();
        let e = curio::timeout_after(ms(30), || rd.readline()).unwrap_err();
        assert!(e.is_timeout());
        wr.write_all(b"first\nsec").unwrap();
        assert_eq!(rd.readline().unwrap(), b"first\n");
        let e = curio::timeout_after(ms(30), || rd.readline()).unwrap_err();
        assert!(e.is_timeout());
        assert_eq!(rd.buffered(), b"sec", "the partial line stays buffered");
        wr.writelines(["ond\n", "tail"]).unwrap();
        wr.close().unwrap();
        assert_eq!(
            rd.readlines().unwrap(),
            vec![b"second\n".to_vec(), b"tail".to_vec()]
        );
        assert_eq!(rd.read_some(10).unwrap(), b"");
    });
}

#[test]
fn a_pipe_writer_blocked_on_a_full_pipe_can_be_cancelled() {
    run_real(|| {
        let (r, w) = io::pipe().unwrap();
        let mut rd = FileStream::from_fd(r).unwrap();
        let wr = FileStream::from_fd(w).unwrap();
        let big = pattern(1 << 20);
        let expected = big.clone();
        let (mut wr, res) = interrupted(Interrupt::Cancel, wr, move |wr| wr.write_all(&big));
        let e = expect_interrupted(Interrupt::Cancel, res);
        let wrote = e.bytes_done().unwrap();
        assert!(wrote > 0 && wrote < expected.len(), "{wrote}");
        let reader = curio::spawn(move || rd.read_all());
        wr.write_all(b"!").unwrap();
        wr.close().unwrap();
        let got = reader.join().unwrap().unwrap();
        assert_eq!(got.len(), wrote + 1);
        assert!(got[..wrote] == expected[..wrote]);
    });
}

/// Issue 9, item 9: `recv(n)` neither allocates `n` up front nor hands back a
/// vector that keeps `n` of capacity; a huge `n` is not a crash.
#[test]
fn recv_with_a_huge_maxsize_returns_what_came_without_keeping_the_capacity() {
    run_real(|| {
        let (a, b) = tcp_pair();
        a.sendall(b"hello").unwrap();
        let got = b.recv(usize::MAX).unwrap();
        assert_eq!(got, b"hello");
        assert!(got.capacity() <= 128, "capacity {}", got.capacity());
        a.sendall(b"again").unwrap();
        let got = b.recv(1 << 30).unwrap();
        assert_eq!(got, b"again");
        assert!(got.capacity() <= 128, "capacity {}", got.capacity());
    });
}

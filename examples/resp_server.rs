//! A small Redis-protocol (RESP) server with pipelining: `PING`, `ECHO`, `SET`,
//! `GET`, `DEL`, `EXISTS`, `INCR` on one in-memory map shared by every
//! connection's task; enough for `redis-cli` and `redis-benchmark`.
//!
//! It shows what curio's streams give an incremental parser: the parser looks
//! at the bytes already buffered ([`Stream::buffered`]) without copying them,
//! consumes each complete command, and asks for more ([`Stream::read_more`],
//! which keeps the unconsumed tail of a partial command). Replies go into a
//! write buffer and are flushed once per batch of pipelined commands, just
//! before the connection waits for more input. The connection is split so that
//! the parsed arguments (borrowed from the read half) and the replies (written
//! to the write half) can be used at once.
//!
//! ```text
//! $ cargo run --release --example resp_server       # port 6380, or give one: -- 7000
//! RESP server on 127.0.0.1:6380
//! $ redis-cli -p 6380 set greeting hello
//! OK
//! $ redis-cli -p 6380 get greeting
//! "hello"
//! $ redis-benchmark -p 6380 -t ping,set,get -P 16 -q
//! ```
//!
//! [`Stream::buffered`]: curio::Stream::buffered
//! [`Stream::read_more`]: curio::Stream::read_more

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::rc::Rc;

use curio::net::{ListenOptions, TcpStream, tcp_server_with};

/// The longest command accepted (all its arguments together).
const MAX_COMMAND: usize = 64 << 20;
/// The most arguments in one command.
const MAX_ARGS: usize = 1 << 20;

type Db = Rc<RefCell<HashMap<Vec<u8>, Vec<u8>>>>;

/// What parsing the front of the buffer found.
enum Parsed {
    /// A whole command: its arguments (ranges into the buffer) and its length.
    Command(usize),
    /// Not all of it has arrived yet.
    Incomplete,
}

/// A protocol error, reported to the client before the connection closes.
struct ProtocolError(&'static str);

/// Finds the end of the line starting at `at` (the index of its `\r\n`).
fn line_end(buf: &[u8], at: usize) -> Option<usize> {
    let nl = buf.get(at..)?.iter().position(|&b| b == b'\n')? + at;
    (nl > at && buf[nl - 1] == b'\r').then_some(nl - 1)
}

/// A decimal number from RESP (`-1` is allowed; nothing else but digits).
fn number(digits: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ProtocolError("invalid number in the protocol"))
}

/// Parses one command at the front of `buf`: a RESP array of bulk strings, or
/// an inline command (words separated by spaces, one line), as redis does.
/// The arguments go into `args` as ranges of `buf`.
fn parse(buf: &[u8], args: &mut Vec<Range<usize>>) -> Result<Parsed, ProtocolError> {
    args.clear();
    if buf.is_empty() {
        return Ok(Parsed::Incomplete);
    }
    if buf[0] != b'*' {
        let Some(end) = line_end(buf, 0) else {
            return if buf.len() > MAX_COMMAND {
                Err(ProtocolError("inline command too long"))
            } else {
                Ok(Parsed::Incomplete)
            };
        };
        let mut start = 0;
        for word in buf[..end].split(|&b| b == b' ') {
            if !word.is_empty() {
                args.push(start..start + word.len());
            }
            start += word.len() + 1;
        }
        return Ok(Parsed::Command(end + 2));
    }
    let Some(end) = line_end(buf, 1) else {
        return Ok(Parsed::Incomplete);
    };
    let n = number(&buf[1..end])?;
    if !(0..=MAX_ARGS as i64).contains(&n) {
        return Err(ProtocolError("invalid multibulk length"));
    }
    let mut at = end + 2;
    for _ in 0..n {
        if at >= buf.len() {
            return Ok(Parsed::Incomplete);
        }
        if buf[at] != b'$' {
            return Err(ProtocolError("expected '$'"));
        }
        let Some(end) = line_end(buf, at + 1) else {
            return Ok(Parsed::Incomplete);
        };
        let len = number(&buf[at + 1..end])?;
        if !(0..=MAX_COMMAND as i64).contains(&len) {
            return Err(ProtocolError("invalid bulk length"));
        }
        let start = end + 2;
        let stop = start + len as usize;
        if buf.len() < stop + 2 {
            return Ok(Parsed::Incomplete);
        }
        if &buf[stop..stop + 2] != b"\r\n" {
            return Err(ProtocolError("bulk string not followed by CRLF"));
        }
        args.push(start..stop);
        at = stop + 2;
    }
    Ok(Parsed::Command(at))
}

/// Writes a bulk string reply.
fn bulk(out: &mut impl std::io::Write, value: &[u8]) -> std::io::Result<()> {
    write!(out, "${}\r\n", value.len())?;
    out.write_all(value)?;
    out.write_all(b"\r\n")
}

/// Runs one command (its arguments are `args` ranges of `buf`) and writes its
/// reply. Nothing is allocated except to store values.
fn execute(
    db: &Db,
    buf: &[u8],
    args: &[Range<usize>],
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    let arg = |i: usize| &buf[args[i].clone()];
    let Some(first) = args.first() else {
        return Ok(()); // an empty inline line: no reply, as redis does
    };
    let name = &buf[first.clone()];
    let is = |cmd: &str| name.eq_ignore_ascii_case(cmd.as_bytes());
    let n = args.len();
    if is("PING") && n == 1 {
        out.write_all(b"+PONG\r\n")
    } else if (is("PING") || is("ECHO")) && n == 2 {
        bulk(out, arg(1))
    } else if is("SET") && n == 3 {
        db.borrow_mut().insert(arg(1).to_vec(), arg(2).to_vec());
        out.write_all(b"+OK\r\n")
    } else if is("GET") && n == 2 {
        match db.borrow().get(arg(1)) {
            Some(v) => bulk(out, v),
            None => out.write_all(b"$-1\r\n"),
        }
    } else if (is("DEL") || is("EXISTS")) && n >= 2 {
        let mut map = db.borrow_mut();
        let del = is("DEL");
        let count = (1..n)
            .filter(|&i| {
                if del {
                    map.remove(arg(i)).is_some()
                } else {
                    map.contains_key(arg(i))
                }
            })
            .count();
        write!(out, ":{count}\r\n")
    } else if is("INCR") && n == 2 {
        let mut map = db.borrow_mut();
        let old = map.get(arg(1)).map(|v| {
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
        });
        match old {
            Some(None) => out.write_all(b"-ERR value is not an integer or out of range\r\n"),
            Some(Some(i64::MAX)) => {
                out.write_all(b"-ERR increment or decrement would overflow\r\n")
            }
            other => {
                let new = other.flatten().unwrap_or(0) + 1;
                map.insert(arg(1).to_vec(), new.to_string().into_bytes());
                write!(out, ":{new}\r\n")
            }
        }
    } else if is("CONFIG") && n == 3 && arg(1).eq_ignore_ascii_case(b"GET") {
        // redis-benchmark asks for `save` and `appendonly`: every setting is
        // there, and empty.
        out.write_all(b"*2\r\n")?;
        bulk(out, arg(2))?;
        bulk(out, b"")
    } else if is("COMMAND") {
        // redis-cli asks for command docs: there are none.
        out.write_all(b"*0\r\n")
    } else if ["PING", "ECHO", "SET", "GET", "DEL", "EXISTS", "INCR"]
        .iter()
        .any(|c| is(c))
    {
        write!(
            out,
            "-ERR wrong number of arguments for '{}' command\r\n",
            String::from_utf8_lossy(name).to_lowercase()
        )
    } else {
        write!(
            out,
            "-ERR unknown command '{}'\r\n",
            String::from_utf8_lossy(name)
        )
    }
}

/// Serves one client: parse every complete command buffered, answer each into
/// the write buffer, flush, and only then wait for more bytes.
fn serve(client: TcpStream, _addr: SocketAddr, db: Db) -> curio::Result<()> {
    client.set_nodelay(true)?;
    let (mut input, mut output) = client.into_split();
    output.set_write_buffer(64 * 1024);
    let mut ranges = Vec::new();
    loop {
        let buf = input.buffered();
        match parse(buf, &mut ranges) {
            Ok(Parsed::Command(len)) => {
                let quit = ranges
                    .first()
                    .is_some_and(|r| buf[r.clone()].eq_ignore_ascii_case(b"QUIT"));
                if quit {
                    output.write_all(b"+OK\r\n")?;
                    return output.close();
                }
                execute(&db, buf, &ranges, &mut output)?;
                input.consume(len);
            }
            Ok(Parsed::Incomplete) => {
                output.flush()?;
                if input.read_more()? == 0 {
                    return Ok(()); // the client closed
                }
            }
            Err(ProtocolError(why)) => {
                output.write_all(format!("-ERR Protocol error: {why}\r\n").as_bytes())?;
                return output.close();
            }
        }
    }
}

fn main() -> curio::Result<()> {
    let port = std::env::args()
        .nth(1)
        .map_or(6380, |p| p.parse().expect("a port number"));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    curio::run(move || {
        let db: Db = Rc::default();
        println!("RESP server on {addr}");
        tcp_server_with(addr, ListenOptions::new().backlog(4096), move |c, a| {
            serve(c, a, db.clone())
        })
    })
}

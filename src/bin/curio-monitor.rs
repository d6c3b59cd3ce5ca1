//! `curio-monitor`: the client for a curio program's monitor (Curio's
//! `python3 -m curio.monitor`).
//!
//! ```text
//! $ cargo run --bin curio-monitor                  # 127.0.0.1:48802
//! $ cargo run --bin curio-monitor -- --port 9000 --host ::1
//!
//! Curio Monitor: 3 tasks running
//! Type help for commands
//! curio > ps
//! ```
//!
//! It copies what you type to the monitor, a line at a time, and what the
//! monitor says to the terminal. The protocol is plain lines of text, so
//! `nc localhost 48802` does the same (without this client's messages).

use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

const USAGE: &str = "usage: curio-monitor [--host HOST] [--port PORT]
  connects to a curio program's monitor (default 127.0.0.1:48802); start the
  program with CURIO_MONITOR=1, or Kernel::builder().with_monitor(true)";

fn main() -> ExitCode {
    let mut host = "127.0.0.1".to_string();
    let mut port: u16 = 48802;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = |args: &mut dyn Iterator<Item = String>| args.next();
        match a.as_str() {
            "-H" | "--host" => match value(&mut args) {
                Some(h) => host = h,
                None => return usage("--host needs a value"),
            },
            "-p" | "--port" => match value(&mut args).map(|p| p.parse()) {
                Some(Ok(p)) => port = p,
                _ => return usage("--port needs a number from 1 to 65535"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }
    match run(&host, port) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("curio-monitor: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage(why: &str) -> ExitCode {
    eprintln!("curio-monitor: {why}\n{USAGE}");
    ExitCode::from(2)
}

fn run(host: &str, port: u16) -> io::Result<()> {
    let addrs: Vec<_> = (host, port).to_socket_addrs()?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
    let mut conn = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, Duration::from_secs(2)) {
            Ok(s) => {
                conn = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let sock = conn.ok_or_else(|| {
        io::Error::new(
            last.kind(),
            format!(
                "cannot connect to {host}:{port}: {last}; is the program running with \
                 its monitor on (CURIO_MONITOR=1)?"
            ),
        )
    })?;
    let mut from_server = sock.try_clone()?;
    // The monitor's output, as it comes (its prompt has no newline).
    let printer = thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut out = io::stdout();
        loop {
            match from_server.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut to_server = sock;
    let stdin = io::stdin();
    for line in stdin.lock().lines() {
        if printer.is_finished() {
            break;
        }
        let line = line?;
        if to_server
            .write_all(line.as_bytes())
            .and_then(|()| to_server.write_all(b"\n"))
            .is_err()
        {
            break;
        }
    }
    // End of input: as Curio's monitor does, that ends the session.
    let _ = to_server.shutdown(Shutdown::Write);
    let _ = printer.join();
    println!();
    Ok(())
}

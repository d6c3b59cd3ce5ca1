//! The tutorial's network examples, run as a user would run them and driven by
//! real clients nobody here wrote: `nc` (netcat-openbsd) and `socat` for the
//! echo servers, `python3 -m http.server` as the server for
//! `simple_http_client`, and tungstenite's WebSocket client (on OS threads)
//! for `websocket_echo_server`.
//!
//! Each server gets a free port on 127.0.0.1 (bound with std, released, and
//! passed as the first argument), is waited for until it accepts, and is
//! killed when the test ends, also when it fails. Every child process runs
//! under a deadline, so a hang fails the test instead of blocking it.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{example, external_tool};

/// How long any one child process or wait may take.
const DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Reads all of `r` on a thread (so a child never blocks on a full pipe).
fn drain(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// A server process, killed when dropped. Its output is collected all along.
struct Server {
    name: String,
    port: u16,
    child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Server {
    /// Starts `cmd` (which must listen on 127.0.0.1:`port`) and waits until
    /// the port accepts connections.
    fn start(name: &str, mut cmd: Command, port: u16) -> Server {
        let mut child = cmd
            .env_remove("CURIO_CLOCK")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let stdout = drain(child.stdout.take().unwrap());
        let stderr = drain(child.stderr.take().unwrap());
        let mut server = Server {
            name: name.to_string(),
            port,
            child,
            stdout: Some(stdout),
            stderr: Some(stderr),
        };
        server.wait_until_accepting();
        server
    }

    /// Starts the example `name` with the port as its first argument.
    fn example(name: &str) -> Server {
        let port = free_port();
        let mut cmd = Command::new(example(name));
        cmd.arg(port.to_string());
        Server::start(name, cmd, port)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn wait_until_accepting(&mut self) {
        let start = Instant::now();
        loop {
            if TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                let (out, err) = self.collect();
                panic!(
                    "{} exited ({status}) before accepting on port {}:\n{out}\n{err}",
                    self.name, self.port
                );
            }
            if start.elapsed() > DEADLINE {
                let _ = self.child.kill();
                let (out, err) = self.collect();
                panic!(
                    "{} did not accept on port {} within {DEADLINE:?}:\n{out}\n{err}",
                    self.name, self.port
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Fails if the server has died.
    fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            let (out, err) = self.collect();
            panic!("{} died ({status}):\n{out}\n{err}", self.name);
        }
    }

    fn collect(&mut self) -> (String, String) {
        let out = self.stdout.take().map(|h| h.join().unwrap_or_default());
        let err = self.stderr.take().map(|h| h.join().unwrap_or_default());
        (
            String::from_utf8_lossy(&out.unwrap_or_default()).into_owned(),
            String::from_utf8_lossy(&err.unwrap_or_default()).into_owned(),
        )
    }

    /// Kills the server and returns its stdout and stderr.
    fn stop(mut self) -> (String, String) {
        self.assert_alive();
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a client process did.
struct Finished {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

/// Runs `cmd` with `input` on its stdin (then end of file), collecting its
/// output; kills it and fails if it takes longer than [`DEADLINE`].
fn run_with_input(mut cmd: Command, input: Vec<u8>) -> Finished {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input);
        // Dropping stdin closes it: end of file for the child.
    });
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            let out = stdout.join().unwrap_or_default();
            let err = stderr.join().unwrap_or_default();
            panic!(
                "{what} did not finish within {DEADLINE:?}; stdout so far ({} bytes):\n{}\nstderr:\n{}",
                out.len(),
                String::from_utf8_lossy(&out[..out.len().min(2000)]),
                String::from_utf8_lossy(&err)
            );
        }
        thread::sleep(Duration::from_millis(5));
    };
    let _ = writer.join();
    Finished {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned(),
    }
}

/// `nc -q 1 127.0.0.1 PORT`: sends stdin, quits a second after its end.
fn nc_q1(nc: &Path, port: u16) -> Command {
    let mut cmd = Command::new(nc);
    cmd.args(["-q", "1", "127.0.0.1", &port.to_string()]);
    cmd
}

/// `nc -N 127.0.0.1 PORT`: shuts down its sending side at the end of stdin and
/// quits when the server closes.
fn nc_half_close(nc: &Path, port: u16) -> Command {
    let mut cmd = Command::new(nc);
    cmd.args(["-N", "127.0.0.1", &port.to_string()]);
    cmd
}

/// `socat -t 10 - TCP:127.0.0.1:PORT`.
fn socat(socat: &Path, port: u16) -> Command {
    let mut cmd = Command::new(socat);
    cmd.args(["-t", "10", "-", &format!("TCP:127.0.0.1:{port}")]);
    cmd
}

#[track_caller]
fn assert_echoed(what: &str, input: &[u8], got: &Finished) {
    assert!(
        got.status.success(),
        "{what}: client failed ({}): {}",
        got.status,
        got.stderr
    );
    if got.stdout != input {
        panic!(
            "{what}: the echo differs: sent {} bytes, got {} bytes back\n\
             first 300 sent: {:?}\nfirst 300 got:  {:?}\nclient stderr: {}",
            input.len(),
            got.stdout.len(),
            String::from_utf8_lossy(&input[..input.len().min(300)]),
            String::from_utf8_lossy(&got.stdout[..got.stdout.len().min(300)]),
            got.stderr
        );
    }
}

/// Lines of text, `lines` of them, tagged with `tag`.
fn text(tag: &str, lines: usize, width: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..lines {
        let head = format!("{tag} line {i} ");
        v.extend_from_slice(head.as_bytes());
        v.extend((0..width.saturating_sub(head.len())).map(|j| b'a' + ((i + j) % 26) as u8));
        v.push(b'\n');
    }
    v
}

/// Drives an echo example with `nc` and `socat`:
/// - eight `nc -q 1` clients at once, each with its own lines;
/// - `nc -N` with a last line that has no newline (the server sees end of
///   file, echoes the rest and closes, and nc quits);
/// - `socat` with 512 KiB of lines, checked byte for byte.
fn check_echo_example(name: &str) {
    let (Some(nc), Some(socat_bin)) = (
        external_tool("nc", "netcat-openbsd"),
        external_tool("socat", "socat"),
    ) else {
        return;
    };
    let mut server = Server::example(name);
    let port = server.port;

    let clients: Vec<_> = (0..8)
        .map(|i| {
            let input = text(&format!("nc client {i}"), 20, 40);
            let cmd = nc_q1(&nc, port);
            thread::spawn(move || {
                let got = run_with_input(cmd, input.clone());
                (input, got)
            })
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        let (input, got) = c.join().unwrap();
        assert_echoed(&format!("{name}, nc client {i}"), &input, &got);
    }
    server.assert_alive();

    let mut input = text("half-close", 5, 30);
    input.extend_from_slice(b"the last line has no newline");
    let got = run_with_input(nc_half_close(&nc, port), input.clone());
    assert_echoed(&format!("{name}, nc -N"), &input, &got);

    let input = text("socat", 512 * 1024 / 100, 100);
    let got = run_with_input(socat(&socat_bin, port), input.clone());
    assert_echoed(&format!("{name}, socat 512 KiB"), &input, &got);

    let (out, err) = server.stop();
    assert!(
        out.contains("Connection from 127.0.0.1:"),
        "{name} reports its connections:\n{out}\n{err}"
    );
    assert!(out.contains("Connection closed"), "{name}:\n{out}\n{err}");
}

// ---------------------------------------------------------------------------
// The echo servers
// ---------------------------------------------------------------------------

#[test]
fn simple_echo_server_echoes_for_nc_and_socat() {
    check_echo_example("simple_echo_server");
}

#[test]
fn simple_echo_server_says_where_it_listens() {
    let server = Server::example("simple_echo_server");
    let port = server.port;
    let (out, _) = server.stop();
    assert!(
        out.contains(&format!("Server listening at 127.0.0.1:{port}")),
        "{out}"
    );
}

#[test]
fn echo_server_echoes_for_nc_and_socat() {
    check_echo_example("echo_server");
}

#[test]
fn stream_echo_server_echoes_for_nc_and_socat() {
    check_echo_example("stream_echo_server");
}

#[test]
fn blocking_io_echoes_for_nc_and_socat() {
    check_echo_example("blocking_io");
}

#[test]
fn blocking_io_in_thread_echoes_for_nc_and_socat() {
    check_echo_example("blocking_io_in_thread");
}

// ---------------------------------------------------------------------------
// simple_http_client against python's http.server
// ---------------------------------------------------------------------------

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "curio-examples-net-{}-{tag}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn simple_http_client_fetches_a_listing_from_python_http_server() {
    let Some(python) = external_tool("python3", "python3") else {
        return;
    };
    let dir = TempDir::new("http");
    for f in ["curio-known-file.txt", "another_entry.html"] {
        std::fs::write(dir.0.join(f), b"content\n").unwrap();
    }
    let port = free_port();
    let mut cmd = Command::new(python);
    cmd.args([
        "-m",
        "http.server",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
    ])
    .arg("--directory")
    .arg(&dir.0);
    let mut server = Server::start("python3 -m http.server", cmd, port);

    for host in ["127.0.0.1", "localhost"] {
        let mut client = Command::new(example("simple_http_client"));
        client
            .args([host, &port.to_string()])
            .env_remove("CURIO_CLOCK");
        let got = run_with_input(client, Vec::new());
        let out = String::from_utf8_lossy(&got.stdout);
        assert!(got.status.success(), "{host}: {}\n{out}", got.stderr);
        assert!(
            out.starts_with("HTTP/1.0 200"),
            "{host}: the status line comes first:\n{out}"
        );
        assert!(
            out.contains("curio-known-file.txt") && out.contains("another_entry.html"),
            "{host}: the body with the directory listing arrives whole:\n{out}"
        );
        assert!(out.contains("</html>"), "{host}: up to the end:\n{out}");
    }
    server.assert_alive();
    let (_, log) = server.stop();
    assert!(log.contains("\"GET / HTTP/1.0\" 200"), "{log}");
}

// ---------------------------------------------------------------------------
// websocket_echo_server with tungstenite's client
// ---------------------------------------------------------------------------

/// One WebSocket client on an OS thread: text and binary messages, one of
/// them large, each echoed back; then a clean close.
fn websocket_client(port: u16, i: usize) {
    use tungstenite::Message;
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let url = format!("ws://127.0.0.1:{port}/client{i}");
    let (mut ws, response) =
        tungstenite::client(url.as_str(), stream).expect("WebSocket handshake");
    assert_eq!(response.status(), 101);
    for round in 0..10 {
        let text = format!("client {i} says hello #{round} ✓");
        ws.send(Message::text(text.clone())).unwrap();
        match ws.read().unwrap() {
            Message::Text(t) => assert_eq!(t.as_str(), text),
            other => panic!("client {i}: expected text, got {other:?}"),
        }
        let bin: Vec<u8> = (0..(round * 1000 + i)).map(|b| (b % 256) as u8).collect();
        ws.send(Message::binary(bin.clone())).unwrap();
        match ws.read().unwrap() {
            Message::Binary(b) => assert!(b[..] == bin[..], "client {i}: binary echo differs"),
            other => panic!("client {i}: expected binary, got {other:?}"),
        }
    }
    let big: Vec<u8> = (0..300_000).map(|b| (b * 7 % 256) as u8).collect();
    ws.send(Message::binary(big.clone())).unwrap();
    match ws.read().unwrap() {
        Message::Binary(b) => assert!(b[..] == big[..], "client {i}: 300 KB echo differs"),
        other => panic!("client {i}: expected binary, got {other:?}"),
    }
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("client {i}: closing: {e}"),
        }
    }
}

#[test]
fn websocket_echo_server_echoes_for_tungstenite_clients_on_threads() {
    let mut server = Server::example("websocket_echo_server");
    let port = server.port;
    thread::scope(|s| {
        let clients: Vec<_> = (0..8)
            .map(|i| s.spawn(move || websocket_client(port, i)))
            .collect();
        for (i, c) in clients.into_iter().enumerate() {
            if let Err(p) = c.join() {
                std::panic::resume_unwind(Box::new(format!(
                    "WebSocket client {i} failed: {}",
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default()
                )));
            }
        }
    });
    server.assert_alive();
    let (out, err) = server.stop();
    assert_eq!(
        out.matches("WebSocket from 127.0.0.1:").count(),
        8,
        "every client was served:\n{out}\n{err}"
    );
    assert_eq!(
        out.matches(" closed").count(),
        8,
        "every client closed cleanly:\n{out}\n{err}"
    );
}

// ---------------------------------------------------------------------------
// resp_server: redis-cli, redis-benchmark and a pipelining Rust client
// ---------------------------------------------------------------------------

/// `redis-cli -p PORT ARGS…`, its output as text.
fn redis_cli(cli: &Path, port: u16, args: &[&str]) -> String {
    let mut cmd = Command::new(cli);
    cmd.args(["-p", &port.to_string()]).args(args);
    let got = run_with_input(cmd, Vec::new());
    assert!(got.status.success(), "redis-cli {args:?}: {}", got.stderr);
    String::from_utf8_lossy(&got.stdout).into_owned()
}

#[test]
fn resp_server_answers_redis_cli() {
    let Some(cli) = external_tool("redis-cli", "redis-tools") else {
        return;
    };
    let server = Server::example("resp_server");
    let p = server.port;
    assert_eq!(redis_cli(&cli, p, &["ping"]), "PONG\n");
    assert_eq!(
        redis_cli(&cli, p, &["set", "greeting", "hello world"]),
        "OK\n"
    );
    assert_eq!(redis_cli(&cli, p, &["get", "greeting"]), "hello world\n");
    assert_eq!(redis_cli(&cli, p, &["echo", "a\r\nb"]), "a\r\nb\n");
    assert_eq!(redis_cli(&cli, p, &["incr", "n"]), "1\n");
    assert_eq!(redis_cli(&cli, p, &["incr", "n"]), "2\n");
    assert_eq!(
        redis_cli(&cli, p, &["exists", "n", "greeting", "nope"]),
        "2\n"
    );
    assert_eq!(redis_cli(&cli, p, &["del", "greeting", "nope"]), "1\n");
    assert_eq!(redis_cli(&cli, p, &["get", "greeting"]), "\n");
    assert!(redis_cli(&cli, p, &["frobnicate"]).contains("unknown command"));
    assert!(redis_cli(&cli, p, &["get"]).contains("wrong number of arguments"));
    server.stop();
}

#[test]
fn resp_server_serves_redis_benchmark_with_and_without_pipelining() {
    let (Some(bench), Some(cli)) = (
        external_tool("redis-benchmark", "redis-tools"),
        external_tool("redis-cli", "redis-tools"),
    ) else {
        return;
    };
    let server = Server::example("resp_server");
    for pipeline in ["1", "32"] {
        let mut cmd = Command::new(&bench);
        cmd.args(["-p", &server.port.to_string(), "-c", "20", "-n", "4000"])
            .args(["-t", "ping,set,get,incr", "-P", pipeline, "-q"]);
        let got = run_with_input(cmd, Vec::new());
        let out = String::from_utf8_lossy(&got.stdout).replace('\r', "\n");
        assert!(
            got.status.success(),
            "redis-benchmark: {}\n{out}",
            got.stderr
        );
        for test in ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR"] {
            assert!(
                out.lines()
                    .any(|l| l.starts_with(&format!("{test}: "))
                        && l.contains("requests per second")),
                "-P {pipeline}: no result for {test}:\n{out}"
            );
        }
    }
    // The benchmark's SET wrote a 3-byte value under its fixed key; INCR
    // counted every request of both runs.
    let value = redis_cli(&cli, server.port, &["get", "key:__rand_int__"]);
    assert_eq!(value.trim_end_matches('\n').len(), 3, "{value:?}");
    assert_eq!(
        redis_cli(&cli, server.port, &["get", "counter:__rand_int__"]),
        "8000\n"
    );
    server.stop();
}

/// A Rust client that pipelines: 3 000 commands in one write, then one command
/// sent a byte at a time, every reply checked byte for byte.
#[test]
fn resp_server_answers_a_pipelining_client_in_order() {
    let server = Server::example("resp_server");
    let mut c = TcpStream::connect(server.addr()).unwrap();
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    let cmd = |args: &[&[u8]]| {
        let mut v = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            v.extend(format!("${}\r\n", a.len()).bytes());
            v.extend_from_slice(a);
            v.extend_from_slice(b"\r\n");
        }
        v
    };
    let mut requests = Vec::new();
    let mut expected = Vec::new();
    for i in 0..1000 {
        let key = format!("k{}", i % 10);
        let value = "v".repeat(i % 300);
        requests.extend(cmd(&[b"SET", key.as_bytes(), value.as_bytes()]));
        expected.extend_from_slice(b"+OK\r\n");
        requests.extend(cmd(&[b"GET", key.as_bytes()]));
        expected.extend(format!("${}\r\n{value}\r\n", value.len()).bytes());
        requests.extend(cmd(&[b"INCR", b"hits"]));
        expected.extend(format!(":{}\r\n", i + 1).bytes());
    }
    c.write_all(&requests).unwrap();
    let mut got = vec![0u8; expected.len()];
    c.read_exact(&mut got).unwrap();
    assert!(got == expected, "the pipelined replies differ");

    // One command in single bytes, and an inline command.
    for b in cmd(&[b"ECHO", b"slow\r\nly"]) {
        c.write_all(&[b]).unwrap();
        thread::sleep(Duration::from_millis(1));
    }
    c.write_all(b"PING\r\n").unwrap();
    let expected = b"$8\r\nslow\r\nly\r\n+PONG\r\n";
    let mut got = vec![0u8; expected.len()];
    c.read_exact(&mut got).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected)
    );

    // A protocol error is answered, then the connection closes.
    c.write_all(b"*1\r\n$x\r\n").unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(
        rest.starts_with(b"-ERR Protocol error"),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
    server.stop();
}

// ---------------------------------------------------------------------------
// simple_ssl_server with curl and openssl; simple_http_client --https
// ---------------------------------------------------------------------------

/// `curl --cacert CA https://HOST:PORT/`: (status, stdout, stderr).
fn curl_https(curl: &Path, ca: &Path, host: &str, port: u16) -> Finished {
    let mut cmd = Command::new(curl);
    cmd.args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .arg(format!("https://{host}:{port}/"));
    run_with_input(cmd, Vec::new())
}

#[test]
fn simple_ssl_server_serves_curl_with_the_self_signed_certificate_it_made() {
    let Some(curl) = external_tool("curl", "curl") else {
        return;
    };
    let server = Server::example("simple_ssl_server");
    let port = server.port;
    let dir = std::env::temp_dir().join(format!("curio-simple-ssl-server-{port}"));
    let cert = dir.join("cert.pem");
    for host in ["localhost", "127.0.0.1"] {
        let got = curl_https(&curl, &cert, host, port);
        let page = String::from_utf8_lossy(&got.stdout);
        assert!(got.status.success(), "{host}: curl failed: {}", got.stderr);
        assert!(
            page.starts_with("<!DOCTYPE html>")
                && page.contains("it probably worked")
                && page.contains("TLSv1_3")
                && page.trim_end().ends_with("</html>"),
            "{host}: {page}"
        );
    }
    let (out, err) = server.stop();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.contains(&format!("certificate: {}", cert.display())),
        "it says where the certificate is:\n{out}\n{err}"
    );
    assert_eq!(
        out.matches("  GET / HTTP/1.1").count(),
        2,
        "it prints each request:\n{out}\n{err}"
    );
}

#[test]
fn simple_http_client_speaks_https_to_simple_ssl_server_and_openssl_agrees() {
    let (Some(curl), Some(openssl)) = (
        external_tool("curl", "curl"),
        external_tool("openssl", "openssl"),
    ) else {
        return;
    };
    let ca = common::pki::Ca::new("examples ca");
    let dir = TempDir::new("https");
    let ca_file = ca.write(&dir.0, "ca");
    let (cert, key) = ca.leaf(&["localhost"]).write(&dir.0, "server");
    let port = free_port();
    let mut cmd = Command::new(example("simple_ssl_server"));
    cmd.arg(port.to_string()).arg(&cert).arg(&key);
    let mut server = Server::start("simple_ssl_server", cmd, port);

    let got = curl_https(&curl, &ca_file, "localhost", port);
    assert!(got.status.success(), "curl: {}", got.stderr);
    assert!(String::from_utf8_lossy(&got.stdout).contains("it probably worked"));

    // openssl s_client, verifying the chain.
    let mut s_client = Command::new(&openssl);
    s_client
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args([
            "-servername",
            "localhost",
            "-verify_return_error",
            "-brief",
            "-ign_eof",
        ])
        .arg("-CAfile")
        .arg(&ca_file);
    let got = run_with_input(s_client, b"GET / HTTP/1.0\r\n\r\n".to_vec());
    let out = String::from_utf8_lossy(&got.stdout);
    assert!(got.status.success(), "s_client: {}", got.stderr);
    assert!(got.stderr.contains("Verification: OK"), "{}", got.stderr);
    assert!(out.starts_with("HTTP/1.0 200 OK\r\n"), "{out}");

    // The tutorial's client, in its HTTPS mode.
    let mut client = Command::new(example("simple_http_client"));
    client
        .args(["--https", "--cacert"])
        .arg(&ca_file)
        .args(["localhost", &port.to_string()])
        .env_remove("CURIO_CLOCK");
    let got = run_with_input(client, Vec::new());
    let out = String::from_utf8_lossy(&got.stdout);
    assert!(
        got.status.success(),
        "simple_http_client --https: {}\n{out}",
        got.stderr
    );
    assert!(out.starts_with("HTTP/1.0 200 OK\r\n"), "{out}");
    assert!(out.trim_end().ends_with("</html>"), "the whole page: {out}");

    // Without --cacert it trusts only the Mozilla roots: refused, saying why.
    let mut client = Command::new(example("simple_http_client"));
    client
        .args(["--https", "localhost", &port.to_string()])
        .env_remove("CURIO_CLOCK");
    let got = run_with_input(client, Vec::new());
    assert!(!got.status.success());
    assert!(
        got.stderr.contains("tls handshake with localhost (")
            && got.stderr.contains("unknown authority"),
        "{}",
        got.stderr
    );
    server.assert_alive();
    let (out, _) = server.stop();
    assert!(
        out.contains(&format!("Serving https://localhost:{port}/")),
        "{out}"
    );
}

// ---------------------------------------------------------------------------
// managed_echo_server: SIGHUP restarts it
// ---------------------------------------------------------------------------

/// A long-lived `nc 127.0.0.1 PORT` whose stdin stays open; its output lines
/// arrive on a channel.
struct NcSession {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
}

impl NcSession {
    fn start(nc: &Path, port: u16) -> NcSession {
        let mut child = Command::new(nc)
            .args(["127.0.0.1", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nc");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        NcSession {
            stdin: child.stdin.take(),
            child,
            lines,
        }
    }

    fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    #[track_caller]
    fn hear(&self, what: &str) -> String {
        self.lines
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("nc heard nothing within {DEADLINE:?}; expected {what:?}"))
    }
}

impl Drop for NcSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn managed_echo_server_says_goodbye_to_every_client_on_sighup_and_starts_fresh() {
    let (Some(nc), Some(kill)) = (
        external_tool("nc", "netcat-openbsd"),
        external_tool("kill", "procps"),
    ) else {
        return;
    };
    let mut server = Server::example("managed_echo_server");
    let port = server.port;
    let mut clients: Vec<NcSession> = (0..4).map(|_| NcSession::start(&nc, port)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.say(&format!("hello from client {i}"));
        assert_eq!(c.hear("the echo"), format!("hello from client {i}"));
    }
    let mut raw = TcpStream::connect(server.addr()).unwrap();
    raw.set_read_timeout(Some(DEADLINE)).unwrap();
    raw.write_all(b"raw\n").unwrap();
    let mut echo = [0; 4];
    raw.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"raw\n");

    let status = Command::new(&kill)
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(c.hear("the goodbye"), "Server going down", "client {i}");
    }
    // Each connection is closed after its goodbye (seen on a plain socket:
    // nc itself stays up while its stdin is open).
    let mut rest = Vec::new();
    raw.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"Server going down\n");
    drop(clients);

    // A fresh server, accepting new clients.
    server.wait_until_accepting();
    server.assert_alive();
    let mut late = NcSession::start(&nc, port);
    late.say("after the restart");
    assert_eq!(late.hear("the echo"), "after the restart");
    drop(late);

    let (out, err) = server.stop();
    assert!(out.starts_with("PID: "), "{out}\n{err}");
    assert_eq!(
        out.matches("Starting the server").count(),
        2,
        "{out}\n{err}"
    );
    assert_eq!(
        out.matches("Server shutting down").count(),
        1,
        "{out}\n{err}"
    );
    assert!(
        out.matches("Connection from 127.0.0.1:").count() >= 6,
        "{out}"
    );
}

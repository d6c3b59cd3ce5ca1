//! TLS servers on 127.0.0.1 for the TLS benchmark (`tls_bench` runs them;
//! `tls_load` drives them): curio's `tls` module, and tokio-rustls on tokio's
//! `current_thread` runtime, with the same rustls configuration (ring
//! provider, an ECDSA P-256 certificate made with rcgen at start-up).
//!
//! ```text
//! tls_server KIND [PORT] [--mode MODE] [--cpu N]
//!   KIND    curio   curio::run, one task per connection (net::run_server,
//!                   TlsAcceptor::accept, then Stream reads and writes)
//!           tokio   tokio current_thread, one task per connection
//!                   (tokio_rustls::TlsAcceptor under tokio::time::timeout,
//!                   AsyncRead/AsyncWrite)
//!   MODE    echo    read up to 16 KiB, write it back, until the client closes
//!                   (the echo and handshake measurements; default)
//!           sink    read to the client's close_notify, then write the byte
//!                   count (8 bytes, little-endian) and close
//!           source  read a byte count (8 bytes), write that many bytes, close
//!   PORT    the port to listen on (default 0: any free port)
//!   --cpu N pin the process to CPU N before any runtime starts
//! ```
//!
//! Once listening it prints `ready PORT CERT`, where CERT is the PEM file of
//! its self-signed certificate (for the client's roots).
//!
//! Both servers do the same work per connection: set `TCP_NODELAY`, run the
//! handshake with a 10 s deadline (curio's default; tokio's under
//! `tokio::time::timeout`, as a server facing the internet must), then the
//! mode's loop, and send `close_notify` at the end.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use curio::tls::rustls::ServerConfig;
use curio_benches::echo::{flag, pin_to_cpu, positional, raise_nofile_limit};

const BUF: usize = 16 * 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Echo,
    Sink,
    Source,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pos = positional(&args);
    let kind = pos.first().map_or("", String::as_str).to_string();
    let port: u16 = pos.get(1).map_or(0, |p| p.parse().expect("PORT"));
    let cpu: i64 = flag(&args, "--cpu", -1);
    let mode = match flag(&args, "--mode", "echo".to_string()).as_str() {
        "echo" => Mode::Echo,
        "sink" => Mode::Sink,
        "source" => Mode::Source,
        m => panic!("unknown --mode {m}; echo, sink or source"),
    };
    if cpu >= 0 {
        pin_to_cpu(cpu as usize).expect("pin to CPU");
    }
    raise_nofile_limit().expect("raise RLIMIT_NOFILE");
    let (config, cert) = make_config();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    match kind.as_str() {
        "curio" => serve_curio(addr, config, cert, mode),
        "tokio" => serve_tokio(addr, config, cert, mode),
        _ => {
            eprintln!("usage: tls_server curio|tokio [PORT] [--mode echo|sink|source] [--cpu N]");
            std::process::exit(2);
        }
    }
}

/// A self-signed ECDSA P-256 certificate for localhost, its PEM written to a
/// temporary file; the server configuration presenting it.
fn make_config() -> (Arc<ServerConfig>, PathBuf) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    let path = std::env::temp_dir().join(format!("curio-tls-bench-{}.pem", std::process::id()));
    std::fs::write(&path, made.cert.pem()).expect("write the certificate");
    let key = curio::tls::pki_types::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
    let config = curio::tls::server_config(vec![made.cert.der().clone()], key).expect("config");
    (Arc::new(config), path)
}

fn ready(port: u16, cert: &std::path::Path) {
    println!("ready {port} {}", cert.display());
    let _ = io::stdout().flush();
}

// ---------------------------------------------------------------------------
// curio
// ---------------------------------------------------------------------------

fn curio_conn(mut s: curio::tls::TlsStream, mode: Mode) -> curio::Result<()> {
    let mut buf = vec![0u8; BUF];
    match mode {
        Mode::Echo => loop {
            let n = match Read::read(&mut s, &mut buf) {
                Ok(0) | Err(_) => return Ok(()),
                Ok(n) => n,
            };
            s.write_all(&buf[..n])?;
        },
        Mode::Sink => {
            let mut total: u64 = 0;
            loop {
                let n = Read::read(&mut s, &mut buf)?;
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            s.write_all(&total.to_le_bytes())?;
            s.shutdown()
        }
        Mode::Source => {
            let n = u64::from_le_bytes(s.read_exactly(8)?.try_into().expect("8 bytes"));
            let mut left = n;
            while left > 0 {
                let k = left.min(BUF as u64) as usize;
                s.write_all(&buf[..k])?;
                left -= k as u64;
            }
            s.shutdown()
        }
    }
}

fn serve_curio(addr: SocketAddr, config: Arc<ServerConfig>, cert: PathBuf, mode: Mode) {
    let acceptor = curio::tls::TlsAcceptor::new(config).handshake_timeout(Some(HANDSHAKE_TIMEOUT));
    let r = curio::run(move || -> curio::Result<()> {
        let listener = curio::net::tcp_server_socket(addr, false)?;
        ready(listener.local_addr()?.port(), &cert);
        curio::net::run_server(listener, move |tcp: curio::net::TcpStream, _| {
            let _ = tcp.set_nodelay(true);
            let s = acceptor.accept(tcp)?;
            curio_conn(s, mode)
        })
    });
    if let Err(e) = r {
        eprintln!("tls_server curio: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------
// tokio-rustls on tokio current_thread
// ---------------------------------------------------------------------------

async fn tokio_conn(
    mut s: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    mode: Mode,
) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; BUF];
    match mode {
        Mode::Echo => loop {
            let n = match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            s.write_all(&buf[..n]).await?;
            s.flush().await?;
        },
        Mode::Sink => {
            let mut total: u64 = 0;
            loop {
                let n = s.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            s.write_all(&total.to_le_bytes()).await?;
        }
        Mode::Source => {
            let mut len = [0u8; 8];
            s.read_exact(&mut len).await?;
            let mut left = u64::from_le_bytes(len);
            while left > 0 {
                let k = left.min(BUF as u64) as usize;
                s.write_all(&buf[..k]).await?;
                left -= k as u64;
            }
        }
    }
    // close_notify at the end, as curio's stream sends on drop.
    let _ = s.shutdown().await;
    Ok(())
}

fn serve_tokio(addr: SocketAddr, config: Arc<ServerConfig>, cert: PathBuf, mode: Mode) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .expect("tokio current_thread runtime");
    let std_listener = StdListener::bind(addr).expect("bind");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let port = std_listener.local_addr().expect("local_addr").port();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
        ready(port, &cert);
        loop {
            let (tcp, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("tls_server tokio: accept: {e}");
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let s = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    _ => return,
                };
                let _ = tokio_conn(s, mode).await;
            });
        }
    });
}

//! The TLS benchmark's load generator: tokio-rustls clients on one tokio
//! `current_thread` runtime (the same client for every server), against
//! `tls_server` on 127.0.0.1:PORT, trusting the certificate file it printed.
//!
//! ```text
//! tls_load PORT --cert FILE [--mode MODE] [--conns N] [--warmup S] [--secs S]
//!               [--bytes B] [--rate R] [--server-pid PID] [--cpu N]
//!   --mode echo       N connections (default 100), each doing sequential
//!                     64-byte round trips; counts round trips
//!          handshake  N clients (default 16), each in a loop: connect, TLS 1.3
//!                     handshake (no resumption), one 64-byte round trip,
//!                     close_notify; counts handshakes
//!          sink       one connection sends B bytes (default 1 GiB) in 64 KiB
//!                     writes, then close_notify; the server answers the count
//!          source     one connection asks for B bytes and reads them to the
//!                     server's close_notify
//!   --warmup S, --secs S   echo and handshake: seconds of load before and while
//!                          measuring (defaults 1 and 5)
//!   --rate R          echo and handshake: paced load, at most R round trips
//!                     (or handshakes) per second in all, so that servers are
//!                     compared at equal load (default 0: as fast as the
//!                     replies come). A pacer task hands out turns every
//!                     millisecond; a connection takes one before each request
//!                     (or connect). Turns still unclaimed a tick later are
//!                     not banked beyond one millisecond's worth: a slow
//!                     server gets a lower rate, never a burst
//!   --server-pid PID  read the server's CPU time (utime + stime, and the
//!                     scheduler's nanosecond sum over its threads) when the
//!                     measured window opens and closes
//!   --cpu N           pin this process to CPU N
//! ```
//!
//! It prints one human line and one machine line:
//! `result mode=M ops=K bytes=B secs=T server_ticks=S server_user_ticks=U server_ns=N load_ticks=L load_ns=LN clk_tck=C`
//! (operations completed in the window: round trips, handshakes, or 1 for a
//! bulk transfer of B bytes).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

use curio_benches::echo::{
    MSG_LEN, clock_ticks_per_sec, cpu_ns, cpu_ticks, cpu_ticks_split, flag, pin_to_cpu, positional,
    raise_nofile_limit,
};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

type Client = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn connect(addr: SocketAddr, connector: &TlsConnector) -> io::Result<Client> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").expect("name");
    connector.connect(name, tcp).await
}

/// Paced load: turns to send a request (or open a connection), handed out at
/// a fixed rate. `None`: unpaced.
type Turns = Option<Arc<Semaphore>>;

/// Waits for a turn; false once the pacer has stopped.
async fn take_turn(turns: &Turns) -> bool {
    match turns {
        None => true,
        Some(sem) => match sem.acquire().await {
            Ok(permit) => {
                permit.forget();
                true
            }
            Err(_) => false,
        },
    }
}

/// Hands out `rate` turns per second, every millisecond (or as soon after as
/// the timer fires: the number handed out follows the clock, not the ticks),
/// until `stop`; then closes the semaphore so that waiting connections end.
/// Turns still unclaimed a tick later, beyond one millisecond's worth, are
/// lost: a server that falls behind gets a lower rate, never a burst.
async fn pacer(sem: Arc<Semaphore>, rate: f64, stop: Arc<AtomicBool>) {
    let start = Instant::now();
    let cap = (rate / 1000.0).ceil() as usize;
    let mut released: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let stale = sem.available_permits().saturating_sub(cap);
        sem.forget_permits(stale);
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        sem.add_permits((due - released) as usize);
        released = due;
    }
    sem.close();
}

/// Sequential 64-byte round trips until `stop`.
async fn echo_conn(c: Client, i: usize, done: Arc<AtomicU64>, stop: Arc<AtomicBool>, turns: Turns) {
    let mut c = c;
    let mut request = [0u8; MSG_LEN];
    for (j, b) in request.iter_mut().enumerate() {
        *b = (i * 31 + j) as u8;
    }
    let mut reply = [0u8; MSG_LEN];
    while !stop.load(Ordering::Relaxed) && take_turn(&turns).await {
        c.write_all(&request).await.expect("write");
        c.flush().await.expect("flush");
        c.read_exact(&mut reply).await.expect("read the echo");
        assert_eq!(reply, request, "echo reply differs");
        done.fetch_add(1, Ordering::Relaxed);
    }
}

/// New connections in a loop: handshake, one round trip, close.
async fn handshake_loop(
    addr: SocketAddr,
    connector: TlsConnector,
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    turns: Turns,
) {
    let request = [7u8; MSG_LEN];
    let mut reply = [0u8; MSG_LEN];
    while !stop.load(Ordering::Relaxed) && take_turn(&turns).await {
        let mut c = connect(addr, &connector).await.expect("handshake");
        c.write_all(&request).await.expect("write");
        c.flush().await.expect("flush");
        c.read_exact(&mut reply).await.expect("read the echo");
        c.shutdown().await.expect("close_notify");
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest).await;
        // No TIME_WAIT left behind: tens of thousands of connections would
        // otherwise use up the ephemeral ports. (Deprecated because a
        // non-zero linger blocks on drop; a zero one does not.)
        #[allow(deprecated)]
        let _ = c.get_ref().0.set_linger(Some(Duration::ZERO));
        drop(c);
        done.fetch_add(1, Ordering::Relaxed);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pos = positional(&args);
    let Some(port) = pos.first().and_then(|p| p.parse::<u16>().ok()) else {
        eprintln!(
            "usage: tls_load PORT --cert FILE [--mode echo|handshake|sink|source] [--conns N] [--warmup S] [--secs S] [--bytes B] [--rate R] [--server-pid PID] [--cpu N]"
        );
        std::process::exit(2);
    };
    let cert: String = flag(&args, "--cert", String::new());
    let mode: String = flag(&args, "--mode", "echo".to_string());
    let default_conns = if mode == "handshake" { 16 } else { 100 };
    let conns: usize = flag(&args, "--conns", default_conns);
    let warmup: f64 = flag(&args, "--warmup", 1.0);
    let secs: f64 = flag(&args, "--secs", 5.0);
    let bytes: u64 = flag(&args, "--bytes", 1u64 << 30);
    let server_pid: i64 = flag(&args, "--server-pid", -1);
    let cpu: i64 = flag(&args, "--cpu", -1);
    let rate: f64 = flag(&args, "--rate", 0.0);
    if cpu >= 0 {
        pin_to_cpu(cpu as usize).expect("pin to CPU");
    }
    raise_nofile_limit().expect("raise RLIMIT_NOFILE");
    let server_ticks = || {
        if server_pid > 0 {
            cpu_ticks_split(&server_pid.to_string()).map_or((-1, -1), |(u, s)| (u as i64, s as i64))
        } else {
            (-1, -1)
        }
    };
    let server_ns = || {
        if server_pid > 0 {
            cpu_ns(&server_pid.to_string()).map_or(-1, |n| n as i64)
        } else {
            -1
        }
    };
    let own_ns = || cpu_ns("self").unwrap_or(0);

    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&cert).expect("--cert: a PEM file") {
        roots.add(c.expect("a certificate")).expect("a usable root");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(curio::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    let connector = TlsConnector::from(Arc::new(config));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // (server ticks, server ns, own ticks, own ns) when the window opens or closes.
    let snap = || {
        (
            server_ticks(),
            server_ns(),
            cpu_ticks("self").unwrap_or(0),
            own_ns(),
        )
    };
    let (ops, dt, w0, w1) = rt.block_on(async move {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        match mode.as_str() {
            "echo" | "handshake" => {
                let turns: Turns = (rate > 0.0).then(|| Arc::new(Semaphore::new(0)));
                let pace = turns
                    .clone()
                    .map(|sem| tokio::spawn(pacer(sem, rate, stop.clone())));
                let mut tasks = Vec::new();
                for i in 0..conns {
                    let (d, s, t) = (done.clone(), stop.clone(), turns.clone());
                    if mode == "echo" {
                        let c = connect(addr, &connector).await.expect("connect");
                        tasks.push(tokio::spawn(echo_conn(c, i, d, s, t)));
                    } else {
                        let c = connector.clone();
                        tasks.push(tokio::spawn(handshake_loop(addr, c, d, s, t)));
                    }
                }
                tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
                let (n0, t0, w0) = (done.load(Ordering::Relaxed), Instant::now(), snap());
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                let (n1, t1, w1) = (done.load(Ordering::Relaxed), Instant::now(), snap());
                stop.store(true, Ordering::Relaxed);
                if let Some(p) = pace {
                    let _ = p.await;
                }
                for t in tasks {
                    let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
                }
                (n1 - n0, (t1 - t0).as_secs_f64(), w0, w1)
            }
            "sink" | "source" => {
                let mut c = connect(addr, &connector).await.expect("connect");
                let (t0, w0) = (Instant::now(), snap());
                if mode == "sink" {
                    let chunk = vec![0x5au8; 64 * 1024];
                    let mut left = bytes;
                    while left > 0 {
                        let k = left.min(chunk.len() as u64) as usize;
                        c.write_all(&chunk[..k]).await.expect("write");
                        left -= k as u64;
                    }
                    c.shutdown().await.expect("close_notify");
                    let mut count = [0u8; 8];
                    c.read_exact(&mut count).await.expect("the count");
                    assert_eq!(u64::from_le_bytes(count), bytes, "the server counted");
                } else {
                    c.write_all(&bytes.to_le_bytes()).await.expect("write");
                    c.flush().await.expect("flush");
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut got: u64 = 0;
                    loop {
                        let n = c.read(&mut buf).await.expect("read");
                        if n == 0 {
                            break;
                        }
                        got += n as u64;
                    }
                    assert_eq!(got, bytes, "the server sent");
                }
                let (t1, w1) = (Instant::now(), snap());
                (1, (t1 - t0).as_secs_f64(), w0, w1)
            }
            m => panic!("unknown --mode {m}"),
        }
    });
    let mode: String = flag(&args, "--mode", "echo".to_string());
    let ((s0, sn0, l0, ln0), (s1, sn1, l1, ln1)) = (w0, w1);
    let server_ns = if sn0 >= 0 && sn1 >= 0 { sn1 - sn0 } else { -1 };
    let load_ns = ln1.saturating_sub(ln0);
    let (server_user, server_sys) = if s0.0 >= 0 && s1.0 >= 0 {
        (s1.0 - s0.0, s1.1 - s0.1)
    } else {
        (-1, -1)
    };
    let server = if server_user >= 0 {
        server_user + server_sys
    } else {
        -1
    };
    let load = l1.saturating_sub(l0);
    let clk = clock_ticks_per_sec();
    println!(
        "{mode}: {ops} operations in {dt:.3} s = {:.0}/s; server CPU {server} ticks, load generator CPU {load} ticks",
        ops as f64 / dt
    );
    println!(
        "result mode={mode} ops={ops} bytes={bytes} secs={dt:.6} server_ticks={server} server_user_ticks={server_user} server_ns={server_ns} load_ticks={load} load_ns={load_ns} clk_tck={clk}"
    );
}

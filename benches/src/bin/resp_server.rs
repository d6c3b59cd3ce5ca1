//! RESP (Redis protocol) servers of the same shape on one thread, for counting
//! system calls per request with `strace -f -c` while `redis-benchmark` drives
//! them (`benches/resp_syscalls.sh`).
//!
//! ```text
//! resp_server KIND [PORT]
//!   KIND   curio   curio::run, a task per connection: split stream, parse what
//!                  is buffered, replies into the write buffer, flush, read_more
//!          tokio   tokio current_thread, a task per connection: split stream,
//!                  parse what is buffered, replies into a Vec, write_all, read_buf
//!   PORT   the port to listen on (default 6380)
//! ```
//!
//! Both parse with `curio_benches::resp` (the code of `examples/resp_server.rs`)
//! and read into the spare capacity of a growing buffer that keeps the
//! unconsumed tail of a partial command. Once listening, each prints `ready PORT`.

use std::io::Write as _;
use std::net::SocketAddr;

use curio_benches::resp::{Db, Parsed, ProtocolError, execute, parse};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kind = args.first().map_or("", String::as_str);
    let port: u16 = args.get(1).map_or(6380, |p| p.parse().expect("PORT"));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    match kind {
        "curio" => serve_curio(addr),
        "tokio" => serve_tokio(addr),
        _ => {
            eprintln!("usage: resp_server curio|tokio [PORT]");
            std::process::exit(2);
        }
    }
}

fn ready(port: u16) {
    println!("ready {port}");
    let _ = std::io::stdout().flush();
}

fn serve_curio(addr: SocketAddr) {
    use curio::net::{ListenOptions, TcpStream, tcp_server_socket_with};

    fn serve(client: TcpStream, db: Db) -> curio::Result<()> {
        client.set_nodelay(true)?;
        let (mut input, mut output) = client.into_split();
        output.set_write_buffer(64 * 1024);
        let mut ranges = Vec::new();
        loop {
            let buf = input.buffered();
            match parse(buf, &mut ranges) {
                Ok(Parsed::Command(len)) => {
                    execute(&db, buf, &ranges, &mut output)?;
                    input.consume(len);
                }
                Ok(Parsed::Incomplete) => {
                    output.flush()?;
                    if input.read_more()? == 0 {
                        return Ok(());
                    }
                }
                Err(ProtocolError(why)) => {
                    output.write_all(format!("-ERR Protocol error: {why}\r\n").as_bytes())?;
                    return output.close();
                }
            }
        }
    }

    curio::run(move || {
        let listener =
            tcp_server_socket_with(addr, ListenOptions::new().backlog(4096)).expect("listen");
        ready(listener.local_addr().expect("local_addr").port());
        let db: Db = Db::default();
        curio::net::run_server(listener, move |c, _| serve(c, db.clone()))
    })
    .expect("curio server");
}

fn serve_tokio(addr: SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn serve(stream: tokio::net::TcpStream, db: Db) -> std::io::Result<()> {
        stream.set_nodelay(true)?;
        let (mut rd, mut wr) = stream.into_split();
        let mut input: Vec<u8> = Vec::with_capacity(8 * 1024);
        let mut pos = 0;
        let mut output: Vec<u8> = Vec::with_capacity(64 * 1024);
        let mut ranges = Vec::new();
        loop {
            let buf = &input[pos..];
            match parse(buf, &mut ranges) {
                Ok(Parsed::Command(len)) => {
                    execute(&db, buf, &ranges, &mut output)?;
                    pos += len;
                }
                Ok(Parsed::Incomplete) => {
                    if !output.is_empty() {
                        wr.write_all(&output).await?;
                        output.clear();
                    }
                    if pos == input.len() {
                        input.clear();
                        pos = 0;
                    } else if pos > 0 && input.capacity() - input.len() < 8 * 1024 {
                        input.drain(..pos);
                        pos = 0;
                    }
                    input.reserve(8 * 1024);
                    if rd.read_buf(&mut input).await? == 0 {
                        return Ok(());
                    }
                }
                Err(ProtocolError(why)) => {
                    output.extend_from_slice(format!("-ERR Protocol error: {why}\r\n").as_bytes());
                    wr.write_all(&output).await?;
                    return Ok(());
                }
            }
        }
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio current_thread runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        ready(listener.local_addr().expect("local_addr").port());
        let db: Db = Db::default();
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("resp_server tokio: accept: {e}");
                    continue;
                }
            };
            let db = db.clone();
            tokio::task::spawn_local(async move {
                let _ = serve(stream, db).await;
            });
        }
    });
}

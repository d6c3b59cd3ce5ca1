//! Interop: an existing synchronous crate serving many clients as tasks.
//!
//! `tungstenite` is a blocking WebSocket library: it takes any
//! `impl Read + Write`. A curio `TcpStream` is one, and its reads and writes
//! suspend only the calling task, so this is a WebSocket echo server for
//! thousands of clients on one thread, written as plain synchronous code.
//! Cancellation still works: it reaches tungstenite as an `io::Error` that
//! `curio::Error::from` recognises.
//!
//! ```text
//! $ cargo run --example websocket_echo_server     # port 25000, or give one: -- 30000
//! ```

use std::net::SocketAddr;

use curio::net::{TcpStream, tcp_server};
use tungstenite::Message;

fn ws_client(client: TcpStream, addr: SocketAddr) -> curio::Result<()> {
    let mut ws = match tungstenite::accept(client) {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("{addr}: handshake failed: {e}");
            return Ok(());
        }
    };
    println!("WebSocket from {addr}");
    loop {
        match ws.read() {
            Ok(msg @ (Message::Text(_) | Message::Binary(_))) => match ws.send(msg) {
                Ok(()) => {}
                Err(e) => return finish(addr, e),
            },
            Ok(_) => {} // pings are answered by tungstenite itself
            Err(e) => return finish(addr, e),
        }
    }
}

/// Ends a connection: a normal close is fine; a cancellation is handed on.
fn finish(addr: SocketAddr, e: tungstenite::Error) -> curio::Result<()> {
    match e {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            println!("{addr} closed");
            Ok(())
        }
        tungstenite::Error::Io(io) => {
            let e = curio::Error::from(io);
            if e.is_cancellation() {
                return Err(e); // a cancelled server: let the task end as cancelled
            }
            println!("{addr}: {e}");
            Ok(())
        }
        other => {
            println!("{addr}: {other}");
            Ok(())
        }
    }
}

fn main() -> curio::Result<()> {
    let port = std::env::args()
        .nth(1)
        .map_or(25000, |p| p.parse().expect("a port number"));
    curio::run(|| tcp_server(SocketAddr::from(([127, 0, 0, 1], port)), ws_client))
}

//! The tutorial's "Blocking I/O": inside `blocking`, the raw socket is in
//! blocking mode and can be handed to synchronous code (here, std's
//! `Write::write_all` on a socket2 socket). Non-blocking mode is restored after.
//!
//! ```text
//! $ cargo run --example blocking_io               # port 25000, or give one: -- 30000
//! ```

use std::io::Write;
use std::net::SocketAddr;

use curio::net::{TcpStream, tcp_server};

fn echo_client(client: TcpStream, addr: SocketAddr) -> curio::Result<()> {
    println!("Connection from {addr}");
    loop {
        let data = client.recv(1000)?;
        if data.is_empty() {
            break;
        }
        // Synchronous code gets the raw socket, in blocking mode.
        client.blocking(|raw| (&*raw).write_all(&data))??;
    }
    println!("Connection closed");
    Ok(())
}

fn main() -> curio::Result<()> {
    let port = std::env::args()
        .nth(1)
        .map_or(25000, |p| p.parse().expect("a port number"));
    curio::run(|| tcp_server(SocketAddr::from(([127, 0, 0, 1], port)), echo_client))
}

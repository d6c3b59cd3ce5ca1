//! The tutorial's "A Stream-Based Echo Server": `as_stream` wraps the socket in
//! a file-like stream, read line by line.
//!
//! ```text
//! $ cargo run --example stream_echo_server        # port 25000, or give one: -- 30000
//! $ nc localhost 25000
//! ```

use std::net::SocketAddr;

use curio::net::{TcpStream, tcp_server};

fn echo_client(client: TcpStream, addr: SocketAddr) -> curio::Result<()> {
    println!("Connection from {addr}");
    let mut s = client.as_stream();
    // Curio's `async for line in s`.
    while let Some(line) = s.next_line()? {
        s.write_all(&line)?;
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

//! The tutorial's echo server written with `tcp_server`, which creates the
//! listening socket, runs a task per client and closes each client's socket
//! when its handler returns.
//!
//! ```text
//! $ cargo run --example echo_server               # port 25000, or give one: -- 30000
//! $ nc localhost 25000
//! ```

use std::net::SocketAddr;

use curio::net::{TcpStream, tcp_server};

fn echo_client(client: TcpStream, addr: SocketAddr) -> curio::Result<()> {
    println!("Connection from {addr}");
    loop {
        let data = client.recv(1000)?;
        if data.is_empty() {
            break;
        }
        client.sendall(&data)?;
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

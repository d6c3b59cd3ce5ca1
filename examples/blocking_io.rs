//! The tutorial's "Blocking I/O": `blocking` lends the socket to synchronous
//! code as a handle whose calls wait until they can proceed (here `write_all`,
//! which any `std::io::Write` code could make). The wait blocks the calling
//! thread, here the kernel's; the socket itself stays non-blocking, so other
//! tasks using it are never stalled by the loan.
//!
//! ```text
//! $ cargo run --example blocking_io               # port 25000, or give one: -- 30000
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
        // Synchronous code gets a handle whose calls block.
        client.blocking(|raw| raw.write_all(&data))??;
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

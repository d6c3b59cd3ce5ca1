//! The tutorial's blocking I/O combined with `run_in_thread`: a clone of the
//! lent handle, with a duplicate fd of its own, is used from a worker thread,
//! so only that thread blocks and the kernel never does. A hybrid design:
//! curio coordinates many idle connections, threads run the synchronous work.
//!
//! ```text
//! $ cargo run --example blocking_io_in_thread     # port 25000, or give one: -- 30000
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
        client.blocking(|raw| -> curio::Result<()> {
            // The worker thread owns a clone: its calls block that thread
            // only, also after `blocking` has returned.
            let raw = raw.try_clone()?;
            curio::run_in_thread(move || raw.write_all(&data))??;
            Ok(())
        })??;
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

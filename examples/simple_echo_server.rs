//! The tutorial's "A Simple Echo Server": sockets used directly. A task per
//! client; each echoes what it receives until the client closes.
//!
//! ```text
//! $ cargo run --example simple_echo_server        # port 25000, or give one: -- 30000
//! Server listening at 127.0.0.1:25000
//! $ nc localhost 25000
//! Hello
//! Hello
//! ```

use std::net::SocketAddr;

use curio::net::{TcpListener, TcpStream};

fn echo_server(address: SocketAddr) -> curio::Result<()> {
    let sock = TcpListener::bind(address)?; // SO_REUSEADDR, listening
    println!("Server listening at {}", sock.local_addr()?);
    loop {
        let (client, addr) = sock.accept()?;
        curio::task::Builder::new()
            .daemon(true)
            .spawn(move || echo_client(client, addr))?;
    }
}

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
    Ok(()) // `client` is dropped here: closed
}

fn main() -> curio::Result<()> {
    let port = std::env::args()
        .nth(1)
        .map_or(25000, |p| p.parse().expect("a port number"));
    curio::run(|| echo_server(SocketAddr::from(([127, 0, 0, 1], port))))
}

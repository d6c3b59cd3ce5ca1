//! The tutorial's "Making Connections": a plain HTTP GET with
//! `open_connection`, printing the response.
//!
//! ```text
//! $ cargo run --example simple_http_client -- www.python.org 80
//! HTTP/1.1 301 Moved Permanently
//! ...
//! ```
//!
//! (This machine reaches no outside host; point it at a local server, e.g.
//! `python3 -m http.server 8000` and `-- localhost 8000`.)

fn main() -> curio::Result<()> {
    let mut args = std::env::args().skip(1);
    let host = args.next().unwrap_or_else(|| "localhost".into());
    let port: u16 = args
        .next()
        .map_or(80, |p| p.parse().expect("a port number"));
    curio::run(|| -> curio::Result<()> {
        let sock = curio::net::open_connection(&host, port)?;
        let request = format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n");
        sock.sendall(request.as_bytes())?;
        let mut chunks = Vec::new();
        loop {
            let chunk = sock.recv(10000)?;
            if chunk.is_empty() {
                break;
            }
            chunks.extend_from_slice(&chunk);
        }
        print!("{}", String::from_utf8_lossy(&chunks));
        Ok(())
    })
}

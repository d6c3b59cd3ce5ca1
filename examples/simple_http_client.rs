//! The tutorial's "Making Connections": an HTTP GET with `open_connection`,
//! printing the response; with `--https`, the same over TLS (the tutorial's
//! second version), the server's certificate verified for the host name.
//!
//! ```text
//! $ cargo run --example simple_http_client -- www.python.org 80
//! HTTP/1.1 301 Moved Permanently
//! ...
//! $ cargo run --example simple_http_client -- --https www.python.org     # port 443
//! HTTP/1.1 200 OK
//! ...
//! ```
//!
//! Without a way out to the Internet, point it at a local server, e.g.
//! `python3 -m http.server 8000` and `-- localhost 8000`, or the
//! `simple_ssl_server` example and `-- --https --cacert CERT.pem localhost
//! 10000` (`--cacert` trusts the certificates in that PEM file instead of the
//! Mozilla roots). It prints the response as it came, headers and body; a
//! failure (a name that does not resolve, a certificate that does not verify)
//! is printed on stderr and the exit status is 1.

use curio::net::Connect;
use curio::tls::{self, TlsConnector};

fn main() {
    if let Err(e) = fetch() {
        eprintln!("simple_http_client: {e}");
        std::process::exit(1);
    }
}

fn fetch() -> curio::Result<()> {
    let mut https = false;
    let mut cacert = None;
    let mut rest = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--https" => https = true,
            "--cacert" => cacert = Some(args.next().expect("--cacert takes a PEM file")),
            _ => rest.push(a),
        }
    }
    let host = rest.first().cloned().unwrap_or_else(|| "localhost".into());
    let port: u16 = rest.get(1).map_or(if https { 443 } else { 80 }, |p| {
        p.parse().expect("a port number")
    });
    let connector = match &cacert {
        None => TlsConnector::default(),
        Some(path) => {
            let mut roots = tls::rustls::RootCertStore::empty();
            for cert in tls::load_certs(path)? {
                roots.add(cert).map_err(std::io::Error::other)?;
            }
            TlsConnector::new(tls::client_config_with_roots(roots))
        }
    };
    let request = format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n");
    curio::run(|| -> curio::Result<()> {
        if !https {
            let sock = curio::net::open_connection(&host, port)?;
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
            return Ok(());
        }
        let mut sock = Connect::new(&host, port).tls_with(&connector).open()?;
        sock.write_all(request.as_bytes())?;
        // Up to the server's close_notify; a server that hangs up without one
        // ends this with rustls's "unexpected EOF" error.
        let mut chunks = Vec::new();
        loop {
            let chunk = sock.read_some(10000)?;
            if chunk.is_empty() {
                break;
            }
            chunks.extend_from_slice(&chunk);
        }
        print!("{}", String::from_utf8_lossy(&chunks));
        Ok(())
    })
}

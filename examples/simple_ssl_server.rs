//! The tutorial's "An SSL Server": `tcp_server` with TLS. Each client's task
//! runs the handshake, reads the browser's request headers (printing them)
//! and answers with a small HTML page.
//!
//! ```text
//! $ cargo run --example simple_ssl_server                  # port 10000, or: -- 30000
//! No certificate given: made a self-signed one for localhost and 127.0.0.1
//!   certificate: /tmp/curio-simple-ssl-server-10000/cert.pem
//!   key:         /tmp/curio-simple-ssl-server-10000/key.pem
//! Serving https://localhost:10000/
//! $ curl --cacert /tmp/curio-simple-ssl-server-10000/cert.pem https://localhost:10000/
//! ```
//!
//! With your own certificate chain and key (PEM files):
//! `cargo run --example simple_ssl_server -- 10000 cert.pem key.pem`.
//! A browser pointed at `https://localhost:10000` warns about a self-signed
//! certificate; accept it to see the page.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use curio::tls::{self, TlsStream};

fn handler(mut client: TlsStream, addr: SocketAddr) -> curio::Result<()> {
    println!("Connection from {addr}");
    // The request line and headers, up to the blank line.
    for line in client.lines() {
        let line = line?;
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        println!("  {line}");
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>curio</title></head>\n<body>\n\
         <h1>If you're seeing this, it probably worked. Yay!</h1>\n\
         <p>Served over {:?} by a curio task; {now} seconds since 1970.</p>\n\
         </body></html>\n",
        client.get_ref().protocol_version().expect("handshake done")
    );
    let head = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    client.writelines([head.as_bytes(), body.as_bytes()])?;
    client.shutdown()?; // close_notify: the browser sees a clean end
    println!("Connection closed");
    Ok(())
}

/// Makes a self-signed certificate for localhost in a directory named after
/// the port; returns the certificate and key paths.
fn self_signed(port: u16) -> std::io::Result<(PathBuf, PathBuf)> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let made = rcgen::generate_simple_self_signed(names).map_err(std::io::Error::other)?;
    let dir = std::env::temp_dir().join(format!("curio-simple-ssl-server-{port}"));
    std::fs::create_dir_all(&dir)?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem())?;
    std::fs::write(&key, made.signing_key.serialize_pem())?;
    Ok((cert, key))
}

fn main() -> curio::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port: u16 = args
        .first()
        .map_or(10000, |p| p.parse().expect("a port number"));
    let (cert, key) = match (args.get(1), args.get(2)) {
        (Some(c), Some(k)) => (PathBuf::from(c), PathBuf::from(k)),
        _ => {
            let (c, k) = self_signed(port)?;
            println!("No certificate given: made a self-signed one for localhost and 127.0.0.1");
            println!("  certificate: {}", c.display());
            println!("  key:         {}", k.display());
            (c, k)
        }
    };
    let config = tls::server_config_from_pem(&cert, &key)?;
    println!("Serving https://localhost:{port}/");
    curio::run(|| tls::tcp_server(SocketAddr::from(([127, 0, 0, 1], port)), config, handler))
}

//! The tutorial's "A Managed Echo Server": `SIGHUP` restarts the server. The
//! server task and every client are cancelled; each client says goodbye on its
//! connection and leaves the set of active clients; then a fresh server starts
//! with no connections.
//!
//! ```text
//! $ cargo run --example managed_echo_server      # port 25000, or give one: -- 30000
//! PID: 36070
//! Starting the server
//! $ nc localhost 25000                           # in other terminals
//! $ kill -HUP 36070                              # every nc gets "Server going down"
//! ```
//!
//! The server prints a line per client and, on each `SIGHUP`:
//!
//! ```text
//! Connection from 127.0.0.1:41142
//! Connection from 127.0.0.1:41152
//! Server shutting down
//! Starting the server
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

use curio::TaskRef;
use curio::net::{TcpStream, tcp_server};
use curio::signal::{SIGHUP, SignalSet};

/// The active clients, by task id.
type Clients = Rc<RefCell<HashMap<u64, TaskRef>>>;

fn echo(client: &TcpStream) -> curio::Result<()> {
    loop {
        let data = client.recv(1000)?;
        if data.is_empty() {
            return Ok(());
        }
        client.sendall(&data)?;
    }
}

fn echo_client(client: TcpStream, addr: SocketAddr, clients: Clients) -> curio::Result<()> {
    let task = curio::current_task();
    clients.borrow_mut().insert(task.id(), task.clone());
    // `finally: clients.remove(task)`, however the handler ends.
    struct Leave(Clients, u64);
    impl Drop for Leave {
        fn drop(&mut self) {
            self.0.borrow_mut().remove(&self.1);
        }
    }
    let _leave = Leave(clients, task.id());
    println!("Connection from {addr}");
    match echo(&client) {
        Ok(()) => println!("Connection closed"),
        Err(e) if e.is_cancelled() => client.sendall(b"Server going down\n")?,
        Err(e) => return Err(e),
    }
    Ok(())
}

fn serve(addr: SocketAddr) -> curio::Result<()> {
    let clients: Clients = Rc::default();
    loop {
        let sigset = SignalSet::new(&[SIGHUP])?;
        println!("Starting the server");
        let c = clients.clone();
        let serv_task =
            curio::spawn(move || tcp_server(addr, move |sock, a| echo_client(sock, a, c.clone())));
        sigset.wait()?;
        println!("Server shutting down");
        serv_task.cancel()?;
        // Cancelling the server already cancelled its clients; this is the
        // tutorial's belt and braces.
        let remaining: Vec<TaskRef> = clients.borrow().values().cloned().collect();
        for task in remaining {
            task.cancel()?;
        }
    }
}

fn main() -> curio::Result<()> {
    let port = std::env::args()
        .nth(1)
        .map_or(25000, |p| p.parse().expect("a port number"));
    println!("PID: {}", std::process::id());
    curio::run(|| serve(SocketAddr::from(([127, 0, 0, 1], port))))
}

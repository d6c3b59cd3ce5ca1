//! The monitor: a server on its own OS thread that shows what a running
//! program's tasks are doing, even when its kernel is stuck (Curio's
//! `curio.monitor`).
//!
//! Turn it on with [`Builder::with_monitor`](crate::kernel::Builder::with_monitor)
//! or `CURIO_MONITOR=1`, then connect with `cargo run --bin curio-monitor` (or
//! `nc localhost 48802`). Commands, matched by prefix as in Curio:
//!
//! | command | what it does |
//! | --- | --- |
//! | `ps` | the task table: id, state, cycles, time left, CPU time, stack used/size, name |
//! | `where ID` | the task's real backtrace, the runtime's frames folded (`where ID full`: all frames) |
//! | `where all`, `dump` | every task's row and backtrace |
//! | `parents ID` | the task and its ancestors |
//! | `cancel ID` | cancels the task, as `TaskRef::cancel_nowait` does |
//! | `signal NAME` | sends a signal to the program (`signal SIGHUP`) |
//! | `help`, `quit`, `exit` | |
//!
//! # Invariants
//!
//! - The server and each client run on OS threads of their own; they reach
//!   the kernel only through a [`KernelHandle`], whose every question has a
//!   timeout. When the kernel does not answer (a task runs without
//!   suspending), the answer says so from the kernel's per-switch record:
//!   "kernel busy in task 7 ('spin') for 3.100 s", and `ps` shows the last
//!   table it had.
//! - Bad input never ends a session: an unknown command, a bad argument, a
//!   line of a megabyte or of binary garbage each get one line back. At most
//!   [`MAX_CLIENTS`] sessions run at once; one more is told so and closed.
//! - It listens on loopback unless given another address explicitly, and
//!   stops (closing its sessions) when the kernel's `run` ends.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! let kernel = curio::Kernel::builder().with_monitor(true).build();
//! kernel.run(|| curio::sleep(Duration::from_secs(3600))).unwrap();
//! // meanwhile, in another terminal:  nc localhost 48802   then  ps
//! ```

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::debug::{Hook, KernelHandle, Snapshot};
use crate::kernel::{Builder, Service};
use crate::signal;

/// The monitor's port (Curio's).
pub const DEFAULT_PORT: u16 = 48802;

/// The most sessions served at once.
pub const MAX_CLIENTS: usize = 64;

/// The longest command line read; longer ones are refused (and skipped).
pub const MAX_LINE: usize = 4096;

/// How long a command waits for the kernel before describing what keeps it
/// busy instead.
const ASK: Duration = Duration::from_millis(30);

/// `where` waits a little longer: the task is resumed to capture its stack.
const ASK_WHERE: Duration = Duration::from_millis(200);

/// The prompt, written after every answer (without a newline).
const PROMPT: &str = "curio > ";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

inventory::submit! {
    Service { attach: attach_monitor }
}

inventory::submit! {
    Service { attach: attach_sigquit_dump }
}

/// Where each running kernel's monitor listens, by kernel id.
static ADDRESSES: Mutex<Vec<(u64, SocketAddr)>> = Mutex::new(Vec::new());

/// Where the running kernel's monitor listens (useful with port 0, which
/// picks a free port); `None` if it has no monitor, or its monitor could not
/// listen.
///
/// ```
/// let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
/// let kernel = curio::Kernel::builder().monitor_address(addr).build();
/// kernel.run(|| {
///     let at = curio::monitor::address().unwrap();
///     assert!(at.ip().is_loopback() && at.port() != 0);
/// }).unwrap();
/// ```
///
/// # Panics
///
/// Outside a curio task.
pub fn address() -> Option<SocketAddr> {
    let kernel =
        crate::trap::kernel_id().expect("curio::monitor::address must be called from a curio task");
    lock(&ADDRESSES)
        .iter()
        .find(|(k, _)| *k == kernel)
        .map(|(_, a)| *a)
}

fn attach_monitor(config: &Builder) -> Option<Arc<dyn Hook>> {
    let addr = config.monitor()?;
    Some(Arc::new(MonitorHook {
        addr,
        server: Mutex::new(None),
    }))
}

fn attach_sigquit_dump(config: &Builder) -> Option<Arc<dyn Hook>> {
    config
        .wants_sigquit_dump()
        .then(|| Arc::new(SigquitDump::default()) as Arc<dyn Hook>)
}

// ---------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------

/// The monitor, as a debug hook: activated, it starts its server.
struct MonitorHook {
    addr: SocketAddr,
    server: Mutex<Option<Server>>,
}

impl Hook for MonitorHook {
    fn switches(&self) -> bool {
        false
    }

    fn activate(&self, kernel: &KernelHandle) {
        match Server::start(self.addr, kernel.clone()) {
            Ok(server) => {
                eprintln!(
                    "curio: monitor listening on {} (connect with `curio-monitor` or `nc`)",
                    server.local
                );
                lock(&ADDRESSES).push((kernel.kernel_id(), server.local));
                *lock(&self.server) = Some(server);
            }
            Err(e) => eprintln!(
                "curio: the monitor could not listen on {}: {e}; the program runs without it",
                self.addr
            ),
        }
    }

    fn deactivate(&self) {
        if let Some(server) = lock(&self.server).take() {
            let kernel = server.state.kernel.kernel_id();
            lock(&ADDRESSES).retain(|(k, _)| *k != kernel);
            server.stop();
        }
    }
}

/// What the server's threads share.
struct State {
    kernel: KernelHandle,
    stopping: AtomicBool,
    clients: AtomicUsize,
    /// Every open session's socket, to close them when the kernel ends.
    sockets: Mutex<Vec<(u64, TcpStream)>>,
    /// The last table the kernel gave, shown (marked as old) while it is busy.
    last: Mutex<Option<(Instant, Snapshot)>>,
}

struct Server {
    local: SocketAddr,
    state: Arc<State>,
    accept: Option<thread::JoinHandle<()>>,
}

impl Server {
    fn start(addr: SocketAddr, kernel: KernelHandle) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let state = Arc::new(State {
            kernel,
            stopping: AtomicBool::new(false),
            clients: AtomicUsize::new(0),
            sockets: Mutex::new(Vec::new()),
            last: Mutex::new(None),
        });
        let s = state.clone();
        let accept = thread::Builder::new()
            .name("curio-monitor".into())
            .spawn(move || accept_loop(listener, &s))?;
        Ok(Server {
            local,
            state,
            accept: Some(accept),
        })
    }

    fn stop(mut self) {
        self.state.stopping.store(true, Ordering::Release);
        // Wake the accept call: a connection to ourselves.
        let mut wake = self.local;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        // Shut the sessions' read halves only: a reply being written (say
        // to the `cancel` that ended the program) still reaches its client,
        // then the session sees the end of its input and says goodbye.
        for (_, s) in lock(&self.state.sockets).drain(..) {
            let _ = s.shutdown(Shutdown::Read);
        }
    }
}

fn accept_loop(listener: TcpListener, state: &Arc<State>) {
    let mut next_id = 0u64;
    for conn in listener.incoming() {
        if state.stopping.load(Ordering::Acquire) {
            return;
        }
        let Ok(mut sock) = conn else {
            // A failed accept (out of fds, a reset before accept): go on.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        if state.clients.load(Ordering::Acquire) >= MAX_CLIENTS {
            let _ = writeln!(
                sock,
                "Curio Monitor: too many sessions ({MAX_CLIENTS}) at once; try again later"
            );
            continue;
        }
        next_id += 1;
        let id = next_id;
        if let Ok(clone) = sock.try_clone() {
            lock(&state.sockets).push((id, clone));
        }
        state.clients.fetch_add(1, Ordering::AcqRel);
        let s = state.clone();
        let started = thread::Builder::new()
            .name("curio-monitor-session".into())
            .spawn(move || {
                let _ = Session::new(&s, sock).run();
                lock(&s.sockets).retain(|(i, _)| *i != id);
                s.clients.fetch_sub(1, Ordering::AcqRel);
            });
        if started.is_err() {
            lock(&state.sockets).retain(|(i, _)| *i != id);
            state.clients.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

// ---------------------------------------------------------------------------
// A session
// ---------------------------------------------------------------------------

struct Session<'a> {
    state: &'a State,
    input: BufReader<TcpStream>,
    out: TcpStream,
}

/// What reading one line gave.
enum Line {
    Text(String),
    TooLong(usize),
    End,
}

impl<'a> Session<'a> {
    fn new(state: &'a State, sock: TcpStream) -> Session<'a> {
        let out = sock.try_clone().unwrap_or_else(|_| {
            // Without a second handle, read and write through one: a clone
            // failing means the process is out of fds; the session then ends
            // at its first write.
            sock.try_clone().expect("a socket handle")
        });
        Session {
            state,
            input: BufReader::with_capacity(MAX_LINE, sock),
            out,
        }
    }

    fn run(mut self) -> io::Result<()> {
        let n = self.state.kernel.task_count();
        write!(
            self.out,
            "\nCurio Monitor: {n} task{} running\nType help for commands\n{PROMPT}",
            if n == 1 { "" } else { "s" }
        )?;
        loop {
            if self.state.stopping.load(Ordering::Acquire) {
                return self.out.write_all(b"\nThe program has ended.\n");
            }
            let reply = match self.read_line()? {
                Line::End if self.state.stopping.load(Ordering::Acquire) => {
                    return self.out.write_all(b"\nThe program has ended.\n");
                }
                Line::End => return Ok(()),
                Line::TooLong(n) => format!(
                    "Bad command. A line of {n} bytes or more; commands are short. Type help.\n"
                ),
                Line::Text(line) => match self.command(line.trim()) {
                    Some(reply) => reply,
                    None => {
                        self.out
                            .write_all(b"Leaving monitor. Hit Ctrl-C to exit\n")?;
                        return Ok(());
                    }
                },
            };
            self.out.write_all(reply.as_bytes())?;
            self.out.write_all(PROMPT.as_bytes())?;
        }
    }

    /// One line, at most [`MAX_LINE`] bytes; a longer one is read to its end
    /// and refused. Bytes that are not UTF-8 become U+FFFD.
    fn read_line(&mut self) -> io::Result<Line> {
        let mut buf = Vec::new();
        let mut skipped = 0usize;
        loop {
            let chunk = match self.input.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(Line::End),
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                // End of input: a last line without newline still counts.
                return Ok(if skipped > 0 {
                    Line::TooLong(skipped)
                } else if buf.is_empty() {
                    Line::End
                } else {
                    Line::Text(String::from_utf8_lossy(&buf).into_owned())
                });
            }
            let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            if skipped > 0 || buf.len() + take > MAX_LINE {
                skipped += buf.len() + take;
                buf.clear();
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
            self.input.consume(take);
            if done {
                return Ok(if skipped > 0 {
                    Line::TooLong(skipped)
                } else {
                    Line::Text(String::from_utf8_lossy(&buf).into_owned())
                });
            }
        }
    }

    /// The reply to one command line; `None` to end the session.
    fn command(&self, line: &str) -> Option<String> {
        let mut words = line.split_whitespace();
        let Some(cmd) = words.next() else {
            return Some(String::new());
        };
        let args: Vec<&str> = words.collect();
        // Curio's prefix matching, in Curio's order.
        let reply =
            if cmd.starts_with('q') || cmd == "exit" {
                return None;
            } else if cmd.starts_with("pa") {
                with_id(&args, "parents", |id| self.parents(id))
            } else if cmd.starts_with('p') {
                self.ps()
            } else if cmd == "cancel" {
                with_id(&args, "cancel", |id| self.cancel(id))
            } else if cmd == "signal" {
                match args.as_slice() {
                    [name] => self.signal(name),
                    _ => "Bad command. signal needs one signal name: signal SIGHUP\n".to_string(),
                }
            } else if cmd.starts_with('w') {
                match args.as_slice() {
                ["all"] => self.dump(),
                [id, rest @ ..] if rest.is_empty() || rest == ["full"] => match id.parse() {
                    Ok(id) => self.where_(id, !rest.is_empty()),
                    Err(_) => bad_id("where", id),
                },
                _ => "Bad command. where needs a task id: where 3 (or where 3 full, or where all)\n"
                    .to_string(),
            }
            } else if cmd.starts_with('d') {
                self.dump()
            } else if cmd.starts_with('h') {
                HELP.to_string()
            } else {
                "Unknown command. Type help.\n".to_string()
            };
        Some(reply)
    }

    fn kernel(&self) -> &KernelHandle {
        &self.state.kernel
    }

    fn ps(&self) -> String {
        match self.kernel().snapshot(ASK) {
            Ok(snap) => {
                let table = snap.to_string();
                *lock(&self.state.last) = Some((Instant::now(), snap));
                table
            }
            Err(e) => {
                let mut s = format!("{e}\n");
                if let Some((at, snap)) = &*lock(&self.state.last) {
                    s.push_str(&format!(
                        "The last table it gave, {:.1} s ago:\n{snap}",
                        at.elapsed().as_secs_f64()
                    ));
                }
                s
            }
        }
    }

    fn where_(&self, id: u64, full: bool) -> String {
        // A task that has held the kernel for a while will not suspend to be
        // captured soon: say so at once. One merely in a short slice is
        // captured as soon as it suspends (the kernel answers between slices).
        if let crate::debug::Activity::Task {
            id: busy,
            running_for,
            ..
        } = self.kernel().activity()
        {
            if busy == id && running_for >= ASK {
                return format!(
                    "Task {id} is running: {}; only a suspended task has a backtrace to show\n",
                    self.kernel().activity_text()
                );
            }
        }
        match self.kernel().traceback(id, ASK_WHERE) {
            Ok(t) if full => format!("{}\n", t.full()),
            Ok(t) => format!("{t}\n"),
            Err(e) => format!("{}\n", capitalise(&e.to_string())),
        }
    }

    fn dump(&self) -> String {
        self.kernel().dump(ASK_WHERE)
    }

    fn parents(&self, id: u64) -> String {
        let snap = match self.kernel().snapshot(ASK) {
            Ok(s) => s,
            Err(e) => return format!("{e}\n"),
        };
        let mut out = String::new();
        let mut next = Some(id);
        while let Some(t) = next.and_then(|i| snap.task(i)) {
            out.push_str(&format!("{:<6} {:>12} {}\n", t.id, t.state.name(), t.name));
            next = t.parent;
        }
        if out.is_empty() {
            out = format!("No task {id}\n");
        }
        out
    }

    fn cancel(&self, id: u64) -> String {
        match self.kernel().cancel(id, ASK) {
            Ok(line) => format!("{line}\n"),
            Err(e) => format!("{}\n", capitalise(&e.to_string())),
        }
    }

    fn signal(&self, name: &str) -> String {
        let sig = match signal::parse(name) {
            Ok(s) => s,
            Err(_) => return format!("Unknown signal {name}\n"),
        };
        let shown = signal::name(sig).unwrap_or_else(|| sig.to_string());
        // Say it first: the signal may end the program.
        let _ = (&self.out).write_all(format!("Sending {shown}\n").as_bytes());
        match signal::raise(sig) {
            Ok(()) => String::new(),
            Err(e) => format!("Could not send {shown}: {e}\n"),
        }
    }
}

fn with_id(args: &[&str], cmd: &str, f: impl FnOnce(u64) -> String) -> String {
    match args {
        [id] => match id.parse() {
            Ok(id) => f(id),
            Err(_) => bad_id(cmd, id),
        },
        _ => format!("Bad command. {cmd} needs one task id: {cmd} 3\n"),
    }
}

fn bad_id(cmd: &str, id: &str) -> String {
    let shown: String = id.chars().take(40).collect();
    format!("Bad command. {shown:?} is not a task id; {cmd} takes a number, as in {cmd} 3\n")
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

const HELP: &str = "Commands:
         ps               : Show task table
         where taskid     : Show stack frames for a task (where taskid full: every frame)
         where all        : Show every task's stack (also: dump)
         cancel taskid    : Cancel an indicated task
         signal signame   : Send a Unix signal
         parents taskid   : List task parents
         quit             : Leave the monitor
";

// ---------------------------------------------------------------------------
// The SIGQUIT dump
// ---------------------------------------------------------------------------

/// `Builder::dump_on_sigquit`: a thread that waits for `SIGQUIT` and writes
/// the dump to stderr.
#[derive(Default)]
struct SigquitDump {
    running: Mutex<Option<DumpThread>>,
}

/// The dump thread: the signal it waits for, its stop flag, its handle.
type DumpThread = (signal::SignalEvent, Arc<AtomicBool>, thread::JoinHandle<()>);

impl Hook for SigquitDump {
    fn switches(&self) -> bool {
        false
    }

    fn activate(&self, kernel: &KernelHandle) {
        let event = match signal::SignalEvent::new(&[signal::SIGQUIT]) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("curio: cannot watch SIGQUIT for dumps: {e}");
                return;
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (ev, st, k) = (event.event().clone(), stop.clone(), kernel.clone());
        let thread = thread::Builder::new()
            .name("curio-sigquit".into())
            .spawn(move || {
                loop {
                    if ev.wait().is_err() || st.load(Ordering::Acquire) {
                        return;
                    }
                    ev.clear();
                    eprint!("{}", k.dump(Duration::from_secs(1)));
                }
            });
        match thread {
            Ok(t) => *lock(&self.running) = Some((event, stop, t)),
            Err(e) => eprintln!("curio: cannot start the SIGQUIT dump thread: {e}"),
        }
    }

    fn deactivate(&self) {
        if let Some((event, stop, thread)) = lock(&self.running).take() {
            stop.store(true, Ordering::Release);
            event.set();
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for MonitorHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").field("addr", &self.addr).finish()
    }
}

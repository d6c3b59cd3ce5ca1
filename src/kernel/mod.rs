//! The kernel: one loop on one OS thread that runs tasks, executes their traps,
//! polls for I/O and expires deadlines.
//!
//! ```text
//!   loop {
//!       run, once each, the tasks that were ready when this pass began
//!       if main has ended: shut down (cancel the rest, newest first) and return
//!       tick: every POLL_INTERVAL switches, or whenever nothing is ready,
//!             poll I/O and the inbox, then expire deadlines;
//!             nothing ready and nothing that could wake anyone: deadlock
//!   }
//! ```
//!
//! # Invariants
//!
//! - This module is the only code that mutates scheduler state (slots, ready
//!   queue, timer heap, waits). Task-side modules call its functions through the
//!   trap boundary (`traps.rs`); it never names a `Queue` or a socket.
//! - Spawning and waking never switch tasks: they only append to the ready queue.
//! - A task is *parked* exactly when its header's `wait_id` is non-zero. Waking,
//!   cancelling and timing out all clear it first, so each wait ends once.
//! - No `RefCell` borrow of scheduler state is held across a resume.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! let kernel = curio::Kernel::builder().virtual_clock(true).build();
//! let v = kernel.run(|| {
//!     curio::sleep(Duration::from_secs(3600)).unwrap(); // instant on the virtual clock
//!     7
//! });
//! assert_eq!(v.unwrap(), 7);
//! ```

use std::cell::RefCell;
use std::fmt;
use std::net::SocketAddr;
use std::panic;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::stack::{self, DEFAULT_STACK_SIZE};
use crate::sys;

pub(crate) mod boxes;
mod core;
mod crash;
pub mod debug;
mod ready;
mod record;
mod switch;
pub(crate) mod traps;
mod watch;

use self::core::{Core, enter_kernel, leave_kernel, running_overflow_info};
pub(crate) use boxes::TaskRc;
pub use record::State;
pub(crate) use record::{AnyTask, GroupLink, TaskRecord, Typed, panic_message};

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// Settings for a [`Kernel`]. Start from [`Kernel::builder`].
#[derive(Clone)]
pub struct Builder {
    stack_size: usize,
    idle_stacks: usize,
    virtual_clock: bool,
    thread_pool_size: usize,
    monitor: bool,
    /// Where the monitor listens when it is on.
    monitor_addr: SocketAddr,
    dump_on_sigquit: bool,
    hooks: Vec<Arc<dyn debug::Hook>>,
}

/// The monitor's default address: Curio's port, on the loopback interface only.
pub const DEFAULT_MONITOR_ADDRESS: &str = "127.0.0.1:48802";

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("stack_size", &self.stack_size)
            .field("idle_stacks", &self.idle_stacks)
            .field("virtual_clock", &self.virtual_clock)
            .field("thread_pool_size", &self.thread_pool_size)
            .field("monitor", &self.monitor.then_some(self.monitor_addr))
            .field("dump_on_sigquit", &self.dump_on_sigquit)
            .field("hooks", &self.hooks.len())
            .finish()
    }
}

impl Builder {
    /// The default settings: 256 KiB stacks and the real clock (or the virtual
    /// clock when the environment variable `CURIO_CLOCK=virtual` is set, which is
    /// how the example tests run the tutorial's programs instantly).
    ///
    /// The monitor is off unless the environment variable `CURIO_MONITOR` is
    /// set to anything but `0` or nothing (Curio's `CURIOMONITOR`). When on,
    /// it listens on [`DEFAULT_MONITOR_ADDRESS`], or on `CURIO_MONITOR_ADDR`
    /// (`host:port`) if that is set.
    pub fn new() -> Builder {
        let virtual_clock = std::env::var("CURIO_CLOCK").is_ok_and(|v| v == "virtual");
        let mut b = Builder {
            stack_size: DEFAULT_STACK_SIZE,
            idle_stacks: stack::DEFAULT_IDLE_STACKS,
            virtual_clock,
            thread_pool_size: 64,
            monitor: false,
            monitor_addr: DEFAULT_MONITOR_ADDRESS.parse().expect("a valid address"),
            dump_on_sigquit: false,
            hooks: Vec::new(),
        };
        match std::env::var("CURIO_MONITOR_ADDR").map(|a| a.parse::<SocketAddr>()) {
            Ok(Ok(addr)) => b.monitor_addr = addr,
            Ok(Err(e)) => eprintln!(
                "curio: CURIO_MONITOR_ADDR is not a host:port address ({e}); \
                 the monitor would use {DEFAULT_MONITOR_ADDRESS}"
            ),
            Err(_) => {}
        }
        if std::env::var("CURIO_MONITOR").is_ok_and(|v| !v.is_empty() && v != "0") {
            b = b.with_monitor(true);
        }
        b
    }

    /// Turns the monitor on (or off): a server on its own OS thread, at
    /// [`DEFAULT_MONITOR_ADDRESS`] (loopback only) unless
    /// [`Builder::monitor_address`] or `CURIO_MONITOR_ADDR` names another,
    /// that answers `ps`,
    /// `where`, `cancel` … in plain text lines (`curio-monitor`, or
    /// `nc localhost 48802`); see [`crate::monitor`]. Off by default.
    pub fn with_monitor(mut self, on: bool) -> Builder {
        self.monitor = on;
        self
    }

    /// Turns the monitor on at `addr`. It listens wherever it is told, so
    /// an address other than a loopback one exposes the monitor (and its
    /// `cancel` and `signal` commands) to the network: pass one only on
    /// purpose. Port 0 picks a free port (the monitor prints which).
    pub fn monitor_address(mut self, addr: SocketAddr) -> Builder {
        self.monitor = true;
        self.monitor_addr = addr;
        self
    }

    /// Writes the all-task dump ([`debug::dump`]) to stderr whenever the
    /// process gets `SIGQUIT` (`kill -QUIT pid`, or Ctrl-\ in a terminal), as
    /// Go does; the program then goes on (Go's exits). While the kernel runs,
    /// `SIGQUIT` no longer ends the process. Off by default.
    pub fn dump_on_sigquit(mut self, on: bool) -> Builder {
        self.dump_on_sigquit = on;
        self
    }

    /// Reports, on stderr, every task that runs longer than `threshold`
    /// without suspending: once while it still runs (from the kernel's
    /// watchdog thread, naming the task and the state it was resumed from),
    /// and once when it suspends, with how long it ran and where it stopped.
    /// [`debug::LongBlocks`] does the same through the `log` facade. Off by
    /// default.
    pub fn long_block(self, threshold: Duration) -> Builder {
        self.debug(Arc::new(debug::StderrLongBlocks(threshold)))
    }

    /// Installs a debug hook (Curio's `debug=[...]` and `activations=[...]`):
    /// [`debug::SchedTrace`], [`debug::LogCrash`], [`debug::LongBlocks`], or
    /// your own [`debug::Hook`]. A kernel with hooks runs the watched form of
    /// its loop, which calls them around every slice.
    pub fn debug(mut self, hook: Arc<dyn debug::Hook>) -> Builder {
        self.hooks.push(hook);
        self
    }

    /// The monitor's address, if it is on (read by the monitor service).
    pub(crate) fn monitor(&self) -> Option<SocketAddr> {
        self.monitor.then_some(self.monitor_addr)
    }

    /// Whether `SIGQUIT` dumps the tasks (read by the monitor service).
    pub(crate) fn wants_sigquit_dump(&self) -> bool {
        self.dump_on_sigquit
    }

    /// The usable stack size of each task unless its own builder says otherwise,
    /// rounded up to whole pages. Stacks are committed lazily, so a big size
    /// costs address space, not memory. [`Kernel::run`] fails with
    /// [`ErrorKind::Usage`] for a size below [`crate::MIN_STACK_SIZE`] (16 KiB)
    /// or above [`crate::MAX_STACK_SIZE`] (1 GiB).
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = bytes;
        self
    }

    /// How many unused task stacks the kernel keeps warm, their memory
    /// resident, for the next spawns (1024 by default). Whenever the kernel
    /// goes idle, the memory of the unused stacks beyond this is given back to
    /// the operating system, so memory falls back after a peak of tasks; such a
    /// stack stays reserved and is reused cold (its first pages are faulted in
    /// again). Bursts that never let the kernel idle are not slowed.
    pub fn idle_stacks(mut self, stacks: usize) -> Builder {
        self.idle_stacks = stacks;
        self
    }

    /// Runs the kernel on a virtual clock: time stands still while tasks run, and
    /// when every task waits on time alone the clock jumps to the next deadline.
    /// Timeout tests become exact and instant.
    pub fn virtual_clock(mut self, on: bool) -> Builder {
        self.virtual_clock = on;
        self
    }

    /// The most OS threads `run_in_thread` uses at once (64 by default, at least 1).
    /// Further calls wait, cancellably, for a thread to come free.
    pub fn thread_pool_size(mut self, threads: usize) -> Builder {
        self.thread_pool_size = threads.max(1);
        self
    }

    /// Builds the kernel.
    pub fn build(self) -> Kernel {
        Kernel { config: self }
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

/// A kernel: runs a main task, and every task it spawns, on the calling thread.
///
/// `curio::run(main)` is `Kernel::builder().build().run(main)` with errors turned
/// into panics.
#[derive(Clone, Debug)]
pub struct Kernel {
    config: Builder,
}

impl Kernel {
    /// Starts configuring a kernel.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// Runs `main` as the first task (id 1) and returns its value once it has
    /// ended and every other task has been cancelled and driven to completion,
    /// newest first.
    ///
    /// `main` may borrow from the caller. If `main` panics, the panic resumes out
    /// of `run` after shutdown.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::NestedKernel`] if this thread is already running a kernel.
    /// - [`ErrorKind::Deadlock`] if every task blocked with nothing that could wake
    ///   one; the message lists who waits on what. The tasks were cancelled first.
    pub fn run<F, T>(&self, main: F) -> Result<T>
    where
        F: FnOnce() -> T,
    {
        crash::install_panic_hook();
        sys::install_overflow_handler(running_overflow_info);
        let mut hooks = self.config.hooks.clone();
        for service in inventory::iter::<Service> {
            hooks.extend((service.attach)(&self.config));
        }
        let core = Core::new(&self.config, hooks)?;
        if !enter_kernel(&core) {
            return Err(Error::new(ErrorKind::NestedKernel, ""));
        }
        let out: Rc<RefCell<Option<std::thread::Result<T>>>> = Rc::new(RefCell::new(None));

        // However `run` ends (normally, or by the kernel itself panicking),
        // every task is ended and the services released *before* the thread's
        // kernel mark is cleared: the destructors that ending a task runs may
        // call curio, and must find their kernel (issue 8, hole 5).
        struct Running<'a>(&'a Core);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.teardown();
                self.0.stop_watch();
                leave_kernel();
            }
        }
        let running = Running(&core);
        core.start_watch();

        let main_task = core.spawn_main(main, out.clone())?;
        let deadlock = core.run_until_main_ends(&main_task);
        core.shutdown();
        drop(main_task);
        drop(running);
        drop(core);
        let outcome = out.borrow_mut().take();
        match (deadlock, outcome) {
            (Some(report), _) => Err(Error::new(ErrorKind::Deadlock, report)),
            (None, Some(Ok(v))) => Ok(v),
            (None, Some(Err(payload))) => panic::resume_unwind(payload),
            (None, None) => Err(Error::new(ErrorKind::Deadlock, "main task never finished")),
        }
    }
}

/// A service that attaches itself to a kernel whose configuration asks for
/// it, as a debug hook (the monitor, the `SIGQUIT` dump).
///
/// Discussion: the kernel never imports a service, yet `Builder::with_monitor`
/// and `CURIO_MONITOR` must start one. Services register here (with
/// `inventory::submit!`) a function that reads the configuration and returns
/// the hook to install, whose `activate` starts them; `run` installs what
/// every registered service returns. The kernel knows hooks only.
pub(crate) struct Service {
    pub(crate) attach: fn(&Builder) -> Option<Arc<dyn debug::Hook>>,
}

inventory::collect!(Service);

/// Runs `main` in a new kernel on this thread and returns its value.
///
/// Shorthand for `Kernel::builder().build().run(main)`.
///
/// # Panics
///
/// Panics if called inside a running kernel, or if the program deadlocks (the
/// message lists which task waits on what). A panic in `main` resumes here.
///
/// # Example
///
/// ```
/// let answer = curio::run(|| {
///     let kid = curio::spawn(|| 6 * 7);
///     kid.join().unwrap()
/// });
/// assert_eq!(answer, 42);
/// ```
pub fn run<F, T>(main: F) -> T
where
    F: FnOnce() -> T,
{
    match Kernel::builder().build().run(main) {
        Ok(v) => v,
        Err(e) => panic!("curio::run: {e}"),
    }
}

//! # curio: Curio's model of concurrency, as stackful green threads
//!
//! Tasks are plain closures running on their own small stacks. They call
//! blocking-looking functions (`sleep`, `join`, `Queue::get`, `recv` …) that
//! suspend back to a single-threaded kernel loop; a poller and a timer heap
//! resume them. No `async`, no `await`: task code reads like thread code, and
//! cancellation and timeouts reach every blocking call.
//!
//! ```
//! use std::time::Duration;
//!
//! fn countdown(mut n: u32) -> curio::Result<()> {
//!     while n > 0 {
//!         println!("T-minus {n}");
//!         curio::sleep(Duration::from_millis(1))?;
//!         n -= 1;
//!     }
//!     Ok(())
//! }
//!
//! curio::run(|| -> curio::Result<()> {
//!     let kid = curio::spawn(|| curio::sleep(Duration::from_secs(1000)));
//!     let count = curio::spawn(|| countdown(3));
//!     count.join()??;
//!     if curio::timeout_after(Duration::from_millis(10), || kid.wait()).is_err() {
//!         println!("I warned you!");
//!         kid.cancel()?;
//!     }
//!     Ok(())
//! })
//! .unwrap();
//! ```
//!
//! prints
//!
//! ```text
//! T-minus 3
//! T-minus 2
//! T-minus 1
//! I warned you!
//! ```
//!
//! New to curio? Read the [`tutorial`]: Curio's tutorial told in Rust, from
//! this countdown to TLS servers, with a runnable program in `examples/` for
//! each step.
//!
//! ## Where to look
//!
//! - [`tutorial`]: the guided tour, in the order of Curio's tutorial.
//! - [`run`], [`Kernel`]: start a kernel; what happens at shutdown; the real
//!   clock or the virtual one ([`kernel::Builder::virtual_clock`], or
//!   `CURIO_CLOCK=virtual` in the environment).
//! - [`spawn`], [`Task`], [`current_task`], [`TaskLocal`]: tasks.
//! - [`sleep`], [`timeout_after`], [`ignore_after`], [`disable_cancellation`]:
//!   time and cancellation, with Curio's exact nesting rules.
//! - [`TaskGroup`]: supervise a set of tasks; no member outlives its group.
//! - [`sync`] ([`Event`], [`Lock`], [`Semaphore`], [`Condition`] …) and [`Queue`]:
//!   coordination between tasks; every wait is a cancel point.
//! - [`run_in_thread`], [`UniversalQueue`], [`UniversalEvent`], [`UniversalResult`]:
//!   the bridge to OS threads.
//! - [`run_in_process`] and [`process_fn!`]: CPU-bound work in worker processes
//!   ([`process::init`] first thing in `main`).
//! - [`channel`] ([`channel::Connection`], [`channel::Channel`]): framed, typed
//!   messages between processes, with an authenticated rendezvous.
//! - [`fs`] ([`fs::open`], [`fs::File`]): files whose operations run on the thread pool.
//! - [`net`] ([`net::tcp_server`], [`net::open_connection`], typed sockets) and
//!   [`io`] ([`Socket`], [`Stream`]): sockets and streams, with `std::io` interop.
//! - [`tls`] ([`net::Connect`] then `.tls()`, [`tls::tcp_server`]): TLS with
//!   rustls, as streams with the same methods as plain ones.
//! - [`signal`] ([`SignalSet`], [`SignalEvent`]): Unix signals caught, queued
//!   and waited for; [`subprocess`] ([`subprocess::Command`]): child processes
//!   with piped streams, waited for without threads.
//! - [`Error`]: one error type; cancellation survives a trip through `io::Error`.
//!
//! The design is written up in the repository's `arch-notes/` (start at
//! `arch-notes/README.md`).

pub mod channel;
pub mod error;
pub mod fs;
pub mod io;
pub mod kernel;
pub mod monitor;
pub mod net;
pub mod process;
pub mod queue;
pub mod signal;
pub mod subprocess;
pub mod sync;
pub mod task;
pub mod task_group;
pub mod time;
pub mod tls;
pub mod tutorial;
pub mod universal;
pub mod workers;

mod deadlines;
mod poller;
mod stack;
mod sys;
mod timer;
mod wait;

/// The kernel's entry points (see `kernel/traps.rs`): the one door from the
/// rest of the crate into the kernel.
use kernel::traps as trap;

pub use error::{CurioError, Error, ErrorKind, Result};
pub use io::{Blocking, FileStream, Socket, SocketReader, SocketStream, SocketWriter, Stream};
pub use kernel::State;
pub use kernel::debug;
pub use kernel::{Kernel, run};
pub use process::run_in_process;
pub use queue::{LifoQueue, PriorityQueue, PutError, Queue};
pub use signal::{SignalEvent, SignalSet};
pub use stack::{DEFAULT_IDLE_STACKS, DEFAULT_STACK_SIZE, MAX_STACK_SIZE, MIN_STACK_SIZE};
pub use sync::{BoundedSemaphore, Condition, Event, Lock, RLock, ResultCell, Semaphore};
pub use task::{Task, TaskLocal, TaskRef, current_task, spawn, yield_now};
pub use task_group::{Outcome, Scope, TaskGroup, Wait};
pub use time::{
    check_cancellation, check_cancellation_of, clock, disable_cancellation, ignore_after,
    ignore_at, set_cancellation, sleep, sleep_until, timeout_after, timeout_at,
};
pub use universal::{UniversalEvent, UniversalQueue, UniversalResult};
pub use workers::run_in_thread;

/// What the crate's macros expand to; not public API.
#[doc(hidden)]
pub mod __private {
    pub use inventory;
}

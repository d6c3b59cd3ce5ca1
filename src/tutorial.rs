//! A tutorial for Rust programmers: curio from a first countdown to TLS servers
//! and subprocesses.
//!
//! It follows the order of Python Curio's own tutorial and keeps its story (a
//! parent, a kid who would rather build the Millenium Falcon in Minecraft, and a
//! countdown), in Rust. You need to know Rust; you do not
//! need to know Curio.
//!
//! Each section names its program in the repository's `examples/` directory. Run
//! it from a checkout of curio with `cargo run --example NAME`; the output shown
//! here is what those programs print. The code blocks on this page are compiled
//! and run by `cargo test --doc` (those that serve forever, need the network or
//! take real seconds are compiled only), so they cannot drift away from the
//! crate.
//!
//! # Getting started
//!
//! ## Adding curio to a project
//!
//! curio is not published on crates.io. Depend on a checkout of its repository,
//! by path (here, a clone beside your project):
//!
//! ```toml
//! [dependencies]
//! curio = { path = "../curio" }
//! ```
//!
//! or by git, with the URL you cloned it from (any URL `git clone` accepts,
//! including a local `file:///home/you/src/curio`):
//!
//! ```toml
//! [dependencies]
//! curio = { git = "file:///home/you/src/curio", branch = "main" }
//! ```
//!
//! curio needs Rust 1.85 or later (edition 2024) and Linux. Everything else it
//! uses (mio, rustls with the `ring` provider, socket2 …) comes from crates.io
//! and builds with the Rust toolchain and the C compiler it already uses for
//! linking.
//!
//! ## A first program
//!
//! `cargo run --example getting_started` counts down from 10, one line a second:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! fn countdown(mut n: u32) -> curio::Result<()> {
//!     while n > 0 {
//!         println!("T-minus {n}");
//!         curio::sleep(Duration::from_secs(1))?;
//!         n -= 1;
//!     }
//!     Ok(())
//! }
//!
//! fn main() -> curio::Result<()> {
//!     curio::run(|| countdown(10))
//! }
//! ```
//!
//! ```text
//! T-minus 10
//! T-minus 9
//! ...
//! T-minus 1
//! ```
//!
//! (This block is compiled but not run by the doctests: it takes ten real
//! seconds. The next one runs the same countdown instantly.)
//!
//! A *task* in curio is an ordinary Rust closure. It runs on a small stack of its
//! own, and when it calls something that has to wait, such as
//! [`sleep`](crate::sleep), it does not block the thread: it is suspended, and
//! the *kernel* (a loop on the thread that called [`run`](crate::run)) runs
//! other tasks, polls sockets and watches the clock until the task can go on.
//! There is no `async` and no `await`: the countdown reads like thread code.
//!
//! [`run`](crate::run) starts a kernel on the calling thread with `main` as its
//! first task and returns `main`'s value when that task is done. Tasks still
//! running at that point are cancelled, newest first, and `run` waits for them to
//! finish before it returns. [`Kernel::run`](crate::Kernel::run) does the same
//! and returns an error, instead of panicking, when the kernel cannot run
//! (a kernel already running on this thread) or when every task is stuck for good
//! (a deadlock).
//!
//! Every call that can wait returns a [`curio::Result`](crate::Result). Its error
//! is how cancellation and timeouts reach a task (more on that below), so pass it
//! on with `?` unless you mean to handle it. Rust warns about an unused `Result`,
//! which catches the curio version of a forgotten `await`:
//! `curio::sleep(d);` on its own line is a warning, not a silent no-op.
//!
//! ## The real clock and the virtual clock
//!
//! A kernel keeps time with one of two clocks:
//!
//! - the **real clock** (the default): `sleep(Duration::from_secs(1))` takes a
//!   second;
//! - the **virtual clock**: time stands still while tasks run, and when every
//!   task is waiting for time alone, the clock jumps straight to the next
//!   deadline. A program whose story is told by timers runs in an instant, and
//!   its timing is exact, which makes it the clock for tests.
//!
//! Choose it in code, with the kernel's builder:
//!
//! ```
//! # use std::time::Duration;
//! # fn countdown(mut n: u32) -> curio::Result<()> {
//! #     while n > 0 {
//! #         println!("T-minus {n}");
//! #         curio::sleep(Duration::from_secs(1))?;
//! #         n -= 1;
//! #     }
//! #     Ok(())
//! # }
//! fn main() -> curio::Result<()> {
//!     let kernel = curio::Kernel::builder().virtual_clock(true).build();
//!     kernel.run(|| {
//!         let start = curio::clock();
//!         countdown(10)?;
//!         assert_eq!(curio::clock() - start, Duration::from_secs(10)); // exactly
//!         Ok(())
//!     })?
//! }
//! ```
//!
//! or from outside, without changing the program: a kernel built with default
//! settings (which is what `curio::run` uses) takes the virtual clock when the
//! environment variable `CURIO_CLOCK` is `virtual`:
//!
//! ```text
//! $ CURIO_CLOCK=virtual cargo run --example several_tasks    # 25 seconds of story, at once
//! ```
//!
//! While some task waits on the world outside the kernel (a socket, a signal, a
//! thread or a worker process), the virtual clock gives that world 5 ms of real
//! time to answer before each jump. Programs driven by the outside world, like the
//! servers below, are for the real clock; the virtual clock is for programs (and
//! tests) whose events are timers.
//!
//! # Tasks
//!
//! `cargo run --example several_tasks` (25 seconds; with `CURIO_CLOCK=virtual`,
//! instant) adds a kid, and a parent who has to get everyone out of the door:
//!
//! ```
//! use std::time::Duration;
//!
//! # fn countdown(mut n: u32) -> curio::Result<()> {
//! #     while n > 0 {
//! #         println!("T-minus {n}");
//! #         curio::sleep(Duration::from_secs(1))?;
//! #         n -= 1;
//! #     }
//! #     Ok(())
//! # }
//! fn kid() -> curio::Result<()> {
//!     println!("Building the Millenium Falcon in Minecraft");
//!     match curio::sleep(Duration::from_secs(1000)) {
//!         Err(e) if e.is_cancelled() => {
//!             println!("Fine. Saving my work.");
//!             Ok(())
//!         }
//!         other => other,
//!     }
//! }
//!
//! fn parent() -> curio::Result<()> {
//!     let kid_task = curio::spawn(kid);
//!     curio::sleep(Duration::from_secs(5))?;
//!
//!     println!("Let's go");
//!     let count_task = curio::spawn(|| countdown(10));
//!     count_task.join()??;
//!
//!     println!("We're leaving!");
//!     match curio::timeout_after(Duration::from_secs(10), || kid_task.join()) {
//!         Err(e) if e.is_timeout() => {
//!             println!("I warned you!");
//!             kid_task.cancel()?;
//!         }
//!         other => other??,
//!     }
//!     println!("Leaving!");
//!     Ok(())
//! }
//! # fn main() -> curio::Result<()> {
//! #     curio::Kernel::builder().virtual_clock(true).build().run(parent)?
//! # }
//! ```
//!
//! with `main` being `curio::run(parent)`. It prints:
//!
//! ```text
//! Building the Millenium Falcon in Minecraft
//! Let's go
//! T-minus 10
//! T-minus 9
//! ...
//! T-minus 1
//! We're leaving!
//! I warned you!
//! Fine. Saving my work.
//! Leaving!
//! ```
//!
//! What happens, step by step:
//!
//! - [`spawn`](crate::spawn) creates a task and returns a
//!   [`Task<T>`](crate::Task), a handle to it, where `T` is what the closure
//!   returns. Spawning never switches: the new task waits in the ready queue until
//!   the parent next waits (here, in its first `sleep`). The closure must be
//!   `'static`, but it need not be `Send`: all tasks of a kernel live on one
//!   thread, so they can share data through `Rc` and `RefCell`.
//! - [`Task::join`](crate::Task::join) waits for the task to end and takes its
//!   value. Two things can fail there: the join itself (the parent was cancelled
//!   or timed out while waiting, or the task panicked), and the task's own
//!   `Result`. Hence `join()??`: the first `?` for the join, the second for the
//!   countdown's `Result`. [`Task::join_flatten`](crate::Task::join_flatten)
//!   folds both into one: `count_task.join_flatten()?`.
//! - [`timeout_after`](crate::timeout_after) runs a closure with a deadline. If
//!   the deadline passes while the closure waits, the wait returns an error with
//!   [`is_timeout`](crate::Error::is_timeout), and so does `timeout_after`. It
//!   works around any blocking call, however deep inside the closure.
//! - [`cancel`](crate::TaskRef::cancel) asks a task to stop and waits until it
//!   has. The kid's `sleep` returns an error with
//!   [`is_cancelled`](crate::Error::is_cancelled) instead of sleeping on; the kid
//!   may clean up (save its work) before it returns. A cancellation is delivered
//!   once, at the task's current wait or at its next one: a task that never waits
//!   cannot be cancelled (see "Number crunching" below).
//! - Dropping a `Task` handle does not stop the task; it runs on, detached, and
//!   is cancelled at shutdown if it is still running then.
//!
//! Without the timeout, the parent would wait for the kid for 1000 seconds. Such
//! a program looks hung, but it is not a deadlock: a timer can still wake a task.
//! When nothing at all can wake any task, the kernel stops with a report instead
//! (see "Debugging").
//!
//! If a task must not be interrupted in the middle of something, wrap that part
//! in [`disable_cancellation`](crate::disable_cancellation): a cancellation or
//! timeout that arrives meanwhile stays pending, and is delivered at the first
//! wait after the block; inside it,
//! [`check_cancellation`](crate::check_cancellation) tells whether one is
//! pending, without taking it. [`cancel_with`](crate::TaskRef::cancel_with)
//! cancels with an error of your choice instead of
//! [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled).
//!
//! # Task groups
//!
//! When a task starts helpers and must not return before they are all done (or
//! cancelled), put them in a [`TaskGroup`](crate::TaskGroup). There is no example
//! program for this section; the blocks below run as they are (with
//! `cargo test --doc`).
//!
//! ```
//! use std::time::Duration;
//! use curio::{TaskGroup, Wait};
//!
//! fn fetch(name: &'static str, secs: u64) -> curio::Result<&'static str> {
//!     curio::sleep(Duration::from_secs(secs))?;
//!     Ok(name)
//! }
//!
//! fn main() -> curio::Result<()> {
//!     curio::Kernel::builder().virtual_clock(true).build().run(|| {
//!         // Wait for every member.
//!         let all = TaskGroup::new();
//!         all.spawn(|| fetch("a", 2))?;
//!         all.spawn(|| fetch("b", 1))?;
//!         all.join()?;
//!         let names: Vec<&str> = all.results()?.into_iter().collect::<curio::Result<_>>()?;
//!         assert_eq!(names, ["a", "b"]); // by spawn order, not by finishing order
//!
//!         // Stop at the first member to finish; the others are cancelled.
//!         let any = TaskGroup::with_wait(Wait::Any);
//!         any.spawn(|| fetch("slow", 10))?;
//!         any.spawn(|| fetch("fast", 1))?;
//!         any.join()?;
//!         assert_eq!(any.result()??, "fast");
//!         Ok(())
//!     })?
//! }
//! ```
//!
//! A group's [`join`](crate::TaskGroup::join) waits according to its
//! [`Wait`](crate::Wait) policy (`All`, `Any`, `FirstValue`, `None`), then cancels
//! every member still running and waits for each. A member that fails (returns
//! `Err`, or panics) also ends the wait, and the others are cancelled: one failed
//! helper brings the group down instead of leaving its siblings running. How a
//! member's return value counts is the [`Outcome`](crate::Outcome) trait (for a
//! `Result`, `Err` is a failure and `Ok` a value).
//! [`next_done`](crate::TaskGroup::next_done) hands out members one at a time as
//! they finish.
//!
//! [`TaskGroup::scope`](crate::TaskGroup::scope) is the form to reach for first.
//! Like [`std::thread::scope`], its members may borrow from the caller, because
//! `scope` cannot return while one of them runs. Its closure returns a
//! `Result`: `Ok` joins the group, while an `Err` (a `?` that fired) cancels the
//! members still running before `scope` returns that error.
//!
//! ```
//! use std::time::Duration;
//! use curio::{TaskGroup, Wait};
//!
//! curio::Kernel::builder().virtual_clock(true).build().run(|| -> curio::Result<()> {
//!     let words = vec!["tasks".to_string(), "groups".to_string()];
//!     let total = TaskGroup::<usize>::scope(Wait::All, |g| {
//!         for w in &words {
//!             g.spawn(move || w.len())?; // borrows `words`
//!         }
//!         g.join()?;
//!         Ok::<_, curio::Error>(g.results()?.iter().sum::<usize>())
//!     })?;
//!     assert_eq!(total, 11);
//!
//!     // A `?` that fires inside the scope: the member still sleeping is cancelled.
//!     let mut sleeper = None;
//!     let r: curio::Result<()> = TaskGroup::scope(Wait::All, |g| {
//!         sleeper = Some(g.spawn(|| curio::sleep(Duration::from_secs(60)))?);
//!         curio::sleep(Duration::from_secs(1))?;
//!         let port: u16 = "eighty".parse().map_err(|_| curio::Error::other("not a port number"))?;
//!         println!("listening on {port}"); // never reached
//!         Ok(())
//!     });
//!     assert_eq!(r.unwrap_err().to_string(), "not a port number");
//!     assert!(sleeper.unwrap().join()?.unwrap_err().is_cancelled());
//!     Ok(())
//! })??;
//! # Ok::<(), curio::Error>(())
//! ```
//!
//! # Task synchronization
//!
//! Tasks share one thread, so a task is never interrupted between two statements
//! that do not wait; but as soon as a task waits, others run, and state they
//! share can change under it. The primitives in [`sync`](crate::sync) are the
//! familiar ones, for tasks: [`Event`](crate::Event), [`Lock`](crate::Lock),
//! [`RLock`](crate::RLock), [`Semaphore`](crate::Semaphore),
//! [`BoundedSemaphore`](crate::BoundedSemaphore),
//! [`Condition`](crate::Condition), and the one-shot
//! [`ResultCell`](crate::ResultCell). Every wait on them can be cancelled or
//! timed out, and a waiter that gives up leaves the primitive as if it had never
//! waited.
//!
//! `cargo run --example task_synchronization` (30 seconds; instant with
//! `CURIO_CLOCK=virtual`) makes the kid wait for permission, an
//! [`Event`](crate::Event), and ask again every second:
//!
//! ```
//! use std::rc::Rc;
//! use std::time::Duration;
//!
//! use curio::sync::Event;
//!
//! fn kid(start_evt: Rc<Event>) -> curio::Result<()> {
//!     loop {
//!         println!("Can I play?");
//!         match curio::timeout_after(Duration::from_secs(1), || start_evt.wait()) {
//!             Ok(()) => break,
//!             Err(e) if e.is_timeout() => println!("Wha!?!"),
//!             Err(e) => return Err(e),
//!         }
//!     }
//!     println!("Building the Millenium Falcon in Minecraft");
//!     // ... as in several_tasks: sleep 1000 s, save the work if cancelled
//! #   match curio::sleep(Duration::from_secs(1000)) {
//! #       Err(e) if e.is_cancelled() => {
//! #           println!("Fine. Saving my work.");
//! #           Ok(())
//! #       }
//! #       other => other,
//! #   }
//! }
//!
//! fn parent() -> curio::Result<()> {
//!     let start_evt = Rc::new(Event::new());
//!     let evt = start_evt.clone();
//!     let kid_task = curio::spawn(move || kid(evt));
//!     curio::sleep(Duration::from_secs(5))?;
//!
//!     println!("Yes, go play");
//!     start_evt.set();
//!     curio::sleep(Duration::from_secs(5))?;
//!     // ... then the countdown, the timeout and the cancellation, as before
//! #   kid_task.cancel()?;
//! #   Ok(())
//! }
//! # fn main() -> curio::Result<()> {
//! #     curio::Kernel::builder().virtual_clock(true).build().run(parent)?
//! # }
//! ```
//!
//! ```text
//! Can I play?
//! Wha!?!
//! Can I play?
//! Wha!?!
//! Can I play?
//! Wha!?!
//! Can I play?
//! Wha!?!
//! Can I play?
//! Yes, go play
//! Building the Millenium Falcon in Minecraft
//! Let's go
//! T-minus 10
//! ...
//! T-minus 1
//! We're leaving!
//! I warned you!
//! Fine. Saving my work.
//! Leaving!
//! ```
//!
//! The event is shared with an `Rc`: tasks of a kernel are on one thread, so no
//! `Arc` or `Mutex` is needed, and [`Event::set`](crate::Event::set) wakes every
//! task waiting on it. A lock is held through a guard and released when the guard
//! is dropped, as with `std::sync::Mutex`; a semaphore the same way; and a
//! [`ResultCell`](crate::ResultCell) passes one value from a task that sets it to
//! a task that waits for it:
//!
//! ```
//! use std::rc::Rc;
//! use curio::sync::{Lock, ResultCell, Semaphore};
//!
//! curio::run(|| -> curio::Result<()> {
//!     let lock = Rc::new(Lock::new());
//!     let l = lock.clone();
//!     let guard = lock.acquire()?;
//!     let waiter = curio::spawn(move || -> curio::Result<&str> {
//!         let _g = l.acquire()?; // waits until the parent's guard is dropped
//!         Ok("got the lock")
//!     });
//!     curio::yield_now()?; // let it start waiting
//!     assert!(!waiter.is_terminated());
//!     drop(guard);
//!     assert_eq!(waiter.join_flatten()?, "got the lock");
//!
//!     let slots = Semaphore::new(2);
//!     let a = slots.acquire()?;
//!     let _b = slots.acquire()?;
//!     assert!(slots.locked()); // a third acquire would wait
//!     drop(a);
//!     assert_eq!(slots.value(), 1);
//!
//!     let answer = Rc::new(ResultCell::new());
//!     let a = answer.clone();
//!     curio::spawn(move || a.set_value(42));
//!     assert_eq!(answer.get()?, 42); // waits until it is set, then takes it
//!     Ok(())
//! })?;
//! # Ok::<(), curio::Error>(())
//! ```
//!
//! These primitives are for the tasks of one kernel (they are not `Send`). To
//! synchronize tasks with OS threads, use [`UniversalEvent`](crate::UniversalEvent),
//! [`UniversalQueue`](crate::UniversalQueue) and
//! [`UniversalResult`](crate::UniversalResult), which threads block on and tasks
//! wait on.
//!
//! # Intertask communication
//!
//! To hand work from task to task, use a [`Queue`](crate::Queue).
//! `cargo run --example intertask_communication` has a producer and two
//! consumers:
//!
//! ```
//! use std::rc::Rc;
//!
//! use curio::Queue;
//!
//! fn producer(queue: Rc<Queue<u32>>) -> curio::Result<()> {
//!     for n in 0..10 {
//!         queue.put(n)?;
//!     }
//!     queue.join()?;
//!     println!("Producer done");
//!     Ok(())
//! }
//!
//! fn consumer(id: u32, queue: Rc<Queue<u32>>) -> curio::Result<()> {
//!     loop {
//!         let item = queue.get()?;
//!         println!("consumer {id} got {item}");
//!         curio::sleep(std::time::Duration::from_millis(100))?; // pretend to work
//!         queue.task_done()?;
//!     }
//! }
//!
//! fn main() -> curio::Result<()> {
//!     curio::run(|| {
//!         let q = Rc::new(Queue::new(0));
//!         let prod = {
//!             let q = q.clone();
//!             curio::spawn(move || producer(q))
//!         };
//!         let consumers: Vec<_> = (1..=2)
//!             .map(|id| {
//!                 let q = q.clone();
//!                 curio::spawn(move || consumer(id, q))
//!             })
//!             .collect();
//!         prod.join()??;
//!         for c in &consumers {
//!             c.cancel()?;
//!         }
//!         Ok(())
//!     })
//! }
//! ```
//!
//! ```text
//! consumer 1 got 0
//! consumer 2 got 1
//! consumer 1 got 2
//! consumer 2 got 3
//! consumer 1 got 4
//! consumer 2 got 5
//! consumer 1 got 6
//! consumer 2 got 7
//! consumer 1 got 8
//! consumer 2 got 9
//! Producer done
//! ```
//!
//! `Queue::new(0)` is unbounded; `Queue::new(n)` holds at most `n` items, and a
//! `put` on a full queue waits for room. Each consumer takes an item and works
//! on it for 100 ms, so the two take turns; getters that wait are served in the
//! order they came, so none is starved. `task_done` marks an item as handled, and
//! `join` waits until every item put has been marked, so the producer knows the
//! work is finished, not just handed out. The consumers loop
//! forever; the parent ends them with `cancel`, which reaches them in their `get`
//! or `sleep`.
//!
//! Nothing is lost to a cancellation or a timeout: a `get` that gives up takes
//! nothing, and a `put` that gives up hands the item back in its
//! [`PutError`](crate::PutError). [`LifoQueue`](crate::LifoQueue) and
//! [`PriorityQueue`](crate::PriorityQueue) have the same methods and hand items
//! out last-in-first-out and smallest-first. Between tasks and OS threads, use
//! [`UniversalQueue`](crate::UniversalQueue).
//!
//! # Number crunching: threads and processes
//!
//! curio does not preempt. A task runs until it calls something that waits, so a
//! task that computes for ten seconds stops every other task, timer and socket of
//! its kernel for ten seconds, and cannot be cancelled meanwhile (a cancellation
//! is delivered when a task waits). The same goes for any call that blocks the
//! thread: `std::thread::sleep`, `std::fs`, `std::net`, a database driver. Move
//! such work off the kernel's thread:
//!
//! - [`run_in_thread`](crate::run_in_thread) runs a closure on a pool of worker
//!   threads and suspends the calling task until it returns. Use it for blocking
//!   calls. A cancelled call returns at once, but a closure that has started
//!   cannot be stopped: it runs to the end on its thread and its value is
//!   dropped.
//! - [`run_in_process`](crate::run_in_process) runs a function in a pool of
//!   worker processes, which are this very program started again. Use it for
//!   CPU-bound work. Cancelling the call kills its worker.
//!
//! `cargo run --release --example number_crunching` gives the kid an exponential
//! Fibonacci to compute, one `run_in_process` call per number, while the parent
//! counts down and then cancels the kid:
//!
//! ```no_run
//! use std::rc::Rc;
//! use std::time::Duration;
//!
//! use curio::sync::Event;
//!
//! fn fib(n: u64) -> u64 {
//!     if n <= 2 { 1 } else { fib(n - 1) + fib(n - 2) }
//! }
//!
//! // What run_in_process may call: workers find `fib` by this registration.
//! curio::process_fn!(fib);
//!
//! fn kid(start_evt: Rc<Event>, in_thread: bool) -> curio::Result<()> {
//!     println!("Can I play?");
//!     start_evt.wait()?;
//!     println!("Building the Millenium Falcon in Minecraft");
//!     let mut total = 0;
//!     for n in 30..50 {
//!         let r = if in_thread {
//!             curio::run_in_thread(move || fib(n))
//!         } else {
//!             curio::run_in_process(fib, n)
//!         };
//!         match r {
//!             Ok(f) => {
//!                 println!("fib({n}) = {f}");
//!                 total += f;
//!             }
//!             Err(e) if e.is_cancelled() => {
//!                 println!("Fine. Saving my work. (total so far: {total})");
//!                 return Ok(());
//!             }
//!             Err(e) => return Err(e),
//!         }
//!     }
//!     Ok(())
//! }
//!
//! fn main() -> curio::Result<()> {
//!     // First thing: in a worker process this serves `fib` and never returns.
//!     curio::process::init();
//!     let in_thread = std::env::args().any(|a| a == "--thread");
//!
//!     curio::run(|| {
//!         let start_evt = Rc::new(Event::new());
//!         let evt = start_evt.clone();
//!         let kid_task = curio::spawn(move || kid(evt, in_thread));
//!         println!("Yes, go play");
//!         start_evt.set();
//!         curio::sleep(Duration::from_secs(1))?;
//!         println!("Let's go");
//!         for n in (1..=3).rev() {
//!             println!("T-minus {n}");
//!             curio::sleep(Duration::from_secs(1))?;
//!         }
//!         kid_task.cancel()?;
//!         kid_task.join()?
//!     })
//! }
//! ```
//!
//! The parent says yes before the kid asks (spawning does not switch, so the kid
//! first runs when the parent sleeps), and the kid's Fibonacci numbers keep
//! coming while the countdown ticks on time, one line a second. On one machine:
//!
//! ```text
//! Yes, go play
//! Can I play?
//! Building the Millenium Falcon in Minecraft
//! fib(30) = 832040
//! ...
//! fib(40) = 102334155
//! Let's go
//! T-minus 3
//! fib(41) = 165580141
//! T-minus 2
//! fib(42) = 267914296
//! T-minus 1
//! fib(43) = 433494437
//! Fine. Saving my work. (total so far: 1133556901)
//! ```
//!
//! How far the kid gets depends on the machine and the build (a debug build
//! computes more slowly). The cancellation comes in the middle of the next
//! number (here `fib(44)`) and kills the worker computing it: the worker is gone
//! by the time the kid saves its work.
//!
//! Three things make `run_in_process` work. A function sent to another process
//! cannot be a closure, so it is a plain `fn(A) -> R` whose argument and result
//! are serde types, registered with [`process_fn!`](crate::process_fn) beside its
//! definition. The workers are this program run again with a marker argument, so
//! [`process::init`](crate::process::init) must be the first thing in `main`: in a
//! worker it serves calls and never returns. And the same holds for tests that
//! use `run_in_process`: they need a test target with its own `main` (see
//! [`process`](crate::process)).
//!
//! `cargo run --release --example number_crunching -- --thread` does each call
//! with `run_in_thread` instead: the same lines, and the kernel stays just as
//! responsive, but the cancelled call's thread cannot be stopped; it goes on
//! computing its number in the background until the program exits. For blocking
//! calls that are not CPU-bound, `run_in_thread` is the right tool:
//!
//! ```
//! use std::time::Duration;
//!
//! curio::run(|| -> curio::Result<()> {
//!     let kid = curio::spawn(|| -> curio::Result<()> {
//!         for n in 1..=3u64 {
//!             // A blocking call from some library: it blocks a worker thread,
//!             // not the kernel.
//!             curio::run_in_thread(move || std::thread::sleep(Duration::from_millis(n)))?;
//!         }
//!         Ok(())
//!     });
//!     let ticker = curio::spawn(|| curio::sleep(Duration::from_millis(1))); // runs meanwhile
//!     kid.join_flatten()?;
//!     ticker.join_flatten()
//! })?;
//! # Ok::<(), curio::Error>(())
//! ```
//!
//! # Signals
//!
//! [`SignalSet`](crate::SignalSet) turns Unix signals into something a task waits
//! for. `cargo run --example with_signals` lets the kid play until the parent
//! receives `SIGHUP`:
//!
//! ```text
//! $ cargo run --example with_signals
//! Parent PID 36069
//! Can I play?
//! Wha!?!
//! ...
//! Can I play?
//! Yes, go play
//! Building the Millenium Falcon in Minecraft
//! ```
//!
//! and there it waits. From another terminal, `kill -HUP 36069` (the PID it
//! printed), and it goes on:
//!
//! ```text
//! Let's go
//! T-minus 10
//! ...
//! T-minus 1
//! We're leaving!
//! I warned you!
//! Fine. Saving my work.
//! Leaving!
//! ```
//!
//! The part that waits is one line:
//!
//! ```no_run
//! use curio::signal::{SIGHUP, SignalSet};
//!
//! curio::run(|| -> curio::Result<()> {
//!     SignalSet::new(&[SIGHUP])?.wait()?;
//!     println!("Let's go");
//!     Ok(())
//! })?;
//! # Ok::<(), curio::Error>(())
//! ```
//!
//! While a `SignalSet` exists, its signals no longer have their default effect
//! (for `SIGHUP`, ending the process): they are caught and queued in the set, and
//! [`wait`](crate::SignalSet::wait) returns the next one. When the set is
//! dropped, the signals get their previous handling back. In `with_signals` the
//! set lives only for its `wait`, so a `SIGHUP` sent before the kid starts
//! playing still ends the program; create the set earlier to queue such signals
//! instead. A task can send a signal to its own process with
//! [`signal::raise`](crate::signal::raise) (or to another with
//! [`signal::send`](crate::signal::send)):
//!
//! ```
//! use std::time::Duration;
//! use curio::signal::{self, SIGUSR1, SignalSet};
//!
//! curio::Kernel::builder().virtual_clock(true).build().run(|| -> curio::Result<()> {
//!     let set = SignalSet::new(&[SIGUSR1])?;
//!     curio::spawn(|| -> curio::Result<()> {
//!         curio::sleep(Duration::from_secs(3))?;
//!         signal::raise(SIGUSR1)
//!     });
//!     assert_eq!(set.wait()?, SIGUSR1);
//!     println!("got {}", signal::name(SIGUSR1).unwrap());
//!     Ok(())
//! })??;
//! # Ok::<(), curio::Error>(())
//! ```
//!
//! [`SignalEvent`](crate::SignalEvent) is the other form: an event that any of
//! its signals sets, for code that only needs to know that a signal came.
//!
//! Run `with_signals` on the real clock. On the virtual clock, once the parent
//! waits for the signal, the kid's 1000-second sleep is the only timer left, and
//! the clock jumps over it (after its 5 ms of grace): the kid has finished
//! playing by the time `SIGHUP` comes, and the story ends with "We're leaving!"
//! and "Leaving!" only.
//!
//! # Debugging
//!
//! curio's *monitor* is Curio's: run a program with it on
//! ([`Builder::with_monitor`](crate::kernel::Builder::with_monitor), or
//! `CURIO_MONITOR=1` in the environment) and, from another terminal,
//! `cargo run --bin curio-monitor` (or `nc localhost 48802`). `ps` lists the
//! tasks, `where` shows a suspended task's real stack without disturbing it,
//! `cancel` cancels one. `cargo run --example several_tasks -- --monitor`
//! replays the tutorial's session; while the kid plays:
//!
//! ```text
//! curio > ps
//! Task   State        Cycles     Timeout       CPU       Stack       Task
//! ------ ------------ ---------- ------------- --------- ----------- --------------------------------------------------
//! 1      TIME_SLEEP   1          sleep 3.19340 0.000     4K/256K     main
//! 2      TIME_SLEEP   1          sleep 998.193 0.000     4K/256K     several_tasks::kid
//! curio > where 2
//! Stack of Task(id=2, name='several_tasks::kid', state=TIME_SLEEP), most recent call first:
//!   [in curio::time::sleep: 1 runtime frame folded]
//!   several_tasks::kid
//!       at examples/several_tasks.rs:59:11
//!   [the task's start: 7 runtime frames folded]
//! curio > cancel 2
//! Cancelling task 2
//! ```
//!
//! and the kid says "Fine. Saving my work." The commands are in
//! [`monitor`](crate::monitor); from code, [`TaskRef::traceback`](crate::TaskRef::traceback)
//! gives a task's stack and [`debug::dump`](crate::debug::dump) every task's.
//! Three more things help.
//!
//! **Tasks describe themselves.** A [`TaskRef`](crate::TaskRef) (what
//! [`current_task`](crate::current_task) returns, and what a `Task` dereferences
//! to) prints as `Task(id=2, name='kid', state=TIME_SLEEP)`, with the state
//! names of Curio; [`state`](crate::TaskRef::state) and
//! [`cycles`](crate::TaskRef::cycles) give them to code. Name tasks with
//! [`task::Builder`](crate::task::Builder) so that reports say which is which:
//!
//! ```
//! use std::time::Duration;
//!
//! curio::run(|| -> curio::Result<()> {
//!     let kid = curio::task::Builder::new()
//!         .name("kid")
//!         .spawn(|| curio::sleep(Duration::from_secs(1000)))?;
//!     curio::yield_now()?; // let the kid start its sleep
//!     assert_eq!(kid.to_string(), "Task(id=2, name='kid', state=TIME_SLEEP)");
//!     kid.cancel()?;
//!     assert_eq!(kid.to_string(), "Task(id=2, name='kid', state=TERMINATED)");
//!     Ok(())
//! })?;
//! # Ok::<(), curio::Error>(())
//! ```
//!
//! **A deadlock is reported, not hung.** When every task waits and nothing (no
//! timer, socket, thread or signal) could ever wake one, the kernel cancels the
//! tasks and ends with an error of kind
//! [`ErrorKind::Deadlock`](crate::ErrorKind::Deadlock) that lists who waits for
//! what (`curio::run` panics with the same message):
//!
//! ```
//! use std::rc::Rc;
//! use curio::sync::Event;
//!
//! let r = curio::Kernel::builder().build().run(|| {
//!     let never = Rc::new(Event::new());
//!     let kid = curio::task::Builder::new()
//!         .name("kid")
//!         .spawn(move || never.wait())
//!         .unwrap();
//!     kid.join()
//! });
//! let e = r.unwrap_err();
//! assert_eq!(e.kind(), curio::ErrorKind::Deadlock);
//! assert_eq!(
//!     e.to_string(),
//!     "deadlock: every task is blocked and nothing can wake one:\n  \
//!      Task(id=1, name='main', state=TASK_JOIN) waits for task 2\n  \
//!      Task(id=2, name='kid', state=EVENT_WAIT)"
//! );
//! ```
//!
//! **A panicking task is reported and contained.** `cargo run --example
//! task_crash` has a task index past the end of a vector. The panic ends that
//! task only; the kernel prints a crash report to stderr, with the task's name,
//! and whoever joins the task gets the panic as an error of kind
//! [`TaskPanicked`](crate::ErrorKind::TaskPanicked):
//!
//! ```text
//! curio: task crash: Task(id=2, name='cruncher', state=RUNNING) panicked at examples/task_crash.rs:34:24:
//! index out of bounds: the len is 3 but the index is 4
//! note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace
//! cruncher failed: task panicked: index out of bounds: the len is 3 but the index is 4
//! main goes on
//! ```
//!
//! (the first three lines on stderr, the last two on stdout). With
//! `RUST_BACKTRACE=1` the report includes the task's backtrace.
//!
//! Finally, a `main` that returns a `curio::Error` prints it as a message, with
//! the details that help (the error's kind; for a failed command, its status and
//! its output): `cargo run --example error_from_main` and
//! `cargo run --example error_from_main -- --command` show both.
//!
//! # Making connections
//!
//! [`net::open_connection`](crate::net::open_connection) resolves a host name (on
//! threads of its own, never on the kernel's) and connects to it.
//! `cargo run --example simple_http_client -- HOST PORT` sends an HTTP request
//! and prints the answer:
//!
//! ```no_run
//! # let (host, port) = ("localhost".to_string(), 8000);
//! let request = format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n");
//! curio::run(|| -> curio::Result<()> {
//!     let sock = curio::net::open_connection(&host, port)?;
//!     sock.sendall(request.as_bytes())?;
//!     let mut chunks = Vec::new();
//!     loop {
//!         let chunk = sock.recv(10000)?;
//!         if chunk.is_empty() {
//!             break;
//!         }
//!         chunks.extend_from_slice(&chunk);
//!     }
//!     print!("{}", String::from_utf8_lossy(&chunks));
//!     Ok(())
//! })?;
//! # Ok::<(), curio::Error>(())
//! ```
//!
//! Against a local `python3 -m http.server 8000`, `cargo run --example
//! simple_http_client -- localhost 8000` prints:
//!
//! ```text
//! HTTP/1.0 200 OK
//! Server: SimpleHTTP/0.6 Python/3.11.7
//! Date: Mon, 30 Nov 2026 12:10:56 GMT
//! Content-type: text/html; charset=utf-8
//! Content-Length: 230
//!
//! <!DOCTYPE HTML>
//! <html lang="en">
//! ...
//! ```
//!
//! The socket's methods are Curio's (`recv`, `sendall`, `recv_into` …), each
//! suspending only the calling task. A [`TcpStream`](crate::net::TcpStream) also
//! implements `std::io::Read` and `Write`, so code written for std's traits
//! (a parser, a codec, `tungstenite` in `examples/websocket_echo_server.rs`) runs
//! on it unchanged, and still yields to other tasks while it waits.
//!
//! TLS is one call away. [`net::Connect`](crate::net::Connect) opens a plain
//! connection, and `.tls()` turns it into a TLS one
//! (rustls, the server's certificate checked against the
//! Mozilla roots for the host name). The result is a
//! [`TlsStream`](crate::tls::TlsStream), a buffered stream with `readline`,
//! `read_exactly`, `write_all` and the rest:
//!
//! ```no_run
//! use curio::net::Connect;
//!
//! curio::run(|| -> curio::Result<()> {
//!     let mut sock = Connect::new("www.python.org", 443).tls().open()?;
//!     sock.write_all(b"GET / HTTP/1.0\r\nHost: www.python.org\r\n\r\n")?;
//!     let status = sock.readline()?;
//!     print!("{}", String::from_utf8_lossy(&status)); // the status line
//!     Ok(())
//! })?;
//! # Ok::<(), curio::Error>(())
//! ```
//!
//! `cargo run --example simple_http_client -- --https HOST` does that. To trust a
//! private certificate instead of the Mozilla roots, build a
//! [`TlsConnector`](crate::tls::TlsConnector) from your own roots and use
//! `.tls_with(&connector)`; the example's `--cacert CERT.pem` option does so, and
//! the SSL server below makes such a certificate. After `.tls()`, the builder
//! also takes a server name to verify other than the host
//! ([`server_name`](crate::tls::TlsConnect::server_name)), ALPN protocols
//! ([`alpn`](crate::tls::TlsConnect::alpn)) and a handshake deadline
//! ([`handshake_timeout`](crate::tls::TlsConnect::handshake_timeout)).
//!
//! # Servers
//!
//! ## A simple echo server
//!
//! `cargo run --example simple_echo_server` uses sockets directly: a listening
//! socket, a loop of `accept`, and a task per client:
//!
//! ```no_run
//! use std::net::SocketAddr;
//!
//! use curio::net::{TcpListener, TcpStream};
//!
//! fn echo_server(address: SocketAddr) -> curio::Result<()> {
//!     let sock = TcpListener::bind(address)?; // SO_REUSEADDR, listening
//!     println!("Server listening at {}", sock.local_addr()?);
//!     loop {
//!         let (client, addr) = sock.accept()?;
//!         curio::task::Builder::new()
//!             .daemon(true)
//!             .spawn(move || echo_client(client, addr))?;
//!     }
//! }
//!
//! fn echo_client(client: TcpStream, addr: SocketAddr) -> curio::Result<()> {
//!     println!("Connection from {addr}");
//!     loop {
//!         let data = client.recv(1000)?;
//!         if data.is_empty() {
//!             break;
//!         }
//!         client.sendall(&data)?;
//!     }
//!     println!("Connection closed");
//!     Ok(()) // `client` is dropped here: closed
//! }
//!
//! fn main() -> curio::Result<()> {
//!     curio::run(|| echo_server(SocketAddr::from(([127, 0, 0, 1], 25000))))
//! }
//! ```
//!
//! Talk to it with `nc localhost 25000` from a few terminals at once; each line
//! you type comes back:
//!
//! ```text
//! $ cargo run --example simple_echo_server
//! Server listening at 127.0.0.1:25000
//! Connection from 127.0.0.1:48194
//! Connection closed
//! ```
//!
//! ```text
//! $ nc localhost 25000
//! Hello
//! Hello
//! Is anyone there?
//! Is anyone there?
//! ^C
//! ```
//!
//! There is no `close` to forget: a socket is closed when it is dropped, here
//! when `echo_client` returns (or fails, or is cancelled). The client tasks are
//! spawned as *daemons*: background tasks whose value nobody collects (a task
//! group does not wait for its daemon members). Like every task still running,
//! they are cancelled when the main task ends.
//!
//! ## `tcp_server`
//!
//! [`net::tcp_server`](crate::net::tcp_server) does the listening, the accepting
//! and the task per client, and closes each client's socket when its handler
//! returns. `cargo run --example echo_server` is the same server:
//!
//! ```no_run
//! use std::net::SocketAddr;
//!
//! use curio::net::{TcpStream, tcp_server};
//!
//! fn echo_client(client: TcpStream, addr: SocketAddr) -> curio::Result<()> {
//!     println!("Connection from {addr}");
//!     loop {
//!         let data = client.recv(1000)?;
//!         if data.is_empty() {
//!             break;
//!         }
//!         client.sendall(&data)?;
//!     }
//!     println!("Connection closed");
//!     Ok(())
//! }
//!
//! fn main() -> curio::Result<()> {
//!     curio::run(|| tcp_server(SocketAddr::from(([127, 0, 0, 1], 25000)), echo_client))
//! }
//! ```
//!
//! A handler returns `()` or a `Result`. One that returns an error (a peer
//! that reset the connection, say) or panics is reported on stderr as a task
//! crash, and the server goes on:
//!
//! ```text
//! curio: task crash: Task(id=7, name='echo_server::echo_client', state=RUNNING) failed:
//! serving 127.0.0.1:50412: Connection reset by peer (os error 104)
//! ```
//!
//! A server stops when its task is cancelled: it closes the listening socket,
//! cancels every handler still running and waits for them.
//! [`tcp_server_with`](crate::net::tcp_server_with) takes a listen backlog and
//! `SO_REUSEPORT`; [`run_server`](crate::net::run_server) serves any listener
//! you made, and [`unix_server`](crate::net::unix_server) a Unix socket.
//!
//! ## A stream-based echo server
//!
//! For line-oriented protocols, wrap the socket in a buffered
//! [`Stream`](crate::Stream) with `as_stream`. `cargo run --example
//! stream_echo_server`:
//!
//! ```no_run
//! use std::net::SocketAddr;
//!
//! use curio::net::{TcpStream, tcp_server};
//!
//! fn echo_client(client: TcpStream, addr: SocketAddr) -> curio::Result<()> {
//!     println!("Connection from {addr}");
//!     let mut s = client.as_stream();
//!     // Curio's `async for line in s`.
//!     while let Some(line) = s.next_line()? {
//!         s.write_all(&line)?;
//!     }
//!     println!("Connection closed");
//!     Ok(())
//! }
//! # fn main() -> curio::Result<()> {
//! #     curio::run(|| tcp_server(SocketAddr::from(([127, 0, 0, 1], 25000)), echo_client))
//! # }
//! ```
//!
//! A stream reads ahead into a buffer, so `readline` costs one system call per
//! buffer, not per byte. Its reading methods are Curio's
//! ([`readline`](crate::Stream::readline),
//! [`read_exactly`](crate::Stream::read_exactly),
//! [`read_some`](crate::Stream::read_some), [`read_all`](crate::Stream::read_all),
//! [`lines`](crate::Stream::lines)), its writing methods
//! [`write_all`](crate::Stream::write_all) and
//! [`writelines`](crate::Stream::writelines); it also implements
//! `std::io::Read`, `BufRead` and `Write`. The iterator of `lines` borrows the
//! stream while it is used, so to write between lines, loop on
//! [`next_line`](crate::Stream::next_line) as above. To read in one task and write in
//! another, split the stream with [`into_split`](crate::Stream::into_split). For
//! parsers that look at the buffered bytes before consuming them,
//! [`read_more`](crate::Stream::read_more),
//! [`buffered`](crate::Stream::buffered), [`consume`](crate::Stream::consume) and
//! a write buffer with [`flush`](crate::Stream::flush) are there;
//! `examples/resp_server.rs`, a pipelined Redis-protocol server, uses them
//! (`cargo run --release --example resp_server`, then `redis-cli -p 6380`).
//!
//! ## A managed echo server
//!
//! `cargo run --example managed_echo_server` restarts its server when it
//! receives `SIGHUP`: every client is told "Server going down" and
//! disconnected, and a fresh server starts.
//!
//! ```no_run
//! use std::cell::RefCell;
//! use std::collections::HashMap;
//! use std::net::SocketAddr;
//! use std::rc::Rc;
//!
//! use curio::TaskRef;
//! use curio::net::{TcpStream, tcp_server};
//! use curio::signal::{SIGHUP, SignalSet};
//!
//! /// The active clients, by task id.
//! type Clients = Rc<RefCell<HashMap<u64, TaskRef>>>;
//! # fn echo(client: &TcpStream) -> curio::Result<()> {
//! #     loop {
//! #         let data = client.recv(1000)?;
//! #         if data.is_empty() {
//! #             return Ok(());
//! #         }
//! #         client.sendall(&data)?;
//! #     }
//! # }
//!
//! fn echo_client(client: TcpStream, addr: SocketAddr, clients: Clients) -> curio::Result<()> {
//!     let task = curio::current_task();
//!     clients.borrow_mut().insert(task.id(), task.clone());
//!     // `finally: clients.remove(task)`, however the handler ends.
//!     struct Leave(Clients, u64);
//!     impl Drop for Leave {
//!         fn drop(&mut self) {
//!             self.0.borrow_mut().remove(&self.1);
//!         }
//!     }
//!     let _leave = Leave(clients, task.id());
//!     println!("Connection from {addr}");
//!     match echo(&client) {
//!         Ok(()) => println!("Connection closed"),
//!         Err(e) if e.is_cancelled() => client.sendall(b"Server going down\n")?,
//!         Err(e) => return Err(e),
//!     }
//!     Ok(())
//! }
//!
//! fn serve(addr: SocketAddr) -> curio::Result<()> {
//!     let clients: Clients = Rc::default();
//!     loop {
//!         let sigset = SignalSet::new(&[SIGHUP])?;
//!         println!("Starting the server");
//!         let c = clients.clone();
//!         let serv_task =
//!             curio::spawn(move || tcp_server(addr, move |sock, a| echo_client(sock, a, c.clone())));
//!         sigset.wait()?;
//!         println!("Server shutting down");
//!         serv_task.cancel()?;
//!         // ... and, as the tutorial does, cancel any client left in `clients`
//!     }
//! }
//! # fn main() -> curio::Result<()> {
//! #     curio::run(|| serve(SocketAddr::from(([127, 0, 0, 1], 25000))))
//! # }
//! ```
//!
//! With two clients connected, `kill -HUP PID` makes the server print
//!
//! ```text
//! PID: 3096
//! Starting the server
//! Connection from 127.0.0.1:41142
//! Connection from 127.0.0.1:41152
//! Server shutting down
//! Starting the server
//! ```
//!
//! and each `nc` receives `Server going down` and is disconnected. Cancelling the
//! server task cancels its handlers; each handler's `recv` returns the
//! cancellation, the handler sends its goodbye (a task may still do I/O after it
//! was cancelled: the cancellation is delivered once), and the `Leave` guard
//! takes the client out of the set. A `Drop` guard is the Rust form of Curio's
//! `try`/`finally`: it runs however the function ends.
//!
//! ## An SSL server
//!
//! [`tls::tcp_server`](crate::tls::tcp_server) is `tcp_server` with a TLS
//! handshake in each client's task, under a deadline, before the handler runs.
//! `cargo run --example simple_ssl_server` makes a self-signed certificate for
//! `localhost` (with `rcgen`, unless you give a certificate and key) and serves a
//! small HTML page on port 10000:
//!
//! ```no_run
//! use std::net::SocketAddr;
//!
//! use curio::tls::{self, TlsStream};
//!
//! fn handler(mut client: TlsStream, addr: SocketAddr) -> curio::Result<()> {
//!     println!("Connection from {addr}");
//!     for line in client.lines() {
//!         let line = line?;
//!         if line == b"\r\n" {
//!             break; // the end of the request's headers
//!         }
//!     }
//!     let body = "<h1>If you're seeing this, it probably worked. Yay!</h1>\n";
//!     let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
//!     client.writelines([head.as_bytes(), body.as_bytes()])?;
//!     client.shutdown()?; // close_notify: the client sees a clean end
//!     println!("Connection closed");
//!     Ok(())
//! }
//!
//! fn main() -> curio::Result<()> {
//!     let config = tls::server_config_from_pem("cert.pem", "key.pem")?;
//!     curio::run(|| tls::tcp_server(SocketAddr::from(([127, 0, 0, 1], 10000)), config, handler))
//! }
//! ```
//!
//! (The example's handler also prints the request's headers and says which TLS
//! version served it.)
//!
//! ```text
//! $ cargo run --example simple_ssl_server
//! No certificate given: made a self-signed one for localhost and 127.0.0.1
//!   certificate: /tmp/curio-simple-ssl-server-10000/cert.pem
//!   key:         /tmp/curio-simple-ssl-server-10000/key.pem
//! Serving https://localhost:10000/
//! $ curl --cacert /tmp/curio-simple-ssl-server-10000/cert.pem https://localhost:10000/
//! <!DOCTYPE html>
//! <html><head><title>curio</title></head>
//! <body>
//! <h1>If you're seeing this, it probably worked. Yay!</h1>
//! <p>Served over TLSv1_3 by a curio task; 1796040652 seconds since 1970.</p>
//! </body></html>
//! $ cargo run --example simple_http_client -- --https --cacert /tmp/curio-simple-ssl-server-10000/cert.pem localhost 10000
//! HTTP/1.0 200 OK
//! Content-Type: text/html; charset=utf-8
//! ...
//! ```
//!
//! A browser at `https://localhost:10000/` shows the page after a warning about
//! the self-signed certificate. A client whose handshake fails or stalls is
//! dropped without reaching the handler; the server goes on.
//!
//! # Subprocesses
//!
//! [`subprocess::Command`](crate::subprocess::Command) is shaped like
//! `std::process::Command`, but waiting for the child and reading its pipes
//! suspend only the calling task: no thread is used. `cargo run --example
//! simple_subprocess` follows a command's output line by line as it comes (by
//! default `ping www.python.org`, which needs `ping` and a network; give another
//! command after `--`):
//!
//! ```
//! use curio::subprocess::{Command, Stdio};
//!
//! curio::run(|| -> curio::Result<()> {
//!     let mut p = Command::new("sh")
//!         .args(["-c", "for i in 1 2 3; do echo $i; sleep 0.1; done"])
//!         .stdout(Stdio::piped())
//!         .spawn()?;
//!     for line in p.stdout.as_mut().expect("stdout is piped").lines() {
//!         print!("Got: {}", String::from_utf8_lossy(&line?));
//!     }
//!     p.wait()?;
//!     Ok(())
//! })?;
//! # Ok::<(), curio::Error>(())
//! ```
//!
//! ```text
//! $ cargo run --example simple_subprocess -- sh -c 'for i in 1 2 3; do echo $i; sleep 1; done'
//! Got: 1
//! Got: 2
//! Got: 3
//! ```
//!
//! To run a command to the end and take its output, use
//! [`check_output`](crate::subprocess::Command::check_output),
//! [`output`](crate::subprocess::Command::output) or
//! [`run`](crate::subprocess::Command::run). A command that fails is an error of
//! kind [`ProcessFailed`](crate::ErrorKind::ProcessFailed) that carries its exit
//! status and output. `cargo run --example subprocess_check_output` runs
//! `netstat -a`, or the command given after `--`:
//!
//! ```
//! use curio::ErrorKind;
//! use curio::subprocess::Command;
//!
//! curio::run(|| -> curio::Result<()> {
//!     match Command::new("sh").args(["-c", "exit 3"]).check_output() {
//!         Ok(out) => print!("{}", String::from_utf8_lossy(&out)),
//!         Err(e) if e.kind() == ErrorKind::ProcessFailed => println!("It failed! {e}"),
//!         Err(e) => return Err(e),
//!     }
//!     Ok(())
//! })?;
//! # Ok::<(), curio::Error>(())
//! ```
//!
//! ```text
//! $ cargo run --example subprocess_check_output -- sh -c 'exit 3'
//! It failed! command failed: `sh -c exit 3` exited with status 3; its status and output are in Error::output()
//! ```
//!
//! Cancelling or timing out any of these waits kills the child and reaps it
//! before the error comes back, so no process is left running unwatched, and
//! dropping a [`Child`](crate::subprocess::Child) that was not waited for does
//! the same.
//!
//! # Blocking I/O
//!
//! Sometimes a socket has to go to synchronous code that knows nothing of
//! curio. [`Socket::blocking`](crate::Socket::blocking) lends it, for the length
//! of a closure, as a [`Blocking`](crate::Blocking) handle whose calls wait until
//! they can proceed. `cargo run --example blocking_io` is the echo server with
//! its writes done that way:
//!
//! ```no_run
//! use std::net::SocketAddr;
//!
//! use curio::net::{TcpStream, tcp_server};
//!
//! fn echo_client(client: TcpStream, addr: SocketAddr) -> curio::Result<()> {
//!     println!("Connection from {addr}");
//!     loop {
//!         let data = client.recv(1000)?;
//!         if data.is_empty() {
//!             break;
//!         }
//!         // Synchronous code gets a handle whose calls block.
//!         client.blocking(|raw| raw.write_all(&data))??;
//!     }
//!     println!("Connection closed");
//!     Ok(())
//! }
//! # fn main() -> curio::Result<()> {
//! #     curio::run(|| tcp_server(SocketAddr::from(([127, 0, 0, 1], 25000)), echo_client))
//! # }
//! ```
//!
//! The two `?` are for the loan (`blocking` returns a `curio::Result` of what the
//! closure returned) and for the `std::io::Result` of `write_all`. The loan does
//! not change the socket: other tasks still see it non-blocking. But a call on the
//! handle blocks the thread it runs on, here the kernel's, and with it every
//! task, until it returns. To keep the kernel free, give a clone of the handle to
//! a worker thread (`cargo run --example blocking_io_in_thread`):
//!
//! ```no_run
//! # use curio::net::TcpStream;
//! # fn echo_client(client: TcpStream, data: Vec<u8>) -> curio::Result<()> {
//! client.blocking(|raw| -> curio::Result<()> {
//!     // The worker thread owns a clone: its calls block that thread only.
//!     let raw = raw.try_clone()?;
//!     curio::run_in_thread(move || raw.write_all(&data))??;
//!     Ok(())
//! })??;
//! # Ok(())
//! # }
//! ```
//!
//! That is the shape of a hybrid server: curio holds many mostly idle
//! connections, and a thread pool runs the existing synchronous code for the
//! busy ones. Both examples echo exactly as `echo_server` does.
//!
//! Files are blocking I/O too: [`fs::open`](crate::fs::open) and
//! [`fs::create`](crate::fs::create) give a [`File`](crate::fs::File) whose every
//! operation runs on the thread pool, and [`fs::read_to_string`](crate::fs::read_to_string)
//! and [`fs::write`](crate::fs::write) do a whole file at once.
//!
//! # Where to go next
//!
//! Some habits that help:
//!
//! - Think of tasks as threads that switch only where they wait. Code between two
//!   waits runs without interruption; anything shared across a wait may change.
//! - Keep the kernel's thread free: no long computations (use `run_in_process`)
//!   and no blocking calls (use curio's versions, or `run_in_thread`).
//! - Let errors from waiting calls travel with `?`. When you catch a
//!   cancellation to clean up, end the task soon after; when you catch a
//!   timeout, check it is yours ([`is_timeout`](crate::Error::is_timeout), not
//!   [`is_timeout_cancelled`](crate::Error::is_timeout_cancelled)).
//! - Write tests on the virtual clock
//!   (`Kernel::builder().virtual_clock(true)`): timeouts become exact and
//!   instant.
//!
//! Then:
//!
//! - The crate's [front page](crate) lists every module, and each module's docs
//!   say what it guarantees (under *Invariants*) and what a cancellation or a
//!   timeout leaves behind (under *Cancellation*, on every call that waits).
//! - `arch-notes/README.md`, in the repository, explains how curio is built: the
//!   kernel loop, task states, cancellation, timeouts, stacks, I/O readiness, and
//!   one note per service.
//! - `benches/README.md` tells how to measure curio against tokio, `may`, std
//!   threads and bare coroutines, and `arch-notes/benchmarks.md` holds the
//!   figures.
//! - `tests/` has a file per module; the tests read like this tutorial, as logs
//!   of events in their exact order.

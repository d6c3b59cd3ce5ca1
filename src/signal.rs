//! Unix signals as things tasks wait for: [`SignalSet`] queues the signals it
//! watches and hands them out one by one, [`SignalEvent`] is an event that a
//! signal sets; [`raise`], [`send`], [`parse`] and [`name`] round it off.
//!
//! A `SignalSet` is the tutorial's `async with SignalSet(SIGHUP) as s:` as a
//! Rust guard: it watches its signals from [`SignalSet::new`] until it is
//! dropped, and while it does, those signals are caught and queued instead of
//! doing what they normally do (end the process, for most). Dropping it gives
//! each signal back its previous behaviour once no other set or event watches
//! it. [`SignalSet::ignore`] is the ignore scope.
//!
//! # Invariants
//!
//! - Registration is signal-hook's. The first set or event that names a signal
//!   installs curio's shared action for it, for the rest of the process
//!   (signal-hook never uninstalls), and each set adds an action of its own
//!   for its signals while it lives. Inside the signal handler the actions
//!   touch only atomics and write the signal's number to a socket
//!   (`sys::hook_signal`, `sys::hook_set_signal`): nothing that allocates,
//!   locks or could panic.
//! - A set's action writes to the set's own socket, which the waiting task
//!   reads through the kernel's poller (state `SIGNAL_WAIT`, an external wait:
//!   never reported as a deadlock). Events are served by a dispatcher thread,
//!   started with the first event, which sets them from the shared action's
//!   socket. Signals come out of a set in arrival order.
//! - Every delivery that reaches the handler while a set watches the signal is
//!   queued in that set: none is lost, also when the socket is full (a counter
//!   per signal backs the bytes up). The operating system itself merges a
//!   standard signal sent again while it is still pending (POSIX allows it), so
//!   a burst of `SIGUSR1` may arrive as fewer deliveries; realtime signals
//!   (`SIGRTMIN`..`SIGRTMAX`) are queued by the kernel, one delivery per send.
//! - While no set or event watches a signal, curio's action does what the
//!   disposition it found did: the default action (terminate, stop, or
//!   nothing) for `SIG_DFL`, nothing for `SIG_IGN`; a handler that was
//!   installed before is called by signal-hook on every delivery, watched or
//!   not. So a `SIGINT` with no set watching it ends the process by `SIGINT`,
//!   as in any Rust program. The kernel-level disposition stays signal-hook's
//!   handler (see `arch-notes/signals.md` for what that changes: a signal
//!   that was `SIG_IGN` is `SIG_DFL` again in programs this process `exec`s).
//! - A signal arriving while an ignore guard for it lives is dropped: not
//!   queued, not acted on.
//! - Use one signal library per signal: if other code registers its own
//!   signal-hook action (tokio's `signal`, say) for a signal curio hooked while
//!   it was `SIG_DFL`, curio's action still applies the default whenever no
//!   curio set watches it, and for most signals the default ends the process.
//!
//! # Example
//!
//! ```
//! use curio::signal::{self, SignalSet, SIGUSR1};
//! curio::run(|| -> curio::Result<()> {
//!     let set = SignalSet::new(&[SIGUSR1])?;  // SIGUSR1 is caught from here on
//!     signal::raise(SIGUSR1)?;                // would end the process without the set
//!     assert_eq!(set.wait()?, SIGUSR1);       // SIGNAL_WAIT until it arrives
//!     Ok(())
//! })                                          // the set is dropped: SIGUSR1 kills again
//! .unwrap();
//! ```

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use signal_hook::SigId;

use crate::error::{Error, ErrorKind, Result};
use crate::io::Registration;
use crate::kernel::State;
use crate::poller::Direction;
use crate::sys::{self, Disposition, NSIG, SetDoorbell, SignalTable};
use crate::universal::UniversalEvent;

pub use libc::{
    SIGABRT, SIGALRM, SIGBUS, SIGCHLD, SIGCONT, SIGFPE, SIGHUP, SIGILL, SIGINT, SIGIO, SIGKILL,
    SIGPIPE, SIGPROF, SIGPWR, SIGQUIT, SIGSEGV, SIGSTKFLT, SIGSTOP, SIGSYS, SIGTERM, SIGTRAP,
    SIGTSTP, SIGTTIN, SIGTTOU, SIGURG, SIGUSR1, SIGUSR2, SIGVTALRM, SIGWINCH, SIGXCPU, SIGXFSZ,
};

/// What curio's signal actions read: which signals are watched, ignored, and
/// what they did before.
static TABLE: SignalTable = SignalTable::new();

/// Which signals are hooked, and the events watching them. Locked when sets
/// and events are created and dropped, and by the dispatcher while it hands
/// out signals to events; never inside a signal handler.
static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    doorbell: None,
    dispatcher: None,
    hooked: 0,
    events: Vec::new(),
    next_id: 1,
});

/// A set of signal numbers (bit `n` for signal `n`).
type Mask = u128;

struct Registry {
    /// The write end of the socket the shared action rings for events;
    /// `'static` because the action may run at any moment from now on.
    doorbell: Option<&'static UnixStream>,
    /// The read end, until the dispatcher thread takes it (with the first event).
    dispatcher: Option<UnixStream>,
    /// Signals curio's shared action is installed for.
    hooked: Mask,
    events: Vec<(u64, Mask, UniversalEvent)>,
    next_id: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The lowest realtime signal number programs may use (glibc keeps the first
/// two or three for itself).
pub fn sigrtmin() -> i32 {
    sys::realtime_range().0
}

/// The highest realtime signal number.
pub fn sigrtmax() -> i32 {
    sys::realtime_range().1
}

/// True if `sig` names a signal programs may use: 1..=31 or a realtime one.
fn exists(sig: i32) -> bool {
    let (lo, hi) = sys::realtime_range();
    (1..32).contains(&sig) || (lo..=hi).contains(&sig)
}

fn describe(sig: i32) -> String {
    name(sig).unwrap_or_else(|| format!("signal {sig}"))
}

/// Checks that `sig` can be caught and waited for.
fn check_catchable(sig: i32) -> Result<()> {
    if !exists(sig) {
        return Err(Error::usage(format!(
            "signal {sig} does not exist here; use 1 to 31, or {} to {} (the realtime signals)",
            sigrtmin(),
            sigrtmax()
        )));
    }
    if sig == SIGKILL || sig == SIGSTOP {
        return Err(Error::usage(format!(
            "{} cannot be caught or ignored by any process",
            describe(sig)
        )));
    }
    if matches!(sig, SIGSEGV | SIGBUS | SIGILL | SIGFPE) {
        return Err(Error::usage(format!(
            "{} reports a fault of this process itself and cannot be waited for",
            describe(sig)
        )));
    }
    Ok(())
}

fn mask_of(signals: &[i32]) -> Result<Mask> {
    let mut mask = 0;
    for &sig in signals {
        check_catchable(sig)?;
        mask |= 1 << sig;
    }
    Ok(mask)
}

fn signals_in(mask: Mask) -> impl Iterator<Item = i32> {
    (1..NSIG as i32).filter(move |s| mask & (1 << s) != 0)
}

/// Installs curio's shared action for every signal of `mask` that lacks it,
/// recording first what each signal did before.
fn ensure_hooked(reg: &mut Registry, mask: Mask) -> Result<()> {
    let doorbell = match reg.doorbell {
        Some(d) => d,
        None => {
            let (read, write) = UnixStream::pair()?;
            // Never dropped: the action may write to it at any time from now on.
            let d: &'static UnixStream = Box::leak(Box::new(write));
            reg.doorbell = Some(d);
            reg.dispatcher = Some(read);
            d
        }
    };
    for sig in signals_in(mask & !reg.hooked) {
        // Recorded before the action exists, so the first delivery after it
        // is installed already knows what the signal used to do.
        let before = sys::signal_disposition(sig)?;
        TABLE.default_action[sig as usize].store(before == Disposition::Default, Ordering::SeqCst);
        sys::hook_signal(sig, &TABLE, doorbell).map_err(|e| hook_error(sig, e))?;
        reg.hooked |= 1 << sig;
    }
    Ok(())
}

fn hook_error(sig: i32, e: io::Error) -> Error {
    Error::from(io::Error::new(
        e.kind(),
        format!("cannot install a handler for {}: {e}", describe(sig)),
    ))
}

/// Counts `mask`'s signals as watched (`by` = 1) or no longer (`by` = -1):
/// the one moment each switches between "caught" and "what it did before".
///
/// Discussion: a set counts itself only after its own action is installed,
/// and uncounts itself before removing it; an event only once the dispatcher
/// can find it. So a delivery is always either caught or treated as before,
/// never neither.
fn count_watched(mask: Mask, by: i32, events: bool) {
    for sig in signals_in(mask) {
        let i = sig as usize;
        let tables: &[&std::sync::atomic::AtomicU32] = if events {
            &[&TABLE.events[i], &TABLE.watched[i]]
        } else {
            &[&TABLE.watched[i]]
        };
        for t in tables {
            if by > 0 {
                t.fetch_add(1, Ordering::SeqCst);
            } else {
                t.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The dispatcher (events only: each set reads its own doorbell)
// ---------------------------------------------------------------------------

/// Takes one delivery off a pending count, if there is one.
fn take_one(count: &std::sync::atomic::AtomicU32) -> bool {
    count
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// Turns the bytes read from a doorbell into signals, in arrival order, with
/// repeats folded into counts.
///
/// Discussion: an action counts a delivery in `pending` before it writes the
/// byte, so the byte never arrives before its count. Each byte takes one
/// count, which keeps arrival order. A byte whose count is already gone was
/// covered by a sweep (below) and is skipped, so nothing is handed out twice.
/// If a byte could not be written (the socket full: some 200 KiB of signals
/// nobody has read yet), the action raised `overflowed` first; the sweep then
/// takes every remaining count, so nothing is lost either, only the order of
/// those few.
fn decode(
    bytes: &[u8],
    pending: &[std::sync::atomic::AtomicU32; NSIG],
    overflowed: &std::sync::atomic::AtomicBool,
    mut add: impl FnMut(i32, u64),
) {
    for &b in bytes {
        if let Some(count) = pending.get(b as usize) {
            if take_one(count) {
                add(b as i32, 1);
            }
        }
    }
    if overflowed.swap(false, Ordering::SeqCst) {
        for (sig, count) in pending.iter().enumerate() {
            let n = count.swap(0, Ordering::SeqCst);
            if n > 0 {
                add(sig as i32, u64::from(n));
            }
        }
    }
}

/// Reads signal numbers from the shared doorbell and sets the events
/// watching them, forever.
fn dispatch_forever(read: UnixStream) {
    let mut buf = [0u8; 1024];
    loop {
        let n = match (&read).read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("curio: the signal dispatcher stopped: {e}");
                return;
            }
        };
        let mut got: Mask = 0;
        decode(&buf[..n], &TABLE.pending, &TABLE.overflowed, |sig, _| {
            got |= 1 << sig
        });
        let reg = lock(&REGISTRY);
        for (_, mask, event) in &reg.events {
            if mask & got != 0 {
                event.set();
            }
        }
    }
}

// ---------------------------------------------------------------------------
// SignalSet
// ---------------------------------------------------------------------------

/// Watches a set of signals from [`SignalSet::new`] until dropped: while it
/// lives, those signals are caught and queued, and [`SignalSet::wait`] hands
/// them out one at a time, oldest first.
///
/// It is the tutorial's `async with SignalSet(...) as s:` written as a guard
/// (the usual Rust shape for "active until the end of this scope"); the
/// tutorial's one-shot `await SignalSet(SIGHUP).wait()` is
/// `SignalSet::new(&[SIGHUP])?.wait()`, which watches only for that call.
/// When the last set or event watching a signal is dropped, the signal does
/// again what it did before (see the [module docs](self)).
///
/// Several sets may watch one signal, in any kernels and threads: each gets
/// every delivery. A set belongs to the thread that made it (it is not
/// `Send`), and one task at a time may wait on it.
///
/// # Example
///
/// ```
/// use curio::signal::{self, SignalSet, SIGUSR1, SIGUSR2};
/// curio::run(|| -> curio::Result<()> {
///     let set = SignalSet::new(&[SIGUSR1, SIGUSR2])?;
///     signal::raise(SIGUSR2)?;
///     signal::raise(SIGUSR1)?;
///     assert_eq!(set.wait()?, SIGUSR2); // in arrival order
///     assert_eq!(set.wait()?, SIGUSR1);
///     Ok(())
/// })
/// .unwrap();
/// ```
pub struct SignalSet {
    // Declared before `read`: deregistered before the socket closes.
    reg: Registration,
    /// The set's end of its doorbell socket (non-blocking).
    read: UnixStream,
    doorbell: Arc<SetDoorbell>,
    /// The set's actions, one per signal, removed on drop.
    actions: Vec<SigId>,
    mask: Mask,
    /// Signals read from the doorbell and not yet handed out, oldest first,
    /// with repeats of one signal folded into a count (a flood costs nothing).
    queue: RefCell<VecDeque<(i32, u64)>>,
    /// A task is waiting on the set.
    waiting: Cell<bool>,
}

impl SignalSet {
    /// Starts watching `signals` (numbers such as [`SIGHUP`], or from [`parse`]).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`] for a signal that does not exist or cannot be
    /// waited for (`SIGKILL`, `SIGSTOP`, and the fault signals `SIGSEGV`,
    /// `SIGBUS`, `SIGILL`, `SIGFPE`); an I/O error if a handler or the set's
    /// socket could not be set up.
    pub fn new(signals: &[i32]) -> Result<SignalSet> {
        let mask = mask_of(signals)?;
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        let doorbell = Arc::new(SetDoorbell::new(write));
        let mut reg = lock(&REGISTRY);
        ensure_hooked(&mut reg, mask)?;
        let mut actions = Vec::new();
        for sig in signals_in(mask) {
            match sys::hook_set_signal(sig, &TABLE, doorbell.clone()) {
                Ok(id) => actions.push(id),
                Err(e) => {
                    actions.into_iter().for_each(sys::unhook_set_signal);
                    return Err(hook_error(sig, e));
                }
            }
        }
        count_watched(mask, 1, false);
        drop(reg);
        Ok(SignalSet {
            reg: Registration::new(read.as_raw_fd()),
            read,
            doorbell,
            actions,
            mask,
            queue: RefCell::new(VecDeque::new()),
            waiting: Cell::new(false),
        })
    }

    /// The signals this set watches, in increasing order.
    pub fn signals(&self) -> Vec<i32> {
        signals_in(self.mask).collect()
    }

    /// Moves whatever the doorbell holds into the queue, without waiting.
    fn drain(&self) -> io::Result<()> {
        let mut buf = [0u8; 1024];
        let mut queue = self.queue.borrow_mut();
        let mut add = |sig: i32, count: u64| match queue.back_mut() {
            Some((s, c)) if *s == sig => *c += count,
            _ => queue.push_back((sig, count)),
        };
        loop {
            match (&self.read).read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    decode(&buf[..n], &self.doorbell.pending, &NO_OVERFLOW, &mut add);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // The overflow sweep comes after the socket is empty (see `decode`).
        decode(
            &[],
            &self.doorbell.pending,
            &self.doorbell.overflowed,
            &mut add,
        );
        Ok(())
    }

    fn pop(&self) -> Option<i32> {
        let mut queue = self.queue.borrow_mut();
        let (sig, count) = queue.front_mut()?;
        let sig = *sig;
        *count -= 1;
        if *count == 0 {
            queue.pop_front();
        }
        Some(sig)
    }

    /// Returns the oldest signal caught and not yet handed out, waiting for
    /// one if there is none.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ResourceBusy`] if another task is already waiting on this
    /// set.
    ///
    /// # Panics
    ///
    /// Outside a curio task.
    ///
    /// # Cancellation
    ///
    /// A cancel point, in state `SIGNAL_WAIT`. Cancelled or timed out, it took
    /// no signal: one that arrives meanwhile stays queued for the next `wait`.
    pub fn wait(&self) -> Result<i32> {
        if let Some(sig) = self.try_wait() {
            return Ok(sig);
        }
        if self.waiting.replace(true) {
            return Err(Error::new(
                ErrorKind::ResourceBusy,
                "another task is already waiting on this SignalSet; use one waiter per set",
            ));
        }
        struct Done<'a>(&'a Cell<bool>);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.set(false);
            }
        }
        let _done = Done(&self.waiting);
        self.reg.retry_as(Direction::Read, State::SignalWait, || {
            self.drain()?;
            self.pop().ok_or_else(|| io::ErrorKind::WouldBlock.into())
        })
    }

    /// The oldest signal caught and not yet handed out, without waiting.
    pub fn try_wait(&self) -> Option<i32> {
        let _ = self.drain();
        self.pop()
    }

    /// How many caught signals are waiting to be handed out.
    pub fn pending(&self) -> u64 {
        let _ = self.drain();
        self.queue.borrow().iter().map(|&(_, n)| n).sum()
    }

    /// Ignores this set's signals while the returned guard lives: a signal that
    /// arrives meanwhile is dropped, for every set and event in the process (it
    /// is not queued anywhere, and it does not do what it would normally do).
    /// Signals queued before stay queued. Curio's `with s.ignore():`.
    ///
    /// # Example
    ///
    /// ```
    /// use curio::signal::{self, SignalSet, SIGUSR1};
    /// let set = SignalSet::new(&[SIGUSR1]).unwrap();
    /// {
    ///     let _ignoring = set.ignore();
    ///     signal::raise(SIGUSR1).unwrap(); // dropped: neither queued nor fatal
    /// }
    /// signal::raise(SIGUSR1).unwrap(); // queued
    /// assert_eq!(curio::run(|| set.wait()).unwrap(), SIGUSR1);
    /// assert_eq!(set.pending(), 0);
    /// ```
    pub fn ignore(&self) -> Ignoring<'_> {
        for sig in signals_in(self.mask) {
            TABLE.ignored[sig as usize].fetch_add(1, Ordering::SeqCst);
        }
        Ignoring { set: self }
    }
}

/// For reading a set's bytes before the overflow sweep (`SignalSet::drain`).
static NO_OVERFLOW: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Drop for SignalSet {
    fn drop(&mut self) {
        let reg = lock(&REGISTRY);
        count_watched(self.mask, -1, false);
        drop(reg);
        for id in self.actions.drain(..) {
            sys::unhook_set_signal(id);
        }
    }
}

impl fmt::Debug for SignalSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = signals_in(self.mask).map(describe).collect();
        f.debug_struct("SignalSet")
            .field("signals", &names)
            .field("fd", &self.read.as_raw_fd())
            .finish()
    }
}

/// Keeps a [`SignalSet`]'s signals ignored while it lives (see
/// [`SignalSet::ignore`]).
pub struct Ignoring<'a> {
    set: &'a SignalSet,
}

impl Drop for Ignoring<'_> {
    fn drop(&mut self) {
        for sig in signals_in(self.set.mask) {
            TABLE.ignored[sig as usize].fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl fmt::Debug for Ignoring<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ignoring").field("set", self.set).finish()
    }
}

// ---------------------------------------------------------------------------
// SignalEvent
// ---------------------------------------------------------------------------

/// An event that any of its signals sets, from [`SignalEvent::new`] until it is
/// dropped (Curio's `SignalEvent`). While it lives, its signals are caught, as
/// with a [`SignalSet`]; several deliveries before a `wait` amount to one.
///
/// It is a [`UniversalEvent`] underneath, so OS threads may wait on it too
/// (through [`SignalEvent::event`]), and it can be set and cleared by hand.
///
/// # Example
///
/// ```
/// use curio::signal::{self, SignalEvent, SIGUSR2};
/// curio::run(|| -> curio::Result<()> {
///     let reload = SignalEvent::new(&[SIGUSR2])?;
///     signal::raise(SIGUSR2)?;
///     reload.wait()?;
///     reload.clear();
///     Ok(())
/// })
/// .unwrap();
/// ```
pub struct SignalEvent {
    event: UniversalEvent,
    id: u64,
    mask: Mask,
}

impl SignalEvent {
    /// Starts watching `signals`; the event starts unset.
    ///
    /// # Errors
    ///
    /// As [`SignalSet::new`].
    pub fn new(signals: &[i32]) -> Result<SignalEvent> {
        let mask = mask_of(signals)?;
        let event = UniversalEvent::new();
        let mut reg = lock(&REGISTRY);
        ensure_hooked(&mut reg, mask)?;
        if let Some(read) = reg.dispatcher.take() {
            // The first event starts the dispatcher (a failed start leaves the
            // read end for the next attempt).
            let theirs = read.try_clone();
            let started = theirs.and_then(|theirs| {
                std::thread::Builder::new()
                    .name("curio-signals".into())
                    .spawn(move || dispatch_forever(theirs))
            });
            if let Err(e) = started {
                reg.dispatcher = Some(read);
                return Err(e.into());
            }
        }
        let id = reg.next_id;
        reg.next_id += 1;
        reg.events.push((id, mask, event.clone()));
        count_watched(mask, 1, true);
        Ok(SignalEvent { event, id, mask })
    }

    /// The signals that set this event.
    pub fn signals(&self) -> Vec<i32> {
        signals_in(self.mask).collect()
    }

    /// Waits until the event is set (returns at once if it already is).
    ///
    /// # Cancellation
    ///
    /// A cancel point while unset (state `EVENT_WAIT`); a cancelled waiter is
    /// forgotten and the event is left as it was.
    pub fn wait(&self) -> Result<()> {
        self.event.wait()
    }

    /// True if a signal (or [`SignalEvent::set`]) set the event since it was
    /// last cleared.
    pub fn is_set(&self) -> bool {
        self.event.is_set()
    }

    /// Sets the event by hand, waking every waiter.
    pub fn set(&self) {
        self.event.set()
    }

    /// Clears the event, so the next `wait` waits for the next signal.
    pub fn clear(&self) {
        self.event.clear()
    }

    /// The event underneath, to hand to an OS thread (a clone of it stays
    /// usable after this `SignalEvent` is dropped, but no signal sets it then).
    pub fn event(&self) -> &UniversalEvent {
        &self.event
    }
}

impl Drop for SignalEvent {
    fn drop(&mut self) {
        let mut reg = lock(&REGISTRY);
        count_watched(self.mask, -1, true);
        reg.events.retain(|(id, _, _)| *id != self.id);
    }
}

impl fmt::Debug for SignalEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = signals_in(self.mask).map(describe).collect();
        f.debug_struct("SignalEvent")
            .field("signals", &names)
            .field("set", &self.is_set())
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Sending, names
// ---------------------------------------------------------------------------

/// Raises `sig` in this process, on the calling thread (`raise(3)`): the
/// signal is handled before `raise` returns, so signals raised one after the
/// other arrive in that order and none is merged with the next. What the
/// monitor's `signal NAME` does. (To signal the process as a whole, as
/// `kill -SIG <pid>` from outside does, use [`send`] with
/// `std::process::id()`.)
///
/// # Example
///
/// ```
/// use curio::signal::{self, SignalSet};
/// let hup = signal::parse("HUP").unwrap();
/// let set = SignalSet::new(&[hup]).unwrap();
/// signal::raise(hup).unwrap();
/// assert_eq!(curio::run(|| set.wait()).unwrap(), hup);
/// ```
///
/// # Errors
///
/// [`ErrorKind::Usage`] for a number that is no signal.
pub fn raise(sig: i32) -> Result<()> {
    if !exists(sig) {
        return Err(Error::usage(format!("signal {sig} does not exist here")));
    }
    signal_hook::low_level::raise(sig).map_err(|e| {
        Error::from(io::Error::new(
            e.kind(),
            format!("cannot raise {}: {e}", describe(sig)),
        ))
    })
}

/// Sends `sig` to the process `pid` (`kill(2)`).
///
/// # Errors
///
/// [`ErrorKind::Usage`] for a number that is no signal; an I/O error if the
/// process does not exist (`ESRCH`) or may not be signalled (`EPERM`).
pub fn send(pid: u32, sig: i32) -> Result<()> {
    if !exists(sig) {
        return Err(Error::usage(format!("signal {sig} does not exist here")));
    }
    sys::kill(pid, sig).map_err(|e| {
        Error::from(io::Error::new(
            e.kind(),
            format!("cannot send {} to process {pid}: {e}", describe(sig)),
        ))
    })
}

/// Linux's signal names, as `kill -l` prints them.
const NAMES: &[(i32, &str)] = &[
    (SIGHUP, "SIGHUP"),
    (SIGINT, "SIGINT"),
    (SIGQUIT, "SIGQUIT"),
    (SIGILL, "SIGILL"),
    (SIGTRAP, "SIGTRAP"),
    (SIGABRT, "SIGABRT"),
    (SIGBUS, "SIGBUS"),
    (SIGFPE, "SIGFPE"),
    (SIGKILL, "SIGKILL"),
    (SIGUSR1, "SIGUSR1"),
    (SIGSEGV, "SIGSEGV"),
    (SIGUSR2, "SIGUSR2"),
    (SIGPIPE, "SIGPIPE"),
    (SIGALRM, "SIGALRM"),
    (SIGTERM, "SIGTERM"),
    (SIGSTKFLT, "SIGSTKFLT"),
    (SIGCHLD, "SIGCHLD"),
    (SIGCONT, "SIGCONT"),
    (SIGSTOP, "SIGSTOP"),
    (SIGTSTP, "SIGTSTP"),
    (SIGTTIN, "SIGTTIN"),
    (SIGTTOU, "SIGTTOU"),
    (SIGURG, "SIGURG"),
    (SIGXCPU, "SIGXCPU"),
    (SIGXFSZ, "SIGXFSZ"),
    (SIGVTALRM, "SIGVTALRM"),
    (SIGPROF, "SIGPROF"),
    (SIGWINCH, "SIGWINCH"),
    (SIGIO, "SIGIO"),
    (SIGPWR, "SIGPWR"),
    (SIGSYS, "SIGSYS"),
];

/// Other names some tools use.
const ALIASES: &[(&str, i32)] = &[("SIGIOT", SIGABRT), ("SIGPOLL", SIGIO), ("SIGCLD", SIGCHLD)];

/// The name of signal `sig` (`"SIGHUP"`, `"SIGRTMIN+2"`, `"SIGRTMAX"` …), as
/// `kill -l` prints it; `None` if no such signal exists.
pub fn name(sig: i32) -> Option<String> {
    if let Some((_, n)) = NAMES.iter().find(|(s, _)| *s == sig) {
        return Some((*n).to_string());
    }
    let (lo, hi) = sys::realtime_range();
    if !(lo..=hi).contains(&sig) {
        return None;
    }
    Some(if sig == lo {
        "SIGRTMIN".to_string()
    } else if sig == hi {
        "SIGRTMAX".to_string()
    } else if sig - lo <= (hi - lo) / 2 {
        format!("SIGRTMIN+{}", sig - lo)
    } else {
        format!("SIGRTMAX-{}", hi - sig)
    })
}

/// Parses a signal given by name or number: `"SIGHUP"`, `"HUP"`, `"hup"`,
/// `"1"`, `"SIGRTMIN+2"`, `"RTMAX-1"` …
///
/// # Example
///
/// ```
/// use curio::signal::{self, SIGHUP, SIGTERM};
/// assert_eq!(signal::parse("hup").unwrap(), SIGHUP);
/// assert_eq!(signal::parse("SIGTERM").unwrap(), SIGTERM);
/// assert_eq!(signal::parse("15").unwrap(), SIGTERM);
/// assert_eq!(signal::parse("RTMIN+1").unwrap(), signal::sigrtmin() + 1);
/// assert!(signal::parse("SIGNOPE").is_err());
/// ```
///
/// # Errors
///
/// [`ErrorKind::Usage`] for anything that names no signal.
pub fn parse(text: &str) -> Result<i32> {
    let unknown = || {
        Error::new(
            ErrorKind::Usage,
            format!(
                "unknown signal {text:?}; give a name such as SIGHUP or HUP, or a number \
                 from 1 to {}",
                sigrtmax()
            ),
        )
    };
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        return if exists(n) { Ok(n) } else { Err(unknown()) };
    }
    let upper = t.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    if let Some((s, _)) = NAMES.iter().find(|(_, n)| *n == full) {
        return Ok(*s);
    }
    if let Some((_, s)) = ALIASES.iter().find(|(n, _)| *n == full) {
        return Ok(*s);
    }
    let (lo, hi) = sys::realtime_range();
    let offset = |rest: &str, sign: char| -> Option<i32> {
        if rest.is_empty() {
            return Some(0);
        }
        rest.strip_prefix(sign)?.parse::<i32>().ok()
    };
    let sig = if let Some(rest) = full.strip_prefix("SIGRTMIN") {
        offset(rest, '+').map(|k| lo + k)
    } else if let Some(rest) = full.strip_prefix("SIGRTMAX") {
        offset(rest, '-').map(|k| hi - k)
    } else {
        None
    };
    match sig {
        Some(s) if (lo..=hi).contains(&s) => Ok(s),
        _ => Err(unknown()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        for sig in (1..32).chain(sigrtmin()..=sigrtmax()) {
            let n = name(sig).unwrap_or_else(|| panic!("no name for {sig}"));
            assert_eq!(parse(&n).unwrap(), sig, "{n}");
            assert_eq!(parse(&sig.to_string()).unwrap(), sig);
        }
        assert_eq!(parse("iot").unwrap(), SIGABRT);
        assert_eq!(name(0), None);
        assert_eq!(name(65), None);
        assert!(parse("0").is_err());
        assert!(parse("SIGRTMIN+99").is_err());
        assert!(parse("RTMIN-1").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn uncatchable_signals_are_refused_with_a_reason() {
        let e = SignalSet::new(&[SIGKILL]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(e.to_string().contains("SIGKILL cannot be caught"), "{e}");
        let e = SignalSet::new(&[SIGSEGV]).unwrap_err();
        assert!(e.to_string().contains("fault"), "{e}");
        assert!(SignalSet::new(&[0]).is_err());
        assert!(SignalSet::new(&[64 + 1]).is_err());
    }
}

//! libc behind safe functions: memory mappings for stacks, the stack-overflow
//! signal handler, curio's signal action, `kill`, `pidfd_open`.
//!
//! # Invariants
//!
//! Every function here is safe to call with any arguments: the `unsafe` blocks only
//! pass plain integers and pointers to memory this module owns to the kernel.
//! Anything that dereferences memory the caller owns lives in `stack.rs`. The one
//! piece of code that runs inside a signal handler for curio's own signals
//! ([`hook_signal`]) touches only `'static` atomics and one `'static` socket.
#![allow(unsafe_code)]

use std::io;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// `MADV_GUARD_INSTALL` (Linux 6.13): turn a range into guard pages without
/// splitting the mapping. Not yet in the `libc` crate.
const MADV_GUARD_INSTALL: libc::c_int = 102;

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The size of a memory page.
pub(crate) fn page_size() -> usize {
    static PAGE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let cached = PAGE.load(std::sync::atomic::Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let n = if n > 0 { n as usize } else { 4096 };
    PAGE.store(n, std::sync::atomic::Ordering::Relaxed);
    n
}

/// Reserves `len` bytes of read-write address space, committed lazily by touch
/// (`MAP_NORESERVE`): untouched pages cost nothing.
pub(crate) fn map_reserve(len: usize) -> io::Result<usize> {
    // SAFETY: an anonymous private mapping at an address of the kernel's choice
    // aliases no existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(p as usize)
    }
}

/// Unmaps `[addr, addr+len)`, a slab made by [`map_reserve`] that no stack uses.
pub(crate) fn unmap(addr: usize, len: usize) {
    // SAFETY: the range is a whole mapping of ours that holds no live data and
    // that nothing refers to any more.
    unsafe { libc::munmap(addr as *mut libc::c_void, len) };
}

/// Gives the pages of `[addr, addr+len)` back to the operating system
/// (`MADV_DONTNEED`): the range stays mapped and reads as zeros when next
/// touched. `addr` must be page aligned and the range part of a mapping made
/// by [`map_reserve`] whose contents nobody needs any more (a free stack).
pub(crate) fn release_memory(addr: usize, len: usize) {
    // SAFETY: the range lies in our own private anonymous mapping and holds no
    // live data; MADV_DONTNEED only drops its pages.
    unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED) };
}

/// Which pages of `[addr, addr + len)` are resident (`mincore(2)`): one byte
/// per page, bit 0 set for a resident page. `addr` is rounded down to a page.
/// An error (`ENOMEM`) if part of the range is not mapped.
pub(crate) fn resident_pages(addr: usize, len: usize) -> io::Result<Vec<u8>> {
    let page = page_size();
    let start = addr & !(page - 1);
    let len = len + (addr - start);
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: mincore only reads the page tables of the range (any range is
    // allowed; an unmapped one is an error, not a fault) and writes one byte
    // per page of it into `vec`, which has exactly that many.
    let r = unsafe {
        libc::mincore(
            start as *mut libc::c_void,
            len,
            vec.as_mut_ptr() as *mut libc::c_uchar,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(vec)
}

/// The CPU clock of one thread (`pthread_getcpuclockid(3)`), readable from
/// any thread of the process while that thread lives.
#[derive(Debug)]
pub(crate) struct CpuClock(libc::clockid_t);

impl CpuClock {
    /// The calling thread's CPU clock.
    pub(crate) fn current() -> Option<CpuClock> {
        let mut id: libc::clockid_t = 0;
        // SAFETY: pthread_self() names the calling thread, which is alive;
        // the call writes one clockid_t into `id`.
        let r = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) };
        (r == 0).then_some(CpuClock(id))
    }

    /// The CPU time the thread has used; `None` if it cannot be read (the
    /// thread has exited: the clock id then names nothing, and the call fails).
    pub(crate) fn read(&self) -> Option<std::time::Duration> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec into `ts`; an invalid
        // clock id is reported as an error.
        let r = unsafe { libc::clock_gettime(self.0, &mut ts) };
        (r == 0).then(|| std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }
}

/// Asks the C allocator to give the free memory it holds back to the operating
/// system (`malloc_trim(0)` on glibc; nothing elsewhere).
///
/// Discussion: glibc keeps freed memory in its arenas; after a peak of a few
/// hundred thousand task records (a few hundred bytes each, interleaved with
/// longer-lived allocations) almost none of it sits at the top of the heap,
/// where glibc trims by itself. `malloc_trim` releases the free pages inside the heap too.
/// With another global allocator installed, glibc's heap is nearly empty and
/// this costs next to nothing.
pub(crate) fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of glibc's own heap to the
    // kernel; it touches no memory in use and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How many memory mappings the process has now (lines of `/proc/self/maps`).
pub(crate) fn map_count() -> Option<usize> {
    use std::io::Read;
    let mut f = std::fs::File::open("/proc/self/maps").ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut lines = 0;
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Some(lines),
            Ok(n) => lines += buf[..n].iter().filter(|&&b| b == b'\n').count(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// How guard pages are installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GuardMode {
    /// `madvise(MADV_GUARD_INSTALL)`: no extra mapping per guard.
    Madvise,
    /// `mprotect(PROT_NONE)`: splits the mapping, so each guard costs map entries.
    Mprotect,
}

/// Makes `[addr, addr+len)` a guard region (any access faults). Tries
/// `MADV_GUARD_INSTALL` when `mode` says so, and reports which mode worked.
///
/// `addr` must be a page inside a mapping made by [`map_reserve`] that no live
/// stack uses; the pages' contents are discarded.
pub(crate) fn install_guard(addr: usize, len: usize, mode: GuardMode) -> io::Result<GuardMode> {
    if mode == GuardMode::Madvise {
        // SAFETY: the range lies in our own anonymous mapping and holds no live data.
        let r = unsafe { libc::madvise(addr as *mut libc::c_void, len, MADV_GUARD_INSTALL) };
        if r == 0 {
            return Ok(GuardMode::Madvise);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINVAL) {
            return Err(err);
        }
    }
    // SAFETY: as above; PROT_NONE only removes access to memory nobody uses.
    check(unsafe { libc::mprotect(addr as *mut libc::c_void, len, libc::PROT_NONE) })?;
    Ok(GuardMode::Mprotect)
}

/// The kernel's limit on memory mappings per process (`vm.max_map_count`).
pub(crate) fn max_map_count() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------
// Stack overflow reporting.
//
// Discussion: a task that runs off the end of its stack touches its guard page
// and gets SIGSEGV. The handler below runs on an alternate signal stack, checks
// whether the faulting address lies in the guard page of the task running on
// this thread, and if so writes one line naming the task and its stack size,
// then aborts. Anything else is handed to the handler that was installed before
// ours (Rust's own, which reports main-thread overflows) or to the default action.
//
// We end the process rather than fail only the task: the overflowing task may be
// half-way through updating state that other tasks share (a RefCell borrow, a
// queue); resuming them would expose broken invariants, which is undefined
// behaviour in Rust. Rust itself aborts on a thread's stack overflow for the
// same reason.
// ---------------------------------------------------------------------------

/// What the signal handler needs to know about the running task, kept in plain
/// integers so that reading it is async-signal-safe.
#[derive(Clone, Copy)]
pub(crate) struct OverflowInfo {
    pub guard_lo: usize,
    pub guard_hi: usize,
    pub task_id: u64,
    pub stack_size: usize,
    pub name_ptr: usize,
    pub name_len: usize,
}

impl OverflowInfo {
    pub(crate) const NONE: OverflowInfo = OverflowInfo {
        guard_lo: 0,
        guard_hi: 0,
        task_id: 0,
        stack_size: 0,
        name_ptr: 0,
        name_len: 0,
    };
}

/// Reports the task running on the calling thread; set once by the kernel.
static RUNNING: std::sync::OnceLock<fn() -> OverflowInfo> = std::sync::OnceLock::new();

/// The handlers installed before ours, for SIGSEGV and SIGBUS: a fault that is
/// not a task's stack overflow goes to them.
static PREVIOUS_SEGV: std::sync::OnceLock<libc::sigaction> = std::sync::OnceLock::new();
static PREVIOUS_BUS: std::sync::OnceLock<libc::sigaction> = std::sync::OnceLock::new();
static INSTALL: Once = Once::new();

fn previous(sig: libc::c_int) -> &'static std::sync::OnceLock<libc::sigaction> {
    if sig == libc::SIGBUS {
        &PREVIOUS_BUS
    } else {
        &PREVIOUS_SEGV
    }
}

/// Installs the SIGSEGV/SIGBUS handler once per process, and an alternate signal
/// stack on the calling thread if it has none.
pub(crate) fn install_overflow_handler(running: fn() -> OverflowInfo) {
    let _ = RUNNING.set(running);
    INSTALL.call_once(|| {
        for sig in [libc::SIGSEGV, libc::SIGBUS] {
            // SAFETY: a zeroed sigaction is a valid "no handler" value; we fill in a
            // handler that only does async-signal-safe work.
            unsafe {
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_fault as *const () as usize;
                new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut new.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &new, &mut old) == 0 {
                    let _ = previous(sig).set(old);
                }
            }
        }
    });
    ensure_alt_stack();
}

fn ensure_alt_stack() {
    const ALT_SIZE: usize = 64 * 1024;
    // SAFETY: querying the current alternate stack writes only into `old`.
    let mut old: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    if unsafe { libc::sigaltstack(std::ptr::null(), &mut old) } != 0 {
        return;
    }
    if old.ss_flags & libc::SS_DISABLE == 0 {
        return; // this thread already has one (Rust installs one on its threads)
    }
    let Ok(mem) = map_reserve(ALT_SIZE) else {
        return;
    };
    let st = libc::stack_t {
        ss_sp: mem as *mut libc::c_void,
        ss_flags: 0,
        ss_size: ALT_SIZE,
    };
    // SAFETY: `mem` is a fresh mapping of ALT_SIZE bytes that we never free, so it
    // outlives the thread that uses it as its signal stack.
    unsafe { libc::sigaltstack(&st, std::ptr::null_mut()) };
}

fn write_stderr(bytes: &[u8]) {
    // SAFETY: write(2) reads `bytes` only; it is async-signal-safe.
    unsafe { libc::write(2, bytes.as_ptr() as *const libc::c_void, bytes.len()) };
}

fn write_number(mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    write_stderr(&buf[i..]);
}

extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    let running = RUNNING.get().map_or(OverflowInfo::NONE, |f| f());
    if running.guard_hi != 0 && addr >= running.guard_lo && addr < running.guard_hi {
        write_stderr(b"\ncurio: task ");
        write_number(running.task_id);
        if running.name_len > 0 {
            write_stderr(b" '");
            // SAFETY: name_ptr/len describe the task's name, which its header keeps
            // alive while the task runs; the handler runs on that task's thread.
            let name = unsafe {
                std::slice::from_raw_parts(running.name_ptr as *const u8, running.name_len)
            };
            write_stderr(name);
            write_stderr(b"'");
        }
        write_stderr(b" overflowed its stack of ");
        write_number(running.stack_size as u64);
        write_stderr(
            b" bytes; give it a bigger one with task::Builder::stack_size or Builder::stack_size\n",
        );
        // SAFETY: abort is async-signal-safe.
        unsafe { libc::abort() };
    }
    // Not ours: hand over to the previous handler, or restore the default and return
    // so that the fault repeats with the default action.
    // OnceLock::get is a single atomic load: async-signal-safe.
    match previous(sig).get().copied() {
        Some(p) if p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN => {
            if p.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the previous handler was installed as an SA_SIGINFO handler.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(p.sa_sigaction) };
                f(sig, info, ctx);
            } else {
                // SAFETY: the previous handler was installed as a plain handler.
                let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(p.sa_sigaction) };
                f(sig);
            }
        }
        _ => {
            // SAFETY: a zeroed sigaction with SIG_DFL restores the default action.
            unsafe {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// File descriptors
// ---------------------------------------------------------------------------

/// Sets or clears `O_NONBLOCK` on `fd`.
pub(crate) fn set_nonblocking(fd: std::os::fd::BorrowedFd<'_>, on: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl F_GETFL/F_SETFL on a borrowed, open fd touches no memory of ours.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    if flags == -1 {
        return Err(io::Error::last_os_error());
    }
    let new = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    if new != flags {
        // SAFETY: as above.
        check(unsafe { libc::fcntl(raw, libc::F_SETFL, new) })?;
    }
    Ok(())
}

/// `recvfrom` into an initialised buffer.
pub(crate) fn recv_from(
    sock: &socket2::Socket,
    buf: &mut [u8],
) -> io::Result<(usize, socket2::SockAddr)> {
    // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have the same layout, and recv_from
    // only writes bytes received from the kernel into the buffer, never
    // uninitialised ones, so `buf` stays initialised.
    let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) };
    sock.recv_from(uninit)
}

// ---------------------------------------------------------------------------
// Signals (see signal.rs and arch-notes/signals.md)
// ---------------------------------------------------------------------------

/// One more than the highest signal number on Linux (signals are 1..=64).
pub(crate) const NSIG: usize = 65;

/// Everything curio's signal action reads or writes, as plain atomics, so that
/// the action is async-signal-safe. One table exists, in a `static` of
/// `signal.rs`; only its registry (under its mutex) changes `watched`,
/// `ignored` and `default_action`.
pub(crate) struct SignalTable {
    /// Deliveries caught but not yet handed to a set, per signal.
    pub(crate) pending: [AtomicU32; NSIG],
    /// Sets and events watching each signal: while non-zero, the signal does
    /// not do what it did before curio.
    pub(crate) watched: [AtomicU32; NSIG],
    /// Events watching each signal (they are served by the dispatcher thread
    /// through the shared doorbell; sets have doorbells of their own).
    pub(crate) events: [AtomicU32; NSIG],
    /// Live ignore guards per signal.
    pub(crate) ignored: [AtomicU32; NSIG],
    /// The disposition before curio hooked the signal was `SIG_DFL`: with no
    /// set watching it, the action does what the default would have done.
    pub(crate) default_action: [AtomicBool; NSIG],
    /// A doorbell byte could not be written (the socket was full): the
    /// dispatcher must sweep `pending` instead of trusting the bytes.
    pub(crate) overflowed: AtomicBool,
}

impl SignalTable {
    pub(crate) const fn new() -> SignalTable {
        SignalTable {
            pending: [const { AtomicU32::new(0) }; NSIG],
            watched: [const { AtomicU32::new(0) }; NSIG],
            events: [const { AtomicU32::new(0) }; NSIG],
            ignored: [const { AtomicU32::new(0) }; NSIG],
            default_action: [const { AtomicBool::new(false) }; NSIG],
            overflowed: AtomicBool::new(false),
        }
    }
}

/// What a signal's disposition was before curio looked at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// `SIG_DFL`.
    Default,
    /// `SIG_IGN`.
    Ignore,
    /// Some handler function (another library's, or signal-hook's own).
    Handler,
}

/// The current disposition of `sig` (a query: changes nothing).
pub(crate) fn signal_disposition(sig: libc::c_int) -> io::Result<Disposition> {
    // SAFETY: a zeroed sigaction is a valid value for the kernel to overwrite;
    // with a null `act`, sigaction only writes the current action into `old`.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `old` is a local the call may write.
    check(unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) })?;
    Ok(match old.sa_sigaction {
        libc::SIG_DFL => Disposition::Default,
        libc::SIG_IGN => Disposition::Ignore,
        _ => Disposition::Handler,
    })
}

/// Installs, through signal-hook, curio's action for `sig` for the rest of the
/// process's life (signal-hook never uninstalls; `table` says what the action
/// does at each delivery):
///
/// - an ignore guard is alive: nothing;
/// - an event watches the signal: count it in `pending` and ring `doorbell`
///   (the dispatcher thread's socket);
/// - nothing watches it and it used to be `SIG_DFL`: what the default would
///   do (terminate, stop, or nothing);
/// - otherwise nothing (it was ignored, a set's own action queues it, or a
///   handler signal-hook chains runs).
///
/// Fails for signals outside 1..NSIG and for those signal-hook refuses
/// (`SIGKILL`, `SIGSTOP`, `SIGILL`, `SIGFPE`, `SIGSEGV`).
pub(crate) fn hook_signal(
    sig: libc::c_int,
    table: &'static SignalTable,
    doorbell: &'static std::os::unix::net::UnixStream,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    check_hookable(sig)?;
    let i = sig as usize;
    // References taken here, so the action itself indexes nothing (no bounds
    // check that could panic inside a signal handler).
    let pending = &table.pending[i];
    let watched = &table.watched[i];
    let events = &table.events[i];
    let ignored = &table.ignored[i];
    let default_action = &table.default_action[i];
    let overflowed = &table.overflowed;
    let fd = doorbell.as_raw_fd();
    let action = move || {
        if ignored.load(Ordering::SeqCst) > 0 {
            return;
        }
        if events.load(Ordering::SeqCst) > 0 {
            ring(pending, overflowed, fd, sig);
        }
        if watched.load(Ordering::SeqCst) == 0
            && default_action.load(Ordering::SeqCst)
            && signal_hook::low_level::emulate_default_handler(sig).is_err()
        {
            // A signal signal-hook has no table entry for (the realtime
            // ones): its default action is to terminate.
            die_of(sig);
        }
    };
    // SAFETY: signal-hook runs `action` inside the signal handler, so it must be
    // async-signal-safe and must not panic. It only loads and updates atomics
    // that live in a `'static` table, calls send(2) (async-signal-safe) on an fd
    // owned by a `'static` socket that is never dropped, and calls signal-hook's
    // `emulate_default_handler` (documented async-signal-safe) or `die_of`
    // (sigaction, pthread_sigmask, raise, abort: all async-signal-safe). It does
    // not allocate, lock, index or format. signal-hook saves and restores errno
    // around the actions it runs.
    unsafe { signal_hook::low_level::register(sig, action) }?;
    Ok(())
}

/// A signal set's own doorbell: what its action counts and the socket it
/// writes signal numbers to (the set reads the other end through the poller).
pub(crate) struct SetDoorbell {
    /// Deliveries not yet read by the set, per signal.
    pub(crate) pending: [AtomicU32; NSIG],
    /// A byte could not be written (the socket was full): sweep `pending`.
    pub(crate) overflowed: AtomicBool,
    /// The write end.
    pub(crate) write: std::os::unix::net::UnixStream,
}

impl SetDoorbell {
    pub(crate) fn new(write: std::os::unix::net::UnixStream) -> SetDoorbell {
        SetDoorbell {
            pending: [const { AtomicU32::new(0) }; NSIG],
            overflowed: AtomicBool::new(false),
            write,
        }
    }
}

/// Registers, through signal-hook, a set's action for `sig`: unless an ignore
/// guard for `sig` is alive (`table.ignored`), count the delivery in the set's
/// `pending` and write the signal number to its socket. Returns the id that
/// [`unhook_set_signal`] takes; until then the action keeps the doorbell alive.
pub(crate) fn hook_set_signal(
    sig: libc::c_int,
    table: &'static SignalTable,
    set: std::sync::Arc<SetDoorbell>,
) -> io::Result<signal_hook::SigId> {
    use std::os::fd::AsRawFd;
    check_hookable(sig)?;
    let ignored = &table.ignored[sig as usize];
    let action = move || {
        if ignored.load(Ordering::SeqCst) > 0 {
            return;
        }
        if let Some(pending) = set.pending.get(sig as usize) {
            ring(pending, &set.overflowed, set.write.as_raw_fd(), sig);
        }
    };
    // SAFETY: as for `hook_signal`: the action loads and updates atomics (a
    // `'static` table's, and the set's, which the closure keeps alive through
    // its `Arc`, never touching the count) and calls send(2) on the set's
    // socket, which the closure owns through the same `Arc`. signal-hook drops
    // an action only after `unregister`, once no handler is running it, so the
    // socket stays open for as long as the action can run. Nothing allocates,
    // locks, or can panic (`get` instead of indexing).
    unsafe { signal_hook::low_level::register(sig, action) }
}

/// Removes a set's action; once this returns, no handler runs it any more.
pub(crate) fn unhook_set_signal(id: signal_hook::SigId) {
    signal_hook::low_level::unregister(id);
}

fn check_hookable(sig: libc::c_int) -> io::Result<()> {
    if sig <= 0 || sig as usize >= NSIG || signal_hook::consts::FORBIDDEN.contains(&sig) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    Ok(())
}

/// Counts a delivery of `sig` and writes its number to the socket `fd`.
/// Async-signal-safe.
///
/// Discussion: counted before the byte is written, so whoever reads the byte
/// finds the count. If the socket is full, `overflowed` is raised and the byte
/// written again: either it lands (the reader wakes and sees the flag) or the
/// socket is still full, so the reader has bytes to read and looks at the flag
/// after reading them.
fn ring(pending: &AtomicU32, overflowed: &AtomicBool, fd: libc::c_int, sig: libc::c_int) {
    pending.fetch_add(1, Ordering::SeqCst);
    let byte = [sig as u8];
    if !send_nowait(fd, &byte) {
        overflowed.store(true, Ordering::SeqCst);
        send_nowait(fd, &byte);
    }
}

/// Sends one byte on the socket `fd` without blocking or raising SIGPIPE;
/// true if it was sent. Async-signal-safe.
fn send_nowait(fd: libc::c_int, byte: &[u8; 1]) -> bool {
    // SAFETY: send(2) reads one byte from `byte`, a valid local; MSG_DONTWAIT
    // keeps it from blocking and MSG_NOSIGNAL from raising SIGPIPE. A bad fd
    // only makes it fail.
    unsafe {
        libc::send(
            fd,
            byte.as_ptr() as *const libc::c_void,
            1,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        ) == 1
    }
}

/// Ends the process as the default action of `sig` would (termination by that
/// signal). Async-signal-safe.
fn die_of(sig: libc::c_int) -> ! {
    // SAFETY: restoring SIG_DFL with a zeroed sigaction, unblocking the signal
    // in this thread and raising it touch only locals; all four calls are
    // async-signal-safe. If the process survives (someone installed another
    // handler meanwhile), abort ends it.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, &dfl, std::ptr::null_mut());
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
        libc::abort()
    }
}

/// `kill(pid, sig)`: sends `sig` to process `pid` (`sig` 0 only checks that it
/// exists). `pid` must name one process: 0 and values above `i32::MAX` (which
/// would mean process groups or every process) are refused.
pub(crate) fn kill(pid: u32, sig: libc::c_int) -> io::Result<()> {
    if pid == 0 || pid > i32::MAX as u32 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{pid} is not a process id"),
        ));
    }
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    check(unsafe { libc::kill(pid as libc::pid_t, sig) })
}

/// The lowest and highest realtime signal numbers this libc lets programs use.
pub(crate) fn realtime_range() -> (libc::c_int, libc::c_int) {
    (libc::SIGRTMIN(), libc::SIGRTMAX())
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// A pidfd for the child `pid` (`pidfd_open(pid, 0)`, Linux 5.3+; `ENOSYS`
/// before): readable once the child has exited, so the kernel can wait for it
/// with the poller instead of blocking. Close-on-exec.
///
/// The caller must hold the child unreaped (a `std::process::Child` not yet
/// waited for), so that `pid` cannot have been reused by another process.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: pidfd_open takes two integers and touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success pidfd_open returns a new fd (close-on-exec) that
    // nothing else owns; we take ownership of it here, once.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// Asks the OS to send SIGKILL to this process when the thread that started
/// it exits (`PR_SET_PDEATHSIG`), so a worker never outlives its parent.
pub(crate) fn kill_me_when_parent_dies() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG, signal) takes integers only.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    check(r)
}

/// Ignores SIGINT in this process (a worker leaves Ctrl-C to its parent).
pub(crate) fn ignore_sigint() {
    // SAFETY: installing SIG_IGN runs no code of ours in a signal handler.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
}

/// Points fd 0 at `/dev/null`, after the caller has taken a duplicate of what
/// was there, so code that reads standard input cannot swallow protocol bytes.
pub(crate) fn stdin_to_dev_null() -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let null = std::fs::File::open("/dev/null")?;
    // SAFETY: dup2 onto fd 0 replaces standard input atomically. No OwnedFd
    // owns fd 0 (std's Stdin only borrows it), so no owner sees its fd change
    // underneath it; `null` stays owned by its File and is closed on drop.
    check(unsafe { libc::dup2(null.as_raw_fd(), 0) })
}
/// Waits until `fd` is readable (`write` false) or writable, an error or
/// hang-up is pending, or `timeout` has passed (`None`: no limit). Returns
/// false on timeout. Blocks the calling OS thread; retries after signals.
pub(crate) fn poll_fd(
    fd: std::os::fd::BorrowedFd<'_>,
    write: bool,
    timeout: Option<std::time::Duration>,
) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    loop {
        let ms: libc::c_int = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                // Round up, so a sub-millisecond wait does not spin at zero.
                left.as_micros()
                    .div_ceil(1000)
                    .min(libc::c_int::MAX as u128) as libc::c_int
            }
        };
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: if write { libc::POLLOUT } else { libc::POLLIN },
            revents: 0,
        };
        // SAFETY: `p` is one valid, writable pollfd that lives across the call;
        // poll writes only its `revents`. A borrowed fd is open for the call.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r > 0 {
            return Ok(true);
        }
        if r == 0 {
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Ok(false);
            }
            continue;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Reads at most `len` bytes from `fd` to `ptr`: `recv(2)` for a socket (the
/// socket path of the kernel, as std and mio use it), else `read(2)`.
///
/// # Safety
///
/// `ptr` must be valid for writes of `len` bytes for the duration of the call.
// SAFETY: callers keep the contract above; the system calls below write at
// most `len` bytes to `ptr` and nothing else.
unsafe fn read_raw(fd: std::os::fd::RawFd, ptr: *mut u8, len: usize, socket: bool) -> isize {
    if socket {
        // SAFETY: the caller guarantees `ptr` is writable for `len` bytes;
        // recv(2) writes at most that many.
        unsafe { libc::recv(fd, ptr.cast(), len, 0) }
    } else {
        // SAFETY: as above, for read(2).
        unsafe { libc::read(fd, ptr.cast(), len) }
    }
}

/// `recv(2)` (a socket) or `read(2)` on a borrowed fd into an initialised buffer.
pub(crate) fn read_fd(
    fd: std::os::fd::BorrowedFd<'_>,
    buf: &mut [u8],
    socket: bool,
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call.
    let n = unsafe { read_raw(fd.as_raw_fd(), buf.as_mut_ptr(), buf.len(), socket) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `write(2)` on a borrowed fd; for a socket, `send(2)` with `MSG_NOSIGNAL`, so
/// a closed peer is an `EPIPE` error and never a `SIGPIPE`.
pub(crate) fn write_fd(
    fd: std::os::fd::BorrowedFd<'_>,
    buf: &[u8],
    socket: bool,
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let raw = fd.as_raw_fd();
    let n = if socket {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the call.
        unsafe { libc::send(raw, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) }
    } else {
        // SAFETY: as above.
        unsafe { libc::write(raw, buf.as_ptr().cast(), buf.len()) }
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// What kind of file an fd is, as far as I/O readiness cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FdKind {
    Socket,
    /// A pipe or FIFO.
    Pipe,
    /// Anything else (terminal, regular file, device), or unknown.
    Other,
}

/// The kind of `fd` (`fstat`); [`FdKind::Other`] if it cannot be examined.
pub(crate) fn fd_kind(fd: std::os::fd::BorrowedFd<'_>) -> FdKind {
    use std::os::fd::AsRawFd;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes one `struct stat` into `st`, which is valid for it.
    let r = unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) };
    if r != 0 {
        return FdKind::Other;
    }
    // SAFETY: fstat returned 0, so it filled `st` in.
    let mode = unsafe { st.assume_init() }.st_mode & libc::S_IFMT;
    match mode {
        libc::S_IFSOCK => FdKind::Socket,
        libc::S_IFIFO => FdKind::Pipe,
        _ => FdKind::Other,
    }
}

/// Reads (`recv(2)` for a socket, else `read(2)`) at most `max` bytes from
/// `fd` into the spare capacity of `buf`, appending them (no zero-filling);
/// returns how many came.
pub(crate) fn read_to_spare(
    fd: std::os::fd::BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    max: usize,
    socket: bool,
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    buf.reserve(max);
    let spare = buf.spare_capacity_mut();
    let len = spare.len().min(max);
    // SAFETY: `spare[..len]` is memory `buf` owns, valid for writes of `len`
    // bytes; the call writes at most `len` bytes there and nowhere else.
    let n = unsafe { read_raw(fd.as_raw_fd(), spare.as_mut_ptr().cast(), len, socket) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    assert!(n <= len, "read(2) returned more than it was given room for");
    // SAFETY: the kernel initialised the `n <= len` bytes just past `buf.len()`,
    // which lie within its capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// Reads (`recv(2)` for a socket, else `read(2)`) into uninitialised memory,
/// calling `wait` each time the fd answers `EAGAIN` (and retrying after
/// `EINTR`), until data or end of file comes; returns the initialised part of
/// `buf` (empty at end of file).
pub(crate) fn read_uninit<'a, E: From<io::Error>>(
    fd: std::os::fd::BorrowedFd<'_>,
    buf: &'a mut [std::mem::MaybeUninit<u8>],
    socket: bool,
    mut wait: impl FnMut() -> Result<(), E>,
) -> Result<&'a mut [u8], E> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes; the call
        // writes at most that many.
        let n = unsafe { read_raw(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), socket) };
        if n >= 0 {
            let n = n as usize;
            assert!(
                n <= buf.len(),
                "read(2) returned more than it was given room for"
            );
            // SAFETY: the kernel initialised the first `n` bytes of `buf`, and
            // `MaybeUninit<u8>` has the layout of `u8`. The slice borrows `buf`
            // for 'a, so nothing else can reach that memory meanwhile.
            return Ok(unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), n) });
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => wait()?,
            io::ErrorKind::Interrupted => {}
            _ => return Err(e.into()),
        }
    }
}

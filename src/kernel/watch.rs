//! Watching a kernel from outside: the per-switch record, the watchdog thread,
//! and requests from other threads (the monitor) that the kernel answers
//! between two task slices.
//!
//! A kernel is *watched* when its builder asked for the monitor, long-block
//! detection or a debug hook. Only then does it run the watched form of its
//! loop (`Core::run_loop::<true>`), which keeps the [`Beat`] up to date and
//! calls the hooks; an unwatched kernel runs the loop as it always did, with
//! no instruction added to a switch (`arch-notes/monitor.md`).
//!
//! # Invariants
//!
//! - The kernel thread is the only writer of the [`Beat`]; other threads only
//!   read it. It holds task ids and counters, never pointers: nothing another
//!   thread reads can dangle.
//! - Nothing outside the kernel thread touches a task or the kernel's state.
//!   Other threads ask through [`Shared::ask`], which queues a request, rings
//!   the kernel's inbox and waits for the answer *with a timeout*: a kernel
//!   stuck in a task never blocks its watchers. Requests nobody waits for any
//!   more are answered into a closed channel, harmlessly.
//! - The watchdog thread wakes every [`SAMPLE`] (shorter for a short
//!   long-block threshold); it reads the beat, the kernel thread's CPU clock
//!   and the clock, and nothing else.
//!
//! # Example
//!
//! ```text
//! kernel, per slice:   beat.slice = cycles; beat.from = state; beat.running = id; resume
//! kernel, own code:    beat.running = 0 (looking outside, finishing a task …)
//! watchdog, per 10 ms: same (slice, running) as last time? that slice has
//!                      run since we first saw it; past the threshold: report it
//! monitor:             ask(Snapshot, 50 ms) → answer, or "busy in task 7 for 3.1 s"
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::debug::{Hook, LongBlock, Snapshot, Traceback};
use super::record::State;
use crate::poller::InboxSender;
use crate::sys;

/// How often the watchdog looks at the kernel (CPU time is attributed per
/// sample; a slice's length is known to within this).
pub(crate) const SAMPLE: Duration = Duration::from_millis(10);

/// Requests waiting for the kernel beyond this are refused at once: a kernel
/// that is stuck must not pile them up.
const MAX_PENDING: usize = 256;

/// The longest a watcher waits for a kernel that is not stuck in a task (it
/// may be answering many questions, or be starved of CPU).
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(5);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The per-switch record: which task runs, and which of its slices.
/// Written by the kernel thread with plain (relaxed) stores, three per
/// slice and none when it ends (`arch-notes/monitor.md`).
///
/// Discussion: it fills a cache line of its own (`align(64)` and 64 bytes:
/// nothing else in [`Shared`] shares the line), so the kernel's stores never
/// contend with the fields other threads write (requests, names, CPU times);
/// the watchdog's read every [`SAMPLE`] (and a monitor's `ps`) is the only
/// other traffic on the line. The three words are not written at once: a
/// reader that catches the kernel between them sees a slice that never
/// was, which only makes the next sample see a new slice (a slice's length
/// is known from below anyway).
#[repr(align(64))]
#[derive(Default)]
pub(crate) struct Beat {
    /// The slice under way, or the last one: how many slices the running
    /// task had run before it (`TaskRecord::cycles` as it began). With
    /// [`Beat::running`] it names the slice: the pair changes with every
    /// slice, also when one task runs several in a row (a task yielding in a
    /// loop is not one long slice).
    pub(crate) slice: AtomicU64,
    /// The task whose slice runs now or ran last; 0 once the kernel runs
    /// code of its own beyond the switch (it looks outside, announces or
    /// finishes tasks, calls hooks) and while it waits. Between two slices
    /// of one pass it still names the task that ran last: the switch's own
    /// few nanoseconds count as that task's.
    pub(crate) running: AtomicU64,
    /// The state the slice under way (or the last one) was resumed from
    /// (`State as u8`).
    pub(crate) from: AtomicU8,
    /// The kernel is blocked waiting for I/O, timers or the inbox.
    pub(crate) idle: AtomicBool,
}

/// What another thread may ask the kernel.
#[derive(Debug)]
pub(crate) enum Query {
    /// Every task's row (`ps`).
    Snapshot,
    /// One task's backtrace (`where ID`).
    Where(u64),
    /// Every task's row and backtrace (`where all`, `dump`).
    All,
    /// Cancel a task, as `TaskRef::cancel_nowait` does (`cancel ID`).
    Cancel(u64),
}

/// The kernel's answer to a [`Query`].
#[derive(Debug)]
pub(crate) enum Answer {
    Snapshot(Snapshot),
    Where(std::result::Result<Traceback, String>),
    All(Snapshot, Vec<(u64, std::result::Result<Traceback, String>)>),
    Cancel(std::result::Result<String, String>),
}

pub(crate) struct Request {
    pub(crate) query: Query,
    pub(crate) reply: mpsc::SyncSender<Answer>,
}

/// The watchdog's view of the slice under way.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Slice {
    /// Its [`Beat::slice`] word; 0 before the first sample.
    pub(crate) word: u64,
    /// The task running it; 0 when the kernel was in its own code or idle.
    pub(crate) task: u64,
    /// When the watchdog first saw it.
    pub(crate) since: Option<Instant>,
}

/// What the kernel shares with its watchers (`Arc`, `Send + Sync`).
pub(crate) struct Shared {
    pub(crate) beat: Beat,
    pub(crate) kernel_id: u64,
    /// Names of live tasks, for answers given while the kernel is busy.
    pub(crate) names: Mutex<HashMap<u64, Arc<str>>>,
    requests: Mutex<VecDeque<Request>>,
    pending: AtomicBool,
    inbox: InboxSender,
    /// False once the kernel's `run` has ended.
    pub(crate) alive: AtomicBool,
    /// CPU time per task id, attributed by the watchdog's samples (ns).
    pub(crate) cpu: Mutex<HashMap<u64, u64>>,
    /// CPU time the kernel thread spent outside tasks (ns).
    pub(crate) kernel_cpu: AtomicU64,
    /// The slice the watchdog sees under way.
    pub(crate) slice: Mutex<Slice>,
    /// How many slices the watchdog has reported as long blocks; the kernel
    /// reports the last one once more when it ends.
    pub(crate) flagged: AtomicU64,
    /// When the flagged slice was first seen, in ns since `epoch`.
    pub(crate) flagged_since: AtomicU64,
    /// The task that ran the flagged slice, and the state it was resumed from.
    pub(crate) flagged_task: AtomicU64,
    pub(crate) flagged_from: AtomicU8,
    pub(crate) epoch: Instant,
    /// Hooks, for the long-block reports made on the watchdog thread.
    pub(crate) hooks: Vec<Arc<dyn Hook>>,
    /// The shortest long-block threshold any hook asked for.
    pub(crate) threshold: Option<Duration>,
}

impl Shared {
    pub(crate) fn new(kernel_id: u64, inbox: InboxSender, hooks: Vec<Arc<dyn Hook>>) -> Shared {
        let threshold = hooks.iter().filter_map(|h| h.long_block_threshold()).min();
        Shared {
            beat: Beat::default(),
            kernel_id,
            names: Mutex::new(HashMap::new()),
            requests: Mutex::new(VecDeque::new()),
            pending: AtomicBool::new(false),
            inbox,
            alive: AtomicBool::new(true),
            cpu: Mutex::new(HashMap::new()),
            kernel_cpu: AtomicU64::new(0),
            slice: Mutex::new(Slice::default()),
            flagged: AtomicU64::new(0),
            flagged_since: AtomicU64::new(0),
            flagged_task: AtomicU64::new(0),
            flagged_from: AtomicU8::new(0),
            epoch: Instant::now(),
            hooks,
            threshold,
        }
    }

    /// Asks the kernel `query` and waits for its answer: while a task keeps
    /// the kernel busy, for `patience`; while the kernel runs its own code
    /// (answering others, say) or is about to wake, for up to [`MAX_WAIT`].
    /// `Err` (with what the kernel is doing instead) if it did not answer.
    pub(crate) fn ask(
        &self,
        query: Query,
        patience: Duration,
    ) -> std::result::Result<Answer, String> {
        if !self.alive.load(Ordering::Acquire) {
            return Err("the kernel has ended".to_string());
        }
        let (tx, rx) = mpsc::sync_channel(1);
        {
            let mut q = lock(&self.requests);
            if q.len() >= MAX_PENDING {
                return Err(self.busy_text());
            }
            q.push_back(Request { query, reply: tx });
        }
        self.pending.store(true, Ordering::Release);
        self.inbox.nudge();
        let asked = Instant::now();
        loop {
            match rx.recv_timeout(patience) {
                Ok(a) => return Ok(a),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("the kernel has ended".to_string());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            let hogged = self.busy().is_some_and(|(_, ran)| ran >= patience);
            if hogged || asked.elapsed() >= MAX_WAIT || !self.alive.load(Ordering::Acquire) {
                return Err(self.busy_text());
            }
        }
    }

    /// Takes the requests waiting (kernel thread), if any.
    pub(crate) fn take_requests(&self) -> Option<VecDeque<Request>> {
        if !self.pending.swap(false, Ordering::AcqRel) {
            return None;
        }
        Some(std::mem::take(&mut *lock(&self.requests)))
    }

    /// The name of task `id`, if it is alive.
    pub(crate) fn name_of(&self, id: u64) -> Option<Arc<str>> {
        lock(&self.names).get(&id).cloned()
    }

    /// What the kernel is doing, from the per-switch record and the
    /// watchdog's view: `(task id, how long its slice has run)` if a task
    /// runs, `None` if the kernel is idle or in its own code.
    pub(crate) fn busy(&self) -> Option<(u64, Duration)> {
        let running = self.beat.running.load(Ordering::Relaxed);
        if running == 0 {
            return None;
        }
        let word = self.beat.slice.load(Ordering::Relaxed);
        let slice = *lock(&self.slice);
        let ran = match slice.since {
            Some(since) if slice.word == word && slice.task == running => since.elapsed(),
            _ => Duration::ZERO,
        };
        Some((running, ran))
    }

    /// One line saying why the kernel did not answer.
    pub(crate) fn busy_text(&self) -> String {
        if !self.alive.load(Ordering::Acquire) {
            return "the kernel has ended".to_string();
        }
        match self.busy() {
            Some((id, ran)) => {
                let name = self.name_of(id).unwrap_or_else(|| "?".into());
                format!(
                    "kernel busy in task {id} ('{name}') for {:.3} s: it runs without suspending",
                    ran.as_secs_f64()
                )
            }
            None if self.beat.idle.load(Ordering::Relaxed) => {
                "the kernel did not answer in time (it was idle; try again)".to_string()
            }
            None => "kernel busy in its own code (not in a task); try again".to_string(),
        }
    }
}

/// The watchdog thread of one kernel: attributes CPU time, follows slices,
/// reports long blocks while they last.
pub(crate) struct Watchdog {
    thread: Option<thread::JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Watchdog {
    /// Starts it; `cpu_clock` is the kernel thread's CPU clock, if readable.
    pub(crate) fn start(shared: Arc<Shared>, cpu_clock: Option<sys::CpuClock>) -> Watchdog {
        let period = match shared.threshold {
            Some(t) => (t / 4).clamp(Duration::from_millis(1), SAMPLE),
            None => SAMPLE,
        };
        let s = shared.clone();
        let thread = thread::Builder::new()
            .name("curio-watchdog".into())
            .spawn(move || watch(&s, cpu_clock, period))
            .ok();
        if thread.is_none() {
            eprintln!(
                "curio: could not start the watchdog thread; CPU times and long blocks are not reported"
            );
        }
        Watchdog { thread, shared }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.alive.store(false, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn watch(s: &Shared, cpu_clock: Option<sys::CpuClock>, period: Duration) {
    let mut last_cpu = cpu_clock.as_ref().and_then(|c| c.read());
    // Which hooks have had their "still running" report for the current slice.
    let mut reported = vec![false; s.hooks.len()];
    // Whether the current slice has been flagged (`Shared::flagged`).
    let mut flagged = false;
    while s.alive.load(Ordering::Acquire) {
        thread::park_timeout(period);
        if !s.alive.load(Ordering::Acquire) {
            break;
        }
        let now = Instant::now();
        let running = s.beat.running.load(Ordering::Relaxed);
        let word = s.beat.slice.load(Ordering::Relaxed);
        let from = s.beat.from.load(Ordering::Relaxed);
        // CPU time since the last sample goes to whoever runs now: a
        // sampling profiler's estimate (arch-notes/monitor.md).
        if let (Some(clock), Some(before)) = (&cpu_clock, last_cpu) {
            if let Some(cpu) = clock.read() {
                let spent = cpu.saturating_sub(before).as_nanos() as u64;
                last_cpu = Some(cpu);
                if running == 0 {
                    s.kernel_cpu.fetch_add(spent, Ordering::Relaxed);
                } else {
                    *lock(&s.cpu).entry(running).or_insert(0) += spent;
                }
            }
        }
        let slice = {
            let mut slice = lock(&s.slice);
            if slice.word != word || slice.task != running {
                *slice = Slice {
                    word,
                    task: running,
                    since: Some(now),
                };
                reported.iter_mut().for_each(|r| *r = false);
                flagged = false;
            }
            *slice
        };
        if running == 0 || s.threshold.is_none() {
            continue;
        }
        let ran = slice.since.map_or(Duration::ZERO, |t| now - t);
        for (i, hook) in s.hooks.iter().enumerate() {
            let Some(t) = hook.long_block_threshold() else {
                continue;
            };
            if reported[i] || ran < t {
                continue;
            }
            reported[i] = true;
            if !flagged {
                flagged = true;
                let since = slice.since.map_or(0, |t| (t - s.epoch).as_nanos() as u64);
                s.flagged_since.store(since, Ordering::Relaxed);
                s.flagged_task.store(running, Ordering::Relaxed);
                s.flagged_from.store(from, Ordering::Relaxed);
                s.flagged.fetch_add(1, Ordering::Release);
            }
            let report = LongBlock::new(
                running,
                s.name_of(running).unwrap_or_else(|| "?".into()),
                ran,
                true,
                state_from_u8(from),
                None,
            );
            // A hook that panics must not end the watchdog (and with it CPU
            // times and long-block reports): reported, and the watch goes on.
            let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                hook.long_block(&report);
            }));
            if let Err(payload) = called {
                eprintln!(
                    "curio: a debug hook panicked in long_block (on the watchdog thread): {}",
                    super::record::panic_message(&*payload)
                );
            }
        }
    }
}

/// The state a `State as u8` stood for.
pub(crate) fn state_from_u8(v: u8) -> State {
    State::ALL
        .get(v as usize)
        .copied()
        .filter(|s| *s as u8 == v)
        .unwrap_or(State::Suspend)
}

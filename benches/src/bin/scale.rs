//! Memory per sleeping task and the cost of a million tasks, for curio with its
//! default configuration (`curio::run`). A plain binary, not criterion: each
//! figure is one measurement of a whole run. Build it with `--release`.
//!
//! ```text
//! scale                      both tests below, each in a fresh child process
//! scale memory [N]           N tasks (default 100 000) sleep 1 s; while they sleep,
//!                            report RSS per task beyond the baseline before spawning
//! scale scale [N] [RUNS]     N tasks (default 1 000 000) sleep 1 s and are joined,
//!                            RUNS times (default 2) in one process; report spawn time,
//!                            time until all joined, peak RSS and page faults per run
//! scale timeouts [N]         N (default 2 000 000) timeout_after(60 s) blocks that finish
//!                            at once: RSS and live heap before and after
//! scale peak [N]             N (default 200 000) tasks sleep 1 s and end: RSS before,
//!                            at the peak, and after (with the kernel still running)
//! scale connections [N]      an echo server and N (default 10 000) client tasks in one
//!                            kernel: RSS before, with every connection open, after
//!                            they all closed
//! ```
//!
//! The second and later `scale` runs reuse the stacks the first run left in
//! curio's per-thread stack pool, whose pages are already faulted in, so the
//! difference between run 1 and run 2 is roughly the page-fault cost.
//!
//! Heap bytes are counted by a global allocator wrapper (plain load and store,
//! this binary being single-threaded), which separates the heap's share of a
//! task's memory from its stack's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use curio_benches::proc_status_bytes;

/// The global allocator: the system allocator, counting live heap bytes.
struct Counting;

static LIVE_HEAP: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the counter does not touch the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add_heap(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add_heap(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) };
        add_heap(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add_heap(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Discussion: a load and a store rather than `fetch_add`, to keep a locked
/// instruction off every allocation of the timed runs. Only the main thread
/// allocates during a measurement, so no update is lost then.
#[inline]
fn add_heap(delta: isize) {
    let v = LIVE_HEAP.load(Ordering::Relaxed) as isize;
    LIVE_HEAP.store((v + delta) as usize, Ordering::Relaxed);
}

fn live_heap() -> u64 {
    LIVE_HEAP.load(Ordering::Relaxed) as u64
}

/// Minor and major page faults of this process so far (`/proc/self/stat`).
fn page_faults() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields after the command name start at `state` (field 3); minflt is field
    // 10 and majflt field 12.
    let get = |i: usize| fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0);
    (get(7), get(9))
}

/// Resets VmHWM to the current RSS (Linux 4.0+), so each run reports its own peak.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn status(field: &str) -> u64 {
    proc_status_bytes(field).unwrap_or(0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn per_task(bytes: u64, n: u64) -> f64 {
    bytes as f64 / n as f64
}

const SLEEP: Duration = Duration::from_secs(1);

/// `memory N`: RSS per sleeping task.
fn memory(n: u64) {
    let report = curio::run(move || {
        let rss0 = status("VmRSS");
        let pte0 = status("VmPTE");
        let heap0 = live_heap();
        let (flt0, _) = page_faults();
        let mut tasks = Vec::with_capacity(n as usize);
        for _ in 0..n {
            tasks.push(curio::spawn(|| curio::sleep(SLEEP)));
        }
        // Parks main: every task now runs once, up to its sleep.
        curio::sleep(Duration::from_millis(200)).expect("sleep");
        let all_sleeping = tasks.iter().all(|t| t.state() == curio::State::TimeSleep);
        let rss1 = status("VmRSS");
        let pte1 = status("VmPTE");
        let heap1 = live_heap();
        let (flt1, _) = page_faults();
        for t in &tasks {
            t.join().expect("join").expect("sleep");
        }
        let rss = rss1.saturating_sub(rss0);
        let heap = heap1.saturating_sub(heap0);
        let pte = pte1.saturating_sub(pte0);
        let faults = flt1 - flt0;
        format!(
            "memory: {n} tasks sleeping (all in TIME_SLEEP: {all_sleeping})\n\
             memory:   RSS baseline {:.1} MiB, while sleeping {:.1} MiB\n\
             memory:   RSS per task        {:>8.0} B  ({:.2} KiB)\n\
             memory:     of which heap     {:>8.0} B  (counted by the allocator)\n\
             memory:     rest (stacks ...) {:>8.0} B\n\
             memory:   page faults per task {:.2}\n\
             memory:   page tables (VmPTE, not in RSS) per task {:.0} B",
            mib(rss0),
            mib(rss1),
            per_task(rss, n),
            per_task(rss, n) / 1024.0,
            per_task(heap, n),
            per_task(rss.saturating_sub(heap), n),
            faults as f64 / n as f64,
            per_task(pte, n),
        )
    });
    println!("{report}");
}

/// `scale N RUNS`: spawn N sleeping tasks, join them all, RUNS times.
fn scale(n: u64, runs: u32) {
    for run in 1..=runs {
        reset_peak_rss();
        let rss_before = status("VmRSS");
        let (flt0, maj0) = page_faults();
        let started = Instant::now();
        let (spawned, joined) = curio::run(move || {
            let t0 = Instant::now();
            let mut tasks = Vec::with_capacity(n as usize);
            for _ in 0..n {
                tasks.push(curio::spawn(|| curio::sleep(SLEEP)));
            }
            let spawned = t0.elapsed();
            for t in &tasks {
                t.join().expect("join").expect("sleep");
            }
            (spawned, t0.elapsed() - spawned)
        });
        let total = started.elapsed();
        let (flt1, maj1) = page_faults();
        let hwm = status("VmHWM");
        let rss_after = status("VmRSS");
        println!(
            "scale: run {run}: {n} tasks: spawn {:.3} s ({:.0} ns/task); all joined {:.3} s later \
             ({:.3} s beyond the 1 s sleep); whole run {:.3} s",
            spawned.as_secs_f64(),
            spawned.as_nanos() as f64 / n as f64,
            joined.as_secs_f64(),
            joined.as_secs_f64() - SLEEP.as_secs_f64(),
            total.as_secs_f64(),
        );
        println!(
            "scale: run {run}: peak RSS (VmHWM) {:.1} MiB ({:.0} B/task over the {:.1} MiB before); \
             RSS after {:.1} MiB; page faults {} minor ({:.2}/task), {} major",
            mib(hwm),
            per_task(hwm.saturating_sub(rss_before), n),
            mib(rss_before),
            mib(rss_after),
            flt1 - flt0,
            (flt1 - flt0) as f64 / n as f64,
            maj1 - maj0,
        );
    }
}

/// `timeouts N`: N `timeout_after(60 s, …)` blocks that each finish at once.
/// Memory for timers should follow the timers pending (none here), not N.
fn timeouts(n: u64) {
    let report = curio::run(move || {
        let rss0 = status("VmRSS");
        let heap0 = live_heap();
        for _ in 0..n {
            curio::timeout_after(Duration::from_secs(60), || Ok::<_, curio::Error>(()))
                .expect("block");
        }
        let rss1 = status("VmRSS");
        let heap1 = live_heap();
        format!(
            "timeouts: {n} finished timeout_after(60 s) blocks: RSS {:.1} MiB -> {:.1} MiB, \
             live heap {:.1} MiB -> {:.1} MiB",
            mib(rss0),
            mib(rss1),
            mib(heap0),
            mib(heap1),
        )
    });
    println!("{report}");
}

/// `peak N`: N tasks sleep 1 s and end; how much memory stays resident after
/// the peak, while the kernel still runs (its stack pool warm).
fn peak(n: u64) {
    let report = curio::run(move || {
        let rss0 = status("VmRSS");
        let tasks: Vec<_> = (0..n)
            .map(|_| curio::spawn(|| curio::sleep(SLEEP)))
            .collect();
        curio::sleep(Duration::from_millis(200)).expect("sleep");
        let rss_peak = status("VmRSS");
        for t in &tasks {
            t.join().expect("join").expect("sleep");
        }
        drop(tasks);
        // Give the kernel a moment idle, as a server between bursts.
        curio::sleep(Duration::from_millis(1500)).expect("sleep");
        let rss_after = status("VmRSS");
        format!(
            "peak: {n} sleeping tasks: RSS {:.1} MiB before, {:.1} MiB at the peak, \
             {:.1} MiB after they ended (live heap then {:.1} MiB)",
            mib(rss0),
            mib(rss_peak),
            mib(rss_after),
            mib(live_heap()),
        )
    });
    println!("{report}");
}

/// `connections N`: an echo server in one kernel serves N client tasks (of
/// the same kernel) over 127.0.0.1, each exchanging a line and holding its
/// connection open; then every client closes. How much memory stays resident
/// after the peak, while the kernel (and the server) still runs.
fn connections(n: u64) {
    let _ = curio_benches::echo::raise_nofile_limit();
    let report = curio::run(move || {
        use curio::net::{self, TcpStream};
        use std::rc::Rc;
        let rss0 = status("VmRSS");
        let listener = net::tcp_server_socket("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = curio::spawn(move || {
            net::run_server(listener, |c: TcpStream, _| -> curio::Result<()> {
                let mut s = c.as_stream();
                loop {
                    let line = s.readline()?;
                    if line.is_empty() {
                        return Ok(());
                    }
                    s.write_all(&line)?;
                }
            })
        });
        let close = Rc::new(curio::Event::new());
        let clients: Vec<_> = (0..n)
            .map(|i| {
                let close = close.clone();
                curio::spawn(move || -> curio::Result<()> {
                    let c = TcpStream::connect(addr)?;
                    let mut s = c.as_stream();
                    s.write_all(format!("client {i}\n").as_bytes())?;
                    s.readline()?;
                    close.wait()?;
                    Ok(())
                })
            })
            .collect();
        // Wait until every client has its echo and waits to close.
        while clients.iter().any(|c| c.state() != curio::State::EventWait) {
            curio::sleep(Duration::from_millis(50)).expect("sleep");
        }
        let rss_peak = status("VmRSS");
        close.set();
        for c in &clients {
            c.join().expect("join").expect("client");
        }
        drop(clients);
        curio::sleep(Duration::from_millis(1500)).expect("sleep");
        let rss_after = status("VmRSS");
        server.cancel().expect("cancel");
        format!(
            "connections: {n} connections: RSS {:.1} MiB before, {:.1} MiB at the peak, \
             {:.1} MiB after they closed (server still running; live heap {:.1} MiB)",
            mib(rss0),
            mib(rss_peak),
            mib(rss_after),
            mib(live_heap()),
        )
    });
    println!("{report}");
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> T {
    match args.get(i) {
        None => default,
        Some(s) => {
            let digits: String = s.chars().filter(|c| *c != '_').collect();
            digits.parse().unwrap_or_else(|_| usage())
        }
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: scale [memory [N] | scale [N] [RUNS] | timeouts [N] | peak [N] | connections [N]]"
    );
    std::process::exit(2);
}

/// Runs this binary again with `args`, so each test starts from a fresh process
/// (an empty stack pool, a fresh peak RSS).
fn child(args: &[&str]) {
    let exe = std::env::current_exe().expect("current exe");
    let status = Command::new(exe).args(args).status().expect("run child");
    if !status.success() {
        eprintln!("scale: `{}` failed: {status}", args.join(" "));
        std::process::exit(1);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        None => {
            child(&["memory"]);
            child(&["scale"]);
        }
        Some("memory") => memory(arg(&args, 2, 100_000)),
        Some("scale") => scale(arg(&args, 2, 1_000_000), arg(&args, 3, 2)),
        Some("timeouts") => timeouts(arg(&args, 2, 2_000_000)),
        Some("peak") => peak(arg(&args, 2, 200_000)),
        Some("connections") => connections(arg(&args, 2, 10_000)),
        Some(_) => usage(),
    }
}

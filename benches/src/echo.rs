//! Helpers shared by the TCP echo benchmark's three binaries: `echo_server`
//! (one echo server per peer), `echo_load` (the load generator) and `echo_bench`
//! (the driver that runs them and reads the servers' CPU time and memory).
//!
//! Everything here is Linux-specific: CPU affinity, `RLIMIT_NOFILE` and `/proc`.

use std::io;
use std::time::{Duration, Instant};

/// Bytes per request and per reply: one echo round trip is 64 bytes each way.
pub const MSG_LEN: usize = 64;

/// Pins the calling thread (and so every thread it creates afterwards) to `cpu`.
///
/// Call it first thing in `main`, before a runtime starts its threads.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: `cpu_set_t` is plain data, for which all-zero bytes are a valid
    // (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `CPU_SET` writes one bit inside `set`; it checks `cpu` against the
    // set's size.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; the pointer and size describe `set`.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable `rlimit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid `rlimit` whose soft limit does not exceed the hard one.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of [`cpu_ticks`].
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: `sysconf` has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// CPU time of process `pid` (`"self"` for this one), all threads, user plus
/// system, in clock ticks: fields 14 and 15 (`utime`, `stime`) of
/// `/proc/PID/stat`.
pub fn cpu_ticks(pid: &str) -> io::Result<u64> {
    let (user, system) = cpu_ticks_split(pid)?;
    Ok(user + system)
}

/// [`cpu_ticks`] as (user, system).
pub fn cpu_ticks_split(pid: &str) -> io::Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: split
    // after its closing parenthesis, where field 3 starts.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("malformed /proc/PID/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state), so field N is fields[N - 3].
    let get = |n: usize| -> io::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other(format!("no field {n} in /proc/PID/stat")))
    };
    Ok((get(14)?, get(15)?))
}

/// CPU time of process `pid`, all its threads, user plus system, in
/// nanoseconds: the first field (`sum_exec_runtime`) of each
/// `/proc/PID/task/TID/schedstat`, summed. Unlike [`cpu_ticks`] (10 ms clock
/// ticks) it has the scheduler's own precision, so short windows at low CPU
/// use can be compared; threads that have exited are not counted.
pub fn cpu_ns(pid: &str) -> io::Result<u64> {
    let mut sum = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = entry?.path().join("schedstat");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue; // the thread exited meanwhile
        };
        sum += text
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| io::Error::other(format!("malformed {}", path.display())))?;
    }
    Ok(sum)
}

/// Busy time of each of `cpus`, summed, in clock ticks: `user + nice + system +
/// irq + softirq + steal` of their `cpuN` lines in `/proc/stat`. Steal counts as
/// busy: it is time the hypervisor gave the virtual CPU to someone else.
pub fn cpus_busy_ticks(cpus: &[usize]) -> io::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let mut sum = 0;
    for &cpu in cpus {
        let name = format!("cpu{cpu}");
        let line = stat
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))
            .ok_or_else(|| io::Error::other(format!("no {name} in /proc/stat")))?;
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        // user nice system idle iowait irq softirq steal
        sum += [0, 1, 2, 5, 6, 7]
            .iter()
            .map(|&i| f.get(i).copied().unwrap_or(0))
            .sum::<u64>();
    }
    Ok(sum)
}

/// A `kB` field (`VmRSS`, `VmHWM` …) of `/proc/PID/status`, in bytes.
pub fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    })
}

/// How many file descriptors process `pid` has open (entries of `/proc/PID/fd`).
pub fn open_fds(pid: u32) -> io::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// Polls `done` every `every` until it returns true or `limit` has passed;
/// returns whether it became true.
pub fn wait_until(limit: Duration, every: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// The value following `--name` in `args`, parsed; `default` when absent.
///
/// # Panics
///
/// If the value is missing or does not parse: these are command-line tools.
pub fn flag<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    match args.iter().position(|a| a == name) {
        None => default,
        Some(i) => {
            let v = args
                .get(i + 1)
                .unwrap_or_else(|| panic!("{name} needs a value"));
            v.replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("{name}: cannot parse {v:?}"))
        }
    }
}

/// Arguments that are neither flags (`--name`) nor a flag's value.
pub fn positional(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
        } else if a.starts_with("--") {
            skip = true;
        } else {
            out.push(a.clone());
        }
    }
    out
}

/// The median of `xs` (the mean of the middle two for an even count); NaN when empty.
pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn args() {
        let a: Vec<String> = ["curio", "--cpu", "0", "7"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(flag(&a, "--cpu", 9usize), 0);
        assert_eq!(flag(&a, "--port", 5u16), 5);
        assert_eq!(positional(&a), vec!["curio".to_string(), "7".to_string()]);
    }

    #[test]
    fn own_cpu_ticks() {
        assert!(cpu_ticks("self").is_ok());
        assert!(cpus_busy_ticks(&[0]).is_ok());
    }
}

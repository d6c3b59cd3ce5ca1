//! Task stacks: carved from large lazily-committed slabs, guarded, and reused through a pool.
//!
//! # Invariants
//!
//! - Every stack has a guard page below its lowest usable byte, so running off the
//!   end faults instead of corrupting a neighbour (see `sys.rs` for the report).
//! - Guards are installed with `MADV_GUARD_INSTALL` where the kernel has it (Linux
//!   6.13+), which keeps a whole slab one mapping: a million stacks fit under
//!   `vm.max_map_count`. Older kernels fall back to `mprotect`, one split per stack.
//!   Setting `CURIO_GUARD_PAGES=mprotect` in the environment forces the fallback
//!   (to test it, or to sidestep a kernel whose `MADV_GUARD_INSTALL` misbehaves).
//! - Slabs are mapped `MAP_NORESERVE` and never unmapped: a stack costs only the
//!   pages its task has touched, and a freed stack goes back to the pool of its
//!   size class for the next spawn, so spawning in steady state makes no syscall.
//! - A free stack is *warm* (its touched pages still resident) or *cold* (never
//!   used, or its memory given back with `MADV_DONTNEED`); spawning takes warm
//!   ones first. When its kernel goes idle, warm stacks beyond a bound
//!   (`Builder::idle_stacks`) are made cold, so memory falls back after a peak.
//! - Sizes are checked ([`MIN_STACK_SIZE`]..=[`MAX_STACK_SIZE`]). With `mprotect`
//!   guards every stack costs two memory mappings, and the pool stops short of
//!   `vm.max_map_count` with an error rather than let `malloc` fail later.
//! - The pool is per OS thread (kernels never share stacks across threads).
//!
//! # Example
//!
//! ```
//! // A task with a bigger stack than the default.
//! curio::run(|| {
//!     let t = curio::task::Builder::new().stack_size(1 << 20).spawn(|| 42).unwrap();
//!     assert_eq!(t.join().unwrap(), 42);
//! });
//! ```
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::io;

use corosensei::stack::{Stack, StackPointer};

use crate::sys::{self, GuardMode};

/// The default usable size of a task stack: 256 KiB of address space, of which a
/// sleeping task typically touches one page.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// The smallest stack a task may ask for.
pub const MIN_STACK_SIZE: usize = 16 * 1024;

/// The largest stack a task may ask for (1 GiB of address space).
pub const MAX_STACK_SIZE: usize = 1 << 30;

/// How many unused stacks a kernel keeps warm (their memory resident) by default.
pub const DEFAULT_IDLE_STACKS: usize = 1024;

const FIRST_SLAB: usize = 16;
const MAX_SLAB: usize = 4096;
/// No slab is larger than this (a class of big stacks gets fewer per slab).
const MAX_SLAB_BYTES: usize = 2 << 30;
/// With `mprotect` guards, no slab carves more stacks than this, so that two
/// threads growing at once overshoot the map budget by little.
const MAX_MPROTECT_SLAB: usize = 1024;

/// One stack from the pool. Dropping it leaks it; give it back with [`give`].
#[derive(Debug)]
pub(crate) struct PooledStack {
    /// Lowest address, including the guard page.
    limit: usize,
    /// Highest address of its memory.
    base: usize,
    /// The size class it came from (usable bytes).
    usable: u32,
    /// How far below `base` its top is (its cache colour, see [`COLOR_SPAN`]).
    color: u32,
}

/// Room above each stack for cache colouring, beyond its usable size.
///
/// Discussion: stacks are carved at a fixed stride, so without an offset
/// every stack's top (where a task's first frames live: corosensei's initial
/// frame, the task's body) would sit at the same offset within a page, and
/// the first lines of all stacks would compete for the same few sets of every
/// cache: with 260 KiB stacks, a 16 MiB 16-way cache could hold the top lines
/// of only 4096 stacks, whatever its size. Each stack's top is moved down by
/// a different multiple of the line size (64 colours over one page), so those
/// lines spread over every set. The span costs address space only.
pub(crate) const COLOR_SPAN: usize = 4096;
const LINE: usize = 64;

impl PooledStack {
    /// The guard page range `[lo, hi)`.
    pub(crate) fn guard(&self) -> (usize, usize) {
        (self.limit, self.limit + sys::page_size())
    }

    /// Usable bytes.
    pub(crate) fn size(&self) -> usize {
        self.usable as usize
    }

    /// Gives the memory of the usable part back to the operating system; the
    /// stack stays reserved, and reads as zeros when next touched. The guard
    /// page is left alone.
    fn release_memory(&self) {
        let lo = self.limit + sys::page_size();
        sys::release_memory(lo, self.base - lo);
    }
}

// SAFETY: `base`/`limit` describe a mapping we own exclusively while this value
// lives (the pool hands each stack to one coroutine at a time). Between the
// guard page above `limit` and the coloured top (`base - color`) lie at least
// `usable` >= MIN_STACK_SIZE bytes (the colour is taken from the extra
// COLOR_SPAN). `limit` is page aligned and the top a multiple of 64 bytes,
// hence both aligned to STACK_ALIGNMENT (16).
unsafe impl Stack for PooledStack {
    fn base(&self) -> StackPointer {
        StackPointer::new(self.base - self.color as usize).expect("stack base is never null")
    }
    fn limit(&self) -> StackPointer {
        StackPointer::new(self.limit).expect("stack limit is never null")
    }
}

struct Class {
    usable: usize,
    /// Free stacks whose touched pages are still resident, most recently used last.
    warm: Vec<PooledStack>,
    /// Free stacks holding no memory: never used, or released.
    cold: Vec<PooledStack>,
    next_slab: usize,
}

struct Pool {
    classes: Vec<Class>,
    mode: GuardMode,
    page: usize,
    warned: bool,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool {
        classes: Vec::new(),
        mode: initial_guard_mode(),
        page: sys::page_size(),
        warned: false,
    });
}

/// The environment variable that forces `mprotect` guard pages.
const GUARD_ENV: &str = "CURIO_GUARD_PAGES";

/// `MADV_GUARD_INSTALL` first (it falls back by itself where the kernel lacks
/// it), unless `CURIO_GUARD_PAGES=mprotect` asks for the fallback outright.
fn initial_guard_mode() -> GuardMode {
    match std::env::var(GUARD_ENV) {
        Ok(v) if v.eq_ignore_ascii_case("mprotect") => GuardMode::Mprotect,
        _ => GuardMode::Madvise,
    }
}

/// How deep a task stack has been touched: the bytes from the top of its
/// memory (`size` usable bytes above the guard page at `guard`, and the
/// colour span above them) down to the lowest resident page, in whole pages;
/// `None` if that cannot be read.
pub(crate) fn stack_depth(guard: usize, size: usize) -> Option<usize> {
    let page = sys::page_size();
    let lo = guard + page;
    let pages = sys::resident_pages(lo, size + COLOR_SPAN).ok()?;
    let lowest = pages.iter().position(|b| b & 1 != 0)?;
    Some(pages.len().saturating_sub(lowest) * page)
}

/// Checks a requested stack size and rounds it up to whole pages.
///
/// # Errors
///
/// `InvalidInput` below [`MIN_STACK_SIZE`] or above [`MAX_STACK_SIZE`].
pub(crate) fn checked_size(size: usize) -> io::Result<usize> {
    if size < MIN_STACK_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a task stack of {size} bytes is too small: the minimum is {MIN_STACK_SIZE} \
                 bytes (curio::MIN_STACK_SIZE)"
            ),
        ));
    }
    if size > MAX_STACK_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a task stack of {size} bytes is too large: the maximum is {MAX_STACK_SIZE} \
                 bytes (curio::MAX_STACK_SIZE)"
            ),
        ));
    }
    let page = sys::page_size();
    Ok(size.div_ceil(page) * page)
}

/// Takes a stack of `usable` bytes (already checked by [`checked_size`]) from
/// this thread's pool: a warm one if there is one.
pub(crate) fn take(usable: usize) -> io::Result<PooledStack> {
    POOL.with(|p| p.borrow_mut().take(usable))
}

/// Returns a stack to this thread's pool for reuse, its memory still resident.
pub(crate) fn give(stack: PooledStack) {
    POOL.with(|p| p.borrow_mut().class(stack.size()).warm.push(stack))
}

/// Returns a stack to this thread's pool after giving its memory back to the
/// operating system.
pub(crate) fn give_released(stack: PooledStack) {
    stack.release_memory();
    POOL.with(|p| p.borrow_mut().class(stack.size()).cold.push(stack))
}

/// Keeps at most `keep` warm stacks in each size class of this thread's pool;
/// the memory of the least recently used others is given back.
pub(crate) fn trim(keep: usize) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        for class in &mut p.classes {
            if class.warm.len() > keep {
                let excess = class.warm.len() - keep;
                for st in class.warm.drain(..excess) {
                    st.release_memory();
                    class.cold.push(st);
                }
            }
        }
    })
}

impl Pool {
    fn class(&mut self, usable: usize) -> &mut Class {
        let i = match self.classes.iter().position(|c| c.usable == usable) {
            Some(i) => i,
            None => {
                self.classes.push(Class {
                    usable,
                    warm: Vec::new(),
                    cold: Vec::new(),
                    next_slab: FIRST_SLAB,
                });
                self.classes.len() - 1
            }
        };
        &mut self.classes[i]
    }

    fn take(&mut self, usable: usize) -> io::Result<PooledStack> {
        let class = self.class(usable);
        if let Some(s) = class.warm.pop().or_else(|| class.cold.pop()) {
            return Ok(s);
        }
        self.grow(usable)?;
        Ok(self.class(usable).cold.pop().expect("grow adds stacks"))
    }

    /// Maps a new slab for a size class and carves it into guarded stacks.
    fn grow(&mut self, usable: usize) -> io::Result<()> {
        let page = self.page;
        let stride = usable + page + COLOR_SPAN;
        let mut count = self
            .class(usable)
            .next_slab
            .min((MAX_SLAB_BYTES / stride).max(1));
        if self.mode == GuardMode::Mprotect {
            count = count.min(MAX_MPROTECT_SLAB).min(mprotect_room()?);
        }
        let base = sys::map_reserve(count * stride)?;
        let mut stacks = Vec::with_capacity(count);
        for i in (0..count).rev() {
            let limit = base + i * stride;
            let mode = match sys::install_guard(limit, page, self.mode) {
                Ok(mode) => mode,
                Err(e) => {
                    sys::unmap(base, count * stride);
                    return Err(e);
                }
            };
            if mode != self.mode {
                // This kernel has no MADV_GUARD_INSTALL: from now on every
                // stack costs mappings, so start again within the budget.
                self.mode = mode;
                sys::unmap(base, count * stride);
                return self.grow(usable);
            }
            stacks.push(PooledStack {
                limit,
                base: limit + stride,
                usable: u32::try_from(usable).expect("stack sizes are checked"),
                color: ((i % (COLOR_SPAN / LINE)) * LINE) as u32,
            });
        }
        if self.mode == GuardMode::Mprotect && !self.warned {
            self.warned = true;
            let why = if initial_guard_mode() == GuardMode::Mprotect {
                "CURIO_GUARD_PAGES=mprotect is set"
            } else {
                "this kernel has no MADV_GUARD_INSTALL (Linux 6.13)"
            };
            let room = mprotect_room().unwrap_or(0) + count;
            eprintln!(
                "curio: {why}; guard pages use mprotect, so each task stack costs two memory \
                 mappings, and vm.max_map_count ({}) allows about {room} concurrent tasks; \
                 raise it (sysctl -w vm.max_map_count=...) for more",
                map_limit()
            );
        }
        let class = self.class(usable);
        class.next_slab = (count * 2).min(MAX_SLAB);
        class.cold.extend(stacks);
        Ok(())
    }
}

/// `vm.max_map_count`, or Linux's default if it cannot be read.
fn map_limit() -> usize {
    sys::max_map_count().unwrap_or(65530)
}

/// How many more `mprotect`-guarded stacks the process's map budget allows
/// (two mappings each), keeping a reserve for the rest of the program
/// (`malloc`'s own mappings, thread stacks, libraries): 1/16 of the limit,
/// at least 4096 mappings.
///
/// Discussion: running into `vm.max_map_count` is not an error one can
/// recover from in general: `malloc` asks for mappings too and aborts the
/// process when it gets none. So stacks stop short of the limit, with an error
/// that says what ran out, while the program still has room to handle it.
///
/// # Errors
///
/// `OutOfMemory`, saying what ran out and what to do, when there is no room.
fn mprotect_room() -> io::Result<usize> {
    let limit = map_limit();
    let in_use = sys::map_count().unwrap_or(limit);
    let reserve = (limit / 16).max(4096);
    let room = limit.saturating_sub(in_use + reserve) / 2;
    if room == 0 {
        return Err(io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!(
                "cannot make another guarded task stack: without MADV_GUARD_INSTALL \
                 (Linux 6.13) each stack costs two memory mappings, and the process has \
                 {in_use} of the {limit} that vm.max_map_count allows ({reserve} are kept for \
                 the rest of the program); raise the limit (sysctl -w vm.max_map_count=262144) \
                 or run on a newer kernel"
            ),
        ));
    }
    Ok(room)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked_size_ok(size: usize) -> usize {
        checked_size(size).unwrap()
    }

    #[test]
    fn stack_sizes_out_of_range_are_errors() {
        assert_eq!(
            checked_size(0).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            checked_size(1).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            checked_size(usize::MAX).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert!(
            checked_size(usize::MAX)
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
        assert_eq!(checked_size(MIN_STACK_SIZE).unwrap(), MIN_STACK_SIZE);
        assert_eq!(
            checked_size(MIN_STACK_SIZE + 1).unwrap(),
            MIN_STACK_SIZE + sys::page_size()
        );
        assert_eq!(checked_size(MAX_STACK_SIZE).unwrap(), MAX_STACK_SIZE);
    }

    #[test]
    fn trimming_gives_back_the_memory_of_the_least_recently_used_warm_stacks() {
        let size = checked_size(64 * 1024).unwrap();
        let stacks: Vec<_> = (0..8).map(|_| take(size).unwrap()).collect();
        for st in &stacks {
            // Touch the top page, as a task would.
            // SAFETY: the stack's usable range is ours, mapped read-write.
            unsafe { std::ptr::write_volatile((st.base - 8) as *mut u64, 0xC0FFEE) };
        }
        let tops: Vec<usize> = stacks.iter().map(|s| s.base).collect();
        stacks.into_iter().for_each(give);
        trim(2);
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            let class = p.class(size);
            assert_eq!(class.warm.len(), 2);
            // The two kept are the last given back; the others read zero now.
            assert_eq!(
                class.warm.iter().map(|s| s.base).collect::<Vec<_>>(),
                tops[6..]
            );
            for st in &class.cold {
                if tops.contains(&st.base) {
                    // SAFETY: as above.
                    let v = unsafe { std::ptr::read_volatile((st.base - 8) as *const u64) };
                    assert_eq!(v, 0, "a released stack reads as zeros");
                }
            }
        });
    }

    #[test]
    fn stacks_are_reused_lifo() {
        let size = checked_size_ok(64 * 1024);
        let a = take(size).unwrap();
        let a_base = a.base;
        give(a);
        let b = take(size).unwrap();
        assert_eq!(b.base, a_base);
        give(b);
    }

    /// The permissions `/proc/self/maps` shows for the mapping holding `addr`.
    fn perms_at(addr: usize) -> Option<String> {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines().find_map(|line| {
            let mut parts = line.split_whitespace();
            let range = parts.next()?;
            let perms = parts.next()?;
            let (lo, hi) = range.split_once('-')?;
            let lo = usize::from_str_radix(lo, 16).ok()?;
            let hi = usize::from_str_radix(hi, 16).ok()?;
            (lo <= addr && addr < hi).then(|| perms.to_string())
        })
    }

    #[test]
    fn the_mprotect_fallback_makes_each_guard_page_an_inaccessible_mapping() {
        let mut pool = Pool {
            classes: Vec::new(),
            mode: GuardMode::Mprotect,
            page: sys::page_size(),
            warned: true, // no warning in the test output
        };
        let size = checked_size_ok(16 * 1024);
        let stacks: Vec<_> = (0..3).map(|_| pool.take(size).unwrap()).collect();
        for s in &stacks {
            let (lo, hi) = s.guard();
            assert_eq!(perms_at(lo).as_deref(), Some("---p"), "guard of {s:?}");
            assert_eq!(perms_at(hi - 1).as_deref(), Some("---p"));
            assert_eq!(
                perms_at(hi).as_deref(),
                Some("rw-p"),
                "usable bottom of {s:?}"
            );
            assert_eq!(perms_at(s.base - 1).as_deref(), Some("rw-p"));
        }
        assert_eq!(pool.mode, GuardMode::Mprotect);
    }

    #[test]
    fn stacks_do_not_overlap_and_have_a_guard() {
        let size = checked_size_ok(20 * 1024);
        let s: Vec<_> = (0..40).map(|_| take(size).unwrap()).collect();
        let mut colors = std::collections::HashSet::new();
        for w in s.iter() {
            assert_eq!(w.base - w.limit, size + sys::page_size() + COLOR_SPAN);
            assert_eq!(w.guard().1 - w.guard().0, sys::page_size());
            // The usable part, from the guard to the coloured top, is whole.
            let top = Stack::base(w).get();
            assert!(top - w.guard().1 >= size, "{w:?}");
            assert_eq!(top % LINE, 0);
            colors.insert(top % COLOR_SPAN);
        }
        assert!(
            colors.len() >= 16,
            "stack tops spread over cache sets: {colors:?}"
        );
        let mut ranges: Vec<_> = s.iter().map(|x| (x.limit, x.base)).collect();
        ranges.sort();
        for pair in ranges.windows(2) {
            assert!(pair[0].1 <= pair[1].0);
        }
        s.into_iter().for_each(give);
    }
}

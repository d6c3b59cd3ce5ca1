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

const FIRST_SLAB: usize = 16;
const MAX_SLAB: usize = 4096;

/// One stack from the pool. Dropping it leaks it; give it back with [`give`].
#[derive(Debug)]
pub(crate) struct PooledStack {
    /// Lowest address, including the guard page.
    limit: usize,
    /// Highest address (the stack grows down from here).
    base: usize,
    /// The size class it came from (usable bytes).
    usable: usize,
}

impl PooledStack {
    /// The guard page range `[lo, hi)`.
    pub(crate) fn guard(&self) -> (usize, usize) {
        (self.limit, self.limit + sys::page_size())
    }

    /// Usable bytes.
    pub(crate) fn size(&self) -> usize {
        self.usable
    }
}

// SAFETY: `base`/`limit` describe a mapping we own exclusively while this value
// lives (the pool hands each stack to one coroutine at a time). It is at least
// MIN_STACK_SIZE bytes with a guard page at `limit`, and both ends are page
// aligned, hence aligned to STACK_ALIGNMENT.
unsafe impl Stack for PooledStack {
    fn base(&self) -> StackPointer {
        StackPointer::new(self.base).expect("stack base is never null")
    }
    fn limit(&self) -> StackPointer {
        StackPointer::new(self.limit).expect("stack limit is never null")
    }
}

struct Class {
    usable: usize,
    free: Vec<PooledStack>,
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

/// Rounds a requested size up to a whole number of pages, at least [`MIN_STACK_SIZE`].
pub(crate) fn round_size(size: usize) -> usize {
    let page = sys::page_size();
    size.max(MIN_STACK_SIZE).div_ceil(page) * page
}

/// Takes a stack of `usable` bytes (already rounded by [`round_size`]) from this thread's pool.
pub(crate) fn take(usable: usize) -> io::Result<PooledStack> {
    POOL.with(|p| p.borrow_mut().take(usable))
}

/// Returns a stack to this thread's pool for reuse.
pub(crate) fn give(stack: PooledStack) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let class = p.class(stack.usable);
        class.free.push(stack);
    })
}

impl Pool {
    fn class(&mut self, usable: usize) -> &mut Class {
        let i = match self.classes.iter().position(|c| c.usable == usable) {
            Some(i) => i,
            None => {
                self.classes.push(Class {
                    usable,
                    free: Vec::new(),
                    next_slab: FIRST_SLAB,
                });
                self.classes.len() - 1
            }
        };
        &mut self.classes[i]
    }

    fn take(&mut self, usable: usize) -> io::Result<PooledStack> {
        if let Some(s) = self.class(usable).free.pop() {
            return Ok(s);
        }
        self.grow(usable)?;
        Ok(self.class(usable).free.pop().expect("grow adds stacks"))
    }

    /// Maps a new slab for a size class and carves it into guarded stacks.
    fn grow(&mut self, usable: usize) -> io::Result<()> {
        let page = self.page;
        let count = self.class(usable).next_slab;
        let stride = usable + page;
        let base = sys::map_reserve(count * stride)?;
        let mut mode = self.mode;
        let mut stacks = Vec::with_capacity(count);
        for i in (0..count).rev() {
            let limit = base + i * stride;
            mode = sys::install_guard(limit, page, mode)?;
            stacks.push(PooledStack {
                limit,
                base: limit + stride,
                usable,
            });
        }
        if mode == GuardMode::Mprotect && !self.warned {
            self.warned = true;
            let limit = sys::max_map_count().unwrap_or(65530);
            let why = if initial_guard_mode() == GuardMode::Mprotect {
                "CURIO_GUARD_PAGES=mprotect is set"
            } else {
                "this kernel has no MADV_GUARD_INSTALL"
            };
            eprintln!(
                "curio: {why}; guard pages use mprotect, \
                 so vm.max_map_count ({limit}) allows about {} concurrent tasks",
                limit / 2
            );
        }
        self.mode = mode;
        let class = self.class(usable);
        class.next_slab = (count * 2).min(MAX_SLAB);
        class.free.extend(stacks);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_are_reused_lifo() {
        let size = round_size(64 * 1024);
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
        let size = round_size(16 * 1024);
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
        let size = round_size(20 * 1024);
        let s: Vec<_> = (0..40).map(|_| take(size).unwrap()).collect();
        for w in s.iter() {
            assert_eq!(w.base - w.limit, size + sys::page_size());
            assert_eq!(w.guard().1 - w.guard().0, sys::page_size());
        }
        let mut ranges: Vec<_> = s.iter().map(|x| (x.limit, x.base)).collect();
        ranges.sort();
        for pair in ranges.windows(2) {
            assert!(pair[0].1 <= pair[1].0);
        }
        s.into_iter().for_each(give);
    }
}

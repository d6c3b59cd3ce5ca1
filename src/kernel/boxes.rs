//! Task boxes' memory: the reference-counted pointer a task box is held by
//! ([`TaskRc`]), and the per-thread free lists its allocations are recycled
//! through.
//!
//! A task is one allocation (its [`TaskBox`]: record, result slot, closure),
//! made by `spawn` and freed when the last handle goes. glibc's `malloc`
//! keeps only seven freed blocks of each small size in its fast per-thread
//! cache, so a batch of thousands of tasks falls through to its general bins
//! on both sides: about 350 instructions per task, a quarter of a spawn+join
//! in a batch of 10 000, and the chunk headers it walks are one more cache
//! line per task (`arch-notes/benchmarks.md`, "Task boxes from a free list").
//! Here a freed box goes on the free list of its size class, and the next
//! spawn of that class takes the most recently freed one back (the warmest):
//! a pop and a push, a dozen instructions each.
//!
//! Blocks are cache-line aligned and sized in whole lines, so a box of
//! `n` lines touches `n` lines, not `n + 1`.
//!
//! `std::rc::Rc` cannot take an allocator on stable Rust, which is why this
//! module has its own small `Rc`: a strong count only (no weak handles),
//! kept in the box's record ([`Counted::refs`]).
//!
//! # Invariants
//!
//! - A `TaskRc`'s pointer is to a live, initialised box whose count is at
//!   least the number of `TaskRc`s pointing at it (each clone adds one,
//!   each drop takes one off; the box is dropped and its block freed when
//!   the count reaches zero, and never touched again).
//! - Every block on a free list was allocated with `class_layout` of that
//!   list's class, is not in use, and holds the next free block (or null) in
//!   its link word (`link`: the word at `LINK_AT`, or its first word if it
//!   is no longer than that).
//! - The lists are per thread (`TaskRc` is neither `Send` nor `Sync`, so a
//!   box is made and freed on one thread); at thread exit the lists' blocks
//!   go back to the allocator, and a box freed after that goes there
//!   directly.
//!
//! # Example (crate-internal)
//!
//! ```ignore
//! let cell: TaskRc<TaskBoxOf<u64, F>> = TaskRc::new_with(|| TaskBoxOf::new(record, f));
//! // SAFETY: the closure is the struct-tail unsizing of the same pointer.
//! let any: TaskRc<AnyTask> = unsafe { cell.clone().unsize(|p| p) };
//! ```

use std::alloc::{self, Layout};
use std::cell::Cell;
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::{self, NonNull};

/// A value that carries its own reference count (the task record does).
///
/// # Safety
///
/// `refs` must return the same cell for the whole life of the value, a cell
/// that only [`TaskRc`] writes, starting at 1 when the value is made: a
/// wrong count would free a box still in use.
#[allow(unsafe_code)]
// SAFETY: implementors keep the `# Safety` contract above; `TaskRc` relies on
// it for every free.
pub(crate) unsafe trait Counted {
    /// The number of [`TaskRc`]s that point at this value.
    fn refs(&self) -> &Cell<u32>;
}

/// A reference-counted pointer to a task box, allocated from the thread's
/// free lists: `std::rc::Rc` without weak handles, whose count lives in the
/// box itself.
pub(crate) struct TaskRc<B: ?Sized + Counted> {
    ptr: NonNull<B>,
    /// Owns a `B` (for drop check); `NonNull` makes it `!Send + !Sync`.
    _owns: PhantomData<B>,
}

impl<B: Counted> TaskRc<B> {
    /// A new block holding what `make` returns, whose count must be 1 (one
    /// handle: the one returned).
    ///
    /// Always inlined, and the value made after the block is taken, so it is
    /// built in the block rather than on the stack and copied (a 300-byte
    /// copy, 5% of a spawn).
    #[inline(always)]
    pub(crate) fn new_with(make: impl FnOnce() -> B) -> TaskRc<B> {
        let layout = Layout::new::<B>();
        let block = alloc_block(layout).cast::<B>();
        // SAFETY: `block` is fresh memory of `B`'s size and alignment
        // (`alloc_block`), owned by no one else; writing moves the value in,
        // and the reference read back is to that initialised value.
        #[allow(unsafe_code)]
        unsafe {
            block.as_ptr().write(make());
            debug_assert_eq!(block.as_ref().refs().get(), 1, "a new box has one handle");
        }
        TaskRc {
            ptr: block,
            _owns: PhantomData,
        }
    }
}

impl<B: ?Sized + Counted> TaskRc<B> {
    /// The same box seen as another type: `f` is an unsizing cast of the
    /// pointer (`|p| p` with the target type given), possibly with a
    /// lifetime bound changed by the caller.
    ///
    /// # Safety
    ///
    /// `f` must return the pointer it is given, seen as a type with the same
    /// layout and the same count (a struct-tail unsizing of it); any
    /// lifetime the new type claims is the caller's to uphold.
    #[allow(unsafe_code)]
    #[inline(always)]
    // SAFETY: callers keep the `# Safety` contract above, which the cast relies on.
    pub(crate) unsafe fn unsize<U: ?Sized + Counted>(
        self,
        f: impl FnOnce(*mut B) -> *mut U,
    ) -> TaskRc<U> {
        let this = std::mem::ManuallyDrop::new(self);
        let p = f(this.ptr.as_ptr());
        TaskRc {
            // SAFETY: `f` returns the (non-null) pointer it was given.
            ptr: unsafe { NonNull::new_unchecked(p) },
            _owns: PhantomData,
        }
    }

    /// The freeing half of `drop`, out of line: drops the box and gives its
    /// block back.
    #[allow(unsafe_code)]
    #[inline(never)]
    // SAFETY: called once, by `drop`, when the count reached zero: no other
    // handle exists, so the box may be dropped and its memory reused.
    unsafe fn drop_slow(&mut self) {
        // SAFETY: the box is still alive (its count just reached zero); the
        // layout is read before it is dropped.
        let layout = Layout::for_value(unsafe { self.ptr.as_ref() });
        /// Frees the block even if dropping the box panics: the drop glue
        /// still drops every field while unwinding, so nothing in the block
        /// is alive by the time this runs.
        struct Release(NonNull<u8>, Layout);
        impl Drop for Release {
            fn drop(&mut self) {
                free_block(self.0, self.1);
            }
        }
        let _release = Release(self.ptr.cast(), layout);
        // SAFETY: the count is zero: this is the last handle, the box is
        // initialised and no one can reach it after this.
        unsafe { ptr::drop_in_place(self.ptr.as_ptr()) };
    }
}

impl<B: ?Sized + Counted> Deref for TaskRc<B> {
    type Target = B;

    #[inline(always)]
    fn deref(&self) -> &B {
        // SAFETY: the box is alive while this handle exists (invariants).
        #[allow(unsafe_code)]
        unsafe {
            self.ptr.as_ref()
        }
    }
}

impl<B: ?Sized + Counted> Clone for TaskRc<B> {
    #[inline(always)]
    fn clone(&self) -> TaskRc<B> {
        let refs = self.refs();
        let n = refs.get();
        if n == u32::MAX {
            // Only `mem::forget` in a loop gets here; a wrapped count would
            // free a box still in use, so stop as `Rc` does.
            std::process::abort();
        }
        refs.set(n + 1);
        TaskRc {
            ptr: self.ptr,
            _owns: PhantomData,
        }
    }
}

impl<B: ?Sized + Counted> Drop for TaskRc<B> {
    #[inline(always)]
    fn drop(&mut self) {
        let refs = self.refs();
        let n = refs.get() - 1;
        refs.set(n);
        if n == 0 {
            // SAFETY: the count reached zero: this was the last handle.
            #[allow(unsafe_code)]
            unsafe {
                self.drop_slow()
            }
        }
    }
}

impl<B: ?Sized + Counted> std::fmt::Debug for TaskRc<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskRc({:p})", self.ptr)
    }
}

// ---------------------------------------------------------------------------
// The free lists
// ---------------------------------------------------------------------------

/// Blocks are whole cache lines.
const LINE: usize = 64;
/// Size classes: 1 to 16 lines (boxes up to 1 KiB; larger ones, from
/// closures that capture more, go to the allocator each time).
const CLASSES: usize = 16;
/// At most this many bytes of free blocks are kept per class while the
/// kernel is busy (a batch of 10 000 tasks of 5 lines is 3.2 MB).
const KEEP_BUSY: usize = 4 << 20;

/// The bytes of free blocks kept per class: [`KEEP_BUSY`], or none when the
/// environment sets `CURIO_TASK_BOX_CACHE=0`, so that memory checkers
/// (valgrind's memcheck in `.ci/valgrind`) see every box freed and catch any
/// use after it.
fn keep_bytes() -> usize {
    static KEEP: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *KEEP.get_or_init(|| match std::env::var_os("CURIO_TASK_BOX_CACHE") {
        Some(v) if v == "0" => 0,
        _ => KEEP_BUSY,
    })
}
/// What [`trim`] leaves in each class when the kernel goes idle.
const KEEP_IDLE: u32 = 64;

/// The size class of a box of `layout`, if it has one.
#[inline(always)]
fn class_of(layout: Layout) -> Option<usize> {
    let class = layout.size().div_ceil(LINE).wrapping_sub(1);
    (class < CLASSES && layout.align() <= LINE).then_some(class)
}

/// The layout of every block of `class`.
#[inline(always)]
fn class_layout(class: usize) -> Layout {
    // LINE is a power of two and (class + 1) * LINE is far below isize::MAX.
    Layout::from_size_align((class + 1) * LINE, LINE).expect("a valid block layout")
}

/// One thread's free blocks, a list per class.
struct FreeLists {
    heads: [Cell<*mut u8>; CLASSES],
    counts: [Cell<u32>; CLASSES],
}

/// Where a free block longer than this keeps the next one (a shorter block
/// keeps it in its first word).
///
/// Discussion: a task box's first line is the task's identity and its
/// waits, which dropping the box does not read (`record.rs`); its second
/// line starts with the handle count, which the drop has just brought into
/// cache. Linking a freed box there writes a line already in cache, not a
/// cold one.
pub(crate) const LINK_AT: usize = LINE;

/// The word of a free block of `class` that holds the next free block.
#[inline(always)]
fn link(block: NonNull<u8>, class: usize) -> *mut *mut u8 {
    let offset = if (class + 1) * LINE > LINK_AT {
        LINK_AT
    } else {
        0
    };
    // A block longer than LINK_AT has the word at LINK_AT inside it, and
    // LINE-aligned plus LINK_AT is word-aligned.
    block.as_ptr().wrapping_add(offset).cast()
}

impl FreeLists {
    /// Takes the most recently freed block of `class`.
    #[inline(always)]
    fn pop(&self, class: usize) -> Option<NonNull<u8>> {
        let head = NonNull::new(self.heads[class].get())?;
        // SAFETY: a listed block is free and holds the next one at its link
        // word (invariants, `link`), which lies inside it and is aligned.
        #[allow(unsafe_code)]
        let next = unsafe { link(head, class).read() };
        self.heads[class].set(next);
        self.counts[class].set(self.counts[class].get() - 1);
        Some(head)
    }

    /// Lists `block` (of `class`), unless the class holds enough already.
    #[inline(always)]
    fn push(&self, class: usize, block: NonNull<u8>) -> bool {
        let count = self.counts[class].get();
        if (count as usize + 1) * (class + 1) * LINE > keep_bytes() {
            return false;
        }
        // SAFETY: the block is free and of this class's layout: its link
        // word (`link`), inside it and aligned, is ours to write.
        #[allow(unsafe_code)]
        unsafe {
            link(block, class).write(self.heads[class].get());
        }
        self.heads[class].set(block.as_ptr());
        self.counts[class].set(count + 1);
        true
    }

    /// Gives all but `keep` blocks of every class back to the allocator.
    fn trim(&self, keep: u32) {
        for class in 0..CLASSES {
            while self.counts[class].get() > keep {
                let block = self.pop(class).expect("the count matches the list");
                // SAFETY: the block was allocated with this layout and is
                // free (just taken off its list).
                #[allow(unsafe_code)]
                unsafe {
                    alloc::dealloc(block.as_ptr(), class_layout(class));
                }
            }
        }
    }
}

impl Drop for FreeLists {
    fn drop(&mut self) {
        self.trim(0);
    }
}

thread_local! {
    static FREE: FreeLists = const {
        FreeLists {
            heads: [const { Cell::new(ptr::null_mut()) }; CLASSES],
            counts: [const { Cell::new(0) }; CLASSES],
        }
    };
}

/// A block for a box of `layout`: a free one of its class if there is one.
#[inline(always)]
fn alloc_block(layout: Layout) -> NonNull<u8> {
    let (layout, class) = match class_of(layout) {
        Some(c) => (class_layout(c), Some(c)),
        None => (layout, None),
    };
    if let Some(c) = class
        && let Ok(Some(block)) = FREE.try_with(|f| f.pop(c))
    {
        return block;
    }
    // SAFETY: the layout is not zero-sized (a box holds a task record).
    #[allow(unsafe_code)]
    let p = unsafe { alloc::alloc(layout) };
    NonNull::new(p).unwrap_or_else(|| alloc::handle_alloc_error(layout))
}

/// Gives back the block of a dropped box of `layout`.
#[inline(always)]
fn free_block(block: NonNull<u8>, layout: Layout) {
    let layout = match class_of(layout) {
        Some(c) => {
            if FREE.try_with(|f| f.push(c, block)) == Ok(true) {
                return;
            }
            class_layout(c)
        }
        None => layout,
    };
    // SAFETY: `alloc_block` allocated the block with this layout (its
    // class's, or its own when it has no class), and the box is dropped.
    #[allow(unsafe_code)]
    unsafe {
        alloc::dealloc(block.as_ptr(), layout);
    }
}

/// The kernel is going idle: keep a few free boxes of each size warm and
/// give the rest of this thread's back to the allocator.
pub(crate) fn trim() {
    let _ = FREE.try_with(|f| f.trim(KEEP_IDLE));
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Probe {
        refs: Cell<u32>,
        dropped: std::rc::Rc<Cell<u32>>,
        _pad: [u64; 20],
    }

    // SAFETY: `refs` is the probe's own count, written only by TaskRc.
    #[allow(unsafe_code)]
    unsafe impl Counted for Probe {
        fn refs(&self) -> &Cell<u32> {
            &self.refs
        }
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            self.dropped.set(self.dropped.get() + 1);
        }
    }

    fn probe(dropped: &std::rc::Rc<Cell<u32>>) -> Probe {
        Probe {
            refs: Cell::new(1),
            dropped: dropped.clone(),
            _pad: [0; 20],
        }
    }

    #[test]
    fn the_last_handle_drops_the_box_once() {
        let dropped = std::rc::Rc::new(Cell::new(0));
        let a = TaskRc::new_with(|| probe(&dropped));
        let b = a.clone();
        assert_eq!(a.refs().get(), 2);
        drop(a);
        assert_eq!(dropped.get(), 0);
        drop(b);
        assert_eq!(dropped.get(), 1);
    }

    #[test]
    fn a_freed_block_is_the_next_one_taken() {
        let dropped = std::rc::Rc::new(Cell::new(0));
        let a = TaskRc::new_with(|| probe(&dropped));
        let first = a.ptr.as_ptr() as usize;
        assert_eq!(first % LINE, 0, "blocks are line-aligned");
        drop(a);
        let b = TaskRc::new_with(|| probe(&dropped));
        let class = class_of(Layout::new::<Probe>()).expect("a small box has a class");
        if keep_bytes() == 0 {
            // CURIO_TASK_BOX_CACHE=0 (as under valgrind): nothing is kept.
            assert_eq!(FREE.with(|f| f.counts[class].get()), 0);
        } else {
            assert_eq!(b.ptr.as_ptr() as usize, first);
        }
    }

    #[test]
    fn trim_keeps_a_few_and_frees_the_rest() {
        let dropped = std::rc::Rc::new(Cell::new(0));
        let boxes: Vec<_> = (0..200)
            .map(|_| TaskRc::new_with(|| probe(&dropped)))
            .collect();
        drop(boxes);
        let class = class_of(Layout::new::<Probe>()).expect("a small box has a class");
        let kept = if keep_bytes() == 0 { 0 } else { 200 };
        assert!(FREE.with(|f| f.counts[class].get()) >= kept);
        trim();
        assert_eq!(FREE.with(|f| f.counts[class].get()), KEEP_IDLE.min(kept));
        assert_eq!(dropped.get(), 200);
    }

    #[test]
    fn a_panicking_drop_still_frees_the_block() {
        struct Bad(Cell<u32>);
        // SAFETY: as for Probe.
        #[allow(unsafe_code)]
        unsafe impl Counted for Bad {
            fn refs(&self) -> &Cell<u32> {
                &self.0
            }
        }
        impl Drop for Bad {
            fn drop(&mut self) {
                panic!("boom");
            }
        }
        let class = class_of(Layout::new::<Bad>()).expect("a class");
        trim();
        let before = FREE.with(|f| f.counts[class].get());
        let r = std::panic::catch_unwind(|| drop(TaskRc::new_with(|| Bad(Cell::new(1)))));
        assert!(r.is_err());
        let kept = u32::from(keep_bytes() > 0);
        assert_eq!(FREE.with(|f| f.counts[class].get()), before + kept);
    }

    /// A batch of tasks leaves its boxes on the free list for the next batch;
    /// once the kernel goes idle, all but a few go back to the allocator.
    #[test]
    fn a_kernel_going_idle_trims_the_boxes_of_a_batch() {
        let total = || FREE.with(|f| f.counts.iter().map(Cell::get).sum::<u32>());
        let (busy, idle) = crate::kernel::Kernel::builder()
            .virtual_clock(true)
            .build()
            .run(move || {
                let kids: Vec<_> = (0..2000u64).map(|i| crate::spawn(move || i)).collect();
                for (i, kid) in kids.into_iter().enumerate() {
                    assert_eq!(kid.join().unwrap(), i as u64);
                }
                let busy = total();
                crate::sleep(std::time::Duration::from_secs(1)).unwrap(); // idle
                (busy, total())
            })
            .unwrap();
        if keep_bytes() == 0 {
            assert_eq!((busy, idle), (0, 0));
        } else {
            assert!(
                busy >= 2000,
                "the batch's boxes are kept while busy: {busy}"
            );
            assert!(
                idle <= KEEP_IDLE * CLASSES as u32,
                "trimmed when idle: {idle}"
            );
        }
    }

    #[test]
    fn big_and_overaligned_boxes_bypass_the_lists() {
        assert_eq!(class_of(Layout::from_size_align(2048, 8).unwrap()), None);
        assert_eq!(class_of(Layout::from_size_align(64, 128).unwrap()), None);
        assert_eq!(class_of(Layout::from_size_align(65, 8).unwrap()), Some(1));
        assert_eq!(class_of(Layout::from_size_align(64, 8).unwrap()), Some(0));
    }
}

//! A task's cancellation and timeout state, and Curio's rules for it, as one
//! small pure type: the pending error, the mask, the stack of open timeout
//! blocks and the deadline armed among them.
//!
//! The kernel keeps one per task that needs one (in the cold part of its
//! record, made when the task is first cancelled, masked or opens a timeout
//! block; a task without one has nothing pending, is unmasked and has no
//! block open) and drives it; this type
//! decides, the kernel acts: it says when a heap entry must be pushed, when a
//! timeout fires at once, and when an error is to be raised in a parked task
//! rather than left pending. It knows nothing of clocks, heaps or tasks, so
//! every rule is unit-tested below on plain numbers.
//!
//! # Invariants
//!
//! - `pending` holds at most one error, delivered once, at the first cancel
//!   point outside every masked block. A pending cancellation outranks a
//!   pending timeout.
//! - `stack` holds the deadline of every open timeout block, outermost first
//!   ([`NO_DEADLINE`] for a block without one); `armed` is the earliest
//!   deadline of a block still allowed to fire, or `None`.
//! - Blocks that were open when the task was cancelled (`cancel_depth`) never
//!   arm again: cleanup is not hit by them (semantics.md).
//!
//! # Example
//!
//! ```text
//! let d = Deadlines::new();
//! let (outer, push) = d.enter_block(Some(10), 0); // push == Arm::Entry(10)
//! let (inner, push) = d.enter_block(Some(20), 0); // later: nothing armed
//! assert_eq!(d.exit_block(inner, 5), Arm::Nothing); // 10 stays armed
//! assert!(d.expire(10));                          // the kernel delivers it
//! ```

use std::cell::{Cell, OnceCell, RefCell};

use crate::error::{Error, ErrorKind};

/// A block's deadline when it has none of its own (`timeout_after(None, …)`).
pub(crate) const NO_DEADLINE: u64 = u64::MAX;

/// What the kernel must do after a block opens or closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arm {
    /// Nothing.
    Nothing,
    /// A deadline in the future is armed: push a timer entry for it.
    Entry(u64),
    /// The armed deadline has already passed: deliver a timeout now (it
    /// becomes pending, to fire at the next cancel point).
    FireNow,
}

/// What [`Deadlines::enter_block`] hands back, for [`Deadlines::exit_block`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    /// The deadline armed before this block.
    prev: Option<u64>,
    /// This block's deadline pushed a timer entry.
    pushed: bool,
}

impl Block {
    /// True if this block's deadline pushed a timer entry, which is stale once
    /// the block has ended (unless it fired).
    #[inline]
    pub(crate) fn pushed_entry(self) -> bool {
        self.pushed
    }
}

/// One task's cancellation and timeout state (see the module docs).
///
/// Interior mutability (`Cell`s, the stack in a `RefCell`), so the kernel can
/// drive it through a shared reference to the task's record; no method calls
/// out or holds a borrow past its return. The cancel point, on every switch,
/// is two cell reads, as it was before this type existed.
pub(crate) struct Deadlines {
    pending: Cell<Option<Error>>,
    mask: Cell<u32>,
    /// The armed deadline; [`NOT_ARMED`] when none.
    armed: Cell<u64>,
    /// The open timeout blocks, made on the first block the task opens (most
    /// tasks open none, and every task carries this).
    blocks: OnceCell<Box<RefCell<Blocks>>>,
}

/// The timeout blocks a task has open.
#[derive(Default)]
struct Blocks {
    /// Their deadlines, outermost first.
    stack: Vec<u64>,
    /// How many were open when the task was cancelled: they never arm again.
    cancel_depth: usize,
}

/// `armed` when no deadline is armed. Never a real deadline: blocks with no
/// deadline of their own ([`NO_DEADLINE`]) never arm.
const NOT_ARMED: u64 = u64::MAX;

impl Default for Deadlines {
    /// Nothing pending, unmasked, nothing armed (not a derived default:
    /// `armed` is [`NOT_ARMED`] when nothing is, not 0).
    fn default() -> Deadlines {
        Deadlines::new()
    }
}

impl Deadlines {
    pub(crate) const fn new() -> Deadlines {
        Deadlines {
            pending: Cell::new(None),
            mask: Cell::new(0),
            armed: Cell::new(NOT_ARMED),
            blocks: OnceCell::new(),
        }
    }

    #[inline]
    fn armed_get(&self) -> Option<u64> {
        let a = self.armed.get();
        (a != NOT_ARMED).then_some(a)
    }

    #[inline]
    fn armed_set(&self, d: Option<u64>) {
        self.armed.set(d.unwrap_or(NOT_ARMED));
    }

    /// The open blocks (made on first use).
    fn blocks(&self) -> &RefCell<Blocks> {
        self.blocks.get_or_init(Box::default)
    }

    // ----- delivery --------------------------------------------------------

    /// A cancel point: the pending error, if delivery is allowed (unmasked).
    #[inline]
    pub(crate) fn cancel_point(&self) -> Result<(), Error> {
        if self.mask.get() == 0 {
            if let Some(e) = self.pending.take() {
                return Err(e);
            }
        }
        Ok(())
    }

    /// `check_cancellation`: outside a masked block, a cancel point; inside,
    /// a copy of the pending error, which stays pending.
    #[inline]
    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.mask.get() == 0 {
            return self.cancel_point();
        }
        match self.pending.take() {
            Some(e) => {
                let copy = e.clone_cancellation();
                self.pending.set(Some(e));
                Err(copy)
            }
            None => Ok(()),
        }
    }

    /// Offers `err` to the task. Returns it back if it must be raised now in
    /// the parked task (`parked`, and not masked): the kernel then ends the
    /// wait with it. Otherwise it becomes pending; a pending cancellation
    /// outranks a timeout.
    #[inline]
    pub(crate) fn offer(&self, err: Error, parked: bool) -> Option<Error> {
        if parked && self.mask.get() == 0 {
            return Some(err);
        }
        let new = match self.pending.take() {
            Some(old) if old.is_cancelled() => old,
            _ => err,
        };
        self.pending.set(Some(new));
        None
    }

    /// Replaces the pending error (Curio's `set_cancellation`); returns the
    /// one it replaces. It fires at the next cancel point outside masking.
    #[inline]
    pub(crate) fn replace_pending(&self, err: Option<Error>) -> Option<Error> {
        self.pending.replace(err)
    }

    /// Takes the pending error if `matches` accepts it (Curio's
    /// `check_cancellation(exc_type)`), masked or not; leaves any other.
    #[inline]
    pub(crate) fn take_pending_if(&self, matches: impl FnOnce(&Error) -> bool) -> Option<Error> {
        match self.pending.take() {
            Some(e) if matches(&e) => Some(e),
            other => {
                self.pending.set(other);
                None
            }
        }
    }

    /// True if an error is pending.
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        let p = self.pending.take();
        let has = p.is_some();
        self.pending.set(p);
        has
    }

    /// Forgets the armed deadline (the task has ended).
    #[inline]
    pub(crate) fn disarm(&self) {
        self.armed_set(None);
    }

    // ----- masking -----------------------------------------------------------

    /// Enters a `disable_cancellation` block.
    #[inline]
    pub(crate) fn mask(&self) {
        self.mask.set(self.mask.get() + 1);
    }

    /// Leaves a `disable_cancellation` block.
    #[inline]
    pub(crate) fn unmask(&self) {
        self.mask.set(self.mask.get().saturating_sub(1));
    }

    // ----- cancellation ----------------------------------------------------------

    /// A cancellation was requested: the blocks open now never arm again, and
    /// the armed deadline is cleared. (The caller then offers the error.)
    #[inline]
    pub(crate) fn cancel(&self) {
        if let Some(b) = self.blocks.get() {
            let mut b = b.borrow_mut();
            b.cancel_depth = b.stack.len();
        }
        self.armed_set(None);
    }

    // ----- timeout blocks --------------------------------------------------------

    /// Opens a timeout block with `deadline` at kernel time `now` (Curio's
    /// `_set_timeout`): arms it if it is earlier than the armed one.
    #[inline]
    pub(crate) fn enter_block(&self, deadline: Option<u64>, now: u64) -> (Block, Arm) {
        self.blocks()
            .borrow_mut()
            .stack
            .push(deadline.unwrap_or(NO_DEADLINE));
        let prev = self.armed_get();
        let mut arm = Arm::Nothing;
        if let Some(d) = deadline {
            if prev.is_none_or(|p| d < p) {
                arm = self.arm(d, now);
            }
        }
        let pushed = matches!(arm, Arm::Entry(_));
        (Block { prev, pushed }, arm)
    }

    fn arm(&self, d: u64, now: u64) -> Arm {
        self.armed_set(Some(d));
        if d <= now {
            Arm::FireNow
        } else {
            Arm::Entry(d)
        }
    }

    /// Closes the innermost block at kernel time `now` (Curio's
    /// `_unset_timeout`) and returns the deadline stack as it was while the
    /// block was open (for [`classify`]).
    ///
    /// The previous deadline is restored: if it has passed, it fires again at
    /// the next cancel point; otherwise a timeout still pending from this
    /// block is dropped. A block already open when the task was cancelled
    /// restores nothing.
    ///
    /// Discussion: a restored future deadline needs no new timer entry. It was
    /// pushed when its own block armed it, and entries for deadlines still on
    /// the stack stay live ([`Deadlines::is_live`]).
    #[inline]
    pub(crate) fn exit_block(&self, block: Block, now: u64) -> (Arm, Vec<u64>) {
        let blocks = self.blocks();
        let stack = blocks.borrow().stack.clone();
        let depth = stack.len();
        let cancel_depth = blocks.borrow().cancel_depth;
        let arm = if depth <= cancel_depth {
            blocks.borrow_mut().cancel_depth = depth.saturating_sub(1);
            self.armed_set(None);
            self.drop_pending_timeout();
            Arm::Nothing
        } else {
            match block.prev {
                Some(p) if p <= now => self.arm(p, now),
                prev => {
                    self.armed_set(prev);
                    self.drop_pending_timeout();
                    Arm::Nothing
                }
            }
        };
        blocks.borrow_mut().stack.pop();
        (arm, stack)
    }

    fn drop_pending_timeout(&self) {
        match self.pending.take() {
            Some(e) if matches!(e.kind(), ErrorKind::Timeout | ErrorKind::TimeoutCancelled) => {}
            other => self.pending.set(other),
        }
    }

    /// Whether a timer entry for `deadline` may still matter: it is armed, or
    /// belongs to a block still open (it may be restored when an inner block
    /// ends).
    #[inline]
    pub(crate) fn is_live(&self, deadline: u64) -> bool {
        self.armed_get() == Some(deadline)
            || self
                .blocks
                .get()
                .is_some_and(|b| b.borrow().stack.contains(&deadline))
    }

    /// A timer entry for `deadline` expired: true (and disarmed) if it is the
    /// armed deadline, so the kernel must deliver a timeout.
    #[inline]
    pub(crate) fn expire(&self, deadline: u64) -> bool {
        if self.armed_get() == Some(deadline) {
            self.armed_set(None);
            return true;
        }
        false
    }

    /// The armed deadline, if any (tests; the monitor's `ps`).
    #[inline]
    pub(crate) fn armed(&self) -> Option<u64> {
        self.armed_get()
    }
}

impl std::fmt::Debug for Deadlines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deadlines")
            .field("mask", &self.mask.get())
            .field("armed", &self.armed_get())
            .field(
                "stack",
                &self.blocks.get().map(|b| b.borrow().stack.clone()),
            )
            .field("pending", &self.has_pending())
            .finish()
    }
}

/// How a timeout block reports a timeout error that carries kernel clock
/// `clock`, given the deadline stack while it was open (its own deadline
/// last): Curio 1.x, `curio-reference.md` §4.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// An outer block's deadline expired: `TimeoutCancelled`.
    Outer,
    /// This block's own deadline expired: `Timeout` (`ignore_*`: no value).
    Own,
    /// No deadline at or before the clock: an inner timeout leaked out of its
    /// block: `UncaughtTimeout`.
    Uncaught,
}

/// Finds the **outermost** deadline `<= clock` on `stack` (see [`Verdict`]).
pub(crate) fn classify(stack: &[u64], clock: u64) -> Verdict {
    let mine = stack.len().saturating_sub(1);
    match stack.iter().position(|&d| d <= clock) {
        None => Verdict::Uncaught,
        Some(n) if n < mine => Verdict::Outer,
        Some(_) => Verdict::Own,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout() -> Error {
        Error::new(ErrorKind::Timeout, "")
    }

    #[test]
    fn a_pending_error_is_delivered_once_and_only_unmasked() {
        let d = Deadlines::new();
        d.mask();
        assert!(
            d.offer(Error::cancelled(), true).is_none(),
            "masked: pending"
        );
        assert!(d.cancel_point().is_ok());
        assert!(d.check().unwrap_err().is_cancelled(), "check peeks");
        assert!(d.has_pending());
        d.unmask();
        assert!(d.cancel_point().unwrap_err().is_cancelled());
        assert!(d.cancel_point().is_ok(), "once");
    }

    #[test]
    fn the_pending_error_can_be_replaced_or_taken_by_kind() {
        let d = Deadlines::new();
        d.offer(timeout(), false);
        assert!(
            d.take_pending_if(|e| e.is_cancelled()).is_none(),
            "another kind stays"
        );
        assert!(d.has_pending());
        let old = d.replace_pending(Some(Error::cancelled())).unwrap();
        assert!(old.is_timeout());
        d.mask();
        assert!(
            d.take_pending_if(|e| e.is_cancelled())
                .unwrap()
                .is_cancelled(),
            "masked too"
        );
        assert!(!d.has_pending());
        assert!(d.replace_pending(None).is_none());
    }

    #[test]
    fn a_parked_unmasked_task_gets_the_error_at_once() {
        let d = Deadlines::new();
        assert!(d.offer(timeout(), true).is_some());
        assert!(!d.has_pending());
        assert!(d.offer(timeout(), false).is_none());
        assert!(d.has_pending());
    }

    #[test]
    fn a_pending_cancellation_outranks_a_timeout() {
        let d = Deadlines::new();
        d.offer(Error::cancelled(), false);
        d.offer(timeout(), false);
        assert!(d.cancel_point().unwrap_err().is_cancelled());
        d.offer(timeout(), false);
        d.offer(Error::cancelled(), false);
        assert!(d.cancel_point().unwrap_err().is_cancelled());
    }

    #[test]
    fn the_earliest_open_deadline_is_armed_and_restored() {
        let d = Deadlines::new();
        let (outer, a) = d.enter_block(Some(10), 0);
        assert_eq!(a, Arm::Entry(10));
        let (inner, a) = d.enter_block(Some(20), 0);
        assert_eq!(a, Arm::Nothing, "a later deadline is not armed");
        assert!(!inner.pushed_entry());
        let (innermost, a) = d.enter_block(Some(5), 0);
        assert_eq!(a, Arm::Entry(5));
        assert_eq!(d.armed(), Some(5));
        assert!(d.is_live(10) && d.is_live(20) && d.is_live(5));
        let (a, stack) = d.exit_block(innermost, 1);
        assert_eq!((a, stack), (Arm::Nothing, vec![10, 20, 5]));
        assert_eq!(d.armed(), Some(10), "the outer deadline is armed again");
        assert!(!d.is_live(5));
        d.exit_block(inner, 1);
        d.exit_block(outer, 1);
        assert_eq!(d.armed(), None);
    }

    #[test]
    fn a_passed_deadline_fires_at_once_and_again_after_an_inner_block() {
        let d = Deadlines::new();
        let (_, a) = d.enter_block(Some(3), 5);
        assert_eq!(a, Arm::FireNow);
        let (inner, _) = d.enter_block(Some(100), 5);
        // The inner block swallowed the outer timeout: it re-fires.
        assert_eq!(d.exit_block(inner, 6).0, Arm::FireNow);
    }

    #[test]
    fn a_pending_timeout_from_a_block_is_dropped_when_it_ends_in_time() {
        let d = Deadlines::new();
        let (b, _) = d.enter_block(Some(10), 0);
        assert!(d.expire(10));
        d.offer(timeout(), false); // fired while the task was running
        d.exit_block(b, 11);
        assert!(d.cancel_point().is_ok(), "dropped at the block's end");
    }

    #[test]
    fn blocks_open_at_cancellation_never_arm_again() {
        let d = Deadlines::new();
        let (outer, _) = d.enter_block(Some(10), 0);
        let (inner, _) = d.enter_block(Some(5), 0);
        d.cancel();
        assert_eq!(d.armed(), None);
        assert_eq!(d.exit_block(inner, 20).0, Arm::Nothing);
        assert_eq!(
            d.armed(),
            None,
            "the outer deadline stays off during cleanup"
        );
        // A block opened during cleanup works as usual.
        let (cleanup, a) = d.enter_block(Some(30), 20);
        assert_eq!(a, Arm::Entry(30));
        d.exit_block(cleanup, 21);
        d.exit_block(outer, 22);
        assert_eq!(d.armed(), None);
    }

    #[test]
    fn only_the_armed_deadline_expires() {
        let d = Deadlines::new();
        let (_b, _) = d.enter_block(Some(10), 0);
        assert!(!d.expire(9));
        assert!(d.expire(10));
        assert!(!d.expire(10), "once");
        assert!(d.is_live(10), "the block is still open");
    }

    #[test]
    fn a_timeout_is_reported_by_the_outermost_expired_block() {
        assert_eq!(classify(&[10, 20, 30], 35), Verdict::Outer);
        assert_eq!(classify(&[40, 20, 30], 35), Verdict::Outer);
        assert_eq!(classify(&[40, 50, 30], 35), Verdict::Own);
        assert_eq!(classify(&[40, 50, 60], 35), Verdict::Uncaught);
        assert_eq!(classify(&[NO_DEADLINE, 30], 35), Verdict::Own);
    }
}

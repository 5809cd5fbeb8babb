//! Re-entering a shard's loop from deep inside a handler call.
//!
//! Long work run on a shard's thread (a Lua script, say) holds the `&mut Ctx` its
//! handler was given far up the stack, out of reach of the code that notices the work is
//! long (an interpreter hook). [`scope`] makes one target reachable from anywhere below
//! it on the same thread, for the length of one call, and [`poke`] serves it: the scoped
//! thread-local borrow pattern, with the borrow checker's guarantee carried over by hand.

use std::cell::Cell;
use std::ptr::NonNull;

/// What [`poke`] reaches: the target, erased, and the function that serves it.
#[derive(Clone, Copy)]
struct Entry {
    target: NonNull<()>,
    serve: fn(NonNull<()>) -> bool,
}

thread_local! {
    static CURRENT: Cell<Option<Entry>> = const { Cell::new(None) };
}

/// Something [`poke`] can serve.
pub(crate) trait Serve {
    /// Serve what is pending; whether anything was.
    fn serve(&mut self) -> bool;
}

fn serve_erased<T: Serve>(target: NonNull<()>) -> bool {
    // SAFETY: `target` was made in `scope` from a `&mut T` that is exclusively borrowed
    // for the whole of that `scope` call, so the `T` is alive; this runs only inside
    // that call and on its thread (the entry is thread-local and removed before `scope`
    // returns, even by unwinding), and `work` cannot hold another reference to the `T`
    // because `scope` borrows it mutably. `poke` takes the entry out while serving, so
    // this `&mut` is never made twice at once.
    let t = unsafe { &mut *target.cast::<T>().as_ptr() };
    t.serve()
}

/// Restores the outer entry when `scope` ends, however it ends.
struct Restore(Option<Entry>);

impl Drop for Restore {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

/// Run `work` with `target` reachable by [`poke`] on this thread.
pub(crate) fn scope<T: Serve, R>(target: &mut T, work: impl FnOnce() -> R) -> R {
    let entry = Entry {
        target: NonNull::from(target).cast(),
        serve: serve_erased::<T>,
    };
    let _restore = Restore(CURRENT.with(|c| c.replace(Some(entry))));
    work()
}

/// Serve the innermost [`scope`]'s target on this thread, if there is one and it is not
/// already being served. Whether anything was served.
pub(crate) fn poke() -> bool {
    let Some(entry) = CURRENT.with(|c| c.take()) else {
        return false;
    };
    let _restore = Restore(Some(entry));
    (entry.serve)(entry.target)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(u32);

    impl Serve for Counter {
        fn serve(&mut self) -> bool {
            self.0 += 1;
            // Re-entrant pokes find nothing: the entry is out while it is served.
            assert!(!poke());
            true
        }
    }

    #[test]
    fn poke_reaches_the_innermost_scope_only_while_it_runs() {
        assert!(!poke());
        let mut outer = Counter(0);
        let mut inner = Counter(0);
        scope(&mut outer, || {
            assert!(poke());
            scope(&mut inner, || {
                assert!(poke());
                assert!(poke());
            });
            assert!(poke());
        });
        assert!(!poke());
        assert_eq!((outer.0, inner.0), (2, 2));
    }

    #[test]
    fn a_panic_inside_the_scope_removes_it() {
        let mut c = Counter(0);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            scope(&mut c, || panic!("boom"))
        }));
        assert!(r.is_err());
        assert!(!poke());
    }
}

//! Per-worker deadline heap.
//!
//! Timers are cancelled lazily: cancelling removes the payload from `live`,
//! and the stale heap entry is discarded when it reaches the top. Arming and
//! cancelling are therefore `O(log n)` and `O(1)`, which matters because the
//! HTTP layer re-arms a keep-alive or header timer on every request.
//!
//! The live set is keyed by the worker's own sequential ids, so it is hashed
//! with `foldhash` rather than std's SipHash: the worker looks up the
//! heap's top once per loop iteration, and SipHash made that lookup a few
//! hundred instructions (its DoS resistance buys nothing for keys the
//! worker makes itself).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use foldhash::fast::FixedState;

/// Identifies an armed timer on one worker; returned by
/// [`Context::set_timer`](crate::Context::set_timer) and used to cancel it.
/// Never zero, so that an `Option<TimerId>` (one per connection and
/// purpose) takes no more room than the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(NonZeroU64);

#[derive(Debug)]
pub(crate) struct Timers<T> {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    live: HashMap<u64, T, FixedState>,
    next_id: u64,
    /// The heap's top entry is known to be live: the loop asks for the
    /// next timeout every iteration, mostly with the same top, so the
    /// lookup in `live` is done once per top rather than per iteration.
    top_live: bool,
    /// A poll timeout that stays valid for the current top while `now` is
    /// before the instant given with it: computed together with an exact
    /// timeout, it is that timeout less a slack at least as long as its
    /// validity, so it never outlasts the deadline. It saves the clock
    /// arithmetic of most iterations; an iteration that used it may wake
    /// up to the slack early, and then computes the exact timeout.
    reuse: Option<(Instant, Duration)>,
    /// [`Timers::pop_expired`] found its `now` before the end of `reuse`,
    /// so the [`Timers::next_timeout`] that follows with the same `now`
    /// reuses it without comparing again.
    reuse_confirmed: bool,
}

/// The longest slack of a reusable timeout (see [`Timers::next_timeout`]).
const MAX_SLACK: Duration = Duration::from_secs(1);

impl<T> Timers<T> {
    pub(crate) fn new() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            live: HashMap::with_hasher(FixedState::default()),
            next_id: 1,
            top_live: false,
            reuse: None,
            reuse_confirmed: false,
        }
    }

    pub(crate) fn insert(&mut self, deadline: Instant, payload: T) -> TimerId {
        let id = NonZeroU64::new(self.next_id).expect("timer ids start at 1 and never wrap");
        self.next_id += 1;
        // The top stays live: it is either the old, checked top or this
        // new entry, which may come sooner.
        self.reuse = None;
        self.heap.push(Reverse((deadline, id.get())));
        self.live.insert(id.get(), payload);
        TimerId(id)
    }

    pub(crate) fn cancel(&mut self, id: TimerId) -> Option<T> {
        let payload = self.live.remove(&id.0.get());
        if payload.is_some() {
            // It may have been the top.
            self.top_live = false;
            self.reuse = None;
        }
        if self.live.is_empty() {
            // Nothing armed: drop the stale entries at once instead of letting
            // them wake the worker for nothing.
            self.heap.clear();
        }
        payload
    }

    /// Drops cancelled entries from the top of the heap.
    fn prune(&mut self) {
        if self.top_live {
            return;
        }
        while let Some(Reverse((_, id))) = self.heap.peek() {
            if self.live.contains_key(id) {
                self.top_live = true;
                break;
            }
            self.heap.pop();
        }
    }

    /// How long the poll may sleep before the earliest live deadline: the
    /// time left until it, or less (never more) while a timeout computed
    /// for the same top at most a slack ago is reused.
    ///
    /// `now` is the one last given to [`Timers::pop_expired`], if that was
    /// called since the previous call of this.
    pub(crate) fn next_timeout(&mut self, now: Instant) -> Option<Duration> {
        let confirmed = std::mem::replace(&mut self.reuse_confirmed, false);
        if let Some((until, timeout)) = self.reuse {
            if confirmed || now < until {
                return Some(timeout);
            }
        }
        self.prune();
        let Reverse((deadline, _)) = *self.heap.peek()?;
        let left = deadline.saturating_duration_since(now);
        // Until `now + slack`, at least `left - slack` is still left; and
        // `now + slack` comes before the deadline, unless that has passed.
        self.reuse = (!left.is_zero()).then(|| {
            let slack = (left / 2).min(MAX_SLACK);
            (now + slack, left - slack)
        });
        Some(left)
    }

    /// Removes and returns the earliest timer whose deadline is `<= now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<T> {
        if let Some((until, _)) = self.reuse {
            // The top is live and its deadline comes after `until`.
            if now < until {
                self.reuse_confirmed = true;
                return None;
            }
        }
        loop {
            let Reverse((deadline, id)) = *self.heap.peek()?;
            if deadline > now {
                return None;
            }
            self.heap.pop();
            self.top_live = false;
            self.reuse = None;
            if let Some(payload) = self.live.remove(&id) {
                return Some(payload);
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_optional_timer_id_costs_no_more_than_the_id() {
        // Each connection keeps three `Option<TimerId>`s.
        assert_eq!(
            std::mem::size_of::<Option<TimerId>>(),
            std::mem::size_of::<u64>()
        );
    }

    #[test]
    fn expire_in_deadline_order_not_insertion_order() {
        let mut timers = Timers::new();
        let t0 = Instant::now();
        timers.insert(t0 + Duration::from_millis(30), "c");
        timers.insert(t0 + Duration::from_millis(10), "a");
        timers.insert(t0 + Duration::from_millis(20), "b");
        assert_eq!(
            timers.next_timeout(t0),
            Some(Duration::from_millis(10)),
            "poll timeout follows the earliest deadline"
        );
        assert_eq!(timers.pop_expired(t0 + Duration::from_millis(5)), None);
        let later = t0 + Duration::from_millis(40);
        let fired: Vec<_> = std::iter::from_fn(|| timers.pop_expired(later)).collect();
        assert_eq!(fired, ["a", "b", "c"]);
        assert_eq!(timers.next_timeout(later), None);
    }

    #[test]
    fn cancelled_timers_never_fire_nor_shorten_the_timeout() {
        let mut timers = Timers::new();
        let t0 = Instant::now();
        let early = timers.insert(t0 + Duration::from_millis(1), 1);
        timers.insert(t0 + Duration::from_millis(50), 2);
        assert_eq!(timers.cancel(early), Some(1));
        assert_eq!(timers.cancel(early), None, "cancel is idempotent");
        assert_eq!(timers.next_timeout(t0), Some(Duration::from_millis(50)));
        assert_eq!(timers.pop_expired(t0 + Duration::from_millis(60)), Some(2));
        assert_eq!(timers.len(), 0);
    }

    #[test]
    fn cancelling_the_checked_top_moves_the_timeout_on() {
        let mut timers = Timers::new();
        let t0 = Instant::now();
        let first = timers.insert(t0 + Duration::from_millis(10), 1);
        assert_eq!(timers.next_timeout(t0), Some(Duration::from_millis(10)));
        timers.insert(t0 + Duration::from_millis(30), 3);
        timers.insert(t0 + Duration::from_millis(20), 2);
        assert_eq!(timers.next_timeout(t0), Some(Duration::from_millis(10)));
        assert_eq!(timers.cancel(first), Some(1));
        assert_eq!(timers.next_timeout(t0), Some(Duration::from_millis(20)));
        assert_eq!(timers.pop_expired(t0 + Duration::from_millis(20)), Some(2));
        assert_eq!(timers.next_timeout(t0), Some(Duration::from_millis(30)));
    }

    #[test]
    fn a_reused_timeout_never_outlasts_the_deadline() {
        let mut timers = Timers::new();
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(10);
        timers.insert(deadline, 1);
        assert_eq!(timers.next_timeout(t0), Some(Duration::from_secs(10)));
        for ms in [
            1, 10, 400, 999, 1000, 1001, 5000, 9000, 9999, 10_000, 10_001,
        ] {
            let now = t0 + Duration::from_millis(ms);
            let timeout = timers.next_timeout(now).unwrap();
            assert!(
                now + timeout <= deadline.max(now),
                "{ms} ms in: {timeout:?} outlasts the deadline"
            );
            assert!(
                timeout >= deadline.saturating_duration_since(now) / 2,
                "{ms} ms in: {timeout:?} is needlessly short"
            );
        }
    }

    #[test]
    fn a_sooner_or_cancelled_top_ends_the_reused_timeout() {
        let mut timers = Timers::new();
        let t0 = Instant::now();
        let late = timers.insert(t0 + Duration::from_secs(10), 1);
        assert_eq!(timers.next_timeout(t0), Some(Duration::from_secs(10)));
        let soon = timers.insert(t0 + Duration::from_millis(20), 2);
        let now = t0 + Duration::from_millis(1);
        assert_eq!(timers.next_timeout(now), Some(Duration::from_millis(19)));
        assert_eq!(timers.cancel(soon), Some(2));
        assert_eq!(timers.next_timeout(now), Some(Duration::from_millis(9999)));
        assert_eq!(timers.cancel(late), Some(1));
        assert_eq!(timers.next_timeout(now), None);
        timers.insert(t0 + Duration::from_millis(5), 3);
        assert_eq!(timers.next_timeout(now), Some(Duration::from_millis(4)));
        let later = t0 + Duration::from_millis(6);
        assert_eq!(timers.pop_expired(later), Some(3));
        timers.insert(t0 + Duration::from_secs(20), 4);
        assert_eq!(
            timers.next_timeout(later),
            Some(Duration::from_millis(19_994))
        );
    }

    #[test]
    fn a_confirmed_reuse_serves_one_iteration_only() {
        let ms = Duration::from_millis;
        let mut timers = Timers::new();
        let t0 = Instant::now();
        timers.insert(t0 + ms(10_000), 1);
        assert_eq!(timers.next_timeout(t0), Some(ms(10_000)));
        // Reusable until t0 + 1 s: 9 s.
        let now = t0 + ms(100);
        assert_eq!(timers.pop_expired(now), None);
        assert_eq!(timers.next_timeout(now), Some(ms(9_000)));
        // Confirmed, then a sooner timer: computed anew.
        assert_eq!(timers.pop_expired(now), None);
        timers.insert(t0 + ms(200), 2);
        assert_eq!(timers.next_timeout(now), Some(ms(100)));
        // Reusable until t0 + 150 ms; past that, exact again.
        let later = t0 + ms(160);
        assert_eq!(timers.pop_expired(later), None);
        assert_eq!(timers.next_timeout(later), Some(ms(40)));
        let past = t0 + ms(300);
        assert_eq!(timers.next_timeout(past), Some(Duration::ZERO));
        assert_eq!(timers.pop_expired(past), Some(2));
        assert_eq!(timers.pop_expired(past), None);
        assert_eq!(timers.next_timeout(past), Some(ms(9_700)));
    }
}

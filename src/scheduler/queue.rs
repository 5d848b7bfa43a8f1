//! The scheduling queue (upstream's PriorityQueue): pods waiting for a decision, highest
//! `spec.priority` first and oldest first within a priority.
//!
//! A pod that fits nowhere is parked as *unschedulable* until something that may help
//! happens (a node added or changed, a placed pod gone) — then it goes back after its
//! back-off (1 s doubling to 10 s per failed attempt) — or, failing that, after
//! [`MAX_UNSCHEDULABLE`]. If such a change happened while the pod was being decided, it
//! goes to back-off at once instead of parking, so the change is not missed. A pod is never
//! retried in a tight loop.
//!
//! Time is passed in, so the queue is plain data and tested without a clock.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cache::{PodInfo, PodKey};

/// Back-off after the first failed attempt.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long an unschedulable pod waits for a helpful change before it is retried anyway.
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// In the active queue under this sequence number.
    Active(u64),
    /// Being decided.
    InFlight,
    /// Waiting out its back-off until then.
    Backoff(Instant),
    /// Parked since then.
    Unschedulable(Instant),
}

#[derive(Debug)]
struct Entry {
    pod: Arc<PodInfo>,
    state: State,
    /// Failed attempts so far.
    attempts: u32,
    /// When the last attempt failed.
    failed_at: Option<Instant>,
    /// Its spec or labels changed while it was being decided.
    changed_in_flight: bool,
    /// When it entered the queue (for the time it takes to be scheduled).
    queued: Instant,
}

/// A pod handed out for a decision.
#[derive(Clone, Debug)]
pub struct Popped {
    /// The pod.
    pub pod: Arc<PodInfo>,
    /// The scheduling cycle it was handed out in.
    pub cycle: u64,
    /// When it first entered the queue (a pod whose binding failed: when it re-entered).
    pub queued: Instant,
}

/// The queue.
#[derive(Debug, Default)]
pub struct SchedulingQueue {
    entries: HashMap<PodKey, Entry>,
    active: BTreeSet<(Reverse<i32>, u64, PodKey)>,
    backoff: BTreeSet<(Instant, PodKey)>,
    /// Unschedulable pods by when they were parked (kept ordered so that neither flushing
    /// nor finding the next wake-up walks every pending pod).
    parked: BTreeSet<(Instant, PodKey)>,
    next_seq: u64,
    cycle: u64,
    /// The cycle in which a change last asked for parked pods to be retried.
    moved_in_cycle: u64,
}

impl SchedulingQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pods known to the queue (active, in flight, backing off or parked).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no pod is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Pods ready to be decided now.
    pub fn active_len(&self) -> usize {
        self.active.len()
    }

    /// Whether the pod is parked as unschedulable.
    pub fn is_unschedulable(&self, key: &str) -> bool {
        matches!(
            self.entries.get(key).map(|e| e.state),
            Some(State::Unschedulable(_))
        )
    }

    /// Keys of every pod the queue holds, for reconciling after a re-list.
    pub fn keys(&self) -> Vec<PodKey> {
        self.entries.keys().cloned().collect()
    }

    /// Whether the queue holds the pod in any state.
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    fn push_active(&mut self, key: &PodKey) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        self.next_seq += 1;
        entry.state = State::Active(self.next_seq);
        self.active
            .insert((Reverse(entry.pod.priority), self.next_seq, key.clone()));
    }

    fn backoff_until(entry: &Entry) -> Option<Instant> {
        let failed_at = entry.failed_at?;
        let exp = entry.attempts.saturating_sub(1).min(16);
        let backoff = INITIAL_BACKOFF.saturating_mul(1 << exp).min(MAX_BACKOFF);
        Some(failed_at + backoff)
    }

    /// Take the pod out of whatever sub-queue holds it (it stays known).
    fn unlink(&mut self, key: &str) {
        let Some(entry) = self.entries.get(key) else {
            return;
        };
        match entry.state {
            State::Active(seq) => {
                self.active
                    .remove(&(Reverse(entry.pod.priority), seq, key.to_owned()));
            }
            State::Backoff(until) => {
                self.backoff.remove(&(until, key.to_owned()));
            }
            State::Unschedulable(since) => {
                self.parked.remove(&(since, key.to_owned()));
            }
            State::InFlight => {}
        }
    }

    /// Send a pod to active or to back-off, depending on whether its back-off has passed.
    fn requeue(&mut self, key: &PodKey, now: Instant) {
        self.unlink(key);
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        match Self::backoff_until(entry).filter(|until| *until > now) {
            Some(until) => {
                entry.state = State::Backoff(until);
                self.backoff.insert((until, key.clone()));
            }
            None => self.push_active(key),
        }
    }

    /// A pending pod appeared or changed. A new pod becomes active; a changed pod keeps
    /// its place, except a parked one, which gets another chance (its spec may now fit).
    pub fn add_or_update(&mut self, pod: Arc<PodInfo>, now: Instant) {
        let key = pod.key.clone();
        match self.entries.get_mut(&key) {
            None => {
                self.entries.insert(
                    key.clone(),
                    Entry {
                        pod,
                        state: State::InFlight,
                        attempts: 0,
                        failed_at: None,
                        changed_in_flight: false,
                        queued: now,
                    },
                );
                self.push_active(&key);
            }
            Some(entry) => {
                let state = entry.state;
                if let State::Active(seq) = state {
                    // Re-key under the (possibly new) priority.
                    self.active
                        .remove(&(Reverse(entry.pod.priority), seq, key.clone()));
                    entry.pod = pod;
                    self.active
                        .insert((Reverse(entry.pod.priority), seq, key.clone()));
                } else {
                    // Only a change to what the pod asks for can make it fit; its status
                    // (our own PodScheduled write among them) cannot.
                    let asks_differently = entry.pod.pod.spec != pod.pod.spec
                        || entry.pod.pod.metadata.labels != pod.pod.metadata.labels;
                    entry.pod = pod;
                    if asks_differently {
                        match state {
                            State::Unschedulable(_) => self.requeue(&key, now),
                            // The decision under way saw the old spec: if it fails, the
                            // new one deserves its own try.
                            State::InFlight => entry.changed_in_flight = true,
                            State::Active(_) | State::Backoff(_) => {}
                        }
                    }
                }
            }
        }
    }

    /// The pod is gone, assigned, or no longer ours.
    pub fn remove(&mut self, key: &str) {
        self.unlink(key);
        self.entries.remove(key);
    }

    /// Move pods whose back-off has passed to active, and retry pods parked for longer
    /// than [`MAX_UNSCHEDULABLE`].
    pub fn flush(&mut self, now: Instant) {
        while let Some((until, key)) = self.backoff.first().cloned() {
            if until > now {
                break;
            }
            self.backoff.remove(&(until, key.clone()));
            self.push_active(&key);
        }
        while let Some((since, key)) = self.parked.first().cloned() {
            if now.saturating_duration_since(since) < MAX_UNSCHEDULABLE {
                break;
            }
            self.parked.remove(&(since, key.clone()));
            self.requeue(&key, now);
        }
    }

    /// When [`SchedulingQueue::flush`] next has something to do.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let backoff = self.backoff.first().map(|(until, _)| *until);
        let parked = self
            .parked
            .first()
            .map(|(since, _)| *since + MAX_UNSCHEDULABLE);
        backoff.into_iter().chain(parked).min()
    }

    /// The next pod to decide, if one is ready.
    pub fn pop(&mut self) -> Option<Popped> {
        let (_, _, key) = self.active.pop_first()?;
        let entry = self.entries.get_mut(&key)?;
        entry.state = State::InFlight;
        entry.changed_in_flight = false;
        self.cycle += 1;
        Some(Popped {
            pod: entry.pod.clone(),
            cycle: self.cycle,
            queued: entry.queued,
        })
    }

    /// The pod was placed: the queue forgets it.
    pub fn done(&mut self, key: &str) {
        self.remove(key);
    }

    /// No node fits the pod decided in `cycle`: park it — or, if something that may help
    /// happened meanwhile, back it off so the change is not missed.
    pub fn unschedulable(&mut self, key: &str, cycle: u64, now: Instant) {
        let moved = self.moved_in_cycle >= cycle;
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        if entry.state != State::InFlight {
            // Updated or re-added while in flight: it is already queued again.
            return;
        }
        entry.attempts += 1;
        entry.failed_at = Some(now);
        if moved || entry.changed_in_flight {
            self.requeue(&key.to_owned(), now);
        } else {
            entry.state = State::Unschedulable(now);
            self.parked.insert((now, key.to_owned()));
        }
    }

    /// The pod's binding failed: decide it again after its back-off (re-adding it if it
    /// was already forgotten).
    pub fn retry(&mut self, pod: Arc<PodInfo>, now: Instant) {
        let key = pod.key.clone();
        let entry = self.entries.entry(key.clone()).or_insert(Entry {
            pod,
            state: State::InFlight,
            attempts: 0,
            failed_at: None,
            changed_in_flight: false,
            queued: now,
        });
        entry.attempts += 1;
        entry.failed_at = Some(now);
        self.requeue(&key, now);
    }

    /// Something happened that may let parked pods fit: retry them all (after their
    /// back-off).
    pub fn move_all(&mut self, now: Instant) {
        self.moved_in_cycle = self.cycle;
        let parked: Vec<PodKey> = self.parked.iter().map(|(_, k)| k.clone()).collect();
        for key in parked {
            self.requeue(&key, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::PodInfo;
    use crate::scheduler::cache::tests::pod;

    fn with_priority(name: &str, priority: i32) -> Arc<PodInfo> {
        let mut p = (*pod(name, "1", None)).clone();
        p.priority = priority;
        Arc::new(p)
    }

    #[test]
    fn priority_first_then_fifo() {
        let now = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add_or_update(with_priority("a", 0), now);
        q.add_or_update(with_priority("b", 10), now);
        q.add_or_update(with_priority("c", 0), now);
        let order: Vec<String> =
            std::iter::from_fn(|| q.pop().map(|p| p.pod.key.clone())).collect();
        assert_eq!(order, ["default/b", "default/a", "default/c"]);
    }

    #[test]
    fn updates_do_not_duplicate_and_removal_forgets() {
        let now = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add_or_update(with_priority("a", 0), now);
        q.add_or_update(with_priority("a", 5), now);
        assert_eq!(q.active_len(), 1);
        assert_eq!(q.pop().unwrap().pod.priority, 5);
        q.remove("default/a");
        assert!(q.is_empty());
        assert!(q.pop().is_none());
    }

    #[test]
    fn unschedulable_pods_wait_for_a_change_then_their_backoff() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add_or_update(with_priority("a", 0), t0);
        let popped = q.pop().unwrap();
        q.unschedulable("default/a", popped.cycle, t0);
        assert!(q.is_unschedulable("default/a"));
        // Nothing changes: no retry, however often the queue is flushed (until 5 min).
        q.flush(t0 + Duration::from_secs(60));
        assert!(q.pop().is_none());
        // A node appears 0.5 s later: the pod still serves its 1 s back-off first.
        q.move_all(t0 + Duration::from_millis(500));
        assert!(q.pop().is_none());
        assert_eq!(q.next_wakeup(), Some(t0 + INITIAL_BACKOFF));
        q.flush(t0 + INITIAL_BACKOFF);
        let again = q.pop().unwrap();
        // Second failure: 2 s back-off; a change long after goes straight to active.
        q.unschedulable("default/a", again.cycle, t0 + INITIAL_BACKOFF);
        q.move_all(t0 + Duration::from_secs(10));
        assert!(q.pop().is_some());
    }

    #[test]
    fn a_change_during_the_decision_is_not_missed() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add_or_update(with_priority("a", 0), t0);
        let popped = q.pop().unwrap();
        q.move_all(t0); // a node was added while "a" was being decided
        q.unschedulable("default/a", popped.cycle, t0);
        assert!(!q.is_unschedulable("default/a"));
        q.flush(t0 + INITIAL_BACKOFF);
        assert!(q.pop().is_some());
    }

    #[test]
    fn a_spec_change_during_the_decision_is_not_missed() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add_or_update(pod("a", "1", None), t0);
        let popped = q.pop().unwrap();
        q.add_or_update(pod("a", "500m", None), t0);
        q.unschedulable("default/a", popped.cycle, t0);
        assert!(!q.is_unschedulable("default/a"));
        q.flush(t0 + INITIAL_BACKOFF);
        assert_eq!(q.pop().unwrap().pod.requests.requests.milli_cpu, 500);
    }

    #[test]
    fn parked_pods_are_retried_after_the_longest_wait() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add_or_update(with_priority("a", 0), t0);
        let popped = q.pop().unwrap();
        q.unschedulable("default/a", popped.cycle, t0);
        assert_eq!(q.next_wakeup(), Some(t0 + MAX_UNSCHEDULABLE));
        q.flush(t0 + MAX_UNSCHEDULABLE);
        assert!(q.pop().is_some());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_failed_binds_retry() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        let p = with_priority("a", 0);
        for attempt in 1..=6u32 {
            q.retry(p.clone(), t0);
            let expected = INITIAL_BACKOFF
                .saturating_mul(1 << (attempt - 1))
                .min(MAX_BACKOFF);
            assert_eq!(q.next_wakeup(), Some(t0 + expected), "attempt {attempt}");
            q.flush(t0 + expected);
            assert!(q.pop().is_some());
        }
    }

    #[test]
    fn a_spec_update_gives_a_parked_pod_another_chance_a_status_update_does_not() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add_or_update(with_priority("a", 0), t0);
        let popped = q.pop().unwrap();
        q.unschedulable("default/a", popped.cycle, t0);
        let mut status_only = (*pod("a", "1", None).pod).clone();
        status_only.status = Some(Default::default());
        q.add_or_update(
            Arc::new(PodInfo::new(Arc::new(status_only))),
            t0 + Duration::from_secs(2),
        );
        assert!(q.pop().is_none());
        q.add_or_update(pod("a", "500m", None), t0 + Duration::from_secs(2));
        assert!(q.pop().is_some());
    }

    /// Every pod is in exactly the sub-queue its state names.
    fn consistent(q: &SchedulingQueue) -> Result<(), String> {
        let mut indexed = 0;
        for (key, e) in &q.entries {
            let ok = match e.state {
                State::Active(seq) => {
                    q.active
                        .contains(&(Reverse(e.pod.priority), seq, key.clone()))
                }
                State::Backoff(until) => q.backoff.contains(&(until, key.clone())),
                State::Unschedulable(since) => q.parked.contains(&(since, key.clone())),
                State::InFlight => true,
            };
            if !ok {
                return Err(format!("{key} in state {:?} but not indexed", e.state));
            }
            indexed += usize::from(e.state != State::InFlight);
        }
        let total = q.active.len() + q.backoff.len() + q.parked.len();
        if total != indexed {
            return Err(format!("{total} indexed entries for {indexed} queued pods"));
        }
        Ok(())
    }

    #[derive(Clone, Debug)]
    enum Op {
        Add(u8, i32, bool),
        Pop,
        Unschedulable,
        Done,
        Remove(u8),
        MoveAll,
        Retry(u8),
        Advance(u16),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0u8..6, -1i32..2, any::<bool>()).prop_map(|(n, p, big)| Op::Add(n, p, big)),
            Just(Op::Pop),
            Just(Op::Unschedulable),
            Just(Op::Done),
            (0u8..6).prop_map(Op::Remove),
            Just(Op::MoveAll),
            (0u8..6).prop_map(Op::Retry),
            (0u16..400).prop_map(Op::Advance),
        ]
    }

    proptest::proptest! {
        #[test]
        fn any_sequence_keeps_the_queue_consistent(ops in proptest::collection::vec(op(), 1..60)) {
            let mut now = Instant::now();
            let mut q = SchedulingQueue::new();
            let mut in_flight: Vec<Popped> = Vec::new();
            for op in ops {
                match op {
                    Op::Add(n, priority, big) => {
                        let mut p = (*pod(&format!("p{n}"), if big { "2" } else { "1" }, None)).clone();
                        p.priority = priority;
                        q.add_or_update(Arc::new(p), now);
                    }
                    Op::Pop => in_flight.extend(q.pop()),
                    Op::Unschedulable => {
                        if let Some(p) = in_flight.pop() {
                            q.unschedulable(&p.pod.key, p.cycle, now);
                        }
                    }
                    Op::Done => {
                        if let Some(p) = in_flight.pop() {
                            q.done(&p.pod.key);
                        }
                    }
                    Op::Remove(n) => q.remove(&format!("default/p{n}")),
                    Op::MoveAll => q.move_all(now),
                    Op::Retry(n) => q.retry(pod(&format!("p{n}"), "1", None), now),
                    Op::Advance(secs) => {
                        now += Duration::from_secs(u64::from(secs));
                        q.flush(now);
                        // Nothing due is left behind.
                        proptest::prop_assert!(q.next_wakeup().is_none_or(|at| at > now));
                    }
                }
                if let Err(e) = consistent(&q) {
                    return Err(proptest::test_runner::TestCaseError::fail(e));
                }
            }
        }
    }
}

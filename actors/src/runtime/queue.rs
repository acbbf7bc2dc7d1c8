//! The work of one session (a sticky scope), shared by the stdio ACP session and the HTTP
//! session: tasks waiting their turn (highest priority first, creation order within a
//! priority), the turn being run, and its numbering (a result for another turn is dropped).
//! Pure: the session actors do the IO.

use std::collections::VecDeque;

use super::{AdapterEvent, Dispatch};
use crate::model::Priority;

/// Work a session queues: anything with a task id (task ids are time-ordered, so their order is
/// creation order) and a priority.
pub trait Queued {
    fn task_id(&self) -> &str;
    fn priority(&self) -> Priority {
        Priority::Normal
    }
}

impl Queued for Dispatch {
    fn task_id(&self) -> &str {
        &self.task_id
    }
    fn priority(&self) -> Priority {
        self.priority
    }
}

/// Whether waiting work `a` runs before `b`: higher priority first, then older task first.
fn runs_before<W: Queued>(a: &W, b: &W) -> bool {
    (std::cmp::Reverse(a.priority().rank()), a.task_id()) < (std::cmp::Reverse(b.priority().rank()), b.task_id())
}

/// A turn: the work it runs.
pub trait Turn {
    type Work: Queued;
    fn work(&self) -> &Self::Work;
}

/// What a task cancelled before its turn is told.
pub fn cancelled_while_queued() -> AdapterEvent {
    AdapterEvent::Cancelled { message: "Cancelled while waiting for its session".into() }
}

/// Waiting work and the current turn of one session.
#[derive(Debug)]
pub struct SessionQueue<T: Turn> {
    /// Work waiting for the current turn to end, in the order it runs.
    waiting: VecDeque<T::Work>,
    /// The turn being run (at most one per session).
    turn: Option<T>,
    /// Number of the last turn begun; results carry it so stale ones are dropped.
    turn_seq: u64,
}

impl<T: Turn> Default for SessionQueue<T> {
    fn default() -> Self {
        SessionQueue { waiting: VecDeque::new(), turn: None, turn_seq: 0 }
    }
}

impl<T: Turn> SessionQueue<T> {
    /// Queues work: waiting tasks run highest priority first and in creation order within a
    /// priority, whatever order they arrived in.
    pub fn push(&mut self, work: T::Work) {
        let at = self.waiting.partition_point(|q| runs_before(q, &work));
        self.waiting.insert(at, work);
    }

    /// Whether work would start now: no turn runs and some waits.
    pub fn would_start(&self) -> bool {
        self.turn.is_none() && !self.waiting.is_empty()
    }

    /// The next work to start, if no turn runs and some waits.
    pub fn next_to_start(&mut self) -> Option<T::Work> {
        if self.turn.is_some() {
            return None;
        }
        self.waiting.pop_front()
    }

    /// Begins a turn (numbered by this queue) built by `make` from its number.
    pub fn begin(&mut self, make: impl FnOnce(u64) -> T) -> u64 {
        self.turn_seq += 1;
        self.turn = Some(make(self.turn_seq));
        self.turn_seq
    }

    /// The current turn.
    pub fn current(&self) -> Option<&T> {
        self.turn.as_ref()
    }

    /// The current turn, mutably.
    pub fn current_mut(&mut self) -> Option<&mut T> {
        self.turn.as_mut()
    }

    /// The current turn if it is number `turn` (a result for another one is stale).
    pub fn turn_mut(&mut self, turn: u64) -> Option<&mut T> {
        self.turn.as_mut().filter(|_| self.turn_seq == turn)
    }

    /// Whether turn `turn` is the current one.
    pub fn is_current(&self, turn: u64) -> bool {
        self.turn.is_some() && self.turn_seq == turn
    }

    /// The current turn if it runs `task_id`.
    pub fn running_mut(&mut self, task_id: &str) -> Option<&mut T> {
        self.turn.as_mut().filter(|t| t.work().task_id() == task_id)
    }

    /// Ends the current turn; the next work can start.
    pub fn finish(&mut self) -> Option<T> {
        self.turn.take()
    }

    /// Takes back work that has not started, with the event its task is told; `None` if
    /// `task_id` does not wait here.
    pub fn cancel_waiting(&mut self, task_id: &str) -> Option<(T::Work, AdapterEvent)> {
        let pos = self.waiting.iter().position(|w| w.task_id() == task_id)?;
        self.waiting.remove(pos).map(|w| (w, cancelled_while_queued()))
    }

    /// Takes every waiting work (the session is going away; the runtime re-queues it).
    pub fn drain_waiting(&mut self) -> Vec<T::Work> {
        self.waiting.drain(..).collect()
    }

    /// Nothing runs and nothing waits.
    pub fn is_idle(&self) -> bool {
        self.turn.is_none() && self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Queued for &'static str {
        fn task_id(&self) -> &str {
            self
        }
    }

    /// A turn in a test: its number and task.
    #[derive(Debug, PartialEq)]
    struct T(u64, &'static str);

    impl Turn for T {
        type Work = &'static str;
        fn work(&self) -> &&'static str {
            &self.1
        }
    }

    /// One step of a session and what the queue must then hold.
    enum Step {
        Push(&'static str),
        /// Start the next work: the task expected to start (`None`: nothing starts).
        Start(Option<&'static str>),
        Finish(Option<&'static str>),
        Cancel(&'static str, bool),
        Drain(&'static [&'static str]),
    }

    fn run(steps: &[Step]) -> SessionQueue<T> {
        let mut q = SessionQueue::<T>::default();
        for (i, step) in steps.iter().enumerate() {
            match step {
                Step::Push(id) => q.push(id),
                Step::Start(want) => {
                    let got = q.next_to_start();
                    assert_eq!(got, *want, "step {i}");
                    if let Some(id) = got {
                        let n = q.begin(|n| T(n, id));
                        assert!(q.is_current(n), "step {i}");
                    }
                }
                Step::Finish(want) => assert_eq!(q.finish().map(|t| t.1), *want, "step {i}"),
                Step::Cancel(id, found) => {
                    let got = q.cancel_waiting(id);
                    assert_eq!(got.is_some(), *found, "step {i}");
                    if let Some((w, event)) = got {
                        assert_eq!((w, event), (*id, cancelled_while_queued()), "step {i}");
                    }
                }
                Step::Drain(want) => assert_eq!(q.drain_waiting(), want.to_vec(), "step {i}"),
            }
        }
        q
    }

    #[test]
    fn work_runs_one_turn_at_a_time_in_creation_order() {
        use Step::*;
        let table: &[(&str, &[Step], bool)] = &[
            ("empty queue starts nothing", &[Start(None)], true),
            ("late arrival of an older task runs first", &[Push("02"), Push("01"), Start(Some("01"))], false),
            (
                "one turn at a time, next after finish",
                &[Push("01"), Push("02"), Start(Some("01")), Start(None), Finish(Some("01")), Start(Some("02"))],
                false,
            ),
            (
                "cancel of waiting work, not of the running turn",
                &[Push("01"), Push("02"), Start(Some("01")), Cancel("02", true), Cancel("01", false), Start(None)],
                false,
            ),
            ("unknown cancel finds nothing", &[Cancel("09", false)], true),
            (
                "drain hands back what waits, in order",
                &[Push("03"), Push("01"), Push("02"), Start(Some("01")), Drain(&["02", "03"]), Finish(Some("01"))],
                true,
            ),
        ];
        for (name, steps, idle) in table {
            let q = run(steps);
            assert_eq!(q.is_idle(), *idle, "{name}");
        }
    }

    /// Work with a priority (tests).
    #[derive(Debug, PartialEq)]
    struct P(&'static str, Priority);

    impl Queued for P {
        fn task_id(&self) -> &str {
            self.0
        }
        fn priority(&self) -> Priority {
            self.1
        }
    }

    #[derive(Debug)]
    struct PT(P);

    impl Turn for PT {
        type Work = P;
        fn work(&self) -> &P {
            &self.0
        }
    }

    #[test]
    fn higher_priority_runs_first_and_creation_order_within_one() {
        use Priority::*;
        let mut q = SessionQueue::<PT>::default();
        for w in [P("01", Low), P("02", Normal), P("03", High), P("04", Normal), P("05", High), P("00", Low)] {
            q.push(w);
        }
        let mut order = Vec::new();
        while let Some(w) = q.next_to_start() {
            order.push(w.0);
        }
        assert_eq!(order, ["03", "05", "02", "04", "00", "01"]);
    }

    #[test]
    fn stale_turn_numbers_find_nothing() {
        let mut q = SessionQueue::<T>::default();
        q.push("01");
        q.push("02");
        let first = q.next_to_start().map(|id| q.begin(|n| T(n, id)));
        assert_eq!(first, Some(1));
        assert!(q.turn_mut(1).is_some());
        assert!(q.running_mut("01").is_some() && q.running_mut("02").is_none());
        q.finish();
        let second = q.next_to_start().map(|id| q.begin(|n| T(n, id)));
        assert_eq!(second, Some(2));
        assert!(q.turn_mut(1).is_none() && !q.is_current(1));
        assert_eq!(q.current(), Some(&T(2, "02")));
    }
}

//! The task board of the `aether` adapter: which node tasks wait for an Aether worker, which
//! worker holds which task, and who is online to take one. Pure (no IO, no actors): the
//! presence actor, which owns the sessions, drives it and carries out what it decides.
//!
//! A task wants one of three things ([`Want`]): a named agent (TARGETED, or a node task sent to
//! `ag::{ws}::{impl}::{spec}`), any worker of an implementation in a workspace (POOL, or a node
//! task sent to `ag::{ws}::{impl}`), or its own creator (SELF_ASSIGN: held, never pushed). A pool
//! task goes to the online worker of its implementation with the fewest tasks held (ties: the
//! one that was given work least recently), so a burst is spread over every worker, never all
//! to one. A task nobody can take now waits, in creation order (task ids are ULIDs), until a worker for it connects.
//! When a worker's session ends, its pool tasks go back to the pool (to another worker, or to
//! wait); a named agent's tasks stay its own and are pushed again when it reconnects.

use std::collections::{BTreeSet, HashMap};

/// What a task waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Want {
    /// This agent (identity string), and no other.
    Instance(String),
    /// Any worker of `implementation` in `workspace`.
    Pool { workspace: String, implementation: String },
    /// Held by its creator (this identity), who works on it itself: nothing is pushed.
    Creator(String),
}

/// An online worker.
#[derive(Clone, Debug)]
struct Worker<H> {
    handle: H,
    workspace: String,
    implementation: String,
    /// Tasks it holds now.
    load: usize,
    /// When it was last given a task (a counter): ties of load go to the least recent.
    last_given: u64,
}

/// A task on the board.
#[derive(Clone, Debug)]
struct Entry<D> {
    want: Want,
    item: D,
    /// The identity holding it, once placed.
    holder: Option<String>,
}

/// A task handed to a worker: push it to `handle` (unless `push` is false: a creator holds its
/// own task). `first`: the first hand-over of this task (a re-push to a reconnected agent, or
/// a pool task moved to another worker after its holder left, is not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed<H> {
    pub task_id: String,
    pub worker: String,
    pub handle: Option<H>,
    pub push: bool,
    pub first: bool,
}

/// The board. `H` is how a worker is reached (its connection actor), `D` what a task carries
/// (its dispatch).
#[derive(Debug)]
pub struct TaskBoard<H, D> {
    workers: HashMap<String, Worker<H>>,
    tasks: HashMap<String, Entry<D>>,
    /// Tasks waiting for a worker, in task id order: ids are ULIDs, so that is creation order,
    /// whatever order the tasks reached the board in (after a restart, all at once).
    waiting: BTreeSet<String>,
    /// Counter behind `Worker::last_given`.
    given: u64,
}

impl<H, D> Default for TaskBoard<H, D> {
    fn default() -> Self {
        TaskBoard { workers: HashMap::new(), tasks: HashMap::new(), waiting: BTreeSet::new(), given: 0 }
    }
}

impl<H: Clone, D> TaskBoard<H, D> {
    /// Puts a new task on the board: placed now if someone can take it, else it waits. A task
    /// already on the board (a dispatch sent again) keeps its place.
    pub fn submit(&mut self, task_id: &str, want: Want, item: D) -> Option<Placed<H>> {
        if let Some(entry) = self.tasks.get_mut(task_id) {
            entry.item = item;
            return None;
        }
        self.tasks.insert(task_id.to_owned(), Entry { want, item, holder: None });
        let placed = self.place(task_id, true);
        if placed.is_none() {
            self.waiting.insert(task_id.to_owned());
        }
        placed
    }

    /// Puts back a task a worker already held before the node restarted: it is that worker's
    /// again (nothing is pushed; the worker reports on it as before).
    pub fn attach(&mut self, task_id: &str, want: Want, item: D, holder: &str) {
        if let Some(w) = self.workers.get_mut(holder) {
            w.load += 1;
        }
        self.tasks.insert(task_id.to_owned(), Entry { want, item, holder: Some(holder.to_owned()) });
    }

    /// Who can take `want` now: the agent itself, the least loaded worker of the pool, or the
    /// creator (always).
    fn pick(&self, want: &Want) -> Option<String> {
        match want {
            Want::Instance(id) => self.workers.contains_key(id).then(|| id.clone()),
            Want::Creator(id) => Some(id.clone()),
            Want::Pool { workspace, implementation } => self
                .workers
                .iter()
                .filter(|(_, w)| &w.workspace == workspace && &w.implementation == implementation)
                .min_by(|(a_id, a), (b_id, b)| (a.load, a.last_given, *a_id).cmp(&(b.load, b.last_given, *b_id)))
                .map(|(id, _)| id.clone()),
        }
    }

    /// Places a task that no one holds, if someone can take it.
    fn place(&mut self, task_id: &str, first: bool) -> Option<Placed<H>> {
        let entry = self.tasks.get(task_id)?;
        let worker = self.pick(&entry.want)?;
        let push = !matches!(entry.want, Want::Creator(_));
        self.given += 1;
        let handle = match self.workers.get_mut(&worker) {
            Some(w) => {
                w.load += 1;
                w.last_given = self.given;
                Some(w.handle.clone())
            }
            None => None,
        };
        if let Some(entry) = self.tasks.get_mut(task_id) {
            entry.holder = Some(worker.clone());
        }
        Some(Placed { task_id: task_id.to_owned(), worker, handle, push, first })
    }

    /// A worker connected: it takes its own tasks again, then what waits for it or its pool,
    /// in creation order.
    pub fn online(&mut self, identity: &str, workspace: &str, implementation: &str, handle: H) -> Vec<Placed<H>> {
        let mut held: Vec<String> = self
            .tasks
            .iter()
            .filter(|(_, e)| e.holder.as_deref() == Some(identity))
            .map(|(id, _)| id.clone())
            .collect();
        self.workers.insert(
            identity.to_owned(),
            Worker {
                handle: handle.clone(),
                workspace: workspace.to_owned(),
                implementation: implementation.to_owned(),
                load: held.len(),
                last_given: 0,
            },
        );
        held.sort();
        let mut out: Vec<Placed<H>> = held
            .into_iter()
            .filter(|id| self.tasks.get(id).is_some_and(|e| !matches!(e.want, Want::Creator(_))))
            .map(|task_id| Placed {
                task_id,
                worker: identity.to_owned(),
                handle: Some(handle.clone()),
                push: true,
                first: false,
            })
            .collect();
        let waiting: Vec<String> = self.waiting.iter().cloned().collect();
        for task_id in waiting {
            let Some(entry) = self.tasks.get(&task_id) else {
                self.waiting.remove(&task_id);
                continue;
            };
            let fits = match &entry.want {
                Want::Instance(id) => id == identity,
                Want::Pool { workspace: ws, implementation: imp } => ws == workspace && imp == implementation,
                Want::Creator(_) => false,
            };
            if fits && let Some(placed) = self.place(&task_id, true) {
                self.waiting.remove(&task_id);
                out.push(placed);
            }
        }
        out
    }

    /// A worker's session ended: its pool tasks go to another worker or wait again (their
    /// placements are returned); an agent's own tasks stay its own.
    pub fn offline(&mut self, identity: &str) -> Vec<Placed<H>> {
        if self.workers.remove(identity).is_none() {
            return Vec::new();
        }
        let mut pooled: Vec<String> = self
            .tasks
            .iter()
            .filter(|(_, e)| e.holder.as_deref() == Some(identity) && matches!(e.want, Want::Pool { .. }))
            .map(|(id, _)| id.clone())
            .collect();
        pooled.sort();
        let mut out = Vec::new();
        for task_id in pooled {
            if let Some(e) = self.tasks.get_mut(&task_id) {
                e.holder = None;
            }
            match self.place(&task_id, false) {
                Some(placed) => out.push(placed),
                None => {
                    self.waiting.insert(task_id);
                }
            }
        }
        out
    }

    /// Takes a task off the board (it ended, or was cancelled): it is never handed out again.
    pub fn settle(&mut self, task_id: &str) -> Option<D> {
        let entry = self.tasks.remove(task_id)?;
        self.waiting.remove(task_id);
        if let Some(holder) = &entry.holder
            && let Some(w) = self.workers.get_mut(holder)
        {
            w.load = w.load.saturating_sub(1);
        }
        Some(entry.item)
    }

    /// Who holds the task (`None`: waiting, or not on the board).
    pub fn holder(&self, task_id: &str) -> Option<&str> {
        self.tasks.get(task_id)?.holder.as_deref()
    }

    /// What the task carries.
    pub fn item(&self, task_id: &str) -> Option<&D> {
        self.tasks.get(task_id).map(|e| &e.item)
    }

    /// What the task carries, to change it.
    pub fn item_mut(&mut self, task_id: &str) -> Option<&mut D> {
        self.tasks.get_mut(task_id).map(|e| &mut e.item)
    }

    /// Whether a worker is online.
    pub fn is_online(&self, identity: &str) -> bool {
        self.workers.contains_key(identity)
    }

    /// Tasks a worker holds now.
    pub fn load(&self, identity: &str) -> usize {
        self.workers.get(identity).map_or(0, |w| w.load)
    }

    /// Tasks on the board, and how many of them wait.
    pub fn counts(&self) -> (usize, usize) {
        (self.tasks.len(), self.waiting.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Want {
        Want::Pool { workspace: "ws".into(), implementation: "worker".into() }
    }

    fn placed_to(p: &Option<Placed<u32>>) -> Option<&str> {
        p.as_ref().map(|p| p.worker.as_str())
    }

    #[test]
    fn pool_tasks_are_spread_over_the_least_loaded_workers() {
        let mut board: TaskBoard<u32, ()> = TaskBoard::default();
        assert!(board.online("ag::ws::worker::a", "ws", "worker", 1).is_empty());
        assert!(board.online("ag::ws::worker::b", "ws", "worker", 2).is_empty());
        board.online("ag::ws::other::c", "ws", "other", 3);
        board.online("ag::ws2::worker::d", "ws2", "worker", 4);
        let mut count: HashMap<String, usize> = HashMap::new();
        for i in 0..10 {
            let Some(p) = board.submit(&format!("t{i}"), pool(), ()) else { panic!("t{i} not placed") };
            assert!(p.push && p.first);
            *count.entry(p.worker).or_default() += 1;
        }
        assert_eq!(count.get("ag::ws::worker::a"), Some(&5));
        assert_eq!(count.get("ag::ws::worker::b"), Some(&5));
        // One finishes three: the next ones go to it until loads are even.
        for t in ["t0", "t2", "t4"] {
            board.settle(t);
        }
        let a_load = board.load("ag::ws::worker::a");
        let b_load = board.load("ag::ws::worker::b");
        assert_eq!(a_load + b_load, 7);
        let lighter = if a_load < b_load { "ag::ws::worker::a" } else { "ag::ws::worker::b" };
        for i in 10..13 {
            assert_eq!(placed_to(&board.submit(&format!("t{i}"), pool(), ())), Some(lighter));
        }
        assert_eq!(board.load("ag::ws::worker::a"), board.load("ag::ws::worker::b"));
    }

    #[test]
    fn waiting_tasks_go_in_order_to_the_worker_that_connects() {
        // They reach the board out of order (as after a restart); they go in creation order.
        let mut board: TaskBoard<u32, ()> = TaskBoard::default();
        assert!(board.submit("02i1", Want::Instance("ag::ws::worker::a".into()), ()).is_none());
        assert!(board.submit("01p1", pool(), ()).is_none());
        assert!(board.submit("03p2", pool(), ()).is_none());
        assert!(board.submit("04x", Want::Instance("ag::ws::worker::z".into()), ()).is_none());
        assert_eq!(board.counts(), (4, 4));
        // A cancelled waiting task is never handed out.
        assert!(board.settle("03p2").is_some());
        let got: Vec<String> =
            board.online("ag::ws::worker::a", "ws", "worker", 1).into_iter().map(|p| p.task_id).collect();
        assert_eq!(got, ["01p1", "02i1"]);
        assert_eq!(board.counts(), (3, 1));
        assert_eq!(board.holder("01p1"), Some("ag::ws::worker::a"));
        assert_eq!(board.holder("04x"), None);
    }

    #[test]
    fn a_leaving_worker_gives_back_its_pool_tasks_but_keeps_its_own() {
        let mut board: TaskBoard<u32, ()> = TaskBoard::default();
        board.online("ag::ws::worker::a", "ws", "worker", 1);
        board.submit("p1", pool(), ());
        board.submit("own", Want::Instance("ag::ws::worker::a".into()), ());
        board.online("ag::ws::worker::b", "ws", "worker", 2);
        let moved = board.offline("ag::ws::worker::a");
        assert_eq!(moved.len(), 1);
        assert_eq!(
            (moved[0].task_id.as_str(), moved[0].worker.as_str(), moved[0].first),
            ("p1", "ag::ws::worker::b", false)
        );
        assert_eq!(board.holder("own"), Some("ag::ws::worker::a"));
        // Back again: its own task is pushed again, not as a first hand-over.
        let again = board.online("ag::ws::worker::a", "ws", "worker", 5);
        assert_eq!(
            again,
            vec![Placed {
                task_id: "own".into(),
                worker: "ag::ws::worker::a".into(),
                handle: Some(5),
                push: true,
                first: false
            }]
        );
        assert_eq!(board.load("ag::ws::worker::a"), 1);
        // b leaves too: its pool task goes back to a.
        let moved = board.offline("ag::ws::worker::b");
        assert_eq!(moved.iter().map(|p| p.worker.as_str()).collect::<Vec<_>>(), ["ag::ws::worker::a"]);
        // With nobody left, pool tasks wait (the agent's own task stays its own).
        assert!(board.offline("ag::ws::worker::a").is_empty());
        assert_eq!(board.holder("p1"), None);
        assert_eq!(board.holder("own"), Some("ag::ws::worker::a"));
        assert_eq!(board.counts(), (2, 1));
    }

    #[test]
    fn a_creator_holds_its_own_task_without_a_push() {
        let mut board: TaskBoard<u32, &str> = TaskBoard::default();
        let Some(p) = board.submit("s", Want::Creator("ag::ws::me::1".into()), "d") else { panic!("not held") };
        assert_eq!((p.worker.as_str(), p.push, p.handle), ("ag::ws::me::1", false, None));
        assert_eq!(board.submit("s", Want::Creator("ag::ws::me::1".into()), "d2"), None);
        assert_eq!(board.item("s"), Some(&"d2"));
        board.attach("r", pool(), "r", "ag::ws::worker::gone");
        assert_eq!(board.holder("r"), Some("ag::ws::worker::gone"));
        assert_eq!(board.settle("r"), Some("r"));
        assert_eq!(board.settle("r"), None);
    }
}

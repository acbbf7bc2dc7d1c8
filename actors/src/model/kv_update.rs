//! Atomic read-modify-write operations on one KV row (the Aether gateway's counters and
//! conditional writes), pure: given the row's current value, what it becomes and what the
//! caller is told. The storage actor applies them inside its transaction, so concurrent
//! updates never lose one another.
//!
//! Counters are stored as decimal text (a `kv_get` of a counter reads `b"3"`), as upstream.

use std::sync::{Arc, Mutex};

/// One atomic update of a KV row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvUpdate {
    /// Add `delta` (negative: decrement); with a guard, only if the result stays within it.
    Add { delta: i64, guard: Option<Guard> },
    /// Write `value` only if the key is absent (SET_NX).
    SetIfAbsent { value: Vec<u8> },
    /// Write `value` only if the current value is `expected` (COMPARE_AND_SET).
    CompareAndSet { expected: Vec<u8>, value: Vec<u8> },
    /// Delete only if the current value is `expected` (COMPARE_AND_DELETE).
    CompareAndDelete { expected: Vec<u8> },
}

/// The bound a guarded counter update must respect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    /// The result may not exceed this (INCREMENT_IF).
    Ceiling(i64),
    /// The result may not go below this (DECREMENT_IF).
    Floor(i64),
}

/// What an update does to the row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowChange {
    Keep,
    /// Write this value; `fresh` when the row did not exist (a TTL applies then).
    Write {
        value: Vec<u8>,
        fresh: bool,
    },
    Delete,
}

/// What the caller is told.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvUpdateOutcome {
    /// Whether the update was carried out (a guard or a comparison can refuse it).
    pub applied: bool,
    /// A counter's value after the update (before it, when not applied).
    pub counter: i64,
    /// The row's value after the update (conditional writes).
    pub value: Vec<u8>,
    /// The update could not be applied at all (e.g. a counter over a value that is not one).
    pub error: Option<String>,
}

/// Where the storage actor leaves an update's outcome for the caller, read after the commit.
#[derive(Clone, Debug, Default)]
pub struct OutcomeSlot(Arc<Mutex<Option<KvUpdateOutcome>>>);

impl OutcomeSlot {
    pub fn set(&self, outcome: KvUpdateOutcome) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(outcome);
        }
    }

    pub fn take(&self) -> Option<KvUpdateOutcome> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

fn counter_of(current: Option<&[u8]>) -> Result<i64, String> {
    match current {
        None => Ok(0),
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .ok_or_else(|| "the key holds a value that is not a counter".to_owned()),
    }
}

impl KvUpdate {
    /// Applies the update to the row's `current` value (`None`: no live row).
    pub fn apply(&self, current: Option<&[u8]>) -> (RowChange, KvUpdateOutcome) {
        let refused = |error: String| (RowChange::Keep, KvUpdateOutcome { error: Some(error), ..Default::default() });
        match self {
            KvUpdate::Add { delta, guard } => {
                let now = match counter_of(current) {
                    Ok(n) => n,
                    Err(e) => return refused(e),
                };
                let Some(next) = now.checked_add(*delta) else {
                    return refused("the counter would overflow".into());
                };
                let within = match guard {
                    None => true,
                    Some(Guard::Ceiling(max)) => next <= *max,
                    Some(Guard::Floor(min)) => next >= *min,
                };
                if !within {
                    return (RowChange::Keep, KvUpdateOutcome { counter: now, ..Default::default() });
                }
                let value = next.to_string().into_bytes();
                let outcome = KvUpdateOutcome { applied: true, counter: next, value: value.clone(), error: None };
                (RowChange::Write { value, fresh: current.is_none() }, outcome)
            }
            KvUpdate::SetIfAbsent { value } => match current {
                None => (
                    RowChange::Write { value: value.clone(), fresh: true },
                    KvUpdateOutcome { applied: true, value: value.clone(), ..Default::default() },
                ),
                Some(now) => (RowChange::Keep, KvUpdateOutcome { value: now.to_vec(), ..Default::default() }),
            },
            KvUpdate::CompareAndSet { expected, value } => match current {
                Some(now) if now == expected.as_slice() => (
                    RowChange::Write { value: value.clone(), fresh: false },
                    KvUpdateOutcome { applied: true, value: value.clone(), ..Default::default() },
                ),
                now => {
                    (RowChange::Keep, KvUpdateOutcome { value: now.unwrap_or_default().to_vec(), ..Default::default() })
                }
            },
            KvUpdate::CompareAndDelete { expected } => match current {
                Some(now) if now == expected.as_slice() => {
                    (RowChange::Delete, KvUpdateOutcome { applied: true, ..Default::default() })
                }
                now => {
                    (RowChange::Keep, KvUpdateOutcome { value: now.unwrap_or_default().to_vec(), ..Default::default() })
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(delta: i64, guard: Option<Guard>, current: Option<&[u8]>) -> (RowChange, KvUpdateOutcome) {
        KvUpdate::Add { delta, guard }.apply(current)
    }

    #[test]
    fn counters_start_at_zero_and_are_decimal_text() {
        let (change, out) = add(1, None, None);
        assert_eq!(change, RowChange::Write { value: b"1".to_vec(), fresh: true });
        assert!(out.applied && out.counter == 1);
        let (change, out) = add(-3, None, Some(b"10"));
        assert_eq!(change, RowChange::Write { value: b"7".to_vec(), fresh: false });
        assert_eq!(out.counter, 7);
        let (change, out) = add(1, None, Some(b"hello"));
        assert_eq!(change, RowChange::Keep);
        assert!(!out.applied && out.error.is_some());
        assert!(add(1, None, Some(i64::MAX.to_string().as_bytes())).1.error.is_some());
    }

    #[test]
    fn guards_refuse_without_changing_the_row() {
        let (change, out) = add(5, Some(Guard::Ceiling(10)), Some(b"8"));
        assert_eq!(change, RowChange::Keep);
        assert!(!out.applied && out.counter == 8 && out.error.is_none());
        assert!(add(2, Some(Guard::Ceiling(10)), Some(b"8")).1.applied);
        let (change, out) = add(-1, Some(Guard::Floor(0)), Some(b"0"));
        assert_eq!(change, RowChange::Keep);
        assert!(!out.applied && out.counter == 0);
        assert!(add(-1, Some(Guard::Floor(0)), Some(b"1")).1.applied);
    }

    #[test]
    fn conditional_writes_compare_the_current_value() {
        let set = KvUpdate::SetIfAbsent { value: b"v".to_vec() };
        assert!(set.apply(None).1.applied);
        let (change, out) = set.apply(Some(b"old"));
        assert_eq!((change, out.applied, out.value), (RowChange::Keep, false, b"old".to_vec()));
        let cas = KvUpdate::CompareAndSet { expected: b"a".to_vec(), value: b"b".to_vec() };
        assert_eq!(cas.apply(Some(b"a")).0, RowChange::Write { value: b"b".to_vec(), fresh: false });
        assert!(!cas.apply(Some(b"x")).1.applied);
        assert!(!cas.apply(None).1.applied);
        let cad = KvUpdate::CompareAndDelete { expected: b"a".to_vec() };
        assert_eq!(cad.apply(Some(b"a")).0, RowChange::Delete);
        assert_eq!(cad.apply(Some(b"b")).0, RowChange::Keep);
    }
}

//! Identifiers: ULIDs (26-char Crockford base32), monotonic within this process so ids created in
//! the same millisecond still sort in creation order (task lists page by id).
//!
//! Where ids are compared (a thread's participants, the task a handoff waits on) they are typed,
//! so an agent id is never compared with a task id; on the wire they are the plain strings.

use std::fmt;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use ulid::Generator;

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The id's text, as stored and sent.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id's text, owned.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

string_id!(
    /// A target's or registered agent's id (a thread's participants, a turn's sender and target).
    AgentId
);

string_id!(
    /// A task's id. Empty in a handoff plan between turns (no task watched yet).
    TaskId
);

static GENERATOR: Mutex<Option<Generator>> = Mutex::new(None);

/// A new ULID string, strictly greater than every id this process generated before.
pub fn new_id() -> String {
    let mut guard = match GENERATOR.lock() {
        Ok(g) => g,
        // A panic while holding this lock cannot leave the generator inconsistent.
        Err(poisoned) => poisoned.into_inner(),
    };
    let generator = guard.get_or_insert_with(Generator::new);
    match generator.generate() {
        Ok(id) => id.to_string(),
        // Overflow of the random part within one millisecond (2^80 ids): fall back to a fresh,
        // still time-ordered id.
        Err(_) => ulid::Ulid::generate().to_string(),
    }
}

/// Whether `s` looks like an id this node could have issued (used to reject garbage early).
pub fn is_valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' || b == b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_monotonic() {
        let mut last = new_id();
        for _ in 0..10_000 {
            let next = new_id();
            assert!(next > last);
            last = next;
        }
        assert_eq!(last.len(), 26);
    }

    #[test]
    fn typed_ids_are_their_plain_string_on_the_wire() {
        let agent = AgentId::from("hermes-1");
        assert_eq!(serde_json::to_string(&agent).ok().as_deref(), Some("\"hermes-1\""));
        assert_eq!(serde_json::from_str::<AgentId>("\"hermes-1\"").ok(), Some(agent.clone()));
        assert_eq!(agent, "hermes-1");
        assert_eq!(agent.to_string(), "hermes-1");
        let task = TaskId::from(new_id());
        assert_eq!(task.as_str().len(), 26);
        assert_eq!(serde_json::to_value(Some(&task)).ok(), Some(serde_json::json!(task.as_str())));
        assert_ne!(TaskId::default(), task);
    }
}

//! Identifiers: ULIDs (26-char Crockford base32), monotonic within this process so ids created in
//! the same millisecond still sort in creation order (task lists page by id).

use std::sync::Mutex;

use ulid::Generator;

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
}

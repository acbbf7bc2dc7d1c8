//! Wall-clock timestamps.
//!
//! One convention everywhere (wire JSON and SQLite): RFC 3339 in UTC with exactly nine fractional
//! digits, e.g. `2026-04-24T07:00:00.123456789Z`. Fixed width means text order is time order in
//! SQLite, and Go's `time.RFC3339Nano` parser (the reference implementation's clients) reads it.

use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

const RFC3339_NANOS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");

/// Current time as a fixed-width RFC 3339 UTC string.
pub fn now_rfc3339() -> String {
    format_rfc3339(OffsetDateTime::now_utc())
}

/// Formats any instant in the project's one timestamp convention.
pub fn format_rfc3339(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    // Formatting a valid UTC datetime with a static description cannot fail; fall back to the
    // default RFC 3339 writer rather than panic if it ever did.
    at.format(RFC3339_NANOS)
        .unwrap_or_else(|_| at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default())
}

/// Current time plus `seconds`, in the same convention (used for leases).
pub fn rfc3339_after(seconds: i64) -> String {
    format_rfc3339(OffsetDateTime::now_utc() + time::Duration::seconds(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_fixed_width_utc() {
        let at = OffsetDateTime::from_unix_timestamp(1_776_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let s = format_rfc3339(at);
        assert_eq!(s.len(), 30, "{s}");
        assert!(s.ends_with(".000000000Z"), "{s}");
        assert!(now_rfc3339() > s);
    }
}

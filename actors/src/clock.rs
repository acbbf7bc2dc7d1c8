//! Wall-clock timestamps.
//!
//! One convention everywhere (wire JSON and SQLite): RFC 3339 in UTC with exactly nine fractional
//! digits, e.g. `2026-04-24T07:00:00.123456789Z`. Fixed width means text order is time order in
//! SQLite, and Go's `time.RFC3339Nano` parser (the reference implementation's clients) reads it.
//! [`Timestamp`] holds a value known to follow it, for the places that compare instants.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

const RFC3339_NANOS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");

/// Current time as a fixed-width RFC 3339 UTC string.
pub fn now_rfc3339() -> String {
    format_rfc3339(OffsetDateTime::now_utc())
}

/// Unix seconds now (wire fields of other protocols that count seconds).
pub fn unix_seconds() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Unix milliseconds now (the Aether wire's times).
pub fn unix_millis() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Unix milliseconds of an RFC 3339 time (0 if it is not one).
pub fn unix_millis_of(rfc3339: &str) -> i64 {
    OffsetDateTime::parse(rfc3339, &Rfc3339).map_or(0, |t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Unix seconds of a timestamp in the project's convention (0 if it is not one).
pub fn unix_seconds_of(at: &Timestamp) -> i64 {
    OffsetDateTime::parse(at.as_str(), &Rfc3339).map_or(0, |t| t.unix_timestamp())
}

/// Formats any instant in the project's one timestamp convention.
pub fn format_rfc3339(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    // Formatting a valid UTC datetime with a static description cannot fail; fall back to the
    // default RFC 3339 writer rather than panic if it ever did.
    at.format(RFC3339_NANOS).unwrap_or_else(|_| at.format(&Rfc3339).unwrap_or_default())
}

/// An instant in the project's timestamp convention.
///
/// `Ord` is text order, which is time order: every value is UTC, fixed width (four-digit year,
/// nine fractional digits) and zero-padded, which [`Timestamp::parse`] guarantees by
/// re-formatting what it reads. Serialises as the plain string; deserialising parses (and so
/// normalises) it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Timestamp(String);

/// Text that is not an RFC 3339 timestamp.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 timestamp: '{value}'")]
pub struct InvalidTimestamp {
    /// The offending text.
    pub value: String,
}

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Timestamp(now_rfc3339())
    }

    /// The current time plus `seconds` (leases).
    pub fn after(seconds: i64) -> Self {
        Timestamp::at(OffsetDateTime::now_utc() + time::Duration::seconds(seconds))
    }

    /// `at` in the convention.
    pub fn at(at: OffsetDateTime) -> Self {
        Timestamp(format_rfc3339(at))
    }

    /// Reads any RFC 3339 timestamp and normalises it to the convention (UTC, nine fractional
    /// digits); a value already in the convention comes back unchanged.
    pub fn parse(text: &str) -> Result<Self, InvalidTimestamp> {
        let invalid = || InvalidTimestamp { value: text.to_owned() };
        let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| invalid())?;
        let stamp = Timestamp::at(at);
        // A year past 9999 would not be fixed width (and so break `Ord`).
        if stamp.0.len() != FIXED_WIDTH {
            return Err(invalid());
        }
        Ok(stamp)
    }

    /// The text, as stored and sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Length of every timestamp in the convention (`2026-04-24T07:00:00.123456789Z`).
const FIXED_WIDTH: usize = 30;

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Timestamp {
    type Err = InvalidTimestamp;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse(s)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_fixed_width_utc() {
        let at = OffsetDateTime::from_unix_timestamp(1_776_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let s = format_rfc3339(at);
        assert_eq!(s.len(), FIXED_WIDTH, "{s}");
        assert!(s.ends_with(".000000000Z"), "{s}");
        assert!(now_rfc3339() > s);
    }

    #[test]
    fn parse_keeps_the_convention_and_normalises_other_rfc3339() {
        let cases = [
            ("2026-01-01T00:00:00.000000000Z", Some("2026-01-01T00:00:00.000000000Z")),
            ("2026-04-24T07:00:00.123456789Z", Some("2026-04-24T07:00:00.123456789Z")),
            ("2026-01-01T00:00:00Z", Some("2026-01-01T00:00:00.000000000Z")),
            ("2026-01-01T02:00:00.5+02:00", Some("2026-01-01T00:00:00.500000000Z")),
            // RFC 3339 allows a space for the `T`.
            ("2026-01-01 00:00:00Z", Some("2026-01-01T00:00:00.000000000Z")),
            ("2026-01-01T00:00:00", None),
            ("2026-13-01T00:00:00Z", None),
            ("yesterday", None),
            ("", None),
        ];
        for (text, want) in cases {
            let got = Timestamp::parse(text).ok();
            assert_eq!(got.as_ref().map(Timestamp::as_str), want, "{text}");
        }
        assert_eq!("bogus".parse::<Timestamp>().err().map(|e| e.value), Some("bogus".to_owned()));
    }

    #[test]
    fn order_is_time_order() {
        let earlier = Timestamp::parse("2026-01-01T00:00:00.999999999Z").ok();
        let later = Timestamp::parse("2026-01-01T00:00:01.000000000Z").ok();
        // Normalised from another offset: same instant, same text.
        let same = Timestamp::parse("2026-01-01T01:00:01+01:00").ok();
        assert!(earlier < later);
        assert_eq!(later, same);
        let now = Timestamp::now();
        assert!(Timestamp::after(60) > now);
        assert!(Timestamp::after(-60) < now);
    }

    #[test]
    fn serde_is_the_plain_string_and_validates() {
        let stamp = Timestamp::parse("2026-04-24T07:00:00.123456789Z").ok();
        let json = serde_json::to_string(&stamp).unwrap_or_default();
        assert_eq!(json, "\"2026-04-24T07:00:00.123456789Z\"");
        let back: Option<Timestamp> = serde_json::from_str(&json).ok();
        assert_eq!(back, stamp);
        assert!(serde_json::from_str::<Timestamp>("\"not a time\"").is_err());
        assert!(serde_json::from_str::<Timestamp>("42").is_err());
    }
}

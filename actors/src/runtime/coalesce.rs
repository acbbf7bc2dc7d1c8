//! Streamed agent text, coalesced to at most one task event per interval, so a chatty agent
//! (a part per token) does not turn into one durable event per token. Shared by the stdio and
//! HTTP session actors. Pure: the caller passes the time and arms the flush timer.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::AdapterEvent;

/// At most one streamed text event per this interval.
pub const COALESCE: Duration = Duration::from_millis(100);

/// What the caller does after adding text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Emit now ([`TextCoalescer::take`]).
    FlushNow,
    /// Arm a flush timer for this long (none was armed).
    FlushIn(Duration),
    /// A flush timer is already armed.
    Wait,
}

/// Text not yet streamed, and when text was last streamed.
#[derive(Debug, Default)]
pub struct TextCoalescer {
    /// Text not yet sent as an event.
    unsent: String,
    /// When the last text event went out (`None`: none yet, the first goes out at once).
    last_emit: Option<Instant>,
    /// A flush timer is armed; another would emit twice.
    flush_scheduled: bool,
}

impl TextCoalescer {
    /// Adds text received at `now`.
    pub fn push(&mut self, text: &str, now: Instant) -> Next {
        self.unsent.push_str(text);
        match self.last_emit {
            Some(at) if now.saturating_duration_since(at) < COALESCE => {
                if self.flush_scheduled {
                    Next::Wait
                } else {
                    self.flush_scheduled = true;
                    Next::FlushIn(COALESCE - now.saturating_duration_since(at))
                }
            }
            _ => Next::FlushNow,
        }
    }

    /// The armed flush timer fired.
    pub fn timer_fired(&mut self) {
        self.flush_scheduled = false;
    }

    /// The text to emit now, if any.
    pub fn take(&mut self, now: Instant) -> Option<String> {
        if self.unsent.is_empty() {
            return None;
        }
        self.last_emit = Some(now);
        Some(std::mem::take(&mut self.unsent))
    }
}

/// The running event carrying streamed text.
pub fn text_event(text: String) -> AdapterEvent {
    AdapterEvent::Running {
        message: "Agent message".into(),
        data: [("delta".to_owned(), Value::String(text))].into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_text_goes_out_at_once_then_one_flush_per_interval() {
        let t0 = Instant::now();
        let mut c = TextCoalescer::default();
        assert_eq!(c.push("a", t0), Next::FlushNow);
        assert_eq!(c.take(t0).as_deref(), Some("a"));
        assert_eq!(c.push("b", t0 + Duration::from_millis(30)), Next::FlushIn(Duration::from_millis(70)));
        assert_eq!(c.push("c", t0 + Duration::from_millis(50)), Next::Wait);
        c.timer_fired();
        assert_eq!(c.take(t0 + Duration::from_millis(100)).as_deref(), Some("bc"));
        assert_eq!(c.take(t0 + Duration::from_millis(101)), None);
        assert_eq!(c.push("d", t0 + Duration::from_millis(250)), Next::FlushNow);
    }
}

//! The node's log output: one line per record, in a format for people (`pretty`) or for
//! machines (`json`, one object per line with unique keys).
//!
//! * No span list is printed: ractor's `Actor{id, name}` spans collide with the record's own keys
//!   and, as a message is handled inside its *sender's* span, name the wrong actor. Records name
//!   their actor in their own fields (`actor_kind`, `actor`, `target_id`, `task_id`).
//! * Embedded newlines (multi-line stderr tails, panics) are escaped: a record is one line.
//! * Durations (`*_ms` floats) are rounded to whole milliseconds.
//! * A field whose name is taken (`message`, `level`, …) is written as `field_<name>`.

use std::fmt::Write as _;
use std::io::Write as _;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// How records are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// `TIMESTAMP LEVEL message key=value …`; `ansi` colours the level.
    Pretty { ansi: bool },
    /// `{"timestamp", "level", "target", "message", <fields>…}`.
    Json,
}

/// Writes every enabled record to stderr, one line each.
pub struct LineLayer {
    style: Style,
}

impl LineLayer {
    pub fn new(style: Style) -> Self {
        LineLayer { style }
    }
}

/// The fields of a record, in order, with the message apart.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    fields: Vec<(String, Value)>,
}

impl Fields {
    fn push(&mut self, field: &Field, value: Value) {
        if field.name() == "message" && self.message.is_none() {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.fields.push((field.name().to_owned(), value));
        }
    }
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let v = if field.name().ends_with("_ms") && value.is_finite() {
            Value::from(value.round() as i64)
        } else {
            serde_json::Number::from_f64((value * 1000.0).round() / 1000.0).map_or(Value::Null, Value::Number)
        };
        self.push(field, v);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.push(field, Value::from(format!("{value:?}")));
    }
}

/// Keys the line itself uses.
const RESERVED: [&str; 4] = ["timestamp", "level", "target", "message"];

impl<S: Subscriber> Layer<S> for LineLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let line = render(self.style, *meta.level(), meta.target(), fields);
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(line.as_bytes());
    }
}

/// Now, UTC, to the millisecond (`2026-04-24T07:00:00.123Z`).
fn timestamp() -> String {
    let now = aethrolink_actors::clock::now_rfc3339();
    match now.get(..23) {
        Some(ms) if now.len() == 30 => format!("{ms}Z"),
        _ => now,
    }
}

/// Field names made unique against the line's own keys and each other.
fn unique(fields: Vec<(String, Value)>) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = Vec::with_capacity(fields.len());
    for (mut key, value) in fields {
        let taken = |k: &str, out: &[(String, Value)]| RESERVED.contains(&k) || out.iter().any(|(o, _)| o == k);
        if taken(&key, &out) {
            key = format!("field_{key}");
            let base = key.clone();
            let mut n = 2;
            while taken(&key, &out) {
                key = format!("{base}_{n}");
                n += 1;
            }
        }
        out.push((key, value));
    }
    out
}

fn render(style: Style, level: Level, target: &str, fields: Fields) -> String {
    let Fields { message, fields } = fields;
    let fields = unique(fields);
    let message = message.unwrap_or_default();
    match style {
        Style::Json => {
            let mut line = String::from("{");
            let mut put = |k: &str, v: &Value| {
                if line.len() > 1 {
                    line.push(',');
                }
                line.push_str(&Value::from(k).to_string());
                line.push(':');
                line.push_str(&v.to_string());
            };
            put("timestamp", &Value::from(timestamp()));
            put("level", &Value::from(level.as_str()));
            put("target", &Value::from(target));
            put("message", &Value::from(message));
            for (k, v) in &fields {
                put(k, v);
            }
            line.push_str("}\n");
            line
        }
        Style::Pretty { ansi } => {
            let mut line = timestamp();
            let lvl = format!("{:>5}", level.as_str());
            if ansi {
                let colour = match level {
                    Level::ERROR => "31",
                    Level::WARN => "33",
                    Level::INFO => "32",
                    Level::DEBUG => "34",
                    Level::TRACE => "35",
                };
                let _ = write!(line, " \x1b[{colour}m{lvl}\x1b[0m ");
            } else {
                let _ = write!(line, " {lvl} ");
            }
            line.push_str(&escape(&message));
            for (k, v) in &fields {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let _ = write!(line, " {k}={}", quote(&text));
            }
            line.push('\n');
            line
        }
    }
}

/// Control characters as escapes: the record stays on one line.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A value as `key=value`: bare when it is one word, else quoted with escapes.
fn quote(text: &str) -> String {
    let bare = !text.is_empty() && !text.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=');
    if bare {
        return text.to_owned();
    }
    let mut out = String::from("\"");
    for c in escape(text).chars() {
        match c {
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_escaping() {
        assert_eq!(quote("loopback"), "loopback");
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("line1\nline2"), "\"line1\\nline2\"");
        assert_eq!(escape("x\ny"), "x\\ny");
    }

    #[test]
    fn colliding_keys_are_renamed() {
        let fields = vec![
            ("message".to_owned(), Value::from("a")),
            ("kind".to_owned(), Value::from("k")),
            ("kind".to_owned(), Value::from("again")),
        ];
        let keys: Vec<String> = unique(fields).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["field_message", "kind", "field_kind"]);
    }
}

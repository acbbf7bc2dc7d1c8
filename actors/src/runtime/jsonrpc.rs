//! JSON-RPC 2.0 over a child's stdio, newline-delimited (ACP's framing).
//!
//! Messages with `method` are requests (with `id`) or notifications from the agent — the agent
//! has its own id space, so ids collide with ours and are never used to tell the two apart.
//! Messages without `method` are responses to our requests. Several requests may be in flight.
//! Lines up to [`MAX_LINE`] bytes are accepted; longer ones and non-JSON lines are logged and
//! skipped; EOF fails every pending request at once, so a dying agent never hangs a caller.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

/// Largest line accepted from an agent.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// A message from the agent, classified. Pure.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    /// The agent asks us something; answer with [`RpcConn::respond`].
    Request { id: Value, method: String, params: Value },
    /// The agent tells us something.
    Notification { method: String, params: Value },
    /// The answer to one of our requests.
    Response { id: u64, result: Result<Value, RpcError> },
}

/// A JSON-RPC error object, or a transport failure.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RpcError {
    #[error("agent error {code}: {message}")]
    Remote { code: i64, message: String, data: Option<Value> },
    #[error("no answer to {method} within {timeout:?}")]
    Timeout { method: String, timeout: Duration },
    #[error("agent exited: {0}")]
    Closed(String),
}

/// Why a line was skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skipped {
    NotJson(String),
    NotAnObject,
    /// A response whose id is not one of ours.
    UnknownResponse,
}

/// Classifies one line.
pub fn classify(line: &str) -> Result<Incoming, Skipped> {
    let value: Value = serde_json::from_str(line).map_err(|e| Skipped::NotJson(e.to_string()))?;
    let Value::Object(mut obj) = value else { return Err(Skipped::NotAnObject) };
    let params = obj.remove("params").unwrap_or(Value::Null);
    if let Some(Value::String(method)) = obj.remove("method") {
        return Ok(match obj.remove("id") {
            Some(id) if !id.is_null() => Incoming::Request { id, method, params },
            _ => Incoming::Notification { method, params },
        });
    }
    let id = obj.get("id").and_then(Value::as_u64).ok_or(Skipped::UnknownResponse)?;
    let result = match obj.remove("error") {
        Some(err) => Err(RpcError::Remote {
            code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: err.get("message").and_then(Value::as_str).unwrap_or("").to_owned(),
            data: err.get("data").cloned(),
        }),
        None => Ok(obj.remove("result").unwrap_or(Value::Null)),
    };
    Ok(Incoming::Response { id, result })
}

/// Requests waiting for their response: id → (method, where the answer goes).
type PendingMap = HashMap<u64, (String, oneshot::Sender<Result<Value, RpcError>>)>;
type Pending = Arc<Mutex<PendingMap>>;

/// The sending side of a connection; cheap to clone.
#[derive(Clone)]
pub struct RpcConn {
    out: mpsc::UnboundedSender<String>,
    pending: Pending,
    next_id: Arc<AtomicU64>,
}

fn lock(p: &Pending) -> std::sync::MutexGuard<'_, PendingMap> {
    match p.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl RpcConn {
    /// Starts the writer and reader tasks. Requests and notifications from the agent go to
    /// `on_incoming`; when stdout closes, every pending request fails with `closed_reason()`.
    pub fn start<W, R>(
        writer: W,
        reader: R,
        label: String,
        on_incoming: impl Fn(Incoming) + Send + 'static,
        closed_reason: impl Fn() -> String + Send + 'static,
    ) -> RpcConn
    where
        W: AsyncWrite + Unpin + Send + 'static,
        R: AsyncRead + Unpin + Send + 'static,
    {
        let (out, mut rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            let mut writer = writer;
            while let Some(line) = rx.recv().await {
                if writer.write_all(line.as_bytes()).await.is_err() || writer.write_all(b"\n").await.is_err() {
                    break;
                }
                if writer.flush().await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let reader_pending = pending.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::with_capacity(64 * 1024, reader);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match read_bounded_line(&mut reader, &mut buf, MAX_LINE).await {
                    Ok(LineRead::Eof) | Err(_) => break,
                    Ok(LineRead::TooLong(n)) => {
                        tracing::warn!(actor_kind = "runtime", agent = %label, bytes = n, "skipped a line longer than 16 MiB");
                    }
                    Ok(LineRead::Line) => {
                        let text = String::from_utf8_lossy(&buf);
                        let text = text.trim();
                        if text.is_empty() {
                            continue;
                        }
                        match classify(text) {
                            Ok(Incoming::Response { id, result }) => {
                                let waiter = lock(&reader_pending).remove(&id);
                                match waiter {
                                    Some((_, tx)) => {
                                        let _ = tx.send(result);
                                    }
                                    None => tracing::debug!(agent = %label, id, "response to no pending request"),
                                }
                            }
                            Ok(other) => on_incoming(other),
                            Err(skipped) => {
                                let shown: String = text.chars().take(200).collect();
                                tracing::warn!(actor_kind = "runtime", agent = %label, reason = ?skipped, line = %shown, "skipped a non-JSON-RPC line from the agent");
                            }
                        }
                    }
                }
            }
            let reason = closed_reason();
            for (_, (_, tx)) in lock(&reader_pending).drain() {
                let _ = tx.send(Err(RpcError::Closed(reason.clone())));
            }
        });
        RpcConn { out, pending, next_id: Arc::new(AtomicU64::new(1)) }
    }

    /// Sends a request and waits at most `timeout` for its response.
    pub async fn request(&self, method: &str, params: Value, timeout: Duration) -> Result<Value, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, (method.to_owned(), tx));
        let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        if self.out.send(line).is_err() {
            lock(&self.pending).remove(&id);
            return Err(RpcError::Closed("stdin closed".into()));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(RpcError::Closed("connection dropped".into())),
            Err(_) => {
                lock(&self.pending).remove(&id);
                Err(RpcError::Timeout { method: method.to_owned(), timeout })
            }
        }
    }

    /// Sends a notification.
    pub fn notify(&self, method: &str, params: Value) {
        let _ = self.out.send(json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string());
    }

    /// Answers an agent request.
    pub fn respond(&self, id: &Value, result: Value) {
        let _ = self.out.send(json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string());
    }

    /// Answers an agent request with an error.
    pub fn respond_error(&self, id: &Value, code: i64, message: &str) {
        let _ =
            self.out.send(json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string());
    }
}

enum LineRead {
    Line,
    Eof,
    TooLong(usize),
}

/// Reads one `\n`-terminated line into `buf`, at most `max` bytes; a longer line is consumed and
/// dropped.
async fn read_bounded_line<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    let mut dropped = 0usize;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if buf.is_empty() && dropped == 0 {
                LineRead::Eof
            } else if dropped > 0 {
                LineRead::TooLong(dropped)
            } else {
                LineRead::Line
            });
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if dropped > 0 || buf.len() + chunk.len() > max {
            dropped += buf.len() + chunk.len();
            buf.clear();
        } else {
            buf.extend_from_slice(chunk);
        }
        let consumed = done.unwrap_or(available.len());
        reader.consume(consumed);
        if done.is_some() {
            return Ok(if dropped > 0 { LineRead::TooLong(dropped) } else { LineRead::Line });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_by_method_not_id() {
        assert_eq!(
            classify(r#"{"jsonrpc":"2.0","id":0,"method":"session/request_permission","params":{"a":1}}"#),
            Ok(Incoming::Request { id: json!(0), method: "session/request_permission".into(), params: json!({"a":1}) })
        );
        assert_eq!(
            classify(r#"{"jsonrpc":"2.0","method":"session/update","params":{}}"#),
            Ok(Incoming::Notification { method: "session/update".into(), params: json!({}) })
        );
        assert_eq!(
            classify(r#"{"jsonrpc":"2.0","id":0,"result":{"x":1}}"#),
            Ok(Incoming::Response { id: 0, result: Ok(json!({"x":1})) })
        );
        assert!(matches!(
            classify(r#"{"id":3,"error":{"code":-32601,"message":"nope"}}"#),
            Ok(Incoming::Response { id: 3, result: Err(RpcError::Remote { code: -32601, .. }) })
        ));
        assert!(matches!(classify("Loading model..."), Err(Skipped::NotJson(_))));
        assert_eq!(classify("[1,2]"), Err(Skipped::NotAnObject));
        assert_eq!(classify(r#"{"id":"x","result":1}"#), Err(Skipped::UnknownResponse));
    }

    #[tokio::test]
    async fn requests_notifications_long_lines_and_eof() -> Result<(), Box<dyn std::error::Error>> {
        let (client_out, agent_in) = tokio::io::duplex(1 << 16);
        let (mut agent_out, client_in) = tokio::io::duplex(1 << 20);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let conn = RpcConn::start(
            client_out,
            client_in,
            "test".into(),
            move |m| {
                let _ = tx.send(m);
            },
            || "eof".into(),
        );
        let pending = tokio::spawn({
            let conn = conn.clone();
            async move { conn.request("initialize", json!({}), Duration::from_secs(5)).await }
        });
        let mut agent_reader = BufReader::new(agent_in).lines();
        let sent = agent_reader.next_line().await?.ok_or("no request")?;
        let sent: Value = serde_json::from_str(&sent)?;
        assert_eq!(sent["method"], "initialize");
        let id = sent["id"].clone();
        // Garbage, an over-long line (skipped), an agent request with a colliding id, then our answer.
        agent_out.write_all(b"not json\n").await?;
        let big = format!("{{\"x\":\"{}\"}}\n", "a".repeat(MAX_LINE + 10));
        agent_out.write_all(big.as_bytes()).await?;
        agent_out
            .write_all(
                format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"fs/read_text_file\",\"params\":{{}}}}\n")
                    .as_bytes(),
            )
            .await?;
        agent_out
            .write_all(format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"protocolVersion\":1}}}}\n").as_bytes())
            .await?;
        assert_eq!(pending.await??, json!({"protocolVersion": 1}));
        assert!(matches!(rx.recv().await, Some(Incoming::Request { method, .. }) if method == "fs/read_text_file"));
        let waiting = tokio::spawn({
            let conn = conn.clone();
            async move { conn.request("session/prompt", json!({}), Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(agent_out);
        assert!(matches!(waiting.await?, Err(RpcError::Closed(r)) if r == "eof"));
        Ok(())
    }
}

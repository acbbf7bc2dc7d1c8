//! The HTTP listener's accept loop: serves the router over HTTP/1.1 and h2 (plaintext or TLS)
//! with bounds on what a client can hold.
//!
//! * **Header-read timeout**: from accept (or, on a kept-alive connection, from the first byte
//!   of the next request) to the end of the request head. A client that sends half a request
//!   line and stalls is disconnected.
//! * **Idle timeout**: a kept-alive connection with no request in flight is closed. A request
//!   being served — an SSE stream included, however long — stops the clock.
//! * **Connection limit**: beyond `max_connections` open connections a new one is answered
//!   `503` (`{"error": …}`, `Retry-After: 1`, `Connection: close`) and closed at once; the ones
//!   open keep being served.
//! * **Bounded shutdown**: on shutdown the loop stops accepting, asks every connection to finish
//!   its in-flight requests (SSE streams end on the node's shutdown token), and after
//!   `shutdown_grace` drops whatever is left.
//!
//! The timeouts are kept here, per connection ([`ConnClock`]), not by hyper: hyper's own
//! HTTP/1 `header_read_timeout` also runs while a kept-alive connection waits for its next
//! request, so it would cap the idle time at the header-read timeout.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use aethrolink_actors::telemetry::{HTTP_CONNECTIONS, HTTP_CONNECTIONS_CLOSED};
use axum::Router;
use axum::body::Body;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::tls::TlsConfig;

/// How the listener bounds its connections.
#[derive(Clone, Debug)]
pub struct ListenerSettings {
    /// Accept to end of request head (`ZERO`: no limit).
    pub header_read_timeout: Duration,
    /// A kept-alive connection with no request in flight (`ZERO`: no limit).
    pub idle_timeout: Duration,
    /// Connections open at once; more are answered 503.
    pub max_connections: usize,
    /// How long shutdown waits for connections before dropping them.
    pub shutdown_grace: Duration,
    /// Serve HTTPS with this configuration.
    pub tls: Option<TlsConfig>,
}

/// Refused connections being answered at once; past this a refused connection gets the answer
/// written without waiting for its request, and is closed.
const REFUSALS_MAX: usize = 256;
/// How long a refused connection's request head is waited for before answering anyway.
const REFUSAL_HEAD_WAIT: Duration = Duration::from_millis(500);
/// How long answering a refused connection may take in all.
const REFUSAL_BOUND: Duration = Duration::from_secs(2);
/// Most bytes of a refused connection's request read before answering it.
const REFUSAL_READ_MAX: usize = 16 * 1024;
/// Pause after an accept error (e.g. out of file descriptors) before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Least time between two log lines about refused connections.
const LIMIT_WARN_INTERVAL: Duration = Duration::from_secs(10);
/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Serves `app` on `listener` until `shutdown` is cancelled, then shuts down within the grace.
pub async fn serve_http(listener: TcpListener, app: Router, settings: ListenerSettings, shutdown: CancellationToken) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The header-read timeout is the connection clock's; hyper's would also cut idle keep-alives.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(None);
    builder.http2().timer(TokioTimer::new());
    let shared = Arc::new(Shared {
        builder,
        app,
        tls: settings.tls.as_ref().map(|t| TlsAcceptor::from(t.server_config())),
        refusal_tls: settings.tls.as_ref().map(|t| TlsAcceptor::from(t.http1_only())),
        limits: Limits { header_read: settings.header_read_timeout, idle: settings.idle_timeout },
        closing: CancellationToken::new(),
    });
    let gate = ConnectionGate::with_gauge(settings.max_connections, HTTP_CONNECTIONS);
    let refusals = ConnectionGate::new(REFUSALS_MAX);
    let mut tasks = JoinSet::new();
    let (mut refused, mut last_warned) = (0u64, None);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    // SSE frames are small writes: without TCP_NODELAY, Nagle's algorithm meets
                    // the client's delayed ACK and each frame can wait ~40 ms.
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::debug!(error = %e, "could not set TCP_NODELAY");
                    }
                    if let Some(permit) = gate.try_acquire() {
                        tasks.spawn(serve_connection(tcp, shared.clone(), permit));
                    } else {
                        metrics::counter!(HTTP_CONNECTIONS_CLOSED, "reason" => "limit").increment(1);
                        refused += 1;
                        // A flood must not flood the log: one line per interval, with the count.
                        if last_warned.is_none_or(|at: Instant| at.elapsed() >= LIMIT_WARN_INTERVAL) {
                            tracing::warn!(%peer, refused, max_connections = settings.max_connections, "connection limit reached; answering 503");
                            last_warned = Some(Instant::now());
                            refused = 0;
                        }
                        if let Some(permit) = refusals.try_acquire() {
                            tasks.spawn(refuse_connection(tcp, shared.clone(), permit));
                        } else if shared.tls.is_none() {
                            // Too many being answered: the answer fits an empty socket buffer.
                            let _ = tcp.try_write(&CONNECTION_LIMIT.to_bytes());
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    shared.closing.cancel();
    let open = tasks.len();
    tracing::info!(
        connections = open,
        grace_ms = settings.shutdown_grace.as_millis() as u64,
        "listener closed; finishing in-flight requests"
    );
    let drained = tokio::time::timeout(settings.shutdown_grace, async { while tasks.join_next().await.is_some() {} });
    if drained.await.is_err() {
        tracing::warn!(connections = tasks.len(), "shutdown grace over: dropping the connections still open");
        metrics::counter!(HTTP_CONNECTIONS_CLOSED, "reason" => "shutdown_grace").increment(tasks.len() as u64);
        tasks.shutdown().await;
    }
}

/// What every connection task shares.
struct Shared {
    builder: auto::Builder<TokioExecutor>,
    app: Router,
    tls: Option<TlsAcceptor>,
    /// The same keys, HTTP/1.1 only, to answer a refused connection.
    refusal_tls: Option<TlsAcceptor>,
    limits: Limits,
    /// Cancelled when the listener shuts down: connections finish what is in flight and close.
    closing: CancellationToken,
}

/// The per-connection timeouts (`ZERO`: none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub header_read: Duration,
    pub idle: Duration,
}

/// One accepted connection: TLS handshake (if any), then HTTP until it ends, times out, or the
/// listener shuts down.
async fn serve_connection(tcp: TcpStream, shared: Arc<Shared>, _permit: Permit) {
    let Some(acceptor) = &shared.tls else {
        return drive(tcp, &shared).await;
    };
    let handshake = async {
        if !starts_like_tls(&tcp).await {
            answer_and_close(tcp, &PLAINTEXT_ON_TLS_PORT).await;
            return None;
        }
        match acceptor.accept(tcp).await {
            Ok(tls) => Some(tls),
            Err(e) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                metrics::counter!(HTTP_CONNECTIONS_CLOSED, "reason" => "tls_handshake").increment(1);
                None
            }
        }
    };
    let bounded = async {
        match nonzero(shared.limits.header_read) {
            Some(limit) => tokio::time::timeout(limit, handshake).await.unwrap_or_else(|_| {
                tracing::debug!("TLS handshake timed out");
                metrics::counter!(HTTP_CONNECTIONS_CLOSED, "reason" => "tls_handshake").increment(1);
                None
            }),
            None => handshake.await,
        }
    };
    let tls = tokio::select! {
        tls = bounded => tls,
        _ = shared.closing.cancelled() => None,
    };
    if let Some(tls) = tls {
        drive(tls, &shared).await;
    }
}

/// Whether the client's first byte opens a TLS handshake (else it is likely plain HTTP).
async fn starts_like_tls(tcp: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(1) => first[0] == TLS_HANDSHAKE_RECORD || !first[0].is_ascii_alphabetic(),
        _ => true,
    }
}

fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// Serves HTTP on an established stream, closing it when its clock runs out.
async fn drive<T>(io: T, shared: &Shared)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new(Instant::now()));
    let io = TokioIo::new(Watched { inner: io, activity: activity.clone(), rewrite: None });
    let service = Tracked { app: shared.app.clone(), activity: activity.clone() };
    let conn = shared.builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let changed = activity.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let deadline = activity.deadline(shared.limits);
        let expiry = async {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            _ = shared.closing.cancelled(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = changed => {}
            _ = expiry => {
                if let Some((_, why)) = activity.deadline(shared.limits).filter(|(at, _)| *at <= Instant::now()) {
                    tracing::debug!(reason = why.as_str(), "closing HTTP connection");
                    metrics::counter!(HTTP_CONNECTIONS_CLOSED, "reason" => why.as_str()).increment(1);
                    return;
                }
            }
        }
    }
}

/// A refused connection: read what the client sent (so it is reading when the answer comes and
/// the close is not a reset), answer 503, close.
async fn refuse_connection(tcp: TcpStream, shared: Arc<Shared>, _permit: Permit) {
    let answer = async {
        match &shared.refusal_tls {
            None => answer_and_close(tcp, &CONNECTION_LIMIT).await,
            Some(acceptor) => {
                if !starts_like_tls(&tcp).await {
                    return answer_and_close(tcp, &PLAINTEXT_ON_TLS_PORT).await;
                }
                if let Ok(tls) = acceptor.accept(tcp).await {
                    answer_and_close(tls, &CONNECTION_LIMIT).await;
                }
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_BOUND, answer).await;
}

/// A complete HTTP/1.1 answer the listener gives by itself.
pub struct CannedAnswer {
    pub status_line: &'static str,
    pub message: &'static str,
}

/// The answer beyond `--max-connections`.
pub const CONNECTION_LIMIT: CannedAnswer = CannedAnswer {
    status_line: "503 Service Unavailable",
    message: "the node is serving as many connections as it allows (--max-connections); retry shortly",
};

/// The answer to plain HTTP on the HTTPS port.
pub const PLAINTEXT_ON_TLS_PORT: CannedAnswer =
    CannedAnswer { status_line: "400 Bad Request", message: "this port serves HTTPS: use an https:// URL" };

impl CannedAnswer {
    /// The bytes on the wire: the documented `{"error": …}` body, `Connection: close`. Pure.
    pub fn to_bytes(&self) -> Vec<u8> {
        let body = serde_json::json!({ "error": self.message }).to_string();
        // Only the connection limit passes: the others are the request's fault.
        let retry = if self.status_line.starts_with("503") { "retry-after: 1\r\n" } else { "" };
        format!(
            "HTTP/1.1 {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{retry}connection: close\r\n\r\n{body}",
            self.status_line,
            body.len()
        )
        .into_bytes()
    }
}

/// Reads the request head (bounded), writes `answer`, half-closes and drains briefly.
async fn answer_and_close<T: AsyncRead + AsyncWrite + Unpin>(mut io: T, answer: &CannedAnswer) {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 2048];
    let head_read = async {
        while seen.len() < REFUSAL_READ_MAX && !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_HEAD_WAIT, head_read).await;
    if io.write_all(&answer.to_bytes()).await.is_err() {
        return;
    }
    let _ = io.shutdown().await;
    // Whatever else the client sends is read and dropped until it closes (bounded by the caller).
    let mut drained = 0;
    while drained < REFUSAL_READ_MAX {
        match io.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// Counts connections against a limit. Pure (atomics; no IO).
#[derive(Clone, Debug)]
pub struct ConnectionGate {
    open: Arc<AtomicUsize>,
    max: usize,
    /// A gauge kept equal to the slots taken.
    gauge: Option<&'static str>,
}

/// One connection counted by a [`ConnectionGate`]; dropping it frees the slot.
#[derive(Debug)]
pub struct Permit {
    open: Arc<AtomicUsize>,
    gauge: Option<&'static str>,
}

impl ConnectionGate {
    pub fn new(max: usize) -> Self {
        ConnectionGate { open: Arc::new(AtomicUsize::new(0)), max, gauge: None }
    }

    /// The same, reporting the slots taken as the gauge `name`.
    pub fn with_gauge(max: usize, name: &'static str) -> Self {
        ConnectionGate { gauge: Some(name), ..Self::new(max) }
    }

    /// A slot, if fewer than `max` are taken.
    pub fn try_acquire(&self) -> Option<Permit> {
        self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1)).ok()?;
        if let Some(name) = self.gauge {
            metrics::gauge!(name).increment(1.0);
        }
        Some(Permit { open: self.open.clone(), gauge: self.gauge })
    }

    /// Slots taken now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(name) = self.gauge {
            metrics::gauge!(name).decrement(1.0);
        }
    }
}

/// Which clock of a connection runs out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    HeaderRead,
    Idle,
}

impl Expiry {
    pub fn as_str(self) -> &'static str {
        match self {
            Expiry::HeaderRead => "header_read_timeout",
            Expiry::Idle => "idle_timeout",
        }
    }
}

/// Where a connection is, for its timeouts. Pure: callers pass the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for (the rest of) a request head since `since`.
    Head { since: Instant },
    /// Kept alive with nothing in flight since `since`.
    Idle { since: Instant },
    /// Serving `requests` requests (h2 multiplexes); no clock runs.
    Busy { requests: usize },
}

/// A connection's clock: which phase it is in and what the first bytes said of its protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnClock {
    pub phase: Phase,
    /// `None` until the first bytes are read; `Some(true)` for h2 (its preface).
    h2: Option<bool>,
}

impl ConnClock {
    /// A new connection: its request head is due from now (as Go's `ReadHeaderTimeout`).
    pub fn new(now: Instant) -> Self {
        ConnClock { phase: Phase::Head { since: now }, h2: None }
    }

    /// Bytes arrived; whether the phase changed. On HTTP/1 the first byte after an idle spell
    /// starts the head's clock. h2 has no head phase: frames (pings, settings) arrive while
    /// idle, and request heads are bounded by h2's own flow.
    pub fn on_read(&mut self, bytes: &[u8], now: Instant) -> bool {
        let Some(first) = bytes.first() else { return false };
        let h2 = *self.h2.get_or_insert(*first == b'P' && bytes.starts_with(b"PRI"));
        match self.phase {
            Phase::Head { .. } if h2 => {
                self.phase = Phase::Idle { since: now };
                true
            }
            Phase::Idle { .. } if !h2 => {
                self.phase = Phase::Head { since: now };
                true
            }
            _ => false,
        }
    }

    /// A request head was read and is being served.
    pub fn on_request(&mut self) {
        self.phase = match self.phase {
            Phase::Busy { requests } => Phase::Busy { requests: requests + 1 },
            _ => Phase::Busy { requests: 1 },
        };
    }

    /// A request's response ended (or was dropped).
    pub fn on_response_done(&mut self, now: Instant) {
        self.phase = match self.phase {
            Phase::Busy { requests } if requests > 1 => Phase::Busy { requests: requests - 1 },
            _ => Phase::Idle { since: now },
        };
    }

    /// When the connection is to be closed, and why; `None` while a request is served.
    pub fn deadline(&self, limits: Limits) -> Option<(Instant, Expiry)> {
        match self.phase {
            Phase::Head { since } => nonzero(limits.header_read).map(|d| (since + d, Expiry::HeaderRead)),
            Phase::Idle { since } => nonzero(limits.idle).map(|d| (since + d, Expiry::Idle)),
            Phase::Busy { .. } => None,
        }
    }
}

/// A connection's clock, shared by its stream, its service and its task.
struct Activity {
    clock: Mutex<ConnClock>,
    /// Woken when the phase changes, so the task recomputes its deadline.
    changed: Notify,
}

impl Activity {
    fn new(now: Instant) -> Self {
        Activity { clock: Mutex::new(ConnClock::new(now)), changed: Notify::new() }
    }

    fn update(&self, f: impl FnOnce(&mut ConnClock) -> bool) {
        let changed = match self.clock.lock() {
            Ok(mut clock) => f(&mut clock),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        };
        if changed {
            self.changed.notify_waiters();
        }
    }

    fn deadline(&self, limits: Limits) -> Option<(Instant, Expiry)> {
        match self.clock.lock() {
            Ok(clock) => clock.deadline(limits),
            Err(poisoned) => poisoned.into_inner().deadline(limits),
        }
    }
}

/// The connection's stream, reporting the bytes it reads to the clock, and giving hyper's own
/// answers to unparseable requests (an empty 400/414/431) the documented `{"error": …}` body.
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
    /// hyper's automatic answer being replaced by ours (`None` until one is written).
    rewrite: Option<Rewrite>,
}

/// An answer written in place of hyper's: our bytes go out, hyper's head is consumed unsent.
struct Rewrite {
    bytes: Vec<u8>,
    written: usize,
    /// How many more of hyper's bytes to report written without sending them.
    swallow: usize,
}

/// hyper's automatic answer to a request it could not parse: `HTTP/1.1 400|414|431 …` with an
/// empty body, written before any request reached the router. Pure: the length of its head and
/// the answer to send instead.
pub fn library_error_answer(buf: &[u8]) -> Option<(usize, CannedAnswer)> {
    let answer = if buf.starts_with(b"HTTP/1.1 400 ") {
        CannedAnswer {
            status_line: "400 Bad Request",
            message: "the request could not be parsed as HTTP/1.1 (request line, method, URI or a header is malformed)",
        }
    } else if buf.starts_with(b"HTTP/1.1 414 ") {
        CannedAnswer { status_line: "414 URI Too Long", message: "the request URI is too long" }
    } else if buf.starts_with(b"HTTP/1.1 431 ") {
        CannedAnswer {
            status_line: "431 Request Header Fields Too Large",
            message: "the request's headers are too large",
        }
    } else {
        return None;
    };
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    head.contains("\r\ncontent-length: 0\r\n").then_some((end, answer))
}

impl<T> Watched<T> {
    fn serving(&self) -> bool {
        let phase = match self.activity.clock.lock() {
            Ok(clock) => clock.phase,
            Err(poisoned) => poisoned.into_inner().phase,
        };
        matches!(phase, Phase::Busy { .. })
    }
}

impl<T: AsyncWrite + Unpin> Watched<T> {
    /// Writes `buf`, or our answer in place of hyper's automatic one.
    fn write_or_rewrite(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.rewrite.is_none()
            && !self.serving()
            && let Some((head_len, answer)) = library_error_answer(buf)
        {
            self.rewrite = Some(Rewrite { bytes: answer.to_bytes(), written: 0, swallow: head_len });
        }
        let Some(rewrite) = self.rewrite.as_mut() else { return Pin::new(&mut self.inner).poll_write(cx, buf) };
        while rewrite.written < rewrite.bytes.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &rewrite.bytes[rewrite.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(0)),
                Poll::Ready(Ok(n)) => rewrite.written += n,
                other => return other,
            }
        }
        // hyper closes after its automatic answer; anything after it is dropped.
        let n = if rewrite.swallow > 0 { rewrite.swallow.min(buf.len()) } else { buf.len() };
        rewrite.swallow -= n.min(rewrite.swallow);
        Poll::Ready(Ok(n))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && buf.filled().len() > before
        {
            let now = Instant::now();
            self.activity.update(|clock| clock.on_read(&buf.filled()[before..], now));
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().write_or_rewrite(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
        if self.rewrite.is_some() || (first.starts_with(b"HTTP/1.1 4") && !self.serving()) {
            // Rare (an unparseable request): one slice at a time, through the rewrite.
            return self.get_mut().write_or_rewrite(cx, first);
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The router as a hyper service that tells the clock when a request starts and when its
/// response has been sent.
#[derive(Clone)]
struct Tracked {
    app: Router,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response<InFlightBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.activity.update(|clock| {
            clock.on_request();
            true
        });
        let guard = InFlight(self.activity.clone());
        let mut app = self.app.clone();
        Box::pin(async move {
            let response = tower::Service::call(&mut app, req).await?;
            Ok(response.map(|body| InFlightBody { body, _guard: guard }))
        })
    }
}

/// A request in flight; dropped with its response body (sent, or abandoned).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = Instant::now();
        self.0.update(|clock| {
            clock.on_response_done(now);
            true
        });
    }
}

/// A response body that holds its request's [`InFlight`].
struct InFlightBody {
    body: Body,
    _guard: InFlight,
}

impl hyper::body::Body for InFlightBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { header_read: Duration::from_secs(10), idle: Duration::from_secs(60) };

    #[test]
    fn the_gate_admits_up_to_its_limit_and_frees_on_drop() {
        let gate = ConnectionGate::new(2);
        let a = gate.try_acquire();
        let b = gate.try_acquire();
        assert!(a.is_some() && b.is_some());
        assert!(gate.try_acquire().is_none(), "third is over the limit");
        assert_eq!(gate.open(), 2);
        drop(a);
        assert_eq!(gate.open(), 1);
        let c = gate.try_acquire();
        assert!(c.is_some(), "a freed slot is reused");
        assert!(gate.try_acquire().is_none());
        drop((b, c));
        assert_eq!(gate.open(), 0);
        assert!(ConnectionGate::new(0).try_acquire().is_none());
    }

    #[test]
    fn a_new_http1_connection_has_the_header_clock_then_idle_between_requests() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut clock = ConnClock::new(t0);
        assert_eq!(clock.deadline(LIMITS), Some((t0 + s(10), Expiry::HeaderRead)));
        // Half a request line does not restart the head's clock.
        assert!(!clock.on_read(b"GET /pi", t0 + s(1)));
        assert!(!clock.on_read(b"ng HTTP/1.1\r\n", t0 + s(2)));
        assert_eq!(clock.deadline(LIMITS), Some((t0 + s(10), Expiry::HeaderRead)));
        clock.on_request();
        assert_eq!(clock.deadline(LIMITS), None, "no clock while a request is served");
        // Body bytes while busy change nothing.
        assert!(!clock.on_read(b"{}", t0 + s(3)));
        clock.on_response_done(t0 + s(4));
        assert_eq!(clock.deadline(LIMITS), Some((t0 + s(64), Expiry::Idle)));
        // The next request's first byte starts its head clock.
        assert!(clock.on_read(b"G", t0 + s(30)));
        assert_eq!(clock.deadline(LIMITS), Some((t0 + s(40), Expiry::HeaderRead)));
    }

    #[test]
    fn h2_connections_have_no_head_phase_and_count_streams() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut clock = ConnClock::new(t0);
        assert!(clock.on_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", t0 + s(1)));
        assert_eq!(clock.deadline(LIMITS), Some((t0 + s(61), Expiry::Idle)));
        assert!(!clock.on_read(b"\0\0\x08\x06", t0 + s(2)), "a ping while idle keeps the idle clock");
        clock.on_request();
        clock.on_request();
        clock.on_response_done(t0 + s(5));
        assert_eq!(clock.deadline(LIMITS), None, "one stream still open (an SSE stream, say)");
        clock.on_response_done(t0 + s(500));
        assert_eq!(clock.deadline(LIMITS), Some((t0 + s(560), Expiry::Idle)));
    }

    #[test]
    fn only_hypers_empty_automatic_answers_are_rewritten() {
        let auto = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let Some((len, answer)) = library_error_answer(auto) else { panic!("not recognised") };
        assert_eq!(len, auto.len());
        let bytes = String::from_utf8(answer.to_bytes()).unwrap_or_default();
        assert!(
            bytes.starts_with("HTTP/1.1 431 ") && bytes.ends_with(r#"{"error":"the request's headers are too large"}"#)
        );
        assert!(!bytes.contains("retry-after"));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 20\r\n\r\n";
        assert!(library_error_answer(ours).is_none());
        assert!(library_error_answer(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n").is_none(), "a partial head");
        assert!(library_error_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
    }

    #[test]
    fn zero_disables_a_timeout() {
        let t0 = Instant::now();
        let none = Limits { header_read: Duration::ZERO, idle: Duration::ZERO };
        let mut clock = ConnClock::new(t0);
        assert_eq!(clock.deadline(none), None);
        clock.on_request();
        clock.on_response_done(t0);
        assert_eq!(clock.deadline(none), None);
    }

    #[test]
    fn canned_answers_are_complete_json_responses() {
        let bytes = CONNECTION_LIMIT.to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{head}");
        assert!(head.contains("connection: close") && head.contains("retry-after: 1"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert!(json["error"].as_str().is_some_and(|m| m.contains("--max-connections")), "{body}");
    }
}

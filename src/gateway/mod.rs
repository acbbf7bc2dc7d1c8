//! The Aether control-plane gateway: a gRPC binding (`aether.v1.AetherGateway/Connect`, one
//! bidirectional stream per client) in front of the core's service layer
//! (`Services::gateway_connect`). It decodes frames, hands them to the session's connection
//! actor, and encodes what the session sends back; it holds no domain rule.
//!
//! * [`proto`] — the generated wire types and server trait (`proto/aether_v1.fds`).
//! * [`decode`] / [`encode`] — frames into the core's requests; answers into frames and statuses.
//!
//! A stream: the first frame must be `InitConnection` (within 30 s); a refused connect ends the
//! call with the status the SDK understands (`UNAUTHENTICATED`, `ALREADY_EXISTS`,
//! `INVALID_ARGUMENT`); an accepted one gets `ConnectionAck` first. Later frames are read as
//! they come (the SDK sends without waiting for the ack) and handed to the session in order.
//! On node shutdown every stream ends with `UNAVAILABLE` (the SDK reconnects), never OK. The
//! server pings every 30 s (HTTP/2 keepalive, 10 s to answer): sync SDK clients never ping,
//! and a dead peer must not hold its identity lock.
//!
//! Over TLS (`--aether-tls-*`) each handshake runs in its own task before the connection is
//! handed to the server; under mTLS a client without a certificate chained to the configured
//! CA is refused at the handshake.

pub mod decode;
pub mod encode;
pub mod proto;
pub mod tasks;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aethrolink_actors::aether::connection::Outbound;
use aethrolink_actors::aether::queue::Outbox;
use aethrolink_actors::service::Services;
use aethrolink_actors::service::aether::{AnonymousPolicy, GatewaySession};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_rustls::rustls::ServerConfig;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use self::proto::aether_gateway_server::{AetherGateway, AetherGatewayServer};
use self::proto::upstream_message::Payload;
use self::proto::{DownstreamMessage, UpstreamMessage};

/// How long a new stream may take to send its `InitConnection`.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest upstream frame accepted (an oversized frame kills the whole stream at the gRPC
/// layer, so the limit is generous and payload limits are the application's).
const MAX_DECODING: usize = 16 * 1024 * 1024;
/// Largest downstream frame: the Python SDK's receive limit is 4 MiB.
const MAX_ENCODING: usize = 4 * 1024 * 1024;
/// Server HTTP/2 keepalive pings, and how long a peer has to answer one.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The gateway service of one node.
pub struct Gateway {
    services: Services,
    /// Whether clients without a credential are admitted as the principal they claim.
    policy: AnonymousPolicy,
    /// The node's shutdown: every stream ends with `UNAVAILABLE`.
    shutdown: CancellationToken,
}

type Downstream = Pin<Box<dyn Stream<Item = Result<DownstreamMessage, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl AetherGateway for Gateway {
    type ConnectStream = Downstream;

    async fn connect(&self, request: Request<Streaming<UpstreamMessage>>) -> Result<Response<Downstream>, Status> {
        let remote = request.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let refused = |status: Status, claimed: &str| {
            tracing::info!(
                %remote, claimed, code = ?status.code(), reason = status.message(), "gateway connect refused"
            );
            status
        };
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(FIRST_FRAME_TIMEOUT, inbound.message())
            .await
            .map_err(|_| refused(Status::deadline_exceeded("no InitConnection within 30 s"), ""))?
            .map_err(|s| refused(client_fault(&s).unwrap_or(s), ""))?
            .ok_or_else(|| refused(Status::invalid_argument("the stream ended before InitConnection"), ""))?;
        let Some(Payload::Init(init)) = first.payload else {
            return Err(refused(Status::invalid_argument("first message must be InitConnection"), ""));
        };
        let mut connect = decode::connect(init).map_err(|e| refused(Status::invalid_argument(e), ""))?;
        connect.remote_addr = remote.clone();
        // The identity the client claims, for the log (a pooled task's id is the node's to make).
        let claimed = connect.principal.resolve(|| "*".into()).map(|i| i.key).unwrap_or_default();
        let (session, outbox) = self
            .services
            .gateway_connect(connect, self.policy)
            .await
            .map_err(|e| refused(encode::status_of(&e), &claimed))?;
        tracing::info!(
            %remote, identity = %session.session.identity, session_id = %session.session.session_id,
            authority = session.session.authority.as_str(), resumed = session.session.resumed,
            "gateway client connected"
        );
        let fault = EndStatus::default();
        tokio::spawn(read_frames(inbound, session, self.services.clone(), self.shutdown.clone(), fault.clone()));
        Ok(Response::new(Box::pin(downstream(outbox, self.shutdown.clone(), fault))))
    }
}

/// Hands the stream's frames to its session in arrival order until the client closes it (or
/// the node shuts down); then the session ends, releasing its identity. Admin operations are
/// carried out here, one at a time (their replies keep the stream's order), by the service
/// layer for the session's caller.
async fn read_frames(
    mut inbound: Streaming<UpstreamMessage>,
    session: GatewaySession,
    services: Services,
    shutdown: CancellationToken,
    fault: EndStatus,
) {
    let mut tasks = tasks::TaskFrames::new(session.clone(), services.clone());
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => break,
            frame = inbound.message() => frame,
        };
        match frame {
            Ok(Some(frame)) => match decode::frame(frame) {
                decode::Frame::Session(request) => session.request(request),
                decode::Frame::Sessions(op) => {
                    session.reply(Outbound::Sessions(services.gateway_session_op(&session, op).await))
                }
                decode::Frame::Tokens(op) => {
                    session.reply(Outbound::Tokens(services.gateway_token_op(&session, op).await))
                }
                decode::Frame::Workspaces(op) => {
                    session.reply(Outbound::Workspaces(services.gateway_workspace_op(&session, op).await))
                }
                decode::Frame::Agents(op) => {
                    session.reply(Outbound::Agents(services.gateway_agent_op(&session, op).await))
                }
                decode::Frame::Acl(op) => session.reply(Outbound::Acl(services.gateway_acl_op(&session, op).await)),
                decode::Frame::TaskSubscription(op) => tasks.subscription(op).await,
                frame => tasks.spawn(frame).await,
            },
            Ok(None) => break,
            Err(status) => {
                tracing::debug!(session_id = %session.session.session_id, %status, "gateway stream broke");
                if let Some(answer) = client_fault(&status)
                    && let Ok(mut slot) = fault.lock()
                {
                    *slot = Some(answer);
                }
                break;
            }
        }
    }
    session.closed();
}

/// The session's outbound items as frames. The stream ends with an error status, never OK:
/// `UNAVAILABLE` when the node shuts down or the session ended (the SDK reconnects).
fn downstream(
    rx: Outbox,
    shutdown: CancellationToken,
    fault: EndStatus,
) -> impl Stream<Item = Result<DownstreamMessage, Status>> + Send + 'static {
    futures::stream::unfold(Some((rx, shutdown, fault)), |state| async move {
        let (mut rx, shutdown, fault) = state?;
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled() => None,
            out = rx.recv() => Some(out),
        };
        match next {
            None => Some((Err(Status::unavailable("the node is shutting down; reconnect")), None)),
            Some(None) => {
                let status = fault.lock().ok().and_then(|mut slot| slot.take());
                Some((Err(status.unwrap_or_else(|| Status::unavailable("the session ended; reconnect"))), None))
            }
            Some(Some(out)) => match encode::outbound(out) {
                Ok(frame) => Some((Ok(frame), Some((rx, shutdown, fault)))),
                Err(status) => Some((Err(status), None)),
            },
        }
    })
}

/// Why the client's own stream broke, when that was its fault: the status its downstream ends
/// with instead of the recoverable `UNAVAILABLE` (set by the reader, taken by the writer).
type EndStatus = Arc<std::sync::Mutex<Option<Status>>>;

/// A frame the client sent that cannot be read, as the status to answer it with: a frame that is
/// not a valid message is `INVALID_ARGUMENT`, one over the size limit `RESOURCE_EXHAUSTED` (tonic
/// reports them as `INTERNAL` and `OUT_OF_RANGE`, which read as the node's fault). Anything else
/// (a reset, a cancel) is the transport's: `None`.
fn client_fault(status: &Status) -> Option<Status> {
    match status.code() {
        tonic::Code::Internal if status.message().contains("decode") => {
            Some(Status::invalid_argument(format!("malformed frame: {}", status.message())))
        }
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted => Some(Status::resource_exhausted(format!(
            "frame over the gateway's {} MiB limit: {}",
            MAX_DECODING / (1024 * 1024),
            status.message()
        ))),
        _ => None,
    }
}

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes finished but not yet taken by the server.
const ACCEPTED_BACKLOG: usize = 64;

/// A TLS connection as tonic's server takes it.
struct TlsConn(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl tokio::io::AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Accepts TCP connections and runs each TLS handshake in its own task (a slow or refused
/// client does not hold up the others); finished ones go to the server through the channel.
/// A refused handshake (no or a foreign client certificate under mTLS) only closes that
/// connection.
fn tls_incoming(
    listener: tokio::net::TcpListener,
    config: Arc<ServerConfig>,
    shutdown: CancellationToken,
) -> tokio_stream::wrappers::ReceiverStream<Result<TlsConn, std::io::Error>> {
    let (tx, rx) = mpsc::channel(ACCEPTED_BACKLOG);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let tcp = match accepted {
                Ok((tcp, _)) => {
                    let _ = tcp.set_nodelay(true);
                    tcp
                }
                Err(e) => {
                    // Out of descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "gateway accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(TlsConn(tls))).await;
                    }
                    Ok(Err(e)) => tracing::info!(error = %e, "gateway TLS handshake refused"),
                    Err(_) => tracing::debug!("gateway TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Serves the gateway on `listener` (over TLS with `tls`) until `shutdown` (then streams end `UNAVAILABLE` and the
/// server waits at most `grace` for connections to close).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<ServerConfig>>,
    services: Services,
    policy: AnonymousPolicy,
    shutdown: CancellationToken,
    grace: Duration,
) -> Result<(), tonic::transport::Error> {
    let gateway = Gateway { services, policy, shutdown: shutdown.clone() };
    let service = AetherGatewayServer::new(gateway)
        .max_decoding_message_size(MAX_DECODING)
        .max_encoding_message_size(MAX_ENCODING);
    let signal = {
        let shutdown = shutdown.clone();
        async move { shutdown.cancelled().await }
    };
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .add_service(service);
    let server: Pin<Box<dyn std::future::Future<Output = Result<(), tonic::transport::Error>> + Send>> = match tls {
        None => {
            // No Nagle delay: a small frame (an ack, a TaskAssignment) goes out at once instead of
            // waiting up to 40 ms for the peer's delayed ACK.
            let incoming =
                tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |tcp| {
                    tcp.inspect(|t| {
                        if let Err(e) = t.set_nodelay(true) {
                            tracing::debug!(error = %e, "could not set TCP_NODELAY on a gateway connection");
                        }
                    })
                });
            Box::pin(router.serve_with_incoming_shutdown(incoming, signal))
        }
        Some(config) => {
            Box::pin(router.serve_with_incoming_shutdown(tls_incoming(listener, config, shutdown.clone()), signal))
        }
    };
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result,
        // Past the grace after shutdown, connections still open are dropped.
        _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("gateway connections still open after the shutdown grace; dropped");
            Ok(())
        }
    }
}

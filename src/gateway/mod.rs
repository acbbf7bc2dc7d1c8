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

pub mod decode;
pub mod encode;
pub mod proto;

use std::pin::Pin;
use std::time::Duration;

use aethrolink_actors::aether::connection::{OUTBOUND_CAPACITY, Outbound};
use aethrolink_actors::service::Services;
use aethrolink_actors::service::aether::{AnonymousPolicy, GatewaySession};
use futures::Stream;
use tokio::sync::mpsc;
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
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(FIRST_FRAME_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no InitConnection within 30 s"))??
            .ok_or_else(|| Status::invalid_argument("the stream ended before InitConnection"))?;
        let Some(Payload::Init(init)) = first.payload else {
            return Err(Status::invalid_argument("first message must be InitConnection"));
        };
        let connect = decode::connect(init).map_err(Status::invalid_argument)?;
        let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let session = self.services.gateway_connect(connect, self.policy, tx).await.map_err(|e| {
            tracing::info!(kind = ?e.kind, error = %e.message, "gateway connect refused");
            encode::status_of(&e)
        })?;
        tokio::spawn(read_frames(inbound, session, self.shutdown.clone()));
        Ok(Response::new(Box::pin(downstream(rx, self.shutdown.clone()))))
    }
}

/// Hands the stream's frames to its session in arrival order until the client closes it (or
/// the node shuts down); then the session ends, releasing its identity.
async fn read_frames(mut inbound: Streaming<UpstreamMessage>, session: GatewaySession, shutdown: CancellationToken) {
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => break,
            frame = inbound.message() => frame,
        };
        match frame {
            Ok(Some(frame)) => session.request(decode::request(frame)),
            Ok(None) => break,
            Err(status) => {
                tracing::debug!(session_id = %session.session.session_id, %status, "gateway stream broke");
                break;
            }
        }
    }
    session.closed();
}

/// The session's outbound items as frames. The stream ends with an error status, never OK:
/// `UNAVAILABLE` when the node shuts down or the session ended (the SDK reconnects).
fn downstream(
    rx: mpsc::Receiver<Outbound>,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<DownstreamMessage, Status>> + Send + 'static {
    futures::stream::unfold(Some((rx, shutdown)), |state| async move {
        let (mut rx, shutdown) = state?;
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled() => None,
            out = rx.recv() => Some(out),
        };
        match next {
            None => Some((Err(Status::unavailable("the node is shutting down; reconnect")), None)),
            Some(None) => Some((Err(Status::unavailable("the session ended; reconnect")), None)),
            Some(Some(out)) => match encode::outbound(out) {
                Ok(frame) => Some((Ok(frame), Some((rx, shutdown)))),
                Err(status) => Some((Err(status), None)),
            },
        }
    })
}

/// Serves the gateway on `listener` until `shutdown` (then streams end `UNAVAILABLE` and the
/// server waits at most `grace` for connections to close).
pub async fn serve(
    listener: tokio::net::TcpListener,
    services: Services,
    policy: AnonymousPolicy,
    shutdown: CancellationToken,
    grace: Duration,
) -> Result<(), tonic::transport::Error> {
    let gateway = Gateway { services, policy, shutdown: shutdown.clone() };
    let service = AetherGatewayServer::new(gateway)
        .max_decoding_message_size(MAX_DECODING)
        .max_encoding_message_size(MAX_ENCODING);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let signal = {
        let shutdown = shutdown.clone();
        async move { shutdown.cancelled().await }
    };
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, signal);
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

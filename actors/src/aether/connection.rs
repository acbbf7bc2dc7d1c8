//! One actor per connected gateway stream: it owns the session (identity, session id, who
//! authenticated it) and answers the stream's requests, in arrival order, into the stream's
//! outbound channel, which the binding encodes into frames.
//!
//! It never waits on the client: replies go into a bounded channel with `try_send`; a client
//! that does not read (the channel is full) loses its session (the stream then ends with a
//! recoverable status and the SDK reconnects). Supervised by the presence actor, never
//! restarted (the client reconnects, with `resume_session_id`), like SSE subscribers.

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::mpsc;

use super::identity::Identity;

/// Capacity of a stream's outbound channel (frames not yet written to the client).
pub const OUTBOUND_CAPACITY: usize = 256;

/// How a session was authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionAuthority {
    /// The operator's admin key.
    Admin,
    /// An API token, by id.
    Token(String),
    /// No credential: admitted as the claimed principal (loopback node only).
    Claimed,
}

/// A session as the presence actor grants it.
#[derive(Clone, Debug)]
pub struct Session {
    /// Opaque, non-empty; the SDK sends it back as `resume_session_id` on reconnect.
    pub session_id: String,
    pub identity: Identity,
    pub authority: SessionAuthority,
    /// This connection took over a live session of the same identity (`resume_session_id`).
    pub resumed: bool,
}

/// How a request is correlated by the SDK, so that a refusal reaches the waiting call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Correlation {
    /// By `request_id` (or `client_request_id`): an error carrying the id resolves the call.
    RequestId(String),
    /// First in, first out by response type: only a typed reply resolves the call (an error
    /// would leave it waiting 10 s).
    Fifo(FifoKind),
    /// A proxied HTTP request: only a proxy response resolves it.
    Proxy(String),
    /// A tunnel: answered by closing it.
    Tunnel(String),
    /// Nothing waits: the error goes to the client's error callback.
    None,
}

/// The FIFO-correlated response types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FifoKind {
    Workspace,
    Agent,
    Acl,
}

/// What a stream asks of its session (decoded by the binding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// An operation this node does not serve (yet): `operation` names it for the answer.
    Unserved { operation: &'static str, correlation: Correlation },
    /// A frame that breaks the protocol (a second `InitConnection`): the stream ends.
    Violation(String),
}

/// Error codes of `ErrorResponse` (upstream's vocabulary, spelled as upstream does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    NotImplemented,
    InvalidArgument,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotImplemented => "ERR_NOT_IMPLEMENTED",
            ErrorCode::InvalidArgument => "ERR_INVALID_ARGUMENT",
        }
    }
}

/// What the session sends down its stream (the binding encodes it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outbound {
    /// The first frame: `ConnectionAck`.
    Ack { session_id: String, resumed: bool },
    /// The baseline `ConfigSnapshot` (agents and tasks), after the ack.
    Config,
    /// An operation is not served: `code` with `message`, correlated as the request was.
    Refused { code: ErrorCode, message: String, correlation: Correlation },
    /// End the stream with an error of this kind (never a plain OK).
    End { end: EndKind, message: String },
}

/// How a stream is ended by the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndKind {
    /// The client broke the protocol (fatal for the SDK).
    InvalidArgument,
    /// Reconnect (recoverable for the SDK).
    Unavailable,
}

/// Messages of a connection actor.
pub enum ConnectionMsg {
    /// A request from the stream, in arrival order.
    Request(Request),
    /// The client closed the stream (or it broke): the session ends.
    Closed,
}

/// Arguments of a connection actor.
pub struct ConnectionArgs {
    pub session: Session,
    pub outbound: mpsc::Sender<Outbound>,
}

/// State of a connection actor.
pub struct ConnectionState {
    /// The session this stream holds: identity, id, authority (every reply is on its behalf).
    session: Session,
    /// The stream's outbound frames (bounded; `try_send` only, so no handler waits on a client).
    outbound: mpsc::Sender<Outbound>,
}

/// One gateway stream.
pub struct ConnectionActor;

/// What a request is answered with. Pure.
pub fn answer(request: Request) -> (Outbound, bool) {
    match request {
        Request::Unserved { operation, correlation } => (
            Outbound::Refused {
                code: ErrorCode::NotImplemented,
                message: format!("ERR_NOT_IMPLEMENTED: {operation} is not served by this node"),
                correlation,
            },
            false,
        ),
        Request::Violation(message) => (Outbound::End { end: EndKind::InvalidArgument, message }, true),
    }
}

impl ConnectionState {
    /// Queues a frame; `false` when the client is not reading (or gone): the session ends.
    fn send(&self, out: Outbound) -> bool {
        match self.outbound.try_send(out) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    actor_kind = "aether_connection", identity = %self.session.identity, session_id = %self.session.session_id,
                    "client is not reading its stream; session closed"
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

impl Actor for ConnectionActor {
    type Msg = ConnectionMsg;
    type State = ConnectionState;
    type Arguments = ConnectionArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<ConnectionMsg>,
        args: ConnectionArgs,
    ) -> Result<ConnectionState, ActorProcessingErr> {
        let state = ConnectionState { session: args.session, outbound: args.outbound };
        // The ack is the first frame, before anything else is read or answered; then the
        // baseline config for agents and tasks.
        let ack = Outbound::Ack { session_id: state.session.session_id.clone(), resumed: state.session.resumed };
        if state.send(ack) && state.session.identity.kind.receives_config() {
            state.send(Outbound::Config);
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<ConnectionMsg>,
        msg: ConnectionMsg,
        state: &mut ConnectionState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ConnectionMsg::Request(request) => {
                let (out, ends) = answer(request);
                if !state.send(out) || ends {
                    myself.stop(Some("session ended".into()));
                }
            }
            ConnectionMsg::Closed => myself.stop(Some("stream closed".into())),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unserved_requests_are_refused_with_their_correlation() {
        let (out, ends) =
            answer(Request::Unserved { operation: "kv_op", correlation: Correlation::RequestId("r-1".into()) });
        assert!(!ends);
        let Outbound::Refused { code, message, correlation } = out else { panic!("not a refusal: {out:?}") };
        assert_eq!(code.as_str(), "ERR_NOT_IMPLEMENTED");
        assert!(message.contains("kv_op"), "{message}");
        assert_eq!(correlation, Correlation::RequestId("r-1".into()));
    }

    #[test]
    fn a_protocol_violation_ends_the_stream() {
        let (out, ends) = answer(Request::Violation("second InitConnection".into()));
        assert!(ends);
        assert_eq!(out, Outbound::End { end: EndKind::InvalidArgument, message: "second InitConnection".into() });
    }
}

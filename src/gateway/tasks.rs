//! A stream's task frames: `create_task`, `task_op`, `task_query` and `progress` are carried out
//! by the service layer concurrently (each waits for its task's durable write, so one slow
//! creation does not hold up the stream's other frames; their replies are correlated by id),
//! at most [`IN_FLIGHT`] at a time per stream. Task event subscriptions forward the task's
//! node events as `TaskEvent`s until unsubscribed or the stream ends.

use std::collections::HashMap;
use std::sync::Arc;

use aethrolink_actors::aether::connection::{Correlation, ErrorCode, Outbound};
use aethrolink_actors::aether::tasks::{
    SubscriptionOp, SubscriptionReply, TaskChange, TaskEventPush, changes_of, status_of,
};
use aethrolink_actors::service::Services;
use aethrolink_actors::service::aether::GatewaySession;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::decode::Frame;

/// Task frames of one stream carried out at once; the next waits for a slot (backpressure on
/// the stream, never an unbounded pile of work).
const IN_FLIGHT: usize = 64;

/// Most subscriptions one stream holds.
const SUBSCRIPTIONS_MAX: usize = 1000;

/// The error code an uncorrelated refusal carries. Pure.
fn code_of(error: &str) -> ErrorCode {
    match error.split(':').next().unwrap_or_default() {
        "ERR_PERMISSION_DENIED" => ErrorCode::PermissionDenied,
        "ERR_INVALID_ARGUMENT" => ErrorCode::InvalidArgument,
        "ERR_INVALID_PRINCIPAL" => ErrorCode::InvalidPrincipal,
        "TASK_PAYLOAD_TOO_LARGE" => ErrorCode::TaskPayloadTooLarge,
        "ERR_TASK_NOT_FOUND" => ErrorCode::TaskNotFound,
        _ => ErrorCode::TaskCreateFailed,
    }
}

/// The task side of one stream.
pub struct TaskFrames {
    session: GatewaySession,
    services: Services,
    /// Bounds the frames carried out at once.
    slots: Arc<Semaphore>,
    /// Live subscriptions by id: the forwarder of each (aborted on unsubscribe and at the end).
    subscriptions: HashMap<String, JoinHandle<()>>,
}

impl TaskFrames {
    pub fn new(session: GatewaySession, services: Services) -> Self {
        TaskFrames { session, services, slots: Arc::new(Semaphore::new(IN_FLIGHT)), subscriptions: HashMap::new() }
    }

    /// Carries out a task frame in its own task (after a slot is free).
    pub async fn spawn(&mut self, frame: Frame) {
        let Ok(permit) = self.slots.clone().acquire_owned().await else { return };
        let (session, services) = (self.session.clone(), self.services.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match frame {
                Frame::CreateTask(req) => {
                    let correlated = req.request_id.is_some();
                    let reply = services.gateway_create_task(&session, req).await;
                    if correlated {
                        session.reply(Outbound::CreatedTask(reply));
                    } else if !reply.success {
                        // Fire-and-forget: the refusal goes to the client's error handler.
                        let message = format!("{}: {}", reply.error_code, reply.error_message);
                        let code = code_of(&reply.error_code);
                        session.reply(Outbound::Refused { code, message, correlation: Correlation::None });
                    }
                }
                Frame::TaskOp(op) => session.reply(Outbound::TaskOp(services.gateway_task_op(&session, op).await)),
                Frame::TaskQuery(q) => {
                    session.reply(Outbound::TaskQuery(services.gateway_task_query(&session, q).await))
                }
                Frame::Progress(p) => {
                    if let Err(message) = services.gateway_progress(&session, p).await {
                        let code = code_of(&message);
                        session.reply(Outbound::Refused { code, message, correlation: Correlation::None });
                    }
                }
                _ => {}
            }
        });
    }

    /// Subscribes to a task's events, or ends a subscription.
    pub async fn subscription(&mut self, op: SubscriptionOp) {
        let reply = match op {
            SubscriptionOp::Subscribe { client_request_id, task_id } => {
                self.subscribe(client_request_id, task_id).await
            }
            SubscriptionOp::Unsubscribe { client_request_id, subscription_id } => {
                match self.subscriptions.remove(&subscription_id) {
                    Some(forwarder) => {
                        forwarder.abort();
                        SubscriptionReply { client_request_id, success: true, subscription_id, ..Default::default() }
                    }
                    None => SubscriptionReply {
                        client_request_id,
                        error: format!("ERR_NOT_FOUND: no subscription {subscription_id} on this stream"),
                        subscription_id,
                        ..Default::default()
                    },
                }
            }
        };
        self.session.reply(Outbound::TaskSubscription(reply));
    }

    async fn subscribe(&mut self, client_request_id: String, task_id: String) -> SubscriptionReply {
        let refused = |error: String| SubscriptionReply {
            client_request_id: client_request_id.clone(),
            error,
            task_id: task_id.clone(),
            ..Default::default()
        };
        // Ended subscriptions (their task settled) are kept so an unsubscribe still finds them,
        // until room is needed.
        if self.subscriptions.len() >= SUBSCRIPTIONS_MAX {
            self.subscriptions.retain(|_, forwarder| !forwarder.is_finished());
        }
        if self.subscriptions.len() >= SUBSCRIPTIONS_MAX {
            return refused(format!("ERR_QUOTA: a stream holds at most {SUBSCRIPTIONS_MAX} task subscriptions"));
        }
        let (mut subscription, task) = match self.services.gateway_subscribe(&self.session, &task_id).await {
            Ok(found) => found,
            Err(error) => return refused(error),
        };
        let subscription_id = format!("tsub_{}", aethrolink_actors::ids::new_id().to_ascii_lowercase());
        let session = self.session.clone();
        let workspace = aethrolink_actors::aether::tasks::view_of(&task, None).workspace;
        let (sub_id, id) = (subscription_id.clone(), task_id.clone());
        let forwarder = tokio::spawn(async move {
            let mut before = status_of(task.status);
            while let Some(event) = subscription.events.recv().await {
                for change in changes_of(before, &event) {
                    if let TaskChange::Status { to, .. } = &change {
                        before = *to;
                    }
                    session.reply(Outbound::TaskEvent(TaskEventPush {
                        task_id: id.clone(),
                        subscription_id: sub_id.clone(),
                        workspace: workspace.clone(),
                        emitted_at_ms: aethrolink_actors::clock::unix_millis_of(&event.created_at),
                        change,
                    }));
                }
            }
            drop(subscription.guard);
        });
        self.subscriptions.insert(subscription_id.clone(), forwarder);
        SubscriptionReply { client_request_id, success: true, task_id, subscription_id, ..Default::default() }
    }
}

impl Drop for TaskFrames {
    fn drop(&mut self) {
        for (_, forwarder) in self.subscriptions.drain() {
            forwarder.abort();
        }
    }
}

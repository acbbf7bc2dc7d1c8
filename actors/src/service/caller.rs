//! Who is asking: every service call names its caller, so authentication (tokens, signed
//! peers, gateway principals) and per-operation rights are decided in one place, not per binding.

use super::error::{ErrorKind, ServiceError};

/// The way in a call came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// The AethroLink v1 HTTP API (and `alink-cli`, which speaks it).
    Http,
    /// The node-to-node protocol (a peer relaying work).
    Peer,
    /// The Aether control-plane gateway (gRPC).
    Gateway,
    /// The node itself (thread auto-handoff, restart recovery, tools).
    Internal,
}

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// Nobody in particular: a loopback client of the Go-compatible API.
    Anonymous,
    /// A registered agent or gateway principal, by id.
    Agent(String),
    /// Another node, by node id.
    Node(String),
    /// The operator (admin key).
    Operator,
}

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rights {
    /// Read tasks, targets, threads, node state.
    pub read: bool,
    /// Create, cancel and resume tasks; register agents; continue threads.
    pub write: bool,
    /// Control runtimes (start/stop) and node administration.
    pub admin: bool,
}

impl Rights {
    /// Everything: what anonymous loopback callers have until authentication arrives.
    pub const ALL: Rights = Rights { read: true, write: true, admin: true };
    /// Read-only.
    pub const READ: Rights = Rights { read: true, write: false, admin: false };
}

/// A right an operation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Read,
    Write,
    Admin,
}

/// Who is asking, through which binding, with which rights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub principal: Principal,
    pub binding: Binding,
    pub rights: Rights,
}

impl Caller {
    /// Whose idempotency keys these are: keys of different principals never meet.
    pub fn idempotency_scope(&self) -> String {
        match &self.principal {
            Principal::Anonymous => "anonymous".into(),
            Principal::Agent(id) => format!("agent:{id}"),
            Principal::Node(id) => format!("node:{id}"),
            Principal::Operator => "operator".into(),
        }
    }

    /// An anonymous caller with every right (today's loopback API).
    pub fn anonymous(binding: Binding) -> Self {
        Caller { principal: Principal::Anonymous, binding, rights: Rights::ALL }
    }

    /// The node acting on its own behalf.
    pub fn internal() -> Self {
        Caller { principal: Principal::Operator, binding: Binding::Internal, rights: Rights::ALL }
    }

    /// Refuses the call unless the caller has `need`.
    pub fn require(&self, need: Need) -> Result<(), ServiceError> {
        let ok = match need {
            Need::Read => self.rights.read,
            Need::Write => self.rights.write,
            Need::Admin => self.rights.admin,
        };
        if ok {
            Ok(())
        } else {
            let what = match need {
                Need::Read => "read",
                Need::Write => "write",
                Need::Admin => "admin",
            };
            Err(ServiceError::new(ErrorKind::Forbidden, format!("this caller lacks the '{what}' right")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_are_checked_per_need() {
        let anon = Caller::anonymous(Binding::Http);
        assert!(anon.require(Need::Admin).is_ok());
        let reader = Caller { rights: Rights::READ, ..anon };
        assert!(reader.require(Need::Read).is_ok());
        assert_eq!(reader.require(Need::Write).map_err(|e| e.kind), Err(ErrorKind::Forbidden));
        assert_eq!(reader.require(Need::Admin).map_err(|e| e.kind), Err(ErrorKind::Forbidden));
    }
}

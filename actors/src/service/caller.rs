//! Who is asking: every service call names its caller, so authentication (tokens, signed
//! peers, gateway principals) and per-operation rights are decided in one place, not per binding.

use super::error::{ErrorKind, ServiceError};
use crate::tokens::Scope;

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
    /// The holder of an API token, by token id.
    Token(String),
    /// The operator (admin key).
    Operator,
}

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rights {
    /// Read tasks, targets, threads, node state.
    pub read: bool,
    /// Create, cancel and resume tasks; continue threads; register agents that spawn nothing.
    pub write: bool,
    /// Control runtimes (start/stop) and peers (add, sync).
    pub operate: bool,
    /// Create or replace a target that spawns a process (a launch command, environment or
    /// working directory), or take over a registry-file target.
    pub register: bool,
    /// Node administration: API tokens.
    pub admin: bool,
}

impl Rights {
    /// Everything: the operator, the node itself.
    pub const ALL: Rights = Rights { read: true, write: true, operate: true, register: true, admin: true };
    /// An anonymous loopback caller: everything but spawning registrations and administration
    /// (a web page or another local user must not be able to make the node run a command).
    pub const ANONYMOUS: Rights = Rights { read: true, write: true, operate: true, register: false, admin: false };
    /// Read-only.
    pub const READ: Rights = Rights { read: true, write: false, operate: false, register: false, admin: false };
    /// Nothing.
    pub const NONE: Rights = Rights { read: false, write: false, operate: false, register: false, admin: false };

    /// What a token with `scopes` may do: `tasks:write` includes `tasks:read`, `agents:register`
    /// allows reading and every registration, `admin` everything.
    pub fn of_scopes(scopes: &[Scope]) -> Rights {
        let mut rights = Rights::NONE;
        for scope in scopes {
            match scope {
                Scope::TasksRead => rights.read = true,
                Scope::TasksWrite => {
                    rights.read = true;
                    rights.write = true;
                }
                Scope::AgentsRegister => {
                    rights.read = true;
                    rights.register = true;
                }
                Scope::Admin => return Rights::ALL,
            }
        }
        rights
    }

    /// The same rights plus spawning registrations (`--allow-anonymous-register`).
    pub fn with_register(self) -> Rights {
        Rights { register: true, ..self }
    }

    fn has(&self, need: Need) -> bool {
        match need {
            Need::Read => self.read,
            Need::Write => self.write,
            Need::Operate => self.operate,
            Need::Register => self.register,
            Need::Admin => self.admin,
        }
    }
}

/// A right an operation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Read,
    Write,
    Operate,
    Register,
    Admin,
}

impl Need {
    /// The token scope that grants it (named in refusals).
    fn scope(self) -> Scope {
        match self {
            Need::Read => Scope::TasksRead,
            Need::Write => Scope::TasksWrite,
            Need::Register => Scope::AgentsRegister,
            Need::Operate | Need::Admin => Scope::Admin,
        }
    }
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
            Principal::Token(id) => format!("token:{id}"),
            Principal::Operator => "operator".into(),
        }
    }

    /// An anonymous caller with [`Rights::ANONYMOUS`].
    pub fn anonymous(binding: Binding) -> Self {
        Caller { principal: Principal::Anonymous, binding, rights: Rights::ANONYMOUS }
    }

    /// The node acting on its own behalf.
    pub fn internal() -> Self {
        Caller { principal: Principal::Operator, binding: Binding::Internal, rights: Rights::ALL }
    }

    /// Refuses the call unless the caller has `need`.
    pub fn require(&self, need: Need) -> Result<(), ServiceError> {
        self.require_any(&[need])
    }

    /// Refuses the call unless the caller has one of `needs` (the first names the scope asked for).
    pub fn require_any(&self, needs: &[Need]) -> Result<(), ServiceError> {
        if needs.iter().any(|n| self.rights.has(*n)) {
            return Ok(());
        }
        let scope = needs.first().map_or(Scope::Admin, |n| n.scope());
        let message = match self.principal {
            Principal::Anonymous => {
                format!(
                    "this needs a token with the '{scope}' scope (Authorization: Bearer …); anonymous callers may not"
                )
            }
            _ => format!("this caller's token lacks the '{scope}' scope"),
        };
        Err(ServiceError::new(ErrorKind::Forbidden, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_are_checked_per_need() {
        let anon = Caller::anonymous(Binding::Http);
        assert!(anon.require(Need::Operate).is_ok());
        assert_eq!(anon.require(Need::Register).map_err(|e| e.kind), Err(ErrorKind::Forbidden));
        assert_eq!(anon.require(Need::Admin).map_err(|e| e.kind), Err(ErrorKind::Forbidden));
        let reader = Caller { rights: Rights::READ, ..anon };
        assert!(reader.require(Need::Read).is_ok());
        assert_eq!(reader.require(Need::Write).map_err(|e| e.kind), Err(ErrorKind::Forbidden));
        assert_eq!(reader.require(Need::Admin).map_err(|e| e.kind), Err(ErrorKind::Forbidden));
    }

    #[test]
    fn scopes_grant_what_they_name() {
        let writer = Rights::of_scopes(&[Scope::TasksWrite]);
        assert!(writer.read && writer.write && !writer.register && !writer.operate && !writer.admin);
        let registrar = Rights::of_scopes(&[Scope::AgentsRegister]);
        assert!(registrar.read && registrar.register && !registrar.write);
        assert_eq!(Rights::of_scopes(&[Scope::TasksRead, Scope::Admin]), Rights::ALL);
        assert_eq!(Rights::of_scopes(&[]), Rights::NONE);
        let caller = Caller { principal: Principal::Token("t".into()), binding: Binding::Http, rights: registrar };
        assert!(caller.require_any(&[Need::Write, Need::Register]).is_ok());
        let refused = caller.require(Need::Write).err().map(|e| e.message).unwrap_or_default();
        assert!(refused.contains("tasks:write"), "{refused}");
    }
}

//! Agent operations: registration (targets added at runtime), presence, listing.

use super::{Caller, Need, ServiceError, Services};
use crate::clock::Timestamp;
use crate::model::AgentRecord;
use crate::registry::{Registered, Registration, RegistryMsg};
use crate::supervision::ASK_TIMEOUT;

impl Services {
    /// Validates, persists and publishes a registration; the answer carries the warnings it was
    /// accepted despite (e.g. an adapter this node does not run).
    ///
    /// A registration that spawns a process, or takes over a registry-file target (`replace`),
    /// needs the `agents:register` right: anonymous callers do not have it unless the node runs
    /// with `--allow-anonymous-register`.
    pub async fn register_agent(&self, caller: &Caller, reg: Registration) -> Result<Registered, ServiceError> {
        if reg.spawns_process() || reg.replace {
            caller.require(Need::Register)?;
        } else {
            caller.require_any(&[Need::Write, Need::Register])?;
        }
        Ok(self.dir.registry.ask(ASK_TIMEOUT, |reply| RegistryMsg::Register(Box::new(reg), reply)).await??)
    }

    /// Renews an agent's presence lease (`ttl` seconds; default 300).
    pub async fn heartbeat(
        &self,
        caller: &Caller,
        agent_id: String,
        ttl: Option<i64>,
    ) -> Result<AgentRecord, ServiceError> {
        caller.require_any(&[Need::Write, Need::Register])?;
        Ok(self.dir.registry.ask(ASK_TIMEOUT, |reply| RegistryMsg::Heartbeat { agent_id, ttl, reply }).await??)
    }

    /// Marks an agent offline now (it stays a target).
    pub async fn unregister(&self, caller: &Caller, agent_id: String) -> Result<AgentRecord, ServiceError> {
        caller.require_any(&[Need::Write, Need::Register])?;
        Ok(self.dir.registry.ask(ASK_TIMEOUT, |reply| RegistryMsg::Unregister { agent_id, reply }).await??)
    }

    /// Every registered agent with its presence as of now.
    pub async fn list_agents(&self, caller: &Caller) -> Result<Vec<AgentRecord>, ServiceError> {
        caller.require(Need::Read)?;
        let now = Timestamp::now();
        Ok(self.dir.reader.agents().await?.into_iter().map(|a| a.with_effective_status(&now)).collect())
    }

    /// One registered agent.
    pub async fn get_agent(&self, caller: &Caller, agent_id: &str) -> Result<AgentRecord, ServiceError> {
        caller.require(Need::Read)?;
        let agent = self
            .dir
            .reader
            .agent(agent_id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("agent not found: {agent_id}")))?;
        Ok(agent.with_effective_status(&Timestamp::now()))
    }
}

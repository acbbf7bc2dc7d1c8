#!/usr/bin/env python3
"""A minimal ACP agent on the official Python SDK (`agent-client-protocol`, PyPI): streams
chunks, asks permission before its "write", honours session/cancel. Used to prove the node works
with a real third-party ACP implementation, not only with our test double.

Prompt "slow" streams 40 chunks 50 ms apart (for cancel); anything else streams 5 chunks.
"""
import asyncio
import uuid
from typing import Any

from acp import (
    PROTOCOL_VERSION,
    Agent,
    InitializeResponse,
    NewSessionResponse,
    PromptResponse,
    run_agent,
    start_edit_tool_call,
    text_block,
    update_agent_message,
    update_tool_call,
)
from acp.schema import AgentCapabilities, Implementation, PermissionOption, ToolCallUpdate


class SdkTestAgent(Agent):
    def __init__(self):
        self.tasks = {}

    def on_connect(self, conn):
        self._conn = conn

    async def initialize(self, protocol_version: int, **kw: Any):
        return InitializeResponse(
            protocol_version=PROTOCOL_VERSION,
            agent_capabilities=AgentCapabilities(),
            agent_info=Implementation(name="aethrolink-sdk-test-agent", version="0.1"),
        )

    async def new_session(self, cwd: str, **kw: Any):
        return NewSessionResponse(session_id=uuid.uuid4().hex)

    async def _turn(self, sid, text):
        await self._conn.session_update(sid, start_edit_tool_call("t1", "Write out.txt", "out.txt", text))
        r = await self._conn.request_permission(
            session_id=sid,
            tool_call=ToolCallUpdate(tool_call_id="t1", title="Write out.txt", kind="edit", status="pending"),
            options=[
                PermissionOption(option_id="ok", name="Allow", kind="allow_once"),
                PermissionOption(option_id="no", name="Deny", kind="reject_once"),
            ],
        )
        allowed = getattr(r.outcome, "option_id", None) == "ok"
        await self._conn.session_update(sid, update_tool_call("t1", status="completed" if allowed else "failed"))
        count, delay = (40, 0.05) if text.strip() == "slow" else (5, 0.01)
        verdict = "allowed" if allowed else "denied"
        for i in range(count):
            await self._conn.session_update(sid, update_agent_message(text_block(f"{verdict}-{i} ")))
            await asyncio.sleep(delay)

    async def prompt(self, prompt, session_id: str, **kw: Any):
        text = "".join(getattr(b, "text", "") for b in prompt)
        t = asyncio.ensure_future(self._turn(session_id, text))
        self.tasks[session_id] = t
        try:
            await t
        except asyncio.CancelledError:
            return PromptResponse(stop_reason="cancelled")
        return PromptResponse(stop_reason="end_turn")

    async def cancel(self, session_id: str, **kw: Any):
        t = self.tasks.get(session_id)
        if t:
            t.cancel()


if __name__ == "__main__":
    asyncio.run(run_agent(SdkTestAgent()))

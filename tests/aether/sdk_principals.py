"""Every principal kind and message type on the node's Aether gateway, with the real Python SDK
(0.2.3). Run by tests/aether_gateway.rs:

    sdk_principals.py TARGET

Prints `ok <check>` per passed check; any failure raises (exit status 1).
"""
import asyncio
import queue
import sys
import time

from scitrera_aether_client import (AgentClient, AsyncAgentClient, AsyncMetricsBridgeClient,
                                    AsyncOrchestratorClient, AsyncServiceClient, AsyncTaskClient,
                                    AsyncUserClient, AsyncWorkflowEngineClient, MetricsBridgeClient,
                                    OrchestratorClient, ServiceClient, TaskClient, UserClient,
                                    WorkflowEngineClient)
from scitrera_aether_client.metrics import new_metric
from scitrera_aether_client.proto import aether_pb2

TARGET = sys.argv[1]
TYPES = {
    aether_pb2.CHAT: "on_chat_message",
    aether_pb2.CONTROL: "on_control_message",
    aether_pb2.TOOL_CALL: "on_tool_call",
    aether_pb2.EVENT: "on_event",
    aether_pb2.METRIC: "on_metric",
}


def ok(name):
    print(f"ok {name}", flush=True)


class Watched:
    """An async client with every handler recording into one queue, as (handler, message)."""

    def __init__(self, client):
        self.client = client
        self.calls = asyncio.Queue()
        self.errors = asyncio.Queue()
        for handler in list(TYPES.values()) + ["on_message"]:
            setattr(client, handler, self._recorder(handler))

        async def on_error(err):
            await self.errors.put(err)

        client.on_error = on_error

    def _recorder(self, handler):
        async def record(msg):
            await self.calls.put((handler, msg))
        return record

    async def connect(self):
        await self.client.connect(TARGET)
        for _ in range(500):
            if self.client.is_connected:
                return self
            await asyncio.sleep(0.02)
        raise AssertionError(f"{type(self.client).__name__} never connected")

    async def next(self):
        return await asyncio.wait_for(self.calls.get(), 10)

    async def error(self):
        return await asyncio.wait_for(self.errors.get(), 10)


def sync_connected(client):
    client.connect(TARGET)
    deadline = time.monotonic() + 10
    while not client._session_id:
        assert time.monotonic() < deadline, f"{type(client).__name__} never connected"
        time.sleep(0.02)
    return client


async def main():
    # Every async principal kind connects and gets its ack.
    agent = await Watched(AsyncAgentClient("default", "kinds", "a")).connect()
    other = await Watched(AsyncAgentClient("default", "kinds", "b")).connect()
    wfe = await Watched(AsyncWorkflowEngineClient()).connect()
    bridge = await Watched(AsyncMetricsBridgeClient()).connect()
    orc = await Watched(AsyncOrchestratorClient("launcher", ["default"], specifier="o1")).connect()
    user = await Watched(AsyncUserClient("ann", "w1")).connect()
    svc = await Watched(AsyncServiceClient("backend", "01")).connect()
    unique = await Watched(AsyncTaskClient("default", "job", "t1")).connect()
    pooled = await Watched(AsyncTaskClient("default", "job")).connect()
    ok("every async principal kind connects")

    # Each message type fires its typed handler once, then the catch-all.
    for message_type, handler in TYPES.items():
        if message_type == aether_pb2.METRIC:
            payload = new_metric().add("tokens", "count", 3).build().SerializeToString()
        else:
            payload = f"type {message_type}".encode()
        await other.client._send_message("ag::default::kinds::a", payload, message_type=message_type)
        first, second = await agent.next(), await agent.next()
        assert first[0] == handler and second[0] == "on_message", (message_type, first[0], second[0])
        assert first[1].message_type == message_type and second[1].payload == payload
        assert second[1].source_topic == "ag::default::kinds::b", second[1].source_topic
    for message_type in (aether_pb2.OPAQUE, aether_pb2.MESSAGE_TYPE_UNSPECIFIED):
        await other.client._send_message("ag::default::kinds::a", b"plain", message_type=message_type)
        handler, msg = await agent.next()
        assert handler == "on_message" and msg.payload == b"plain", (handler, msg)
    ok("each message type fires its typed handler, then the catch-all")

    await agent.client.send_event(b'{"kind": "built"}')
    handler, msg = await wfe.next()
    assert handler == "on_event" and msg.payload == b'{"kind": "built"}', (handler, msg)
    assert msg.source_topic == "ag::default::kinds::a" and msg.workspace == "default", msg
    ok("events reach the workflow engine")

    await agent.client.send_metric(new_metric().add("tokens", "count", 12).tag("model", "m").build())
    handler, msg = await bridge.next()
    assert handler == "on_metric", handler
    metric = aether_pb2.Metric()
    metric.ParseFromString(msg.payload)
    assert metric.entries[0].name == "tokens" and metric.entries[0].qty == 12, metric
    ok("metrics reach the metrics bridge")

    await bridge.client.send_acknowledgment("ag::default::kinds::a", b"ack")
    err = await bridge.error()
    assert err.code == "ERR_PERMISSION_DENIED", err
    ok("the metrics bridge may not send")

    await user.client._send_message("event::*", b"{}", message_type=aether_pb2.EVENT)
    err = await user.error()
    assert err.code == "ERR_PERMISSION_DENIED", err
    ok("a user may not send events")

    for payload, code in [
        (b"\xff\xff\xff", "ERR_METRIC_INVALID"),
        (aether_pb2.Metric().SerializeToString(), "ERR_METRIC_EMPTY"),
        (new_metric().add("", "count", 1).build().SerializeToString(), "ERR_METRIC_INVALID_ENTRY"),
        (new_metric().add("credit", "count", -5).build().SerializeToString(), "ERR_METRIC_NEGATIVE_FORBIDDEN"),
    ]:
        await agent.client._send_message("metric::*", payload, message_type=aether_pb2.METRIC)
        err = await agent.error()
        assert err.code == code, (code, err)
    ok("malformed metrics are refused with upstream's codes")

    await agent.client.send_message_to_agent("default", "kinds", "b", b"x" * (1024 * 1024 + 1))
    err = await agent.error()
    assert err.code == "ERR_PAYLOAD_TOO_LARGE", err
    await agent.client.send_message_to_agent("default", "kinds", "b", b"x" * (1024 * 1024))
    handler, msg = await other.next()
    assert len(msg.payload) == 1024 * 1024, len(msg.payload)
    ok("payloads over 1 MiB are refused, 1 MiB is delivered")

    await orc.client.send_status_to_agent("default", "kinds", "a", b"launching")
    handler, msg = await agent.next()
    if handler != "on_message":
        handler, msg = await agent.next()
    assert msg.payload == b"launching" and msg.source_topic == "orc::launcher::o1", msg
    await orc.client._send_message("us::ann::w1", b"?")
    err = await orc.error()
    assert err.code == "ERR_PERMISSION_DENIED", err
    ok("an orchestrator's messages are stamped orc::impl::spec and limited to agents and tasks")

    await svc.client.send_message_to_task("default", "job", b"for t1", unique_specifier="t1")
    handler, msg = await unique.next()
    assert msg.payload == b"for t1" and msg.source_topic == "sv::backend::01", msg
    await svc.client.send_message_to_task("default", "job", b"for the pool")
    handler, msg = await pooled.next()
    assert msg.payload == b"for the pool", msg
    ok("services reach unique and pooled tasks")

    # The async context manager releases the identity on exit: the same identity connects again.
    async with AsyncAgentClient("default", "kinds", "ctx") as ctx:
        await Watched(ctx).connect()
    deadline = time.monotonic() + 10
    while True:
        again = AsyncAgentClient("default", "kinds", "ctx", max_retries=0)
        await again.connect(TARGET)
        for _ in range(100):
            if again.is_connected:
                break
            await asyncio.sleep(0.02)
        if again.is_connected:
            break
        await again.close()
        assert time.monotonic() < deadline, "the identity was not released by the context manager"
        await asyncio.sleep(0.2)
    await again.close()
    ok("the async context manager releases the identity")

    for w in (agent, other, wfe, bridge, orc, user, svc, unique, pooled):
        await w.client.close()

    # Every sync principal kind connects too; a sync agent's typed handler fires on its thread.
    calls = queue.Queue()
    sync_agent = AgentClient("default", "kinds", "sync", max_retries=1)
    sync_agent.on_chat_message = lambda m: calls.put(("on_chat_message", m))
    sync_agent.on_message = lambda m: calls.put(("on_message", m))
    clients = [sync_connected(sync_agent)]
    for client in (TaskClient("default", "job", "sync-t"), TaskClient("default", "job"),
                   UserClient("bob", "w1"), OrchestratorClient("launcher", ["default"], specifier="sync"),
                   WorkflowEngineClient(), MetricsBridgeClient(), ServiceClient("backend", "sync")):
        client.max_retries = 1
        clients.append(sync_connected(client))
    clients[3].send_message_to_agent("default", "kinds", "sync", b"hi", message_type=aether_pb2.CHAT)
    first, second = calls.get(timeout=10), calls.get(timeout=10)
    assert first[0] == "on_chat_message" and second[0] == "on_message", (first, second)
    assert second[1].source_topic == "us::bob::w1", second[1]
    for client in clients:
        client.close()
    ok("every sync principal kind connects; sync typed handlers fire")


if __name__ == "__main__":
    asyncio.run(main())
    print("all checks passed", flush=True)

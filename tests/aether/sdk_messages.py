"""Messages between agents connected to the node's Aether gateway, with the real Python SDK
(0.2.3). Run by tests/aether_gateway.rs:

    sdk_messages.py TARGET

Prints `ok <check>` per passed check; any failure raises (exit status 1).
"""
import asyncio
import queue
import sys

from scitrera_aether_client import AgentClient, AsyncAgentClient

TARGET = sys.argv[1]


async def connected(spec):
    client = AsyncAgentClient("default", "msg-test", spec)
    inbox = asyncio.Queue()
    errors = asyncio.Queue()

    async def on_message(msg):
        await inbox.put(msg)

    async def on_error(err):
        await errors.put(err)

    client.on_message = on_message
    client.on_error = on_error
    await client.connect(TARGET)
    for _ in range(500):
        if client.is_connected:
            return client, inbox, errors
        await asyncio.sleep(0.02)
    raise AssertionError(f"{spec} never connected")


def ok(name):
    print(f"ok {name}", flush=True)


async def main():
    (a, a_in, _), (b, b_in, b_err) = await connected("a"), await connected("b")
    await b.send_message_to_agent("default", "msg-test", "a", b"hello a")
    msg = await asyncio.wait_for(a_in.get(), 10)
    assert msg.payload == b"hello a", msg
    assert msg.source_topic == "ag::default::msg-test::b", msg.source_topic
    assert msg.workspace == "default", msg.workspace
    ok("agent to agent, source stamped by the node")

    await a.send_message_to_agent("default", "msg-test", "a", b"to myself")
    msg = await asyncio.wait_for(a_in.get(), 10)
    assert msg.payload == b"to myself" and msg.source_topic == "ag::default::msg-test::a", msg
    ok("an agent receives its own message")

    await a.send_broadcast_to_agents("default", b"all")
    got = [await asyncio.wait_for(q.get(), 10) for q in (a_in, b_in)]
    assert all(m.payload == b"all" for m in got), got
    ok("workspace broadcast reaches every agent")

    await b._send_message("nope::x", b"?")
    err = await asyncio.wait_for(b_err.get(), 10)
    assert err.code == "ERR_INVALID_TOPIC", err
    ok("an invalid topic is refused")

    # A sync client receives too (on its listener thread).
    inbox = queue.Queue()
    sync = AgentClient("default", "msg-test", "sync", max_retries=1)
    sync.on_message = inbox.put
    sync.connect(TARGET)
    for _ in range(500):
        if sync._session_id:
            break
        await asyncio.sleep(0.02)
    assert sync._session_id, "the sync client connected"
    await a.send_message_to_agent("default", "msg-test", "sync", b"hi sync")
    msg = await asyncio.get_running_loop().run_in_executor(None, lambda: inbox.get(timeout=10))
    assert msg.payload == b"hi sync", msg
    sync.close()
    ok("a sync client receives")

    await a.close()
    await b.close()


if __name__ == "__main__":
    asyncio.run(main())
    print("all checks passed", flush=True)

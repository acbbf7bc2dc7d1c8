"""Group lanes and workspace switching on the node's Aether gateway, with the real Python SDK
(0.2.3). Run by tests/aether_gateway.rs:

    sdk_lanes.py TARGET

Prints `ok <check>` per passed check; any failure raises (exit status 1).
"""
import asyncio
import sys

from scitrera_aether_client import (AsyncAgentClient, AsyncServiceClient, AsyncTaskClient,
                                    AsyncUserClient)

TARGET = sys.argv[1]


async def connected(client):
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
    raise AssertionError("never connected")


async def switch(user, inbox_of_agent, workspace):
    """Switches `user` and waits until the node has applied it: the switch has no reply, but a
    message the user sends after it is routed after it, and the agent seeing it means the
    presence actor has the new workspace before anything the agent sends next."""
    await user.switch_workspace(workspace)
    await user.send_message_to_agent("default", "lane", "a", b"switched")
    msg = await asyncio.wait_for(inbox_of_agent.get(), 10)
    assert msg.payload == b"switched", msg
    return msg


def ok(name):
    print(f"ok {name}", flush=True)


async def next_payload(inbox):
    return (await asyncio.wait_for(inbox.get(), 10)).payload


async def main():
    agent, agent_in, agent_err = await connected(AsyncAgentClient("default", "lane", "a"))
    ann1, ann1_in, _ = await connected(AsyncUserClient("ann", "w1"))
    ann2, ann2_in, _ = await connected(AsyncUserClient("ann", "w2"))
    bob, bob_in, _ = await connected(AsyncUserClient("bob", "w1"))
    svc, _, _ = await connected(AsyncServiceClient("notifier", "01"))

    msg = await switch(ann1, agent_in, "team")
    assert msg.source_topic == "us::ann::w1", msg
    assert msg.workspace == "team", msg.workspace
    await switch(bob, agent_in, "team")
    ok("a user's messages carry the workspace it switched to")

    await agent.send_broadcast_to_users("team", b"team news")
    assert await next_payload(ann1_in) == b"team news"
    assert await next_payload(bob_in) == b"team news"
    # ann's second window has no workspace: the next thing it gets is the marker, not the news.
    await agent.send_message_to_user_session("ann", "w2", b"marker")
    assert await next_payload(ann2_in) == b"marker"
    ok("gu:: reaches the users working in the workspace only")

    await agent.send_message_to_user_workspace("ann", "team", b"ann in team")
    assert await next_payload(ann1_in) == b"ann in team"
    await agent.send_message_to_user_session("bob", "w1", b"marker")
    assert await next_payload(bob_in) == b"marker"
    await agent.send_message_to_user_session("ann", "w2", b"marker 2")
    assert await next_payload(ann2_in) == b"marker 2"
    ok("uw:: reaches that user's windows in that workspace")

    await svc.send_message_to_user_broadcast("ann", b"to all of ann")
    assert await next_payload(ann1_in) == b"to all of ann"
    assert await next_payload(ann2_in) == b"to all of ann"
    await agent.send_message_to_user_session("bob", "w1", b"marker 3")
    assert await next_payload(bob_in) == b"marker 3"
    ok("uu:: reaches every window of the user")

    await switch(ann2, agent_in, "team")
    await agent.send_broadcast_to_users("team", b"now three")
    for inbox in (ann1_in, ann2_in, bob_in):
        assert await next_payload(inbox) == b"now three"
    await switch(ann2, agent_in, "other")
    await agent.send_broadcast_to_users("team", b"two again")
    await agent.send_message_to_user_session("ann", "w2", b"marker 4")
    assert await next_payload(ann2_in) == b"marker 4"
    ok("a user's lanes follow its workspace switches")

    await agent._send_message("pg::team", b"progress")
    assert await next_payload(ann1_in) == b"two again"
    assert await next_payload(ann1_in) == b"progress"
    ok("pg:: reaches the users of the workspace")

    await agent.switch_workspace("elsewhere")
    err = await asyncio.wait_for(agent_err.get(), 10)
    assert err.code == "ERR_INVALID_PRINCIPAL", err
    await agent.send_message_to_agent("default", "lane", "a", b"still here")
    assert await next_payload(agent_in) == b"still here"
    ok("an agent may not switch workspaces and stays usable")

    pooled, pooled_in, _ = await connected(AsyncTaskClient("default", "proc"))
    await agent._send_message("tb::default::proc", b"for the pool")
    assert await next_payload(pooled_in) == b"for the pool"
    await agent.send_message_to_task("default", "proc", b"any member")
    assert await next_payload(pooled_in) == b"any member"
    ok("tb:: and the empty-id form reach a pooled task")

    await agent._send_message("tk::default::t1::msg", b"?")
    err = await asyncio.wait_for(agent_err.get(), 10)
    assert err.code == "ERR_NOT_IMPLEMENTED", err
    ok("task topics are answered not served")

    for c in (agent, ann1, ann2, bob, svc, pooled):
        await c.close()


if __name__ == "__main__":
    asyncio.run(main())
    print("all checks passed", flush=True)

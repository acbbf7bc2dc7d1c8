"""One task model both ways, with the real Python SDK (0.2.3) and the real `alink-cli`. Run by
tests/aether_gateway.rs:

    sdk_task_bridge.py GATEWAY HTTP_BASE ALINK_CLI HOME

* `alink-cli call --wait` to an SDK agent: the agent gets the task, reports progress, completes;
  the CLI streams the progress and exits 0.
* An SDK task to the node's ACP target (the project's test-double agent) asking for permission:
  the creator sees WAITING_INPUT, answers it with `resume_task`, and reads the result.

Prints `ok <check>` per passed check; any failure raises (exit status 1).
"""
import asyncio
import json
import os
import subprocess
import sys
import time

from scitrera_aether_client.proto import aether_pb2 as pb

from task_worker import connected_worker

GATEWAY, BASE, CLI, HOME = sys.argv[1:5]
WS = "default"


def ok(name):
    print(f"ok {name}", flush=True)


async def connected(implementation, spec):
    return await connected_worker(GATEWAY, WS, implementation, spec)


async def wait_status(client, task_id, want, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = await client.get_task(task_id)
        assert r is not None and r.success, r
        if r.task.status == want:
            return r.task
        await asyncio.sleep(0.1)
    raise AssertionError(f"task {task_id} never reached {want}: {r.task}")


async def main():
    helper, assigned = await connected("helper", "h1")
    env = dict(os.environ, HOME=HOME)
    cli = await asyncio.create_subprocess_exec(
        CLI, "--server", BASE, "call", "--target-agent-id", "ag::default::helper::h1", "--intent", "summarize",
        "--text", "from the cli", "--wait", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    a = await asyncio.wait_for(assigned.get(), 20)
    assert a.task_type == "summarize" and json.loads(a.payload) == {"text": "from the cli"}, a
    await helper.report_progress(a.task_id, state="working", completion=0.3, summary="reading the text")
    await asyncio.sleep(0.2)
    r = await helper.complete_task(a.task_id)
    assert r is not None and r.success, r
    out, err = await asyncio.wait_for(cli.communicate(), 30)
    out = out.decode()
    assert cli.returncode == 0, (cli.returncode, out, err.decode())
    assert "reading the text" in out and "task.completed" in out, out
    ok("alink-cli call --wait to an SDK agent streams its progress and exits 0 when it completes")

    planner, _ = await connected("planner", "p1")
    r = await planner.create_task_sync("chat", WS, target_agent_id="ag::default::assistant::default",
                                       payload=b'{"text": "!permission"}')
    assert r is not None and r.success and r.status == "assigned", r
    t = await wait_status(planner, r.task_id, pb.TASK_STATUS_WAITING_INPUT)
    assert t.status == pb.TASK_STATUS_WAITING_INPUT, t
    # Someone else cannot answer it.
    snoop, _ = await connected("snoop", "s1")
    refused = await snoop.resume_task(r.task_id)
    assert refused is not None and not refused.success and "ERR_TASK_NOT_FOUND" in refused.error, refused
    answered = await planner.resume_task(r.task_id)
    assert answered is not None and answered.success, answered
    t = await wait_status(planner, r.task_id, pb.TASK_STATUS_COMPLETED)
    assert "allowed" in t.metadata["result"], t.metadata
    # A second one the creator rejects: the agent goes on with the rejection.
    r = await planner.create_task_sync("chat", WS, target_agent_id="assistant", payload=b'{"text": "!permission"}')
    assert r.success, r
    await wait_status(planner, r.task_id, pb.TASK_STATUS_WAITING_INPUT)
    rejected = await planner.reject_task(r.task_id, reason="not now")
    assert rejected is not None and rejected.success, rejected
    t = await wait_status(planner, r.task_id, pb.TASK_STATUS_COMPLETED)
    assert "rejected" in t.metadata["result"], t.metadata
    await snoop.close()
    ok("an SDK task to an ACP target pauses for permission; the creator allows or rejects it and reads the result")

    await helper.close()
    await planner.close()


asyncio.run(main())

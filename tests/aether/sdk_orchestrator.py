"""Lazy launch through an OrchestratorClient, with the real Python SDK (0.2.3). Run by
tests/aether_gateway.rs:

    sdk_orchestrator.py GATEWAY ADMIN_KEY

An admin registers implementation `lazy-w` with profile `lazy-profile`; an orchestrator of that
profile connects; a TARGETED task to the offline agent `ag::default::lazy-w::l1` is answered
`orchestration_triggered`, the orchestrator gets the startup assignment and launches a real
child process (tests/aether/lazy_agent.py) with the one-shot task token; that agent connects,
receives the queued task and completes it. The token does not admit a second connection.

Prints `ok <check>` per passed check; any failure raises (exit status 1).
"""
import asyncio
import json
import os
import queue
import subprocess
import sys
import time

from scitrera_aether_client import AsyncAgentClient, Credentials, OrchestratorClient
from scitrera_aether_client.proto import aether_pb2 as pb

from task_worker import connected_worker

GATEWAY, ADMIN = sys.argv[1], sys.argv[2]
HERE = os.path.dirname(os.path.abspath(__file__))


def ok(name):
    print(f"ok {name}", flush=True)


async def main():
    admin, _ = await connected_worker(GATEWAY, "default", "ops", "admin", credentials=Credentials.api_key(ADMIN))
    reg = await admin.register_agent("lazy-w", profile="lazy-profile", launch_params={"model": "m1"})
    assert reg is not None and reg.success, reg

    startups = queue.Queue()
    launched = []

    def on_assignment(a):
        launched.append(subprocess.Popen(
            [sys.executable, os.path.join(HERE, "lazy_agent.py"), GATEWAY, a.workspace, a.target_implementation,
             a.specifier, a.launch_params["auth_token"]],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        startups.put(a)  # after the launch is recorded: the test reads both

    orc = OrchestratorClient("test-orc", ["lazy-profile"], specifier="o1", max_retries=1)
    orc.on_task_assignment = on_assignment
    orc.connect(GATEWAY)
    for _ in range(500):
        if orc._session_id:
            break
        await asyncio.sleep(0.02)
    assert orc._session_id, "the orchestrator connected"

    creator, _ = await connected_worker(GATEWAY, "default", "planner", "p1")
    r = await creator.create_task_sync("lazy.job", "default", target_agent_id="ag::default::lazy-w::l1",
                                       payload=b'{"job": 1}', launch_param_overrides={"size": "small"})
    assert r is not None and r.success and r.status == "orchestration_triggered", r
    a = await asyncio.get_running_loop().run_in_executor(None, lambda: startups.get(timeout=10))
    assert a.task_type == "agent_startup" and a.profile == "lazy-profile", a
    assert a.target_implementation == "lazy-w" and a.workspace == "default" and a.specifier == "l1", a
    assert a.assigned_to.startswith("orc::test-orc::"), a.assigned_to
    params = dict(a.launch_params)
    assert params["model"] == "m1" and params["size"] == "small" and params["auth_token"].startswith("alt_"), params
    child = launched[0]
    out, err = await asyncio.get_running_loop().run_in_executor(None, lambda: child.communicate(timeout=30))
    assert child.returncode == 0, (out, err)
    assert f"launched agent completed {r.task_id}" in out, (out, err)
    deadline = time.monotonic() + 10
    while True:
        t = await creator.get_task(r.task_id)
        if t.task.status == pb.TASK_STATUS_COMPLETED or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert t.task.status == pb.TASK_STATUS_COMPLETED and t.task.assigned_to == "ag::default::lazy-w::l1", t
    ok("a task for an offline registered agent makes an orchestrator launch it; it connects with its token and completes the task")

    again = AsyncAgentClient("default", "lazy-w", "l1", credentials=Credentials.task_token(params["auth_token"]),
                             max_retries=1)
    errors = []
    again.on_error = lambda e: errors.append(e)
    try:
        await asyncio.wait_for(again.connect(GATEWAY), 10)
    except Exception as e:  # refused at connect: UNAUTHENTICATED
        errors.append(e)
    await asyncio.sleep(0.5)
    assert not again.is_connected, "a used task token admitted a second connection"
    await again.close()
    ok("a launch token admits its agent once")

    # No orchestrator of its profile, but a command in the registry: the node launches it itself.
    agent = os.path.join(HERE, "lazy_agent.py")
    reg = await admin.register_agent("self-w", profile="local", launch_params={"command": json.dumps([sys.executable, agent])})
    assert reg is not None and reg.success, reg
    r = await creator.create_task_sync("self.job", "default", target_agent_id="ag::default::self-w::s1")
    assert r is not None and r.success and r.status == "orchestration_triggered", r
    deadline = time.monotonic() + 30
    while True:
        t = await creator.get_task(r.task_id)
        if t.task.status == pb.TASK_STATUS_COMPLETED or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert t.task.status == pb.TASK_STATUS_COMPLETED and t.task.assigned_to == "ag::default::self-w::s1", t
    assert startups.empty(), "the orchestrator of another profile was asked"
    ok("with no orchestrator of its profile, the node launches a registered agent's command itself")

    orc.close()
    await creator.close()
    await admin.close()


asyncio.run(main())

"""Aether tasks on the node's task model, with the real Python SDK (0.2.3). Run by
tests/aether_gateway.rs:

    sdk_tasks.py GATEWAY HTTP_BASE

Prints `ok <check>` per passed check; any failure raises (exit status 1).
"""
import asyncio
import json
import sys
import time
import urllib.request

from scitrera_aether_client import AgentClient, AsyncAgentClient
from scitrera_aether_client.proto import aether_pb2 as pb

GATEWAY, BASE = sys.argv[1], sys.argv[2]
WS = "default"


def ok(name):
    print(f"ok {name}", flush=True)


def http(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json", "accept": "application/json"}
    req = urllib.request.Request(BASE + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


class Agent:
    """An async SDK agent whose assignments, errors and task events land in queues (the SDK awaits
    its callbacks inside its receive loop, so they must not wait on replies themselves)."""

    def __init__(self, implementation, spec):
        self.client = AsyncAgentClient(WS, implementation, spec)
        self.identity = f"ag::{WS}::{implementation}::{spec}"
        self.assigned = asyncio.Queue()
        self.errors = asyncio.Queue()
        self.events = asyncio.Queue()

        async def on_assignment(a):
            await self.assigned.put(a)

        async def on_error(e):
            await self.errors.put(e)

        async def on_event(e):
            await self.events.put(e)

        self.client.on_task_assignment = on_assignment
        self.client.on_error = on_error
        self.client.register_task_event_handler(on_event)

    async def connect(self):
        await self.client.connect(GATEWAY)
        for _ in range(500):
            if self.client.is_connected:
                return self
            await asyncio.sleep(0.02)
        raise AssertionError(f"{self.identity} never connected")

    async def close(self):
        await self.client.close()


async def drain(q, wait=0.5):
    got = []
    try:
        while True:
            got.append(await asyncio.wait_for(q.get(), wait))
    except asyncio.TimeoutError:
        return got


async def next_event(agent, kind):
    while True:
        ev = await asyncio.wait_for(agent.events.get(), 10)
        if ev.WhichOneof("event") == kind:
            return ev


async def status_of(client, task_id, want, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        r = await client.get_task(task_id)
        assert r is not None and r.success, r
        if r.task.status == want or time.monotonic() > deadline:
            return r.task
        await asyncio.sleep(0.05)


async def main():
    creator = await Agent("planner", "p1").connect()
    w1 = await Agent("pool-w", "w1").connect()
    w2 = await Agent("pool-w", "w2").connect()

    # POOL over two workers: spread, each exactly once.
    created = []
    for i in range(12):
        r = await creator.client.create_task_sync("crunch", WS, target_implementation="pool-w",
                                                  payload=json.dumps({"n": i}).encode(), metadata={"i": str(i)})
        assert r is not None and r.success and r.status == "pending_pool", r
        created.append(r.task_id)
    got = {}
    deadline = time.monotonic() + 10
    while len(sum(got.values(), [])) < 12 and time.monotonic() < deadline:
        for w in (w1, w2):
            for a in await drain(w.assigned, 0.1):
                got.setdefault(w.identity, []).append(a)
    ids = [a.task_id for a in sum(got.values(), [])]
    assert sorted(ids) == sorted(created), (ids, created)
    assert len(got.get(w1.identity, [])) == 6 and len(got.get(w2.identity, [])) == 6, {k: len(v) for k, v in got.items()}
    sample = got[w1.identity][0]
    assert sample.task_type == "crunch" and sample.assigned_to == w1.identity, sample
    assert json.loads(sample.payload)["n"] in range(12) and "i" in sample.metadata, sample
    for w in (w1, w2):
        for a in got[w.identity]:
            r = await w.client.complete_task(a.task_id)
            assert r is not None and r.success, r
    t = await status_of(creator.client, created[0], pb.TASK_STATUS_COMPLETED)
    assert t.status == pb.TASK_STATUS_COMPLETED and t.task_type == "crunch", t
    assert not await drain(w1.assigned, 0.3) and not await drain(w2.assigned, 0.1), "delivered twice"
    ok("pool tasks are spread over both workers (6 and 6), each delivered once, and complete")

    _, listed = http("GET", "/v1/targets")
    aether = {t["target_id"]: t for t in listed["targets"] if t["adapter"] == "aether"}
    for want in (w1.identity, w2.identity, "ag::default::pool-w", creator.identity):
        assert want in aether and aether[want]["state"] == "up", (want, sorted(aether))
    ok("connected agents and their pools are listed as targets of adapter aether")

    # TARGETED to an online agent, with progress and a subscription; then a failure.
    r = await creator.client.create_task_sync("review", WS, target_agent_id=w1.identity,
                                              payload=b'{"doc": "x"}', metadata={"k": "v"})
    assert r.success and r.status == "assigned" and r.assigned_to == w1.identity, r
    task_id = r.task_id
    a = await asyncio.wait_for(w1.assigned.get(), 10)
    assert a.task_id == task_id and a.task_type == "review" and a.metadata["k"] == "v", a
    assert json.loads(a.payload) == {"doc": "x"}, a.payload
    sub = await creator.client.subscribe_to_task(task_id)
    assert sub is not None and sub.success and sub.subscription_id, sub
    await w1.client.report_progress(task_id, state="working", completion=0.5, summary="half way")
    ev = await next_event(creator, "progress")
    assert ev.task_id == task_id and ev.subscription_id == sub.subscription_id, ev
    assert ev.progress.state == "working" and abs(ev.progress.progress - 0.5) < 1e-9, ev
    assert ev.progress.message == "half way", ev
    # Someone who does not hold it cannot end it, nor see it.
    other = await Agent("snoop", "s1").connect()
    r = await other.client.complete_task(task_id)
    assert r is not None and not r.success and "ERR_TASK_NOT_FOUND" in r.error, r
    r = await other.client.get_task(task_id)
    assert r is not None and not r.success and "ERR_TASK_NOT_FOUND" in r.error, r
    r = await w1.client.fail_task(task_id, reason="bad input: no doc")
    assert r.success, r
    ev = await next_event(creator, "status_changed")
    assert ev.status_changed.to_status == pb.TASK_STATUS_FAILED, ev
    assert ev.status_changed.from_status == pb.TASK_STATUS_RUNNING, ev
    t = await status_of(creator.client, task_id, pb.TASK_STATUS_FAILED)
    assert t.status == pb.TASK_STATUS_FAILED and "bad input: no doc" in t.error, t
    assert t.assigned_to == w1.identity and t.creator_actor_id == creator.identity, t
    unsub = await creator.client.unsubscribe_from_task(sub.subscription_id)
    assert unsub.success, unsub
    ok("a targeted task reaches its agent with type, metadata and payload; progress and the failure stream to a subscriber; others cannot touch it")

    # TARGETED to an agent that is offline: it waits, and is delivered when the agent connects.
    r = await creator.client.create_task_sync("later", WS, target_agent_id=f"ag::{WS}::pool-w::w3")
    assert r.success and r.status == "orchestration_triggered", r
    later = r.task_id
    w3 = await Agent("pool-w", "w3").connect()
    a = await asyncio.wait_for(w3.assigned.get(), 10)
    assert a.task_id == later, a
    assert (await w3.client.claim_task(later)).success
    assert (await w3.client.complete_task(later)).success
    ok("a task for an offline agent waits and is delivered when it connects")

    # SELF_ASSIGN: the creator holds it; nothing is pushed.
    r = await creator.client.create_task_sync("note", WS)
    assert r.success and r.status == "assigned" and r.assigned_to == creator.identity, r
    assert (await creator.client.complete_task(r.task_id)).success
    t = await status_of(creator.client, r.task_id, pb.TASK_STATUS_COMPLETED)
    assert t.status == pb.TASK_STATUS_COMPLETED, t
    assert not await drain(creator.assigned, 0.3)
    ok("a self-assigned task is held by its creator and completed by it")

    # A pending pool task that is cancelled is never delivered.
    r1 = await creator.client.create_task_sync("idle", WS, target_implementation="late-w")
    r2 = await creator.client.create_task_sync("idle", WS, target_implementation="late-w")
    assert r1.status == r2.status == "pending_pool", (r1, r2)
    c = await creator.client.cancel_task(r1.task_id, reason="not needed")
    assert c.success and c.task.task_id == r1.task_id, c
    await status_of(creator.client, r1.task_id, pb.TASK_STATUS_CANCELLED)
    late = await Agent("late-w", "l1").connect()
    got = await drain(late.assigned, 1.0)
    assert [a.task_id for a in got] == [r2.task_id], [a.task_id for a in got]
    assert (await late.client.complete_task(r2.task_id)).success
    ok("a cancelled pending pool task is never delivered; the other one is")

    # Refusals: too large a payload creates nothing; POOL without implementation; bad target.
    _, before = http("GET", "/v1/tasks?limit=200")
    r = await creator.client.create_task_sync("big", WS, target_implementation="pool-w", payload=b"x" * (512 * 1024 + 1))
    assert r is not None and not r.success and r.error_code == "TASK_PAYLOAD_TOO_LARGE", r
    r = await creator.client.create_task_sync("x", WS, assignment_mode=2)
    assert not r.success and r.error_code == "ERR_INVALID_ARGUMENT" and "target_implementation" in r.error_message, r
    r = await creator.client.create_task_sync("x", WS, target_agent_id="ag::default::ghost::g1")
    assert not r.success and r.error_code == "ERR_TASK_CREATE_FAILED", r
    await creator.client.create_task("x", WS, target_agent_id="ag::default::ghost::g1")
    err = await asyncio.wait_for(creator.errors.get(), 10)
    assert err.code == "ERR_TASK_CREATE_FAILED", err
    _, after = http("GET", "/v1/tasks?limit=200")
    assert len(after["tasks"]) == len(before["tasks"]), "a refused task was created"
    ok("an oversize payload, a pool task without implementation and an unknown target are refused; nothing is created")

    # Queries: LIST with filters.
    r = await creator.client.query_tasks(workspace=WS, task_type="crunch", statuses=["completed"])
    assert r.success and r.total_count == 12 and all(t.task_type == "crunch" for t in r.tasks), r.total_count
    r = await creator.client.query_tasks(workspace=WS, statuses=["cancelled"])
    assert r.success and [t.task_id for t in r.tasks] == [r1.task_id], r
    r = await creator.client.query_tasks(task_type="crunch", limit=5)
    assert len(r.tasks) == 5 and r.total_count == 12, (len(r.tasks), r.total_count)
    ok("query_tasks filters by type, status and workspace, and pages")

    # SDK -> a node target (loopback): the creator gets the result.
    r = await creator.client.create_task_sync("demo.echo", WS, target_agent_id="ag::default::echo::default",
                                              payload=b'{"text": "hi from the sdk"}')
    assert r.success and r.status == "assigned", r
    t = await status_of(creator.client, r.task_id, pb.TASK_STATUS_COMPLETED)
    assert t.status == pb.TASK_STATUS_COMPLETED and "hi from the sdk" in t.metadata["result"], t
    code, task = http("GET", f"/v1/tasks/{r.task_id}")
    assert code == 200 and task["resolved_agent_id"] == "echo" and task["sender"] == creator.identity, task
    ok("an SDK task to a node target (loopback) runs there and the creator reads its result")

    # Node -> an SDK agent: POST /v1/tasks to it.
    code, created = http("POST", "/v1/tasks", {"target_agent_id": w2.identity, "intent": "summarize",
                                               "payload": {"text": "from http"}})
    assert code == 202, (code, created)
    task = created["task"]
    a = await asyncio.wait_for(w2.assigned.get(), 10)
    assert a.task_id == task["task_id"] and a.task_type == "summarize" and json.loads(a.payload) == {"text": "from http"}, a
    await w2.client.report_progress(a.task_id, state="working", completion=0.4, summary="reading")
    assert (await w2.client.complete_task(a.task_id)).success
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        code, t = http("GET", f"/v1/tasks/{a.task_id}")
        if t["status"] == "completed":
            break
        await asyncio.sleep(0.05)
    assert t["status"] == "completed", t
    code, events = http("GET", f"/v1/tasks/{a.task_id}/events")
    kinds = [(e["kind"], e.get("message")) for e in events["events"]]
    assert ("task.running", "reading") in kinds and kinds[-1][0] == "task.completed", kinds
    ok("a task posted over HTTP to an SDK agent is assigned to it; its progress and completion are node task events")

    # A pool worker that leaves gives its tasks back to the pool.
    r = await creator.client.create_task_sync("handoff", WS, target_implementation="late-w")
    a = await asyncio.wait_for(late.assigned.get(), 10)
    assert a.task_id == r.task_id
    late2 = await Agent("late-w", "l2").connect()
    await late.close()
    a2 = await asyncio.wait_for(late2.assigned.get(), 10)
    assert a2.task_id == r.task_id, a2
    assert (await late2.client.complete_task(r.task_id)).success
    ok("a pool task held by a worker that leaves goes to another worker")

    # The sync client takes assignments too.
    got = []
    sync = AgentClient(WS, "sync-w", "s1", max_retries=1)
    sync.on_task_assignment = got.append
    sync.connect(GATEWAY)
    for _ in range(500):
        if sync._session_id:
            break
        await asyncio.sleep(0.02)
    r = await creator.client.create_task_sync("sync", WS, target_implementation="sync-w")
    for _ in range(500):
        if got:
            break
        await asyncio.sleep(0.02)
    assert got and got[0].task_id == r.task_id, got
    resp = await asyncio.get_running_loop().run_in_executor(None, lambda: sync.complete_task(r.task_id))
    assert resp is not None and resp.success, resp
    sync.close()
    ok("a sync agent receives and completes a pool task")

    for a in (creator, w1, w2, w3, other, late2):
        await a.close()


asyncio.run(main())

"""Black-box checks of the node's Aether gateway with the real Python SDK
(scitrera-aether-client 0.2.3). Run by tests/aether_gateway.rs:

    sdk_connect.py TARGET ADMIN_KEY

Prints one `ok <check>` line per check that passed; any failure raises (exit status 1).
Calls are never made from inside SDK callbacks (they would block the SDK's listener).
"""
import asyncio
import sys
import threading
import time

from scitrera_aether_client import AgentClient, AsyncAgentClient
from scitrera_aether_client._common import Credentials
from scitrera_aether_client.exceptions import AetherError

TARGET, ADMIN_KEY = sys.argv[1], sys.argv[2]


def wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def ok(name):
    print(f"ok {name}", flush=True)


class Watched:
    """A sync AgentClient with its connect/config/disconnect callbacks recorded."""

    def __init__(self, spec, credentials=None, workspace="default", impl="gw-test"):
        self.connected = threading.Event()
        self.config = threading.Event()
        self.disconnects = []
        self.errors = []
        self.client = AgentClient(workspace, impl, spec, credentials=credentials, max_retries=1)
        self.client.on_connect = self.connected.set
        self.client.on_config = lambda _c: self.config.set()
        self.client.on_disconnect = self.disconnects.append
        self.client.on_error = self.errors.append
        self.client.connect(TARGET)

    def close(self):
        self.client.close()


def refused(watched, what):
    """The server refused the stream with a non-recoverable status: the client stops for good."""
    wait_for(lambda: not watched.client.is_running, what=f"{what}: the client stops")
    assert not watched.connected.is_set(), f"{what}: on_connect must not fire"


def sync_checks():
    a = Watched("a1")
    wait_for(a.connected.is_set, what="on_connect")
    session_id = a.client._session_id
    assert session_id and session_id.startswith("as_"), f"session id from the ack: {session_id!r}"
    wait_for(a.config.is_set, what="ConfigSnapshot after the ack")
    ok("sync connect: ack with a session id, then config")

    dup = Watched("a1")
    refused(dup, "duplicate identity")
    dup.close()
    ok("duplicate identity refused")

    # An operation the node does not serve: a request-id call gets a correlated error at once
    # (not a 5 s timeout), a FIFO call its typed failure.
    started = time.monotonic()
    try:
        a.client.get_authority_grant("g1", timeout=10.0)
        raise AssertionError("get_authority_grant must raise")
    except AetherError as e:
        assert "ERR_NOT_IMPLEMENTED" in str(e.code), e
    assert time.monotonic() - started < 8.0, "answered by the correlated error, not the SDK's timeout"
    policy = a.client.acl_get_fallback_policy("agent_workspace", timeout=10.0)
    assert policy is not None and not policy.success and "not served" in policy.error, policy
    ok("unserved request answered with a correlated error")

    a.client.switch_workspace("elsewhere")  # users only, no id: an uncorrelated error
    wait_for(lambda: any(getattr(e, "code", "") == "ERR_INVALID_PRINCIPAL" for e in a.errors), what="on_error")
    ok("uncorrelated unserved request reaches on_error")

    a.close()
    # The identity is free again once the closed stream is noticed.
    deadline = time.monotonic() + 10
    while True:
        again = Watched("a1")
        wait_for(lambda: again.connected.is_set() or not again.client.is_running, what="reconnect outcome")
        if again.connected.is_set():
            break
        again.close()
        assert time.monotonic() < deadline, "identity a1 was never released after close"
        time.sleep(0.1)
    again.close()
    ok("identity freed after close")

    bad = Watched("k1", credentials=Credentials.api_key("not-a-key"))
    refused(bad, "unknown key")
    bad.close()
    ok("unknown key refused")

    admin = Watched("k2", credentials=Credentials.api_key(ADMIN_KEY))
    wait_for(admin.connected.is_set, what="admin key connects")
    admin.close()
    ok("admin key accepted")

    bad_id = Watched("has space")
    refused(bad_id, "invalid identifier")
    bad_id.close()
    ok("invalid identifier refused")


async def async_checks():
    client = AsyncAgentClient("default", "gw-test", "async1")
    await client.connect(TARGET)
    for _ in range(500):
        if client.is_connected:
            break
        await asyncio.sleep(0.02)
    assert client.is_connected, "async client confirmed"
    assert client._session_id and client._session_id.startswith("as_"), client._session_id
    try:
        await client.get_authority_grant("g1", timeout=10.0)
        raise AssertionError("async get_authority_grant must raise")
    except AetherError as e:
        assert "ERR_NOT_IMPLEMENTED" in str(e.code), e
    await client.close()
    ok("async connect and correlated error")


if __name__ == "__main__":
    sync_checks()
    asyncio.run(async_checks())
    print("all checks passed", flush=True)

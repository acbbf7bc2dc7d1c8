"""API tokens on the gateway with the real Python SDK (0.2.3): one minted over the node's HTTP
API admits a client (authority `token`); once revoked, it is refused. Run by
tests/aether_gateway.rs:

    sdk_tokens.py TARGET HTTP_BASE ADMIN_BEARER

Prints `ok <check>` per passed check; any failure raises (exit status 1).
"""
import asyncio
import json
import logging
import sys
import urllib.request

from scitrera_aether_client import AsyncAgentClient
from scitrera_aether_client._common import Credentials
from scitrera_aether_client.exceptions import AetherError

TARGET, HTTP, ADMIN = sys.argv[1], sys.argv[2], sys.argv[3]


class Records(logging.Handler):
    """The SDK's log lines: a refusal at connect is logged there (the async client raises none)."""

    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


RECORDS = Records()
logging.getLogger().addHandler(RECORDS)


def ok(name):
    print(f"ok {name}", flush=True)


def http(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{HTTP}{path}", data=data, method=method,
                                 headers={"authorization": f"Bearer {ADMIN}", "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


async def connect(spec, token):
    """(client, None) once connected; (None, the SDK's log lines) once it stopped for good."""
    RECORDS.lines.clear()
    client = AsyncAgentClient("default", "tok", spec, credentials=Credentials.api_key(token), max_retries=1)
    try:
        await asyncio.wait_for(client.connect(TARGET), 20)
    except AetherError as e:
        await client.close()
        return None, repr(e)
    for _ in range(1000):
        if client.is_connected:
            return client, None
        if not client.is_running:
            break
        await asyncio.sleep(0.02)
    await client.close()
    return None, " | ".join(RECORDS.lines)


async def main():
    minted = http("POST", "/v1/tokens", {"name": "gateway-agent", "scopes": ["tasks:write"]})
    token, token_id = minted["token"], minted["token_id"]
    client, err = await connect("t1", token)
    assert client is not None, err
    listed = {c["identity"]: c for c in http("GET", "/v1/aether/connections")["connections"]}
    entry = listed["ag::default::tok::t1"]
    assert entry["authority"] == "token" and entry["token_id"] == token_id, entry
    put = await client.kv_put("k", b"v")
    assert put is not None and put.success, put
    await client.close()
    ok("a token minted over HTTP admits a gateway client, listed with its token id")

    http("POST", f"/v1/tokens/{token_id}/revoke", {})
    client, err = await connect("t2", token)
    assert client is None, "a revoked token still connects"
    assert "UNAUTHENTICATED" in err, err
    ok("a revoked token is refused UNAUTHENTICATED")

    client, err = await connect("t3", token.rsplit("_", 1)[0] + "_wrongsecret")
    assert client is None and "UNAUTHENTICATED" in err, err
    ok("a token with a wrong secret is refused UNAUTHENTICATED")


if __name__ == "__main__":
    asyncio.run(main())
    print("all checks passed", flush=True)

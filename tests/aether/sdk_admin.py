"""Admin operations over the gateway with the real Python SDK (0.2.3): sessions (list, get,
disconnect) and API tokens (create, list, revoke) through AsyncAdminClient and AdminClient. A
client without admin rights is refused ERR_PERMISSION_DENIED and nothing changes. Run by
tests/aether_gateway.rs:

    sdk_admin.py TARGET HTTP_BASE ADMIN_BEARER

Prints `ok <check>` per passed check; any failure raises (exit status 1).
"""
import asyncio
import json
import sys
import urllib.error
import urllib.request

from scitrera_aether_client import AdminClient, AgentClient, AsyncAdminClient, AsyncAgentClient, AsyncUserClient
from scitrera_aether_client._common import Credentials

TARGET, HTTP, ADMIN = sys.argv[1], sys.argv[2], sys.argv[3]


def ok(name):
    print(f"ok {name}", flush=True)


def http(method, path, bearer=ADMIN):
    req = urllib.request.Request(f"{HTTP}{path}", method=method, headers={"authorization": f"Bearer {bearer}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


async def is_refused(workspace, spec, credentials=None):
    """Whether a connect as ag::{workspace}::adm::{spec} is refused (never admitted)."""
    client = AsyncAgentClient(workspace, "adm", spec, credentials=credentials, max_retries=1)
    try:
        await asyncio.wait_for(client.connect(TARGET), 20)
    except Exception:  # the SDK may raise or just stop: either way it must not be admitted
        pass
    admitted = False
    for _ in range(50):
        admitted |= bool(client.is_connected)
        await asyncio.sleep(0.02)
    await client.close()
    _, body = http("GET", "/v1/aether/connections")
    return not admitted and f"ag::{workspace}::adm::{spec}" not in json.dumps(body)


async def connected(workspace, spec, credentials=None, **kw):
    client = AsyncAgentClient(workspace, "adm", spec, credentials=credentials, max_retries=1, **kw)
    await asyncio.wait_for(client.connect(TARGET), 20)
    for _ in range(500):
        if client.is_connected:
            return client
        await asyncio.sleep(0.02)
    raise AssertionError(f"{spec} never connected")


def identities(resp):
    return {c.identity for c in resp.connections}


async def main():
    admin_client = await connected("ops", "admin", Credentials.api_key(ADMIN))
    admin = AsyncAdminClient(admin_client)
    disconnects = []
    victim = await connected("ws-1", "victim")
    victim.on_disconnect = lambda reason: disconnects.append(reason)
    other = await connected("ws-2", "other")

    # Sessions: list, filter, page, get.
    resp = await admin.list_connections()
    assert resp is not None and resp.success, resp
    ids = identities(resp)
    assert {"ag::ops::adm::admin", "ag::ws-1::adm::victim", "ag::ws-2::adm::other"} <= ids, ids
    assert resp.total_count == len(resp.connections) >= 3, resp.total_count
    mine = next(c for c in resp.connections if c.identity == "ag::ws-1::adm::victim")
    assert mine.workspace == "ws-1" and mine.implementation == "adm" and mine.specifier == "victim", mine
    assert mine.session_id == victim._session_id and mine.connected_at > 0 and mine.remote_addr, mine
    resp = await admin.list_connections(workspace="ws-1")
    assert identities(resp) == {"ag::ws-1::adm::victim"}, identities(resp)
    resp = await admin.list_connections(principal_type="user")
    assert resp.success and not resp.connections and resp.total_count == 0, resp
    resp = await admin.list_connections(limit=1)
    assert len(resp.connections) == 1 and resp.total_count >= 3, resp
    resp = await admin_client.get_session(victim._session_id)
    assert resp.success and resp.connection.identity == "ag::ws-1::adm::victim", resp
    resp = await admin_client.get_session("no-such-session")
    assert not resp.success and resp.error.startswith("ERR_NOT_FOUND"), resp
    ok("an admin lists sessions, filtered by workspace and kind, paged, and gets one by id")

    # Workspaces: create, duplicate refused, list with live counts, get, update, delete.
    created = await admin.create_workspace(workspace_id="ws-1", display_name="Workspace One",
                                           description="first", metadata={"team": "ops"})
    assert created is not None and created.success, created
    assert created.workspace.workspace_id == "ws-1" and created.workspace.metadata["team"] == "ops", created
    dup = await admin.create_workspace(workspace_id="ws-1")
    assert dup is not None and not dup.success and "already exists" in dup.error, dup
    bad = await admin.create_workspace(workspace_id="a::b")
    assert not bad.success and bad.error.startswith("ERR_INVALID_ARGUMENT") and "workspace_id" in bad.error, bad
    listed = await admin.list_workspaces(limit=50)
    by_id = {w.workspace_id: w for w in listed.workspaces}
    assert {"default", "ws-1"} <= set(by_id) and listed.total_count == len(listed.workspaces), listed
    assert by_id["ws-1"].active_agents == 1 and by_id["ws-1"].display_name == "Workspace One", by_id["ws-1"]
    got = await admin.get_workspace("ws-1")
    assert got.success and got.workspace.description == "first" and got.workspace.created_at > 0, got
    updated = await admin.update_workspace("ws-1", display_name="Renamed", description="second")
    assert updated.success and updated.workspace.display_name == "Renamed", updated
    assert updated.workspace.created_at == got.workspace.created_at, "the creation time stays"
    missing = await admin.update_workspace("nope", display_name="x")
    assert not missing.success and missing.error.startswith("ERR_NOT_FOUND"), missing
    await admin.create_workspace(workspace_id="ws-temp")
    deleted = await admin.delete_workspace("ws-temp")
    assert deleted.success, deleted
    gone = await admin.get_workspace("ws-temp")
    assert not gone.success and gone.error.startswith("ERR_NOT_FOUND"), gone
    # FIFO correlation: replies come back in request order, also when several are in flight.
    replies = await asyncio.gather(admin.get_workspace("ws-1"), admin.get_workspace("default"))
    assert [r.workspace.workspace_id for r in replies] == ["ws-1", "default"], replies
    ok("an admin creates, lists, gets, updates and deletes workspaces; a duplicate is refused")

    # The agent registry: register (again: idempotent), list, get, update, delete.
    reg = await admin_client.register_agent("scitrera/echo-bot", profile="local", description="echo",
                                            launch_params={"image": "echo:1"}, capabilities={"stream": True})
    assert reg is not None and reg.success, reg
    first = reg.agent.registered_at
    assert reg.agent.launch_params["profile"] == "local" and reg.agent.orchestrator_profile == "local", reg.agent
    again = await admin_client.register_agent("scitrera/echo-bot", profile="local", description="echo v2")
    assert again.success and again.agent.registered_at == first and again.agent.description == "echo v2", again
    await admin_client.register_agent("acme/k8s-bot", profile="k8s")
    listed = await admin.list_agents()
    assert {a.implementation for a in listed.agents} == {"scitrera/echo-bot", "acme/k8s-bot"}, listed
    assert listed.total_count == 2, listed.total_count
    local = await admin.list_agents(orchestrator_profile="local")
    assert [a.implementation for a in local.agents] == ["scitrera/echo-bot"], local
    got = await admin.get_agent("scitrera/echo-bot")
    assert got.success and got.agent.description == "echo v2", got
    upd = await admin_client.update_agent("scitrera/echo-bot", profile="local", description="echo v3")
    assert upd.success and upd.agent.description == "echo v3", upd
    nope = await admin_client.update_agent("nobody/none", profile="local")
    assert not nope.success and nope.error.startswith("ERR_NOT_FOUND"), nope
    gone = await admin_client.delete_agent("acme/k8s-bot")
    assert gone.success, gone
    missing = await admin.get_agent("acme/k8s-bot")
    assert not missing.success and missing.error.startswith("ERR_NOT_FOUND"), missing
    launch = await admin_client.launch_agent("scitrera/echo-bot", workspace="ws-1", specifier="x")
    assert launch is not None and not launch.success and launch.error.startswith("ERR_NOT_IMPLEMENTED"), launch
    ok("agent implementations are registered (idempotently), listed by profile, read, updated and removed")

    # Without admin rights: refused, nothing changes.
    plain = AsyncAdminClient(other)
    before, _ = http("GET", "/v1/tokens")
    for call in (plain.list_connections(), plain.disconnect_session(admin_client._session_id, reason="coup"),
                 plain.create_token(name="sneaky", principal_type="agent"), plain.list_tokens(),
                 plain.create_workspace(workspace_id="sneaky-ws"), plain.delete_workspace("ws-1"),
                 plain.list_workspaces(), other.register_agent("sneaky/bot"), plain.list_agents(),
                 other.delete_agent("scitrera/echo-bot"),
                 plain.create_acl_rule("agent", "*", "workspace", "ws-1", 50), plain.list_acl_rules()):
        resp = await call
        assert resp is not None and not resp.success, resp
        assert resp.error.startswith("ERR_PERMISSION_DENIED"), resp.error
    after, body = http("GET", "/v1/tokens")
    assert "sneaky" not in json.dumps(body), "a refused create made a token"
    assert admin_client.is_connected, "a refused disconnect disconnected"
    names = {w.workspace_id for w in (await admin.list_workspaces()).workspaces}
    assert "ws-1" in names and "sneaky-ws" not in names, names
    agents = {a.implementation for a in (await admin.list_agents()).agents}
    assert agents == {"scitrera/echo-bot"}, agents
    ok("a client without admin rights is refused ERR_PERMISSION_DENIED and nothing changes")

    # Tokens: one store with the HTTP API.
    created = await admin.create_token(name="ci-token", principal_type="agent")
    assert created.success and created.plaintext_token, created
    assert created.token.id and created.created_token.id == created.token.id, created
    assert created.token.scopes == ["tasks:write"], created.token.scopes
    status, body = http("GET", "/v1/tokens")
    listed = [t for t in body["tokens"] if t["token_id"] == created.token.id]
    assert status == 200 and listed and listed[0]["name"] == "ci-token", body
    status, _ = http("GET", "/v1/tasks", bearer=created.plaintext_token)
    assert status == 200, status
    holder = await connected("ws-1", "holder", Credentials.api_key(created.plaintext_token))
    status, body = http("GET", "/v1/aether/connections")
    row = next(c for c in body["connections"] if c["identity"] == "ag::ws-1::adm::holder")
    assert row["authority"] == "token" and row["token_id"] == created.token.id, row
    resp = await admin.list_tokens()
    assert created.token.id in {t.id for t in resp.tokens}, resp
    ok("a token minted through the SDK is the node's: listed over HTTP, admits HTTP and gateway clients")

    bad = await admin.create_token(name="x", principal_type="robot")
    assert not bad.success and bad.error.startswith("ERR_INVALID_ARGUMENT") and "robot" in bad.error, bad
    resp = await admin.revoke_token(created.token.id)
    assert resp.success and resp.token.revoked, resp
    resp = await admin.list_tokens()
    assert created.token.id not in {t.id for t in resp.tokens}, "revoked tokens are listed only when asked"
    resp = await admin.list_tokens(include_revoked=True)
    assert any(t.id == created.token.id and t.revoked and t.revoked_at > 0 for t in resp.tokens), resp
    status, _ = http("GET", "/v1/tasks", bearer=created.plaintext_token)
    assert status == 401, status
    assert await is_refused("ws-1", "holder-2", Credentials.api_key(created.plaintext_token)), "a revoked token was admitted"
    await holder.close()
    ok("a revoked token is refused over HTTP and the gateway, and listed as revoked when asked")

    # Disconnect: FORCE_DISCONNECT, the client stops and does not come back.
    resp = await admin.disconnect_session(victim._session_id, reason="ops cleanup")
    assert resp.success and resp.connection.identity == "ag::ws-1::adm::victim", resp
    for _ in range(250):
        if disconnects:
            break
        await asyncio.sleep(0.02)
    assert disconnects and "ops cleanup" in disconnects[0], disconnects
    await asyncio.sleep(3)
    resp = await admin.list_connections()
    assert "ag::ws-1::adm::victim" not in identities(resp), identities(resp)
    assert victim._force_disconnect, "the SDK took it as a kick"
    resp = await admin.disconnect_session(victim._session_id)
    assert not resp.success and resp.error.startswith("ERR_NOT_FOUND"), resp
    ok("a kicked client gets FORCE_DISCONNECT with the reason and stays away")

    # Access rules: a workspace with rules admits only whom they allow; explained by the rule.
    grant = await admin.create_acl_rule("agent", "adm::allowed", "workspace", "ws-acl", 20, reason="team")
    assert grant is not None and grant.success and grant.rule.rule_id, grant
    assert grant.rule.access_level_name == "READWRITE" and grant.rule.granted_by, grant.rule
    rule_id = grant.rule.rule_id
    allowed = await connected("ws-acl", "allowed")
    assert await is_refused("ws-acl", "stranger"), "a principal no rule allows was admitted"
    assert await is_refused("ws-acl", "x", Credentials.api_key("alink_bad_token")), "a bad token was admitted"
    boss = await connected("ws-acl", "boss", Credentials.api_key(ADMIN))  # admin rights: rules do not bind
    free = await connected("ws-open", "stranger")  # a workspace no rule names stays open
    why = await admin.explain_access("agent", "adm::stranger", "workspace", "ws-acl", 20)
    e = why.explanation
    assert why.success and not e.allowed and e.fallback_applied and "denied by default" in e.reason, why
    why = await admin.explain_access("agent", "adm::allowed", "workspace", "ws-acl", 20)
    e = why.explanation
    assert e.allowed and e.effective_access_level == 20 and rule_id in e.reason, why
    assert [c.rule_id for c in e.contributions] == [rule_id], e.contributions
    listed = await admin.list_acl_rules(resource_id="ws-acl")
    assert [r.rule_id for r in listed.rules] == [rule_id] and listed.total_rules == 1, listed
    lowered = await admin.create_acl_rule("agent", "adm::allowed", "workspace", "ws-acl", 10)
    assert lowered.success and lowered.rule.rule_id == rule_id and lowered.rule.access_level == 10, lowered
    await allowed.close()
    assert await is_refused("ws-acl", "allowed"), "READ is not enough to connect"
    bad = await admin.create_acl_rule("agent", "adm::allowed", "workspace", "ws-acl", 15)
    assert not bad.success and bad.error.startswith("ERR_INVALID_ARGUMENT") and "access_level" in bad.error, bad
    user = AsyncUserClient("ann", "w1", max_retries=1)
    user_errors = []
    user.on_error = lambda err: user_errors.append(err)
    await asyncio.wait_for(user.connect(TARGET), 20)
    await user.switch_workspace("ws-acl")
    for _ in range(250):
        if user_errors:
            break
        await asyncio.sleep(0.02)
    assert user_errors and user_errors[0].code == "ERR_PERMISSION_DENIED", user_errors
    await user.close()
    gone = await admin.revoke_acl_rule("agent", "adm::allowed", "workspace", "ws-acl")
    assert gone.success and gone.rule.rule_id == rule_id, gone
    assert not (await admin.list_acl_rules(resource_id="ws-acl")).rules
    again = await connected("ws-acl", "stranger")  # no rules left: open again
    extra = await admin.create_acl_rule("user", "*", "workspace", "ws-x", 10)
    assert (await admin.delete_acl_rule(extra.rule.rule_id)).success
    twice = await admin.delete_acl_rule(extra.rule.rule_id)
    assert not twice.success and twice.error.startswith("ERR_NOT_FOUND"), twice
    groups = await admin.list_groups()
    assert groups is not None and not groups.success and groups.error.startswith("ERR_NOT_IMPLEMENTED"), groups
    for c in (boss, free, again):
        await c.close()
    ok("access rules admit whom they allow into a workspace, deny the rest by default, and explain why")

    await victim.close()
    await other.close()
    await admin_client.close()


def sync_checks():
    client = AgentClient("ops", "adm", "sync-admin", credentials=Credentials.api_key(ADMIN), max_retries=1)
    client.connect(TARGET)
    try:
        admin = AdminClient(client)
        created = admin.create_token(name="sync-token", principal_type="service", scopes=["tasks:read"])
        assert created.success and created.plaintext_token and created.token.scopes == ["tasks:read"], created
        assert created.token.id in {t.id for t in admin.list_tokens().tokens}
        assert admin.revoke_token(token_id=created.token.id).success
        assert created.token.id not in {t.id for t in admin.list_tokens().tokens}
        ws = admin.create_workspace(workspace_id="ws-sync", display_name="Sync")
        assert ws.success, ws
        assert "ws-sync" in {w.workspace_id for w in admin.list_workspaces().workspaces}
        assert not admin.create_workspace(workspace_id="ws-sync").success
    finally:
        client.close()
    ok("the sync AdminClient creates, lists and revokes tokens, and creates and lists workspaces")


if __name__ == "__main__":
    asyncio.run(main())
    sync_checks()

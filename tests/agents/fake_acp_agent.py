#!/usr/bin/env python3
"""Test-double ACP agent (stdlib only): JSON-RPC 2.0, newline-delimited, on stdin/stdout.

Start-up modes (flag --mode): normal (default), exit-before-init (writes to stderr, exits 3),
hang-init (never answers initialize), slow-init SECONDS (--init-delay).
--hang-first-init MARKER: the first process (MARKER absent; it creates it) never answers
initialize, later ones (MARKER present) start normally: a relaunch after an initialize timeout
succeeds.
--load-session advertises loadSession; --state FILE keeps sessions across processes so
session/load works after a restart.

Per-prompt behaviour, chosen by the prompt text:
  "say exactly X"                         -> answers X and remembers it (per session)
  "what did i ask you to say exactly"     -> the remembered X (proves session reuse), else UNKNOWN
  "!stream"                               -> plan, tool_call, 10 chunks 30 ms apart, tool_call_update
  "!permission"                           -> tool_call + session/request_permission; the answer
                                             decides the final text ("allowed"/"rejected"/cancelled)
  "!crash"                                -> one chunk, then exits 1 mid-turn
  "!hang"                                 -> never answers (honours session/cancel)
  "!stubborn"                             -> ignores session/cancel entirely
  "!garbage"                              -> non-JSON lines and an unknown sessionUpdate, then "ok"
  "!bigline"                              -> a 1 MiB agent_message_chunk, then end_turn
  "!fs"                                   -> asks the client fs/read_text_file, reports the error code
  "!refuse"                               -> stopReason refusal
  "!after NAME"                           -> "after:<the previous !after NAME of the session, or none>"
  "!flaky FILE N"                         -> the first N prompts (counted in FILE, across processes)
                                             fail (a JSON-RPC error answers session/prompt);
                                             later ones answer "ok after N failures"
  "!hang-once FILE"                       -> the first prompt (FILE absent; it creates it) hangs until
                                             cancelled; later ones answer "ok"
Structured events (OpenClaw: notifications with params {session_id, event: {kind, message, data}}):
  "!structured-await"                     -> task.awaiting_input {prompt}; then waits for session/cancel
  "!structured-heartbeat"                 -> three task.running "Heartbeat" {heartbeat: true} 50 ms apart,
                                             then "delayed_ok" and end_turn (the answer ends the task)
  "!structured-complete"                  -> a chunk, task.completed {result: {text}}, then 300 ms later a
                                             late chunk "LATE" and end_turn (after the task ended)
  "!structured-fail"                      -> task.running, task.failed {reason}, then as above
  anything else                           -> "echo: <text>"
"""
import argparse
import json
import os
import sys
import threading
import time
import uuid

lock = threading.Lock()
pending = {}          # our request id -> [event, response]
cancelled = {}        # session id -> threading.Event
sessions = {}         # session id -> {"last_exact": str|None}
active = {}           # session id -> prompts running now (a client must send one at a time)
next_id = [0]
args = None


def send(obj):
    line = json.dumps(obj)
    with lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def raw(text):
    with lock:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def save():
    if args.state:
        tmp = args.state + ".tmp"
        with open(tmp, "w") as f:
            json.dump(sessions, f)
        os.replace(tmp, args.state)


def request(method, params, timeout=60):
    with lock:
        rid = next_id[0]
        next_id[0] += 1
        ev = threading.Event()
        pending[rid] = [ev, None]
    send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
    ev.wait(timeout)
    return pending.pop(rid, [None, None])[1]


def update(sid, upd):
    send({"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": sid, "update": upd}})


def chunk(sid, text):
    update(sid, {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": text}})


def structured(sid, kind, message, data):
    send({"jsonrpc": "2.0", "method": "session/update",
          "params": {"session_id": sid, "event": {"kind": kind, "message": message, "data": data}}})


def wait_or_cancel(sid, seconds):
    return cancelled[sid].wait(seconds)


def prompt(rid, params):
    sid = params["sessionId"]
    text = "".join(b.get("text", "") for b in params.get("prompt", []) if b.get("type") == "text")
    low = text.strip().lower()
    cancelled[sid] = threading.Event()
    state = sessions.setdefault(sid, {"last_exact": None})
    with lock:
        active[sid] = active.get(sid, 0) + 1
        overlap = active[sid] > 1
    if overlap:
        chunk(sid, "OVERLAP ")
    try:
        stop = turn(sid, text, low, state)
    finally:
        with lock:
            active[sid] -= 1
    if isinstance(stop, dict):
        send({"jsonrpc": "2.0", "id": rid, "error": stop})
    else:
        send({"jsonrpc": "2.0", "id": rid, "result": {"stopReason": stop}})


def turn(sid, text, low, state):
    stop = "end_turn"
    if low.startswith("say exactly"):
        word = text.strip()[len("say exactly"):].strip().strip(".\"' ")
        state["last_exact"] = word
        save()
        chunk(sid, word)
    elif "what did i ask you to say exactly" in low:
        chunk(sid, state.get("last_exact") or "UNKNOWN")
    elif low.startswith("!after "):
        # The order turns ran in: answers the previous "!after" name of the session.
        name = text.strip()[len("!after "):].strip()
        chunk(sid, "after:" + (state.get("last_after") or "none"))
        state["last_after"] = name
    elif low.startswith("!flaky "):
        _, path, n = text.strip().split()
        try:
            with open(path) as f:
                count = int(f.read().strip() or "0")
        except FileNotFoundError:
            count = 0
        if count < int(n):
            with open(path, "w") as f:
                f.write(str(count + 1))
            stop = {"code": -32000, "message": f"flaky failure {count + 1}"}
        else:
            chunk(sid, f"ok after {n} failures")
    elif low.startswith("!hang-once "):
        path = text.strip().split()[1]
        if os.path.exists(path):
            chunk(sid, "ok")
        else:
            open(path, "w").close()
            cancelled[sid].wait()
            stop = "cancelled"
    elif low == "!stream":
        update(sid, {"sessionUpdate": "plan", "entries": [{"content": "stream ten chunks", "priority": "high", "status": "in_progress"}]})
        update(sid, {"sessionUpdate": "tool_call", "toolCallId": "t1", "title": "Count", "kind": "think", "status": "in_progress"})
        for i in range(10):
            if wait_or_cancel(sid, 0.03):
                stop = "cancelled"
                break
            chunk(sid, f"c{i} ")
        update(sid, {"sessionUpdate": "tool_call_update", "toolCallId": "t1", "status": "completed"})
    elif low == "!permission":
        update(sid, {"sessionUpdate": "tool_call", "toolCallId": "w1", "title": "Write out.txt", "kind": "edit", "status": "pending"})
        resp = request("session/request_permission", {
            "sessionId": sid,
            "toolCall": {"toolCallId": "w1", "title": "Write out.txt", "kind": "edit", "status": "pending"},
            "options": [{"optionId": "allow-once", "name": "Allow", "kind": "allow_once"},
                        {"optionId": "deny", "name": "Deny", "kind": "reject_once"}]})
        outcome = ((resp or {}).get("result") or {}).get("outcome") or {}
        if outcome.get("outcome") == "cancelled" or cancelled[sid].is_set():
            stop = "cancelled"
        elif outcome.get("optionId") == "allow-once":
            chunk(sid, "allowed")
        else:
            chunk(sid, "rejected")
    elif low == "!crash":
        chunk(sid, "about to crash")
        time.sleep(0.05)
        sys.stderr.write("fake agent: crashing on purpose\n")
        sys.stderr.flush()
        os._exit(1)
    elif low == "!hang":
        cancelled[sid].wait()
        stop = "cancelled"
    elif low == "!stubborn":
        time.sleep(3600)
    elif low == "!garbage":
        raw("this is not json")
        raw("{\"truncated\": ")
        update(sid, {"sessionUpdate": "brand_new_update_kind", "whatever": [1, 2, 3]})
        chunk(sid, "ok")
    elif low == "!bigline":
        chunk(sid, "x" * (1024 * 1024))
    elif low == "!fs":
        resp = request("fs/read_text_file", {"sessionId": sid, "path": "/etc/hostname"})
        code = ((resp or {}).get("error") or {}).get("code")
        chunk(sid, f"fs error {code}")
    elif low == "!refuse":
        stop = "refusal"
    elif low == "!structured-await":
        structured(sid, "task.awaiting_input", "Runtime requires additional input", {"prompt": "Approve?"})
        cancelled[sid].wait()
        stop = "cancelled"
    elif low == "!structured-heartbeat":
        for _ in range(3):
            structured(sid, "task.running", "Heartbeat", {"heartbeat": True})
            time.sleep(0.05)
        chunk(sid, "delayed_ok")
    elif low in ("!structured-complete", "!structured-fail"):
        if low == "!structured-complete":
            chunk(sid, "partial")
            structured(sid, "task.completed", "Task completed", {"result": {"text": "structured ok"}})
        else:
            structured(sid, "task.running", "Runtime accepted the task", {"remote_execution_id": "run_1"})
            structured(sid, "task.failed", "Task failed", {"reason": "tool exploded"})
        time.sleep(0.3)
        chunk(sid, "LATE")
    else:
        chunk(sid, "echo: " + text)
    return stop


def main():
    global args
    p = argparse.ArgumentParser()
    p.add_argument("--mode", default="normal")
    p.add_argument("--init-delay", type=float, default=0.0)
    p.add_argument("--load-session", action="store_true")
    p.add_argument("--state")
    p.add_argument("--hang-first-init")
    args = p.parse_args()
    hang_init = args.mode == "hang-init"
    if args.hang_first_init and not os.path.exists(args.hang_first_init):
        open(args.hang_first_init, "w").close()
        hang_init = True
    if args.state and os.path.exists(args.state):
        with open(args.state) as f:
            sessions.update(json.load(f))
    if args.mode == "exit-before-init":
        sys.stderr.write("fake agent: cannot start (configured to fail)\n")
        sys.stderr.flush()
        sys.exit(3)
    sys.stderr.write(f"fake agent starting pid={os.getpid()}\n")
    sys.stderr.flush()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        msg = json.loads(line)
        method = msg.get("method")
        if method is None:
            slot = pending.get(msg.get("id"))
            if slot:
                slot[1] = msg
                slot[0].set()
            continue
        rid = msg.get("id")
        params = msg.get("params") or {}
        if method == "initialize":
            if hang_init:
                continue
            time.sleep(args.init_delay)
            send({"jsonrpc": "2.0", "id": rid, "result": {
                "protocolVersion": 1,
                "agentCapabilities": {"loadSession": args.load_session},
                "agentInfo": {"name": "fake-acp-agent", "version": "0.1"}}})
        elif method == "session/new":
            sid = uuid.uuid4().hex
            sessions[sid] = {"last_exact": None, "cwd": params.get("cwd"), "meta": params.get("_meta")}
            save()
            send({"jsonrpc": "2.0", "id": rid, "result": {"sessionId": sid}})
        elif method == "session/load":
            sid = params.get("sessionId")
            if sid in sessions:
                send({"jsonrpc": "2.0", "id": rid, "result": {}})
            else:
                send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32002, "message": "session not found"}})
        elif method == "session/prompt":
            threading.Thread(target=prompt, args=(rid, params), daemon=True).start()
        elif method == "session/cancel":
            ev = cancelled.get(params.get("sessionId"))
            if ev:
                ev.set()
        elif rid is not None:
            send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "method not found"}})


if __name__ == "__main__":
    main()

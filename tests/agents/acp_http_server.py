"""Our Agent Communication Protocol server for the integration tests, on the reference SDK
(acp-sdk==1.0.3 with uvicorn 0.35 / fastapi 0.116, the pins it needs).

usage: acp_http_server.py --port PORT

Agents:
  echo       echoes the payload parts (not the AethroLink control part)
  streaming  many small text parts (count from the text, default 50)
  approver   asks a question (await), answers with what it got on resume
  slow       a part every 0.3 s, `ticks=N` parts (default 20); for cancel and restarts
  failing    one part, then raises "boom"
  control    answers with the AethroLink control part it received
  history    answers with the number of messages in its session history

A POST /runs carrying header `x-test-drop-stream-after: N` gets its SSE response closed after N
frames while the run goes on (what a proxy or a flaky network does), to test re-sync.
"""

import argparse
import asyncio
import json
import re

import uvicorn
from acp_sdk.models import Message, MessageAwaitRequest, MessagePart
from acp_sdk.server import Context, Server
from acp_sdk.server.app import create_app

CONTROL = "application/vnd.aethrolink.control+json"
server = Server()


def payload_parts(input: list[Message]) -> list[MessagePart]:
    return [p for m in input for p in m.parts if p.content_type != CONTROL]


def payload_text(input: list[Message]) -> str:
    return "".join(p.content or "" for p in payload_parts(input))


def number(text: str, key: str, default: int) -> int:
    m = re.search(rf"{key}=(\d+)", text)
    return int(m.group(1)) if m else default


@server.agent(name="echo", description="echoes the payload")
async def echo(input: list[Message], context: Context):
    for part in payload_parts(input):
        yield MessagePart(content=part.content, content_type=part.content_type)


@server.agent(name="streaming", description="many small parts")
async def streaming(input: list[Message], context: Context):
    count = number(payload_text(input), "parts", 50)
    for i in range(count):
        yield MessagePart(content=f"p{i} ")
        await asyncio.sleep(0.005)


@server.agent(name="approver", description="asks a question, waits for the answer")
async def approver(input: list[Message], context: Context):
    yield MessagePart(content=f"You asked: {payload_text(input)}. ")
    resume = yield MessageAwaitRequest(
        message=Message(role="agent", parts=[MessagePart(content="Approve? (yes/no)")])
    )
    answer = "".join(p.content or "" for p in resume.message.parts)
    yield MessagePart(content=f"Got answer: {answer}")


@server.agent(name="slow", description="a part every 0.3 s")
async def slow(input: list[Message], context: Context):
    ticks = number(payload_text(input), "ticks", 20)
    for i in range(ticks):
        yield MessagePart(content=f"tick {i} ")
        await asyncio.sleep(0.3)


@server.agent(name="failing", description="fails after one part")
async def failing(input: list[Message], context: Context):
    yield MessagePart(content="about to fail ")
    raise RuntimeError("boom")


@server.agent(name="control", description="returns the control part it got")
async def control(input: list[Message], context: Context):
    for m in input:
        for p in m.parts:
            if p.content_type == CONTROL:
                yield MessagePart(content=p.content)


@server.agent(name="history", description="counts the session's history")
async def history(input: list[Message], context: Context):
    yield MessagePart(content=f"history: {len(context.session.history)}")


def drop_streams(app):
    """ASGI wrapper: ends a `POST /runs` response after N SSE frames, if asked to."""

    async def wrapped(scope, receive, send):
        after = None
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/runs":
            for name, value in scope["headers"]:
                if name == b"x-test-drop-stream-after":
                    after = int(value)
        if after is None:
            return await app(scope, receive, send)
        frames = 0
        closed = False

        async def send_some(message):
            nonlocal frames, closed
            if closed:
                return
            if message["type"] == "http.response.body":
                frames += message.get("body", b"").count(b"data:")
                if frames >= after:
                    closed = True
                    message = {**message, "more_body": False}
            await send(message)

        await app(scope, receive, send_some)

    return wrapped


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = create_app(*server.agents)
    print(json.dumps({"listening": args.port}), flush=True)
    uvicorn.run(drop_streams(app), host="127.0.0.1", port=args.port, log_level="warning", timeout_graceful_shutdown=1)


if __name__ == "__main__":
    main()

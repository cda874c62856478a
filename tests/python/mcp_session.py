"""Drive an MCP server with the official Python SDK (`mcp` from PyPI), one session, as
tests/tests/mcp.rs asks: read a plan (JSON) on stdin, run its steps in order in one session,
print what each returned (JSON) on stdout.

Plan: {"transport": "stdio", "command": "...", "args": [...], "env": {...}}
   or {"transport": "http", "url": "http://127.0.0.1:PORT/mcp"},
  plus "steps": a list of
    {"op": "list_tools"}
    {"op": "call", "tool": NAME, "args": {...}, "timeout": SECONDS}
    {"op": "list_resources"} | {"op": "list_resource_templates"}
    {"op": "read_resource", "uri": URI}
    {"op": "list_prompts"} | {"op": "get_prompt", "name": NAME, "args": {...}}
A step that raises (a protocol error) is recorded as {"exception": "..."} and the session
goes on, so a test can check that the server keeps serving.
"""

import asyncio
import json
import sys
from importlib.metadata import version

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client


def dump(model):
    return model.model_dump(mode="json", by_alias=False, exclude_none=True)


def tool_info(t):
    a = t.annotations
    return {
        "name": t.name,
        "title": t.title,
        "description": t.description,
        "input_schema": t.input_schema,
        "output_schema": t.output_schema,
        "annotations": None
        if a is None
        else {
            "title": a.title,
            "read_only_hint": a.read_only_hint,
            "destructive_hint": a.destructive_hint,
            "idempotent_hint": a.idempotent_hint,
            "open_world_hint": a.open_world_hint,
        },
    }


async def step(session, s):
    op = s["op"]
    if op == "list_tools":
        r = await session.list_tools()
        return {"tools": [tool_info(t) for t in r.tools]}
    if op == "call":
        r = await session.call_tool(
            s["tool"], s.get("args", {}), read_timeout_seconds=s.get("timeout", 120)
        )
        text = "\n".join(c.text for c in r.content if getattr(c, "type", "") == "text")
        return {"is_error": bool(r.is_error), "text": text, "structured": r.structured_content}
    if op == "list_resources":
        r = await session.list_resources()
        return {"resources": [dump(x) for x in r.resources]}
    if op == "list_resource_templates":
        r = await session.list_resource_templates()
        return {"templates": [dump(x) for x in r.resource_templates]}
    if op == "read_resource":
        r = await session.read_resource(s["uri"])
        return {"contents": [dump(c) for c in r.contents]}
    if op == "list_prompts":
        r = await session.list_prompts()
        return {"prompts": [dump(p) for p in r.prompts]}
    if op == "get_prompt":
        r = await session.get_prompt(s["name"], s.get("args", {}))
        return {"messages": [dump(m) for m in r.messages]}
    raise ValueError(f"unknown op {op}")


async def run(plan):
    out = {"mcp": version("mcp"), "results": []}

    async def session_steps(read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            out["server"] = dump(init.server_info)
            out["protocol_version"] = init.protocol_version
            out["instructions"] = init.instructions
            for s in plan["steps"]:
                try:
                    out["results"].append(await step(session, s))
                except Exception as e:  # noqa: BLE001 - recorded for the test
                    out["results"].append({"exception": f"{type(e).__name__}: {e}"})

    if plan["transport"] == "stdio":
        params = StdioServerParameters(
            command=plan["command"], args=plan.get("args", []), env=plan.get("env", {})
        )
        async with stdio_client(params) as (read, write):
            await session_steps(read, write)
    else:
        async with streamable_http_client(plan["url"]) as (read, write):
            await session_steps(read, write)
    return out


if __name__ == "__main__":
    result = asyncio.run(run(json.load(sys.stdin)))
    print(json.dumps(result))

"""Run a query through the Python Agent SDK (PyPI `claude-agent-sdk`) and print, as one JSON
line on stdout, what the SDK gave its user. Driven by tests/sdk.rs with ccb as the Claude Code
executable; run it with the venv that scripts/install-sdks makes (.cache/sdk/py/bin/python).

    python query.py '{"cli": "/path/to/ccb", "prompt": "hi", ...}'
    python query.py '[{...}, {..., "resume": "@previous"}]'   # several queries, one after the other

Arguments (one JSON object, or a list of them run in turn in this one process, so the SDK is
imported once; all but cli and prompt optional):
    cli            ClaudeAgentOptions.cli_path
    prompt         the prompt (a string)
    model, resume, cwd, permission_mode, max_turns: the options of the same name; resume
                   "@previous" is the session id the previous query of the list reported
    allowed_tools  list of tool names
    extra_args     {"flag": "value" | null}: ClaudeAgentOptions.extra_args
    env            {"NAME": "value"}: ClaudeAgentOptions.env (added to the inherited environment)
    stderr         true: register a stderr callback (the SDK then pipes the child's stderr);
                   its lines are returned in "stderr"

Output, one line per query: {"sdk": "py", "messages": [type, ...], "result", "subtype", "is_error",
"total_cost_usd", "session_id", "num_results", "error_type", "error", "stderr": [lines]}.
"messages" are the SDK's message class names ("SystemMessage:init", "AssistantMessage",
"UserMessage", "ResultMessage", ...). The result fields are those of the last ResultMessage, or
of a ResultError's data when the SDK raised one; error_type/error are the exception's class name
and text. Exit status 0 whatever happened (the test reads the JSON).
"""

import asyncio
import json
import sys


def main() -> None:
    batch = json.loads(sys.argv[1])
    previous = None
    for args in batch if isinstance(batch, list) else [batch]:
        if args.get("resume") == "@previous":
            args["resume"] = previous
        out = run_one(args)
        previous = out["session_id"]
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


def run_one(args: dict) -> dict:
    out = {
        "sdk": "py",
        "messages": [],
        "result": None,
        "subtype": None,
        "is_error": None,
        "total_cost_usd": None,
        "session_id": None,
        "num_results": 0,
        "error_type": None,
        "error": None,
        "stderr": [],
    }
    try:
        asyncio.run(run(args, out))
    except BaseException as e:  # noqa: BLE001 - report everything, including import errors
        record_error(out, e)
    return out


def record_error(out: dict, e: BaseException) -> None:
    out["error_type"] = type(e).__name__
    out["error"] = str(e)
    data = getattr(e, "data", None)
    if isinstance(data, dict) and data.get("type") == "result" and out["num_results"] == 0:
        take_result(out, data)


def take_result(out: dict, r: dict) -> None:
    out["num_results"] += 1
    for k in ("result", "subtype", "is_error", "total_cost_usd", "session_id"):
        out[k] = r.get(k)


async def run(args: dict, out: dict) -> None:
    from claude_agent_sdk import ClaudeAgentOptions, ResultMessage, SystemMessage, query

    def on_stderr(line: str) -> None:
        out["stderr"].append(line.rstrip("\n"))

    opts = {
        "cli_path": args["cli"],
        "extra_args": args.get("extra_args") or {},
        "env": args.get("env") or {},
    }
    for key in ("model", "resume", "cwd", "permission_mode", "max_turns"):
        if args.get(key) is not None:
            opts[key] = args[key]
    if args.get("allowed_tools"):
        opts["allowed_tools"] = args["allowed_tools"]
    if args.get("stderr"):
        opts["stderr"] = on_stderr

    try:
        async for m in query(prompt=args["prompt"], options=ClaudeAgentOptions(**opts)):
            name = type(m).__name__
            if isinstance(m, SystemMessage):
                name += ":" + str(m.subtype)
            out["messages"].append(name)
            if isinstance(m, SystemMessage) and m.subtype == "init" and out["session_id"] is None:
                out["session_id"] = (m.data or {}).get("session_id")
            if isinstance(m, ResultMessage):
                take_result(
                    out,
                    {
                        "result": m.result,
                        "subtype": m.subtype,
                        "is_error": m.is_error,
                        "total_cost_usd": m.total_cost_usd,
                        "session_id": m.session_id,
                    },
                )
    except Exception as e:  # noqa: BLE001
        record_error(out, e)


if __name__ == "__main__":
    main()

// Run a query through the TypeScript Agent SDK (npm `@anthropic-ai/claude-agent-sdk`) and print,
// as one JSON line on stdout, what the SDK gave its user. Driven by tests/sdk.rs with ccb as the
// Claude Code executable; the counterpart of query.py, with the same arguments and output.
//
//     node query.mjs '{"sdk_module": ".../sdk.mjs", "cli": "/path/to/ccb", "prompt": "hi", ...}'
//     node query.mjs '[{...}, {..., "resume": "@previous"}]'   // several queries, in turn
//
// Arguments (one JSON object, or a list of them run in turn in this one process; all but cli
// and prompt optional):
//     sdk_module    the SDK's entry file; default: <repo>/.cache/sdk/ts/node_modules/
//                   @anthropic-ai/claude-agent-sdk/sdk.mjs (where scripts/install-sdks puts it;
//                   ES modules ignore NODE_PATH, so it is imported by path)
//     cli           Options.pathToClaudeCodeExecutable
//     prompt        the prompt (a string)
//     model, resume, cwd, permission_mode (permissionMode), max_turns (maxTurns); resume
//                   "@previous" is the session id the previous query of the list reported
//     allowed_tools list of tool names (allowedTools)
//     extra_args    {"flag": "value" | null}: Options.extraArgs
//     env           {"NAME": "value"}: added to process.env for Options.env (which replaces the
//                   child's environment when given)
//     stderr        true: register a stderr callback; its lines are returned in "stderr" (the
//                   SDK pipes the child's stderr either way)
//
// Output, one line per query: the same JSON as query.py ("sdk": "ts"; message types are the
// SDK's `type` field, with `:subtype` for system messages). Exit status 0 whatever happened.
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

async function runOne(args) {
    const out = {
        sdk: "ts",
        messages: [],
        result: null,
        subtype: null,
        is_error: null,
        total_cost_usd: null,
        session_id: null,
        num_results: 0,
        error_type: null,
        error: null,
        stderr: [],
    };
    try {
        const here = dirname(fileURLToPath(import.meta.url));
        const module =
            args.sdk_module ??
            join(here, "../../.cache/sdk/ts/node_modules/@anthropic-ai/claude-agent-sdk/sdk.mjs");
        const { query } = await import(pathToFileURL(module).href);
        const options = {
            pathToClaudeCodeExecutable: args.cli,
            extraArgs: args.extra_args ?? {},
            env: { ...process.env, ...(args.env ?? {}) },
        };
        if (args.model != null) options.model = args.model;
        if (args.resume != null) options.resume = args.resume;
        if (args.cwd != null) options.cwd = args.cwd;
        if (args.permission_mode != null) options.permissionMode = args.permission_mode;
        if (args.max_turns != null) options.maxTurns = args.max_turns;
        if (args.allowed_tools?.length) options.allowedTools = args.allowed_tools;
        if (args.stderr) {
            options.stderr = (data) => {
                for (const line of String(data).split("\n")) if (line !== "") out.stderr.push(line);
            };
        }
        for await (const m of query({ prompt: args.prompt, options })) {
            out.messages.push(m.type === "system" ? `system:${m.subtype}` : m.type);
            if (m.type === "system" && m.subtype === "init" && out.session_id == null) {
                out.session_id = m.session_id ?? null;
            }
            if (m.type === "result") {
                out.num_results += 1;
                for (const k of ["result", "subtype", "is_error", "total_cost_usd", "session_id"]) {
                    out[k] = m[k] === undefined ? null : m[k];
                }
            }
        }
    } catch (e) {
        out.error_type = e?.constructor?.name ?? typeof e;
        out.error = String(e?.message ?? e);
    }
    return out;
}

const batch = JSON.parse(process.argv[2]);
let previous = null;
for (const args of Array.isArray(batch) ? batch : [batch]) {
    if (args.resume === "@previous") args.resume = previous;
    const out = await runOne(args);
    previous = out.session_id;
    process.stdout.write(JSON.stringify(out) + "\n");
}
process.exit(0);

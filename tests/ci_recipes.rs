//! The CI recipes in examples/ci/ work as written.
//!
//! - `claude.yml` (GitHub Actions): read with a small parser for the YAML it uses (no new
//!   dependency), then every `run:` block is run in order as a runner would (`bash --noprofile
//!   --norc -eo pipefail`, `if: always()` honoured, the workflow's, job's and step's `env` with
//!   `${{ }}` filled in from the test's secrets, variables and inputs, `GITHUB_ENV`,
//!   `GITHUB_PATH` and `GITHUB_STEP_SUMMARY` as files), with `ccb` and a fake `claude` on PATH.
//!   `uses:` steps are not run; the artifact's file must exist when its step is reached.
//! - `crontab`: its job line runs under `env -i` with only what cron gives (HOME, SHELL=/bin/sh,
//!   PATH=/usr/bin:/bin) plus the crontab's own NAME=value lines, with ccb and claude where the
//!   recipe expects them under HOME.
//!
//! claude is the fake child (examples/fake_claude.rs) behind a wrapper that answers `--version`
//! as claude does; `FAKE_SCRIPT` makes it spend.

use crate::support::*;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// A parser for the YAML subset GitHub workflows are written in: block mappings and sequences,
// plain and quoted scalars, `|` block scalars, comments. Everything is a string.
// ---------------------------------------------------------------------------------------------

struct Yaml {
    lines: Vec<String>,
    i: usize,
}

fn indent_of(l: &str) -> usize {
    l.len() - l.trim_start_matches(' ').len()
}

fn blank_or_comment(l: &str) -> bool {
    let t = l.trim();
    t.is_empty() || t.starts_with('#')
}

fn is_item(content: &str) -> bool {
    content == "-" || content.starts_with("- ")
}

/// A scalar as written: quotes removed; a plain scalar loses a trailing ` # comment`.
fn scalar(raw: &str) -> String {
    let s = raw.trim();
    if let Some(inner) = s.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        return inner.replace("''", "'");
    }
    if let Some(inner) = s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        return inner.replace("\\\"", "\"").replace("\\n", "\n").replace("\\\\", "\\");
    }
    assert!(!s.starts_with('[') && !s.starts_with('{'), "flow collections are not supported: {s}");
    match s.find(" #") {
        Some(i) => s[..i].trim_end().to_string(),
        None => s.to_string(),
    }
}

impl Yaml {
    fn parse(text: &str) -> Value {
        let mut p = Yaml { lines: text.lines().map(|l| l.replace('\t', "    ")).collect(), i: 0 };
        p.skip();
        if p.i >= p.lines.len() {
            return Value::Null;
        }
        let ind = indent_of(&p.lines[p.i]);
        let v = p.node(ind);
        p.skip();
        assert!(p.i >= p.lines.len(), "line {}: unexpected indentation: {}", p.i + 1, p.lines[p.i]);
        v
    }

    fn skip(&mut self) {
        while self.i < self.lines.len() && blank_or_comment(&self.lines[self.i]) {
            self.i += 1;
        }
    }

    fn node(&mut self, ind: usize) -> Value {
        self.skip();
        if is_item(self.lines[self.i].trim_start()) {
            self.list(ind)
        } else {
            self.map(ind)
        }
    }

    fn map(&mut self, ind: usize) -> Value {
        let mut m = Map::new();
        loop {
            self.skip();
            let Some(line) = self.lines.get(self.i) else { break };
            let n = indent_of(line);
            if n < ind || (n == ind && is_item(line.trim_start())) {
                break;
            }
            assert_eq!(n, ind, "line {}: unexpected indentation: {line}", self.i + 1);
            let content = line.trim_start().to_string();
            let (key, rest) =
                split_key(&content).unwrap_or_else(|| panic!("line {}: not `key: value`: {line}", self.i + 1));
            self.i += 1;
            let v = self.value(rest, ind);
            assert!(m.insert(key.clone(), v).is_none(), "line {}: duplicate key {key}", self.i);
        }
        Value::Object(m)
    }

    fn list(&mut self, ind: usize) -> Value {
        let mut items = Vec::new();
        loop {
            self.skip();
            let Some(line) = self.lines.get(self.i) else { break };
            let content = line.trim_start().to_string();
            if indent_of(line) != ind || !is_item(&content) {
                break;
            }
            let rest = content.strip_prefix('-').unwrap().trim_start();
            if rest.is_empty() {
                self.i += 1;
                self.skip();
                let inner = indent_of(&self.lines[self.i]);
                items.push(self.node(inner));
            } else if split_key(rest).is_some() {
                // `- key: value`: a mapping whose keys line up with this first one.
                self.lines[self.i] = format!("{}{rest}", " ".repeat(ind + 2));
                items.push(self.map(ind + 2));
            } else {
                items.push(Value::String(scalar(rest)));
                self.i += 1;
            }
        }
        Value::Array(items)
    }

    /// The value after `key:` on a line indented `ind`.
    fn value(&mut self, rest: &str, ind: usize) -> Value {
        let rest = rest.trim();
        if rest == "|" || rest == "|-" {
            return Value::String(self.block(ind, rest == "|"));
        }
        assert!(!rest.starts_with('>') && !rest.starts_with('|'), "block style {rest} is not supported");
        if !rest.is_empty() && !rest.starts_with('#') {
            return Value::String(scalar(rest));
        }
        self.skip();
        match self.lines.get(self.i) {
            Some(l) if indent_of(l) > ind => {
                let n = indent_of(l);
                self.node(n)
            }
            // A sequence may sit at its key's own indentation.
            Some(l) if indent_of(l) == ind && is_item(l.trim_start()) => self.list(ind),
            _ => Value::Null,
        }
    }

    /// A `|` block scalar: the lines indented more than its key, less their common indentation.
    fn block(&mut self, ind: usize, keep_newline: bool) -> String {
        let mut raw = Vec::new();
        while let Some(l) = self.lines.get(self.i) {
            if !l.trim().is_empty() && indent_of(l) <= ind {
                break;
            }
            raw.push(l.clone());
            self.i += 1;
        }
        while raw.last().is_some_and(|l| l.trim().is_empty()) {
            raw.pop();
        }
        let strip = raw.iter().filter(|l| !l.trim().is_empty()).map(|l| indent_of(l)).min().unwrap_or(0);
        let mut text: String = raw.iter().map(|l| l.get(strip..).unwrap_or("")).collect::<Vec<_>>().join("\n");
        if keep_newline && !text.is_empty() {
            text.push('\n');
        }
        text
    }
}

/// `key: rest` (the key plain or quoted), or None.
fn split_key(content: &str) -> Option<(String, &str)> {
    let (k, rest) = if let Some(q) = content.strip_prefix('"') {
        let end = q.find('"')?;
        (q[..end].to_string(), q[end + 1..].strip_prefix(':')?)
    } else {
        let i = content.find(": ").or_else(|| content.strip_suffix(':').map(|c| c.len()))?;
        (content[..i].to_string(), content.get(i + 1..).unwrap_or(""))
    };
    if k.is_empty() || k.contains(' ') && !content.starts_with('"') {
        return None;
    }
    Some((k, rest))
}

#[test]
fn the_yaml_subset_parser_reads_what_workflows_use() {
    let v = Yaml::parse(
        "# c\nname: x # trailing\non:\n  push:\nenv:\n  A: '1'\n  B: \"two words\"\njobs:\n  j:\n    steps:\n    - uses: a/b@v1\n      with:\n        k: v\n    - name: r\n      run: |\n        echo 'a # not a comment'\n\n        echo b\n      if: always()\n    - plain\n",
    );
    assert_eq!(
        v,
        json!({"name": "x", "on": {"push": null}, "env": {"A": "1", "B": "two words"},
               "jobs": {"j": {"steps": [
                   {"uses": "a/b@v1", "with": {"k": "v"}},
                   {"name": "r", "run": "echo 'a # not a comment'\n\necho b\n", "if": "always()"},
                   "plain"]}}})
    );
}

// ---------------------------------------------------------------------------------------------
// Running a workflow's job
// ---------------------------------------------------------------------------------------------

/// `${{ … }}` in a value, for what these recipes use: `a.b || 'literal'` chains over the given
/// contexts (`secrets.X`, `vars.X`, `inputs.x`, …; unset is empty, as on GitHub).
fn expand(value: &str, ctx: &BTreeMap<&str, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").map(|e| start + e).unwrap_or_else(|| panic!("unclosed ${{{{ in {value}"));
        let expr = rest[start + 3..end].trim();
        let mut got = String::new();
        for alt in expr.split("||").map(str::trim) {
            let v = if let Some(lit) = alt.strip_prefix('\'').and_then(|a| a.strip_suffix('\'')) {
                lit.to_string()
            } else {
                let known = ["secrets.", "vars.", "inputs.", "env.", "github.", "runner.", "steps."];
                assert!(known.iter().any(|k| alt.starts_with(k)), "expression {alt} in {value} is not understood");
                ctx.get(alt).cloned().unwrap_or_default()
            };
            if !v.is_empty() {
                got = v;
                break;
            }
        }
        out.push_str(&got);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

fn env_of(node: &Value, ctx: &BTreeMap<&str, String>) -> Vec<(String, String)> {
    node.get("env")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), expand(v.as_str().unwrap_or(""), ctx))).collect())
        .unwrap_or_default()
}

/// `NAME=value` lines and `NAME<<DELIM … DELIM` blocks, as GitHub reads `$GITHUB_ENV`.
fn read_env_file(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if let Some((name, delim)) = l.split_once("<<") {
            let mut v = Vec::new();
            for l in lines.by_ref() {
                if l == delim {
                    break;
                }
                v.push(l);
            }
            out.push((name.to_string(), v.join("\n")));
        } else if let Some((name, v)) = l.split_once('=') {
            out.push((name.to_string(), v.to_string()));
        }
    }
    out
}

/// What one job run did.
struct JobRun {
    /// (step name, exit code; None when skipped; Some(0) for a `uses:` step reached).
    steps: Vec<(String, Option<i32>)>,
    /// Every step's stderr and stdout, for failure messages.
    log: String,
    summary: String,
    /// What the steps put in `$GITHUB_ENV`.
    env: BTreeMap<String, String>,
}

/// Run the only job of `workflow`: its `run:` steps in order, in `workspace`, with `base_env`
/// (the runner's environment) under the workflow's, job's and step's own.
fn run_job(workflow: &Value, ctx: &BTreeMap<&str, String>, workspace: &Path, base_env: &[(String, String)]) -> JobRun {
    let jobs = workflow["jobs"].as_object().expect("jobs");
    assert_eq!(jobs.len(), 1, "one job");
    let job = jobs.values().next().unwrap();
    let shell = workflow.pointer("/defaults/run/shell").or_else(|| job.pointer("/defaults/run/shell"));
    // GitHub's commands for `shell: bash` and for no shell on Linux.
    let bash: &[&str] = match shell.and_then(Value::as_str) {
        Some("bash") => &["bash", "--noprofile", "--norc", "-eo", "pipefail"],
        None => &["bash", "-e"],
        Some(other) => panic!("shell {other} is not supported"),
    };
    let files = tempfile::tempdir().unwrap();
    let summary = files.path().join("step_summary.md");
    std::fs::write(&summary, "").unwrap();
    let mut added: BTreeMap<String, String> = BTreeMap::new();
    let mut path_dirs: Vec<String> = Vec::new();
    let mut failed = false;
    let mut run = JobRun { steps: Vec::new(), log: String::new(), summary: String::new(), env: BTreeMap::new() };
    for (n, step) in job["steps"].as_array().expect("steps").iter().enumerate() {
        let name = step["name"].as_str().or(step["uses"].as_str()).or(step["run"].as_str()).unwrap_or("?").to_string();
        let always = match step.get("if").and_then(Value::as_str) {
            None => false,
            Some("always()") | Some("${{ always() }}") => true,
            Some(other) => panic!("step {name}: if: {other} is not supported"),
        };
        if failed && !always {
            run.steps.push((name, None));
            continue;
        }
        if let Some(uses) = step["uses"].as_str() {
            if uses.starts_with("actions/upload-artifact@") {
                let path = step.pointer("/with/path").and_then(Value::as_str).expect("upload-artifact: path");
                assert!(workspace.join(path).exists(), "the artifact {path} was not written: {}", run.log);
            }
            run.steps.push((name, Some(0)));
            continue;
        }
        let script = step["run"].as_str().unwrap_or_else(|| panic!("step {name}: neither run nor uses"));
        let file = files.path().join(format!("step{n}.sh"));
        std::fs::write(&file, script).unwrap();
        let (env_file, path_file) = (files.path().join(format!("env{n}")), files.path().join(format!("path{n}")));
        std::fs::write(&env_file, "").unwrap();
        std::fs::write(&path_file, "").unwrap();
        let mut cmd = Command::new(bash[0]);
        cmd.args(&bash[1..]).arg(&file).current_dir(workspace).env_clear();
        for (k, v) in base_env {
            cmd.env(k, v);
        }
        if !path_dirs.is_empty() {
            let old = base_env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str()).unwrap_or("");
            cmd.env("PATH", format!("{}:{old}", path_dirs.join(":")));
        }
        for (k, v) in
            env_of(workflow, ctx).into_iter().chain(env_of(job, ctx)).chain(added.clone()).chain(env_of(step, ctx))
        {
            cmd.env(k, v);
        }
        cmd.env("GITHUB_ENV", &env_file).env("GITHUB_PATH", &path_file).env("GITHUB_STEP_SUMMARY", &summary);
        cmd.env("GITHUB_WORKSPACE", workspace)
            .env("RUNNER_TEMP", files.path())
            .env("CI", "true")
            .env("GITHUB_ACTIONS", "true");
        let out = output_with_timeout(&mut cmd, T);
        let code = out.status.code().unwrap_or(-1);
        run.log.push_str(&format!(
            "--- step {name}: exit {code}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
        added.extend(read_env_file(&env_file));
        path_dirs.splice(0..0, std::fs::read_to_string(&path_file).unwrap().lines().rev().map(String::from));
        failed |= code != 0;
        run.steps.push((name, Some(code)));
    }
    run.summary = std::fs::read_to_string(&summary).unwrap();
    run.env = added;
    run
}

/// A directory with `ccb` and a `claude` that is the fake child (answering `--version` as
/// claude does), for PATH; the claude's path.
fn tool_dir(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::os::unix::fs::symlink(ccb_bin(), dir.join("ccb")).unwrap();
    let claude = dir.join("claude");
    let body = format!(
        "#!/bin/sh\ncase \"$1\" in --version|-v) echo '2.1.332 (Claude Code)'; exit 0;; esac\nexec '{}' \"$@\"\n",
        fake_bin().display()
    );
    std::fs::write(&claude, body).unwrap();
    std::fs::set_permissions(&claude, std::fs::Permissions::from_mode(0o755)).unwrap();
    claude
}

fn workflow() -> Value {
    let text = std::fs::read_to_string(repo_root().join("examples/ci/claude.yml")).unwrap();
    Yaml::parse(&text)
}

/// One run of the workflow's job with the fake claude running `fake_script`, and the
/// repository variable CCB_BUDGET set to `budget` (None: unset).
fn run_workflow(home: &ClaudeHome, fake_script: &str, budget: Option<&str>) -> (JobRun, PathBuf) {
    let wf = workflow();
    let bin = home.path().join("runner-bin");
    let claude = tool_dir(&bin);
    let workspace = home.workdir().to_path_buf();
    let mut ctx: BTreeMap<&str, String> = BTreeMap::new();
    ctx.insert("secrets.ANTHROPIC_API_KEY", FAKE_API_KEY.to_string());
    ctx.insert("inputs.prompt", "Review the latest commit".to_string());
    if let Some(b) = budget {
        ctx.insert("vars.CCB_BUDGET", b.to_string());
    }
    let base: Vec<(String, String)> = [
        ("HOME", home.path().display().to_string()),
        ("PATH", format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display())),
        ("LANG", "C.UTF-8".to_string()),
        // Hermetic: the fake child calls no API, and nothing may reach the real one.
        ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9".to_string()),
        ("CCB_CLAUDE", claude.display().to_string()),
        ("FAKE_SCRIPT", fake_script.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    (run_job(&wf, &ctx, &workspace, &base), workspace)
}

fn ledger(home: &ClaudeHome) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(home.path().join(".local/share/ccb/ledger.db")).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

/// (cost in nano-dollars, ceiling in nano-dollars, end_kind) of a session.
fn session_row(home: &ClaudeHome, id: &str) -> (i64, i64, String) {
    ledger(home)
        .query_row("SELECT cost_nanos, ceiling_nanos, end_kind FROM sessions WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap_or_else(|e| panic!("session {id} in the ledger: {e}"))
}

#[test]
fn the_workflow_runs_claude_through_ccb_and_summarises_the_spend() {
    let wf = workflow();
    // The shape the recipe promises: a budget from the environment, a `ccb -p` step, a summary
    // and an artifact that run whatever happened before them.
    assert_eq!(wf["env"]["CCB_BUDGET"], "${{ vars.CCB_BUDGET || '2' }}");
    let steps = wf.pointer("/jobs/claude/steps").and_then(Value::as_array).unwrap();
    assert!(steps.iter().any(|s| s["run"].as_str().is_some_and(|r| r.contains("ccb -p"))));
    let summary_step =
        steps.iter().find(|s| s["run"].as_str().is_some_and(|r| r.contains("GITHUB_STEP_SUMMARY"))).unwrap();
    assert_eq!(summary_step["if"], "always()");
    let upload =
        steps.iter().find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with("actions/upload-artifact@"))).unwrap();
    assert_eq!(upload["if"], "always()");

    let home = ClaudeHome::new();
    let (run, workspace) = run_workflow(&home, "usd:0.3;exit:0", None);
    eprintln!("{}\n--- summary ---\n{}", run.log, run.summary);
    let codes: Vec<Option<i32>> = run.steps.iter().map(|s| s.1).collect();
    assert_eq!(codes, [Some(0); 6], "{:?}\n{}", run.steps, run.log);
    let session = run.env.get("CCB_SESSION").cloned().unwrap_or_else(|| panic!("no CCB_SESSION: {}", run.log));
    assert_eq!(run.env.get("CCB_EXIT").map(String::as_str), Some("0"));
    // The summary names this job's session and what it spent, against the $2 default budget.
    assert!(run.summary.contains("### Claude Code spend (ccb)"), "{}", run.summary);
    assert!(
        run.summary.contains(&format!("| `{session}` | claude-haiku-4-5 | 1 | 300000 | $0.30 |")),
        "{}",
        run.summary
    );
    assert!(run.summary.contains("**$0.30 spent** of the $2.00 ceiling."), "{}", run.summary);
    assert!(!run.summary.contains("exit 3"), "{}", run.summary);
    // The artifact is ccb's JSON report, with the session in it.
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(workspace.join("ccb-usage.json")).unwrap()).unwrap();
    let row = report["sessions"].as_array().unwrap().iter().find(|r| r["sessionId"] == session.as_str()).cloned();
    assert_eq!(row.as_ref().map(|r| &r["totalCost"]), Some(&json!(0.3)), "{report}");
    // ccb took the budget from the environment.
    assert_eq!(session_row(&home, &session), (300_000_000, 2_000_000_000, "exited".to_string()));
}

#[test]
fn the_workflow_reports_a_ceiling_stop() {
    let home = ClaudeHome::new();
    // $0.30 and $0.30 against a $0.50 budget from the repository variable: ccb stops the session.
    let (run, workspace) = run_workflow(&home, "usd:0.3;sleep:50;usd:0.3;sleep:60000", Some("0.5"));
    eprintln!("{}\n--- summary ---\n{}", run.log, run.summary);
    let codes: Vec<Option<i32>> = run.steps.iter().map(|s| s.1).collect();
    assert_eq!(codes, [Some(0), Some(0), Some(0), Some(3), Some(0), Some(0)], "{:?}\n{}", run.steps, run.log);
    assert!(run.log.contains("session stopped at its $0.50 ceiling"), "{}", run.log);
    let session = run.env.get("CCB_SESSION").cloned().unwrap();
    assert_eq!(run.env.get("CCB_EXIT").map(String::as_str), Some("3"));
    assert!(run.summary.contains("**$0.60 spent** of the $0.50 ceiling."), "{}", run.summary);
    assert!(run.summary.contains("ccb stopped the session at its ceiling (exit 3)"), "{}", run.summary);
    assert!(workspace.join("ccb-usage.json").exists());
    assert_eq!(session_row(&home, &session), (600_000_000, 500_000_000, "ceiling".to_string()));
}

// ---------------------------------------------------------------------------------------------
// The crontab
// ---------------------------------------------------------------------------------------------

/// (NAME=value lines, job commands) of a crontab, as cron reads them: values literal (quotes
/// around a value removed), a job's command after its five time fields with `\%` made `%`.
fn parse_crontab(text: &str) -> (Vec<(String, String)>, Vec<String>) {
    let (mut vars, mut jobs) = (Vec::new(), Vec::new());
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let is_var = line.split_once('=').is_some_and(|(name, _)| {
            let name = name.trim();
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if is_var {
            let (name, value) = line.split_once('=').unwrap();
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            vars.push((name.trim().to_string(), value.to_string()));
            continue;
        }
        let mut rest = line;
        for _ in 0..5 {
            let (_, r) = rest.split_once(char::is_whitespace).unwrap_or_else(|| panic!("not a cron line: {line}"));
            rest = r.trim_start();
        }
        // An unescaped % ends the command (what follows is its stdin): the recipe has none.
        let unescaped = rest.match_indices('%').any(|(i, _)| i == 0 || rest.as_bytes()[i - 1] != b'\\');
        assert!(!unescaped, "a bare % in a cron command is a newline: {rest}");
        jobs.push(rest.replace("\\%", "%"));
    }
    (vars, jobs)
}

#[test]
fn the_crontab_job_runs_under_crons_environment_and_logs_its_spend() {
    let text = std::fs::read_to_string(repo_root().join("examples/ci/crontab")).unwrap();
    let (vars, jobs) = parse_crontab(&text);
    // cron expands nothing in NAME=value lines.
    for (name, value) in &vars {
        assert!(!value.contains('$') && !value.contains('~'), "{name}={value}: cron does not expand this");
    }
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert!(jobs[0].contains("ccb --budget") && jobs[0].contains(" -p "), "{}", jobs[0]);

    // HOME as the recipe expects it: ccb from `cargo install`, claude from its installer (here
    // the fake child, spending $0.30), the project directory.
    let home = ClaudeHome::new();
    let h = home.path();
    std::fs::create_dir_all(h.join(".cargo/bin")).unwrap();
    std::os::unix::fs::symlink(ccb_bin(), h.join(".cargo/bin/ccb")).unwrap();
    std::fs::create_dir_all(h.join(".local/bin")).unwrap();
    let claude = h.join(".local/bin/claude");
    std::fs::write(
        &claude,
        format!("#!/bin/sh\nFAKE_SCRIPT='usd:0.3;exit:0' exec '{}' \"$@\"\n", fake_bin().display()),
    )
    .unwrap();
    std::fs::set_permissions(&claude, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(h.join("src/myproject")).unwrap();

    let mut env: BTreeMap<String, String> =
        [("HOME", h.display().to_string()), ("SHELL", "/bin/sh".into()), ("PATH", "/usr/bin:/bin".into())]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    env.extend(vars.iter().cloned());
    let mut cmd = Command::new("env");
    cmd.arg("-i")
        .args(env.iter().map(|(k, v)| format!("{k}={v}")))
        .arg(&env["SHELL"])
        .arg("-c")
        .arg(&jobs[0])
        .current_dir(h);
    let out = output_with_timeout(&mut cmd, T);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.is_empty() && stderr.is_empty(), "cron would mail this: {stdout}{stderr}");

    let logs: Vec<PathBuf> =
        std::fs::read_dir(h.join("logs")).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert_eq!(logs.len(), 1, "one log file: {logs:?}");
    let log = std::fs::read_to_string(&logs[0]).unwrap();
    let ids: Vec<String> = ledger(&home)
        .prepare("SELECT id FROM sessions")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ids.len(), 1, "one session recorded: {ids:?}\n{log}");
    assert_eq!(session_row(&home, &ids[0]), (300_000_000, 3_000_000_000, "exited".to_string()), "{log}");
    assert!(log.contains("exit 0"), "{log}");
    let row = log
        .lines()
        .find(|l| l.contains(&ids[0]) && !l.contains("--session-id"))
        .unwrap_or_else(|| panic!("no row for {} in the log:\n{log}", ids[0]));
    assert!(row.contains("$0.30"), "{row}");
}

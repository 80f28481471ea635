//! The launcher end to end: ccb in front of the real Claude Code (against a local mock of the
//! Messages API) and in front of a fake child, with plain pipes (no terminal).

use crate::support::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = output_with_timeout(cmd, T);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn print_mode_output_is_byte_identical_to_plain_claude() {
    let api = MockApi::start(scripts::always_text("The answer is 42.\nSecond line, with ünïcode."));
    let home = ClaudeHome::new();
    let plain = output_with_timeout(home.claude_command(&api.base_url()).args(["-p", "what is it?"]), T);
    let through =
        output_with_timeout(ccb_command(&home, &api.base_url(), &claude_bin()).args(["-p", "what is it?"]), T);
    assert_eq!(plain.status.code(), Some(0), "{}", String::from_utf8_lossy(&plain.stderr));
    assert_eq!(through.status.code(), Some(0), "{}", String::from_utf8_lossy(&through.stderr));
    assert!(!plain.stdout.is_empty());
    assert_eq!(through.stdout, plain.stdout, "stdout through ccb must be byte-identical");
    // Also with the prompt on stdin, as in `echo "$prompt" | ccb -p > out.txt`.
    let mut cmd = ccb_command(&home, &api.base_url(), &claude_bin());
    cmd.arg("-p").stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"what is it?\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.stdout, plain.stdout);
}

#[test]
fn claude_arguments_pass_unchanged_after_what_ccb_adds() {
    let home = ClaudeHome::new();
    let log = home.path().join("fake.log");
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).env("FAKE_LOG", &log).args([
        "-p",
        "--budget",
        "3",
        "two words",
        "--verbose",
        "--",
        "--budget",
        "-x",
    ]));
    assert_eq!(code, 0, "{err}");
    let log = std::fs::read_to_string(&log).unwrap();
    let start = log.lines().next().unwrap();
    let args = start.split(" args=").nth(1).unwrap();
    let args = args.rsplit_once(' ').unwrap().0; // the timestamp
    let tail = args.split_once("--model sonnet ").expect("ccb adds --model sonnet when none is named").1;
    assert_eq!(tail, "-p two words --verbose -- --budget -x", "ccb's own --budget is taken out; claude's `--` stays");
    // In front: ccb's --settings (a private file with the gate and telemetry endpoints, removed
    // when the session ends), then --session-id.
    let settings = args.strip_prefix("--settings ").and_then(|a| a.split(' ').next()).unwrap_or_default();
    assert!(settings.starts_with('/') && settings.ends_with(".json"), "{args}");
    assert!(!std::path::Path::new(settings).exists(), "{settings} outlived the session");
    assert!(args.contains(" --session-id "), "{args}");
}

#[test]
fn exit_codes_pass_through() {
    let home = ClaudeHome::new();
    let (code, _, _) =
        run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).env("FAKE_SCRIPT", "exit:7").arg("-p"));
    assert_eq!(code, 7);
    let (code, _, _) =
        run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).env("FAKE_SCRIPT", "kill:9").arg("-p"));
    assert_eq!(code, 128 + 9, "death by signal N is 128+N");
    // The real claude failing on an API error exits 1, through ccb too.
    let api = MockApi::start(scripts::always_error(400, "invalid_request_error", "bad request from the mock"));
    let (plain, _, _) = run(home.claude_command(&api.base_url()).args(["-p", "hi"]));
    let (through, _, _) = run(ccb_command(&home, &api.base_url(), &claude_bin()).args(["-p", "hi"]));
    assert_eq!(plain, 1);
    assert_eq!(through, 1);
}

#[test]
fn opus_without_a_reason_is_refused_before_anything_is_spent() {
    let api = MockApi::start(scripts::always_text("should not be called"));
    let home = ClaudeHome::new();
    let (code, out, err) =
        run(ccb_command(&home, &api.base_url(), &claude_bin()).args(["--model", "opus", "-p", "hi"]));
    assert_eq!(code, 4, "{err}");
    assert!(out.is_empty());
    assert!(
        err.contains("needs a reason")
            && err.contains("--reason <auth|infra|payments>")
            && err.contains("--model sonnet"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let (code, _, err) = run(ccb_command(&home, &api.base_url(), &claude_bin()).args([
        "--model",
        "claude-opus-4-7",
        "--reason",
        "fun",
        "-p",
        "hi",
    ]));
    assert_eq!(code, 4);
    assert!(err.contains("'fun' is not an allowed reason for a premium model"), "{err}");
    // From the environment and from Claude Code's settings too.
    let (code, _, _) =
        run(ccb_command(&home, &api.base_url(), &claude_bin()).env("ANTHROPIC_MODEL", "opus[1m]").args(["-p", "hi"]));
    assert_eq!(code, 4);
    home.write_settings(&serde_json::json!({"model": "opus", "skipDangerousModePermissionPrompt": true}));
    let (code, _, err) = run(ccb_command(&home, &api.base_url(), &claude_bin()).args(["-p", "hi"]));
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("Claude Code's settings"), "{err}");
    assert_eq!(api.requests().len(), 0, "nothing reached the API");
    // With a reason it runs, with the model asked for.
    let (code, _, err) =
        run(ccb_command(&home, &api.base_url(), &claude_bin())
            .args(["--model", "opus", "--reason", "infra", "-p", "hi"]));
    assert_eq!(code, 0, "{err}");
    assert!(api.message_requests().iter().any(|r| r.model().unwrap_or("").contains("opus")));
}

#[test]
fn the_default_model_is_sonnet_when_none_is_named() {
    let api = MockApi::start(scripts::always_text("ok"));
    let home = ClaudeHome::new();
    let (code, _, err) = run(ccb_command(&home, &api.base_url(), &claude_bin()).args(["-p", "hi"]));
    assert_eq!(code, 0, "{err}");
    let main: Vec<_> = api.message_requests().into_iter().filter(|r| r.is_main()).collect();
    assert!(!main.is_empty());
    assert!(
        main.iter().all(|r| r.model().unwrap_or("").contains("sonnet")),
        "{:?}",
        main.iter().map(|r| r.model()).collect::<Vec<_>>()
    );
}

#[test]
fn dry_run_prints_the_plan_and_no_secret() {
    let home = ClaudeHome::new();
    let key = "sk-ant-api03-SECRETSECRETSECRET-abcd";
    let (code, out, err) = run(ccb_command(&home, "https://api.anthropic.com", &claude_bin())
        .env("ANTHROPIC_API_KEY", key)
        .args(["--dry-run", "--json", "-p", "--model", "opus", "--reason", "infra", "--budget", "2.5", "hi"]));
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["class"], "opus-with-reason");
    assert_eq!(v["print_mode"], true);
    assert_eq!(v["model"], "opus");
    assert_eq!(v["reason"], "infra");
    assert_eq!(v["billing_mode"], "api-key");
    assert_eq!(v["meter"], "api");
    assert_eq!(v["ceiling_usd"], 2.5);
    assert_eq!(v["claude"], claude_bin().display().to_string());
    let args: Vec<&str> = v["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(&args[args.len() - 4..], &["-p", "--model", "opus", "hi"]);
    assert_eq!(v["sources"], serde_json::json!(["gate", "telemetry", "transcript"]));
    assert_eq!(v["upstream"], "https://api.anthropic.com");
    assert!(!out.contains("SECRETSECRET") && !err.contains("SECRETSECRET"), "{out}");
    assert_eq!(v["credentials"]["ANTHROPIC_API_KEY"], "set (…abcd)");
    // OAuth, programmatic: the credit pool; interactive would be the subscription.
    let (code, out, _) = run(ccb_command(&home, "https://api.anthropic.com", &claude_bin())
        .env_remove("ANTHROPIC_API_KEY")
        .env("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat01-TOKENTOKENTOKEN")
        .args(["--dry-run", "--json", "-p", "hi"]));
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["billing_mode"].as_str(), v["meter"].as_str(), v["class"].as_str()),
        (Some("oauth"), Some("credit-pool"), Some("programmatic"))
    );
    assert!(!out.contains("TOKENTOKEN"));
    // The human form launches nothing either.
    let api = MockApi::start(scripts::always_text("no"));
    let (code, out, _) = run(ccb_command(&home, &api.base_url(), &claude_bin()).args(["--dry-run", "-p", "hi"]));
    assert_eq!(code, 0);
    assert!(out.contains("custom-endpoint") && out.contains("programmatic"), "{out}");
    assert!(api.requests().is_empty());
}

#[test]
fn bad_usage_and_configuration_exit_2_with_one_line() {
    let home = ClaudeHome::new();
    let cfg = home.path().join("bad.toml");
    std::fs::write(&cfg, "default_model = \"sonnet\"\n[ceilings]\ninteractive = -5\n").unwrap();
    /// Arguments, environment, the one line ccb answers.
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["--budget", "abc", "-p", "x"], vec![], "--budget 'abc' is not an amount"),
        (vec!["--budget", "-1"], vec![], "'-1' is not an amount"),
        (vec!["--budget", "1e309"], vec![], "is not an amount"),
        (vec!["--budget"], vec![], "--budget needs a value"),
        (vec!["--json", "-p", "x"], vec![], "--json goes with --dry-run"),
        (
            vec!["-p", "x"],
            vec![("CCB_CONFIG", cfg.display().to_string())],
            "line 3: [ceilings] interactive = -5 must be",
        ),
        (
            vec!["-p", "x"],
            vec![("CCB_CONFIG", "/nonexistent/ccb.toml".into())],
            "cannot read config /nonexistent/ccb.toml",
        ),
        (
            vec!["-p", "x"],
            vec![("CCB_CLAUDE", "/nonexistent/claude".into())],
            "CCB_CLAUDE=/nonexistent/claude: no such file",
        ),
        (vec!["-p", "x"], vec![("CCB_CLAUDE", cfg.display().to_string())], "is not executable"),
    ];
    for (args, env, want) in cases {
        let mut cmd = ccb_command(&home, "http://127.0.0.1:9", &fake_bin());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let (code, out, err) = run(cmd.args(&args));
        assert_eq!(code, 2, "{args:?} {env:?}: {err}");
        assert!(out.is_empty());
        assert!(err.starts_with("ccb: ") && err.contains(want), "{args:?}: got {err:?}, want {want:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
}

#[test]
fn claude_is_found_on_path_skipping_ccb_itself_and_running_itself_is_refused() {
    let home = ClaudeHome::new();
    let bin = home.path().join("bin");
    let real = home.path().join("real");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&real).unwrap();
    // First on PATH: `claude` as a symlink to ccb; later: the real (fake) claude.
    std::os::unix::fs::symlink(ccb_bin(), bin.join("claude")).unwrap();
    std::os::unix::fs::symlink(fake_bin(), real.join("claude")).unwrap();
    let path = format!("{}:{}:/usr/bin:/bin", bin.display(), real.display());
    let mut cmd = ccb_command(&home, "http://127.0.0.1:9", &fake_bin());
    cmd.env_remove("CCB_CLAUDE").env("PATH", &path);
    let (code, out, err) = run(cmd.args(["--dry-run", "--json", "-p", "x"]));
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["claude"], real.join("claude").display().to_string());
    // Called as `claude` (the symlink), ccb still runs the real one.
    let mut cmd = Command::new(bin.join("claude"));
    home.apply(&mut cmd, "http://127.0.0.1:9");
    cmd.env_remove("CCB_CLAUDE").env("PATH", &path).env("FAKE_SCRIPT", "exit:5").current_dir(home.workdir());
    let (code, _, err) = run(cmd.arg("-p"));
    assert_eq!(code, 5, "{err}");
    // A wrapper script that runs ccb again is detected and refused.
    let wrapper = home.path().join("wrapper.sh");
    std::fs::write(&wrapper, format!("#!/bin/sh\nexec {} \"$@\"\n", ccb_bin().display())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &wrapper).arg("-p"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is ccb itself"), "{err}");
    // CCB_CLAUDE naming ccb directly, too.
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &ccb_bin()).arg("-p"));
    assert_eq!(code, 2);
    assert!(err.contains("is ccb itself"), "{err}");
}

#[test]
fn claude_subcommands_and_version_pass_straight_through() {
    let home = ClaudeHome::new();
    let (code, out, err) = run(ccb_command(&home, "http://127.0.0.1:9", &claude_bin()).args(["--", "--version"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2.1.197"), "{out}");
    let log = home.path().join("fake.log");
    let (code, _, _) =
        run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).env("FAKE_LOG", &log).args(["mcp", "list"]));
    assert_eq!(code, 0);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("args=mcp list "), "no --session-id or --model added: {log}");
}

#[test]
fn config_init_show_and_completions() {
    let home = ClaudeHome::new();
    let (code, out, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(["config", "init"]));
    assert_eq!(code, 0, "{err}");
    let path = std::path::PathBuf::from(out.trim());
    assert_eq!(path, home.path().join(".config/ccb/config.toml"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "owner-only");
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(["config", "init"]));
    assert_eq!(code, 2);
    assert!(err.contains("exists already"), "{err}");
    std::fs::write(&path, "default_model = \"haiku\"\n[ceilings]\nprogrammatic = 1.25\n").unwrap();
    let (code, out, _) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(["config", "show"]));
    assert_eq!(code, 0);
    assert!(
        out.contains("default_model = \"haiku\"")
            && out.contains("programmatic = 1.25")
            && out.contains("interactive = 20.00"),
        "{out}"
    );
    let (_, out, _) =
        run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(["--dry-run", "--json", "-p", "x"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ceiling_usd"], 1.25);
    assert_eq!(v["model"], "haiku");
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, _) = run(ccb_command(&home, "http://127.0.0.1:9", &fake_bin()).args(["completions", shell]));
        assert_eq!(code, 0);
        assert!(out.contains("budget") && out.contains("dry-run"), "{shell}: {out}");
    }
}

/// `CCB_BUDGET` and `CCB_REASON` (an Agent SDK's `env`, a CI step's environment) work like the
/// flags, yield to them, say where they came from, and never reach claude or its tools.
#[test]
fn budget_and_reason_from_the_environment() {
    let home = ClaudeHome::new();
    let dry = |env: &[(&str, &str)], args: &[&str]| {
        let mut c = ccb_command(&home, "https://api.anthropic.com", &claude_bin());
        for (k, v) in env {
            c.env(k, v);
        }
        let (code, out, err) = run(c.args(["--dry-run", "--json"]).args(args));
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Value>(&out).unwrap()
    };
    let v = dry(&[("CCB_BUDGET", "1.25"), ("CCB_REASON", "infra")], &["-p", "--model", "opus", "hi"]);
    assert_eq!((v["ceiling_usd"].as_f64(), v["ceiling_from"].as_str()), (Some(1.25), Some("CCB_BUDGET")));
    assert_eq!((v["reason"].as_str(), v["reason_from"].as_str()), (Some("infra"), Some("CCB_REASON")));
    let v = dry(&[("CCB_BUDGET", "1.25")], &["--budget", "3", "-p", "hi"]);
    assert_eq!((v["ceiling_usd"].as_f64(), v["ceiling_from"].as_str()), (Some(3.0), Some("--budget")), "the flag wins");
    let v = dry(&[], &["-p", "hi"]);
    assert_eq!(v["ceiling_from"], "[ceilings] programmatic", "else the config");
    // A session: the budget from the environment stops it; claude's environment has neither.
    let env_file = home.path().join("claude-env");
    let claude = home.path().join("env-claude");
    std::fs::write(
        &claude,
        format!("#!/bin/sh\nenv > '{}'\nexec '{}' \"$@\"\n", env_file.display(), fake_bin().display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&claude, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, _, err) = run(ccb_command(&home, "http://127.0.0.1:9", &claude)
        .env("CCB_BUDGET", "0.5")
        .env("CCB_REASON", "infra")
        .env("FAKE_SCRIPT", "usd:0.3;usd:0.3;sleep:30000")
        .args(["-p", "go"]));
    assert_eq!(code, 3, "stopped at the $0.50 from CCB_BUDGET: {err}");
    assert!(err.contains("session stopped at its $0.50 ceiling"), "{err}");
    let seen = std::fs::read_to_string(&env_file).unwrap();
    assert!(!seen.contains("CCB_BUDGET") && !seen.contains("CCB_REASON"), "claude inherited ccb's options:\n{seen}");
}

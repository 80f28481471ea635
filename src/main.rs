//! ccb: run Claude Code with every session's cost visible and bounded.
//!
//! Thin on purpose: decide which command runs, run it, and turn its result into an exit code.

use ccb::cmd::{self, cli};
use ccb::core::{exit, report};
use ccb::session::warden;
use ccb::sys::tty;
use clap::{CommandFactory, Parser};
use std::ffi::OsString;

fn main() {
    let argv: Vec<OsString> = std::env::args_os().collect();
    if argv.len() == 2 && argv[1] == warden::ARG {
        std::process::exit(warden::main());
    }
    tty::install_panic_hook();
    ccb::sys::log::init();
    let code = match dispatch(&argv) {
        Ok(code) => code,
        Err(e) => {
            tty::restore();
            ccb::note!("ccb: {e:#}");
            exit::code_of(&e)
        }
    };
    std::process::exit(code);
}

fn dispatch(argv: &[OsString]) -> anyhow::Result<i32> {
    let rest = &argv[1.min(argv.len())..];
    let first = rest.first().and_then(|a| a.to_str()).unwrap_or("");
    // Invoked as `claude` (a symlink to ccb): every argument is claude's.
    let as_claude = argv.first().and_then(|a| std::path::Path::new(a).file_name()).is_some_and(|n| n == "claude");
    // `-v`, `-V`, `--version`, as ccb or as `claude`: claude's version line first (the Agent SDK
    // parses it), then ccb's.
    if rest.len() == 1 && matches!(first, "-v" | "-V" | "--version") {
        return cmd::run::version();
    }
    if !as_claude && (cli::is_command(first) || (rest.len() == 1 && matches!(first, "-h" | "--help"))) {
        let cli = match cli::Cli::try_parse_from(argv) {
            Ok(c) => c,
            Err(e)
                if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) =>
            {
                let _ = e.print();
                return Ok(0);
            }
            Err(e) => {
                let line = cli::error_line(&e);
                // clap quotes the value it refused, whole: an excerpt of it.
                let line = ccb::core::human::shorten_quoted(&line, &['\''], ccb::core::human::EXCERPT);
                return Err(exit::Exit::usage(format!("{line} (see ccb help)")).into());
            }
        };
        return match cli.command {
            Some(cli::Command::Config(c)) => cmd::config::run(c),
            Some(cli::Command::Prices { json, toml }) => cmd::prices::run(json, toml),
            Some(cli::Command::Usage(u)) => cmd::usage::run(cmd::usage::Args {
                blocks: matches!(u.period, cli::PeriodArg::Blocks),
                period: match u.period {
                    cli::PeriodArg::Daily | cli::PeriodArg::Blocks => report::Period::Daily,
                    cli::PeriodArg::Weekly => report::Period::Weekly,
                    cli::PeriodArg::Monthly => report::Period::Monthly,
                    cli::PeriodArg::Session | cli::PeriodArg::Top => report::Period::Session,
                },
                top: matches!(u.period, cli::PeriodArg::Top).then(|| match u.by {
                    None | Some(cli::TopByArg::Session) => ccb::core::advice::TopBy::Session,
                    Some(cli::TopByArg::Branch) => ccb::core::advice::TopBy::Branch,
                    Some(cli::TopByArg::Subagent) => ccb::core::advice::TopBy::Subagent,
                    Some(cli::TopByArg::Tool) => ccb::core::advice::TopBy::Tool,
                }),
                by_given: u.by.is_some(),
                what_if: u.what_if,
                limit: u.limit,
                since: u.since,
                until: u.until,
                split: if u.by_model {
                    report::Split::Model
                } else if u.by_reason {
                    report::Split::Reason
                } else if u.by_meter {
                    report::Split::Meter
                } else if u.by_project {
                    report::Split::Project
                } else if u.by_user {
                    report::Split::User
                } else if u.by_host {
                    report::Split::Host
                } else if u.by_branch {
                    report::Split::Branch
                } else {
                    report::Split::None
                },
                timezone: u.timezone,
                json: u.json,
                team: u.team,
                since_ref: u.since_ref,
                branch: u.branch,
                breakdown: u.breakdown,
                desc: matches!(u.order, Some(cli::OrderArg::Desc)),
                compact: u.compact,
                html: u.html,
            }),
            Some(cli::Command::Pool { check: Some(cli::PoolCmd::Check { alert_at }), .. }) => {
                cmd::pool::check(alert_at)
            }
            Some(cli::Command::Pool { check: None, team: true, json }) => cmd::team::pool(json),
            Some(cli::Command::Pool { check: None, team: false, json }) => cmd::pool::run(json),
            Some(cli::Command::Limits { set: Some(cli::LimitsCmd::Set { user, period, amount, .. }), .. }) => {
                cmd::team::set_limit(user.as_deref(), period, &amount)
            }
            Some(cli::Command::Limits { set: None, team: true, json }) => cmd::team::limits(json),
            Some(cli::Command::Limits { set: None, team: false, json }) => cmd::limits::run(json),
            Some(cli::Command::Sync { daemon: true, while_pid, .. }) => Ok(ccb::session::sync::daemon(while_pid)),
            Some(cli::Command::Sync { json, .. }) => cmd::team::sync(json),
            Some(cli::Command::Ledger(cli::LedgerCmd::Migrate)) => cmd::team::migrate(),
            Some(cli::Command::Ledger(cli::LedgerCmd::Repair { session, json })) => {
                cmd::ledger::repair(session.as_deref(), json)
            }
            Some(cli::Command::Statusline { theirs }) => cmd::statusline::run(theirs.as_deref()),
            Some(cli::Command::Completions { shell }) => {
                clap_complete::generate(shell, &mut cli::Cli::command(), "ccb", &mut std::io::stdout());
                Ok(0)
            }
            None => {
                cli::Cli::command().print_help()?;
                Ok(0)
            }
        };
    }
    // A lone word that names a report (`ccb daily`): asked about before anything is spent.
    if !as_claude {
        cmd::run::report_word(rest)?;
    }
    cmd::run::run(rest)
}

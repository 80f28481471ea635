//! ccb's own commands, as clap types: the doc comments are the help. Launching claude
//! (`ccb [options] [claude args…]`) is parsed by `args.rs`, because claude's arguments must pass
//! through untouched; its options are declared here too so that help and completions show them.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

pub const LAUNCH_HELP: &str = "\
Launch (everything that is not a ccb command):
  ccb [--budget USD] [--reason WORD] [--dry-run [--json]] [claude args…]
  ccb [ccb options] -- [claude args…]      everything after `--` goes to claude

  Runs the real Claude Code with your arguments unchanged, meters the session's cost from its
  transcripts, warns at thresholds, and stops the session at its ceiling (exit 3). Opus sessions
  need --reason (exit 4 without one). Claude's own help: ccb -- --help

Exit codes:
  claude's own code, or 128+N when claude died of signal N
  2  bad usage or configuration        3  the session ceiling was reached and ccb stopped it
  4  refused or stopped by policy      5  ccb could not start claude

Examples:
  ccb                                   interactive session, default ceiling
  ccb -p \"fix the tests\" --budget 2      print mode, stop at $2
  ccb --model opus --reason infra       Opus, with a logged reason
  ccb --dry-run --json -p hi            the plan, launching nothing";

#[derive(Parser, Debug)]
#[command(name = "ccb", version, about = "Run Claude Code with every session's cost visible and bounded", after_help = LAUNCH_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub launch: LaunchArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// ccb's launch options (recognised anywhere before `--`).
#[derive(Args, Debug)]
pub struct LaunchArgs {
    /// Session ceiling in USD (e.g. 2, 2.50); overrides the config's ceiling for the class
    #[arg(long, value_name = "USD")]
    pub budget: Option<String>,
    /// Why this session needs Opus (one of the config's [opus] reasons)
    #[arg(long, value_name = "WORD")]
    pub reason: Option<String>,
    /// Print the session plan and launch nothing
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: the plan as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Report what was spent, on what, from which meter (ledger and every local transcript)
    Usage(UsageArgs),
    /// The month's credit pool: spent, remaining, when it runs out
    Pool {
        #[command(subcommand)]
        check: Option<PoolCmd>,
        /// As JSON
        #[arg(long)]
        json: bool,
    },
    /// Spend limits over many sessions: spent, reserved by calls in flight, remaining, resets
    Limits {
        /// As JSON
        #[arg(long)]
        json: bool,
    },
    /// Show or create ccb's configuration file
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Print the price table ccb uses (embedded, with your price file merged over it)
    Prices {
        /// As JSON (USD per million tokens)
        #[arg(long)]
        json: bool,
    },
    /// The ledger itself: rebuild sessions' figures from claude's transcripts
    #[command(subcommand)]
    Ledger(LedgerCmd),
    /// Print shell completions (bash, zsh, fish, elvish, powershell)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum PeriodArg {
    Daily,
    Weekly,
    Monthly,
    Session,
    /// The most expensive sessions, branches, subagent types or tools (--by)
    Top,
}

/// What `ccb usage top` ranks.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum TopByArg {
    Session,
    Branch,
    Subagent,
    Tool,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Dates: YYYY-MM-DD, YYYYMMDD, today, yesterday, or Nd for the last N days (7d, 30d).\n--json is a superset of ccusage's: see the README for the schema."
)]
pub struct UsageArgs {
    /// Rows by day, ISO week, month or session
    #[arg(value_enum, default_value = "daily")]
    pub period: PeriodArg,
    /// First day to include
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Last day to include
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
    /// Split each row by model
    #[arg(long, group = "split")]
    pub by_model: bool,
    /// Split each row by Opus reason
    #[arg(long, group = "split")]
    pub by_reason: bool,
    /// Split each row by meter (subscription, credit-pool, api; unknown for sessions not run through ccb)
    #[arg(long, group = "split")]
    pub by_meter: bool,
    /// Split each row by project (working directory)
    #[arg(long, group = "split")]
    pub by_project: bool,
    /// Time zone for days (IANA name, e.g. Europe/Berlin); default: the system's
    #[arg(long, value_name = "TZ")]
    pub timezone: Option<String>,
    /// As JSON (ccusage-compatible)
    #[arg(long)]
    pub json: bool,
    /// Reprice the usage on this model (every token kind at its rates), beside what it cost
    #[arg(long, value_name = "MODEL")]
    pub what_if: Option<String>,
    /// With `top`: rank sessions (default), branches, subagent types or tools
    #[arg(long, value_enum, value_name = "WHAT")]
    pub by: Option<TopByArg>,
    /// With `top`: how many to list
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub limit: usize,
}

#[derive(Subcommand, Debug)]
pub enum PoolCmd {
    /// For cron: exit 0 below the threshold, 1 at or above it (and fire the alerts once a cycle)
    Check {
        /// Percent of the pool (default: the config's [alerts] pool, else 85)
        #[arg(long, value_name = "PCT")]
        alert_at: Option<u32>,
    },
}

#[derive(Subcommand, Debug)]
pub enum LedgerCmd {
    /// Add the responses the ledger lacks from claude's transcripts, give responses recorded
    /// without a session the session their transcript names, and set each session's total to
    /// the sum of its responses (exit 1: the ledger could not be written, nothing changed)
    Repair {
        /// Only this session (by default: every session in the ledger); a session the ledger
        /// has no row for gets one from its transcript
        #[arg(long, value_name = "ID")]
        session: Option<String>,
        /// As JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Write a commented default config file (refuses to overwrite without --force)
    Init {
        #[arg(long)]
        force: bool,
        /// Where to write it (default: $CCB_CONFIG, else $XDG_CONFIG_HOME/ccb/config.toml)
        #[arg(long)]
        path: Option<PathBuf>,
    },
    /// Print the effective configuration (file values over defaults)
    Show,
    /// Print where the config file is read from
    Path,
}

/// Is this argument one of ccb's own commands (else ccb launches claude)?
pub fn is_command(first: &str) -> bool {
    matches!(first, "config" | "prices" | "completions" | "help" | "usage" | "pool" | "limits" | "ledger")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_launch_option_is_declared_for_help_and_completions() {
        let cmd = Cli::command();
        for opt in crate::core::args::OPTIONS {
            let name = opt.trim_start_matches("--");
            assert!(cmd.get_arguments().any(|a| a.get_long() == Some(name)), "{opt} missing from cli.rs");
        }
    }
}

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
        /// Each seat's pool, from the team ledger ([ledger] url)
        #[arg(long)]
        team: bool,
        /// As JSON
        #[arg(long)]
        json: bool,
    },
    /// Spend limits over many sessions: spent, reserved by calls in flight, remaining, resets
    Limits {
        #[command(subcommand)]
        set: Option<LimitsCmd>,
        /// The team ledger's limits (team-wide and per user), with everyone's spend
        #[arg(long)]
        team: bool,
        /// As JSON
        #[arg(long)]
        json: bool,
    },
    /// Deliver this machine's sessions and responses to the team ledger ([ledger] url) now
    /// (exit 1: the server could not be reached or refused; nothing is lost, rows stay queued)
    Sync {
        /// As JSON
        #[arg(long)]
        json: bool,
        /// Run as the background sync a session starts (internal)
        #[arg(long, hide = true)]
        daemon: bool,
        /// With --daemon: stay while this process lives (internal)
        #[arg(long = "while", hide = true, value_name = "PID")]
        while_pid: Option<i64>,
    },
    /// Show or create ccb's configuration file
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Print the price table ccb uses (embedded, with your price file merged over it)
    Prices {
        /// As JSON (USD per million tokens)
        #[arg(long, conflicts_with = "toml")]
        json: bool,
        /// As TOML in the format of a [prices] file: a start for your own rates
        #[arg(long)]
        toml: bool,
    },
    /// The ledger itself: rebuild sessions' figures from claude's transcripts
    #[command(subcommand)]
    Ledger(LedgerCmd),
    /// Claude Code's status line: reads the JSON claude sends on stdin, prints this session's
    /// spend against its ceiling from ccb's ledger (see [statusline] in the config)
    Statusline {
        /// Your own status-line command: its first line goes after ccb's segment
        #[arg(long, value_name = "COMMAND")]
        theirs: Option<String>,
    },
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
    Blocks,
    /// The most expensive sessions, branches, subagent types or tools (--by)
    Top,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum OrderArg {
    Asc,
    Desc,
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
    /// Rows by day, ISO week, month or session; or 5-hour billing blocks (as ccusage's)
    #[arg(value_enum, default_value = "daily")]
    pub period: PeriodArg,
    /// First day to include
    #[arg(short = 's', long, value_name = "DATE")]
    pub since: Option<String>,
    /// Last day to include
    #[arg(short = 'u', long, value_name = "DATE")]
    pub until: Option<String>,
    /// What a piece of work cost: from this commit's time (any git revision), sessions in its
    /// repository's working trees only
    #[arg(long, value_name = "REF", conflicts_with = "since")]
    pub since_ref: Option<String>,
    /// Only responses made on this git branch
    #[arg(long, value_name = "NAME")]
    pub branch: Option<String>,
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
    /// Split each row by user (with --team: everyone's; recorded by ccb from [team] user)
    #[arg(long, group = "split")]
    pub by_user: bool,
    /// Split each row by host
    #[arg(long, group = "split")]
    pub by_host: bool,
    /// Everyone's sessions, from the team ledger ([ledger] url)
    #[arg(long)]
    pub team: bool,
    /// Split each row by git branch (the branch each response was made on)
    #[arg(long, group = "split")]
    pub by_branch: bool,
    /// Under each row, a row per model (the JSON always has modelBreakdowns)
    #[arg(long)]
    pub breakdown: bool,
    /// Oldest first (asc, the default) or newest first (desc)
    #[arg(short = 'o', long, value_enum, value_name = "ORDER")]
    pub order: Option<OrderArg>,
    /// The narrow table (input, output, cost), whatever the terminal's width
    #[arg(long)]
    pub compact: bool,
    /// Write a self-contained HTML page with charts to this file (instead of the table)
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Time zone for days (IANA name, e.g. Europe/Berlin); default: the system's
    #[arg(long, value_name = "TZ")]
    pub timezone: Option<String>,
    /// As JSON (ccusage-compatible)
    #[arg(short = 'j', long)]
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
pub enum LimitsCmd {
    /// Set or remove a limit on the team ledger, enforced by every machine: team-wide (--team)
    /// or for one user (--user NAME)
    Set {
        /// A limit on everyone's spend together
        #[arg(long, group = "who", required = true)]
        team: bool,
        /// A limit on one user's spend (on every machine)
        #[arg(long, group = "who", value_name = "NAME")]
        user: Option<String>,
        /// The period it counts over
        #[arg(long, value_enum, default_value = "daily")]
        period: LimitPeriodArg,
        /// USD per period (e.g. 100, 12.50), or `off` to remove the limit
        #[arg(value_name = "USD|off")]
        amount: String,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LimitPeriodArg {
    Daily,
    Weekly,
    Monthly,
}

#[derive(Subcommand, Debug)]
pub enum LedgerCmd {
    /// Create or upgrade the team ledger's tables on the server ([ledger] url); safe to run
    /// from several machines at once
    Migrate,
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
    matches!(
        first,
        "config" | "prices" | "completions" | "help" | "usage" | "pool" | "limits" | "ledger" | "sync" | "statusline"
    )
}

/// clap's error as one line that keeps what its later lines say: the argument that is missing
/// (`<SHELL>`), the values a value may take, the option or value it guesses was meant.
pub fn error_line(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let texts = |k: ContextKind| -> Vec<String> {
        match e.get(k) {
            Some(ContextValue::String(s)) => vec![s.clone()],
            Some(ContextValue::Strings(v)) => v.clone(),
            Some(ContextValue::StyledStr(s)) => vec![s.to_string()],
            Some(ContextValue::StyledStrs(v)) => v.iter().map(|s| s.to_string()).collect(),
            _ => Vec::new(),
        }
    };
    let msg = e.to_string();
    let mut line =
        msg.lines().next().unwrap_or("bad usage").trim_start_matches("error: ").trim_end_matches(':').to_string();
    if e.kind() == ErrorKind::MissingRequiredArgument {
        let missing = texts(ContextKind::InvalidArg);
        if !missing.is_empty() {
            line = format!("{line}: {}", missing.join(", "));
        }
    }
    let valid = texts(ContextKind::ValidValue);
    if !valid.is_empty() {
        line.push_str(&format!(" (one of: {})", valid.join(", ")));
    }
    for k in [ContextKind::SuggestedArg, ContextKind::SuggestedValue, ContextKind::SuggestedSubcommand] {
        let s = texts(k);
        if !s.is_empty() {
            line.push_str(&format!("; did you mean '{}'?", s.join("' or '")));
        }
    }
    line
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
    fn clap_errors_keep_what_their_later_lines_say() {
        let line = |argv: &[&str]| error_line(&Cli::try_parse_from(argv).unwrap_err());
        assert_eq!(line(&["ccb", "completions"]), "the following required arguments were not provided: <SHELL>");
        assert_eq!(
            line(&["ccb", "usage", "dayly"]),
            "invalid value 'dayly' for '[PERIOD]' (one of: daily, weekly, monthly, session, blocks, top); did you mean 'daily'?"
        );
        assert_eq!(
            line(&["ccb", "usage", "--by-modle"]),
            "unexpected argument '--by-modle' found; did you mean '--by-model'?"
        );
        assert_eq!(line(&["ccb", "pool", "chek"]), "unrecognized subcommand 'chek'; did you mean 'check'?");
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

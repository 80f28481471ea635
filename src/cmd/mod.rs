//! The command line: clap's definitions ([`cli`]) and one thin file per subcommand.
pub mod cli;
pub mod config;
pub mod ledger;
pub mod limits;
pub mod pool;
pub mod prices;
pub mod run;
pub mod statusline;
pub mod team;
pub mod usage;

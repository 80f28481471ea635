//! One file per command.
pub mod config;
pub mod ledger;
pub mod pool;
pub mod prices;
pub mod run;
pub mod usage;

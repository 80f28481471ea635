//! One file per command.
pub mod config;
pub mod prices;
pub mod run;

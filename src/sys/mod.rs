//! What touches the OS and is shared by the rest: paths and private files ([`paths`]), the
//! terminal ([`tty`]), processes ([`procs`]), the loopback HTTP server ([`http`]), finding
//! claude ([`locate`]), delivering alerts ([`alert`]), reading the user's files ([`files`]), ccb's
//! own log ([`log`]).

pub mod alert;
pub mod files;
pub mod http;
pub mod locate;
pub mod log;
pub mod paths;
pub mod prices;
pub mod procs;
pub mod tty;

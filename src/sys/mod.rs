//! What touches the OS and is shared by the rest: paths and private files ([`paths`]), the
//! terminal ([`tty`]), processes ([`procs`]), the loopback HTTP server ([`http`]), finding
//! claude ([`locate`]), delivering alerts ([`alert`]), reading the user's files ([`files`]), ccb's
//! own log ([`log`]), the repository's HEAD ([`git`]), the login and host names ([`whoami`]).

pub mod alert;
pub mod files;
pub mod git;
pub mod http;
pub mod locate;
pub mod log;
pub mod paths;
pub mod prices;
pub mod procs;
pub mod tty;
pub mod whoami;

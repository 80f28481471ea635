//! One metered run of claude: preparing it ([`run`]), supervising its process tree
//! ([`supervisor`], [`warden`], [`orphans`]), the three usage sources ([`gate`], [`telemetry`],
//! [`follow`]) and the live counter they share ([`meter`]); claude's private settings file
//! ([`settings`]) and the first-party path ([`first_party`]).

pub mod export;
pub mod first_party;
pub mod follow;
pub mod gate;
pub mod limits;
pub mod meter;
pub mod orphans;
pub mod run;
pub mod settings;
pub mod statusline;
pub mod supervisor;
pub mod sync;
pub mod team;
pub mod telemetry;
pub mod warden;

//! `ccb config init | show | path`.

use crate::cmd::cli::ConfigCmd;
use crate::core::config;
use crate::core::exit::Exit;

pub fn run(cmd: ConfigCmd) -> anyhow::Result<i32> {
    match cmd {
        ConfigCmd::Init { force, path } => {
            let path = match path.or_else(|| crate::sys::files::config_path().map(|(p, _)| p)) {
                Some(p) => p,
                None => return Err(Exit::usage("no config location: set HOME, XDG_CONFIG_HOME or CCB_CONFIG").into()),
            };
            if path.exists() && !force {
                return Err(Exit::usage(format!(
                    "{} exists already: edit it, or use --force to replace it",
                    path.display()
                ))
                .into());
            }
            crate::sys::paths::write_private(&path, config::DEFAULT_FILE.as_bytes()).map_err(|e| {
                Exit::usage(format!("cannot write {}: {}", path.display(), crate::sys::paths::io_reason(&e)))
            })?;
            crate::out!("{}", path.display());
            Ok(0)
        }
        ConfigCmd::Show => {
            let c = crate::sys::files::load_config()?;
            {
                use std::io::Write as _;
                let _ = write!(std::io::stdout(), "{}", c.to_toml());
            }
            Ok(0)
        }
        ConfigCmd::Path => {
            match crate::sys::files::config_path() {
                Some((p, _)) => crate::out!("{}", p.display()),
                None => return Err(Exit::usage("no config location: set HOME, XDG_CONFIG_HOME or CCB_CONFIG").into()),
            }
            Ok(0)
        }
    }
}

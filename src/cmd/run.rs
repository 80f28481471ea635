//! `ccb [options] [claude args…]`: one metered session (see [`crate::session::run`]), and
//! `ccb --version`.

use crate::core::exit::{self, Exit};
use crate::sys::locate;
use std::ffi::OsString;

pub fn run(argv: &[OsString]) -> anyhow::Result<i32> {
    crate::session::run::run(argv)
}

/// `ccb --version` (and `-v`, `-V`): the real claude's version line, as claude prints it, then
/// ccb's on a line of its own. Tools that run ccb as their claude (the Agent SDK) parse the first.
pub fn version() -> anyhow::Result<i32> {
    let config = crate::sys::files::load_config()?;
    let own = std::env::current_exe().ok();
    let claude = locate::find(std::env::var("CCB_CLAUDE").ok().as_deref(), config.claude.as_deref(), own.as_deref());
    let ccb_line = format!("ccb {}", env!("CARGO_PKG_VERSION"));
    let claude = match claude {
        Ok(c) => c,
        Err(e) => {
            crate::out!("{ccb_line}");
            return Err(e.into());
        }
    };
    let out = std::process::Command::new(&claude)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| Exit::launch(locate::why_not_started(&claude, &e)))?;
    {
        use std::io::Write as _;
        let mut so = std::io::stdout().lock();
        let _ = so.write_all(&out.stdout);
        if !out.stdout.is_empty() && !out.stdout.ends_with(b"\n") {
            let _ = so.write_all(b"\n");
        }
        let _ = writeln!(so, "{ccb_line}");
    }
    Ok(out.status.code().unwrap_or(exit::LAUNCH))
}

//! `ccb [options] [claude args…]`: one metered session (see [`crate::session::run`]), and
//! `ccb --version`.

use crate::core::exit::{self, Exit};
use crate::sys::locate;
use std::ffi::OsString;

pub fn run(argv: &[OsString]) -> anyhow::Result<i32> {
    crate::session::run::run(argv)
}

/// A lone word that names a report or is close to one (`ccb daily`, `ccb usgae`) would be a paid
/// session with that word as its prompt: on a terminal the user is asked first (y/N); without
/// one, or on "no", it is a usage error that says what was likely meant (see [`crate::core::typo`]).
pub fn report_word(argv: &[OsString]) -> Result<(), Exit> {
    let [word] = argv else { return Ok(()) };
    let Some(meant) = word.to_str().and_then(crate::core::typo::meant) else { return Ok(()) };
    let word = crate::core::human::excerpt(&word.to_string_lossy(), crate::core::human::EXCERPT);
    let tty = |fd| crate::sys::tty::is_tty(fd);
    if tty(libc::STDIN_FILENO)
        && tty(libc::STDERR_FILENO)
        && crate::sys::tty::ask_yes(&format!(
            "ccb: `{word}` is not a ccb command (did you mean `{meant}`?). Start a paid claude session with the prompt \"{word}\"?"
        ))
    {
        return Ok(());
    }
    Err(Exit::usage(format!(
        "`{word}` alone would start a paid claude session with it as the prompt: did you mean `{meant}`? (to send it to claude: ccb -- {word})"
    )))
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

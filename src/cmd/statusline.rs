//! `ccb statusline [--theirs COMMAND]`: the status line claude shows in an interactive session
//! (see [`crate::session::statusline`]). It always exits 0: a status line never errors.

pub fn run(theirs: Option<&str>) -> anyhow::Result<i32> {
    let input = crate::session::statusline::read_input();
    let line = crate::session::statusline::line(&input, theirs, crate::session::statusline::colour());
    crate::out!("{line}");
    Ok(0)
}

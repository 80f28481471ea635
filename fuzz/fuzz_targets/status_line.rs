//! What Claude Code sends `ccb statusline` on stdin, and the line made of it: any bytes give a
//! line (never a panic), one line only, with no control character but the colours ccb adds.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let claude = ccb::core::statusline::parse(data);
    let facts = ccb::core::statusline::Facts {
        spent: claude.cost.unwrap_or_default(),
        ceiling: claude.cost.map(|c| ccb::core::money::Usd(c.nanos() / 2 + 1)),
        alerts: vec![50, 80],
        premium_without_reason: claude.model_id.clone(),
        tightest: None,
    };
    for f in [None, Some(&facts)] {
        let line = ccb::core::statusline::render(&claude, f, false, &jiff::tz::TimeZone::UTC);
        assert!(!line.chars().any(char::is_control), "{line:?}");
        let theirs = String::from_utf8_lossy(data);
        let both = ccb::core::statusline::prefix(&line, &theirs, false);
        assert!(!both.contains('\n'), "{both:?}");
    }
});

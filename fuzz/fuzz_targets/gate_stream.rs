//! The gate's reading of a model response as it streams by (server-sent events, or JSON,
//! plain or gzip), in any chunking: never a panic, whatever the upstream sends.
#![no_main]
use ccb::session::gate::UsageWatch;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let encoding = match mode % 3 {
        0 => None,
        1 => Some("gzip"),
        _ => Some("deflate"),
    };
    let bound = ccb::core::stream::Bound { prompt_bytes: rest.len() as u64, max_tokens: 64_000 };
    let mut w = UsageWatch::new(mode & 4 == 0, encoding, bound);
    let chunk = 1 + (mode as usize >> 3);
    for c in rest.chunks(chunk) {
        w.feed(c);
    }
    w.finish();
    for cut_off in [false, true] {
        if let Some(r) = w.reading(cut_off) {
            assert!(r.usage.is_plausible(), "{r:?}");
            let (cost, _) = common::embedded().cost("claude-sonnet-4-6", &r.usage, w.mods());
            assert!(cost.nanos() >= 0);
        }
    }
    let _ = (w.started(), w.complete());
});

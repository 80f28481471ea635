//! Shared by the fuzz targets: the embedded price table (parsed once), and the guards for bugs
//! the fuzzers found that are known and reported (RELIABILITY.md, "Bugs found"), so a run goes on
//! looking for new ones. Set `CCB_FUZZ_KNOWN_BUGS=1` to run without the guards and see them again.
#![allow(dead_code)]

use ccb::pricing::{PriceTable, Usage};
use std::sync::OnceLock;

/// The embedded price table. Known bug 3: its cache of prices for unknown models grows without
/// bound (one entry per distinct unknown model id), which a fuzzer's millions of ids turn into an
/// out-of-memory; so a fresh table replaces it every 50,000 calls.
pub fn embedded() -> std::rc::Rc<PriceTable> {
    thread_local! {
        static T: std::cell::RefCell<(u64, Option<std::rc::Rc<PriceTable>>)> = const { std::cell::RefCell::new((0, None)) };
    }
    T.with(|t| {
        let mut t = t.borrow_mut();
        t.0 += 1;
        if t.1.is_none() || (t.0 % 50_000 == 0 && !known_bugs_on()) {
            t.1 = Some(std::rc::Rc::new(PriceTable::load(None).expect("the embedded price table parses")));
        }
        t.1.clone().expect("set above")
    })
}

fn known_bugs_on() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("CCB_FUZZ_KNOWN_BUGS").is_some())
}

/// Known bug 1: the token sums in `pricing::Usage` (`prompt_tokens`, `total_tokens`, `add`)
/// overflow u64 for absurd counts (a debug build panics, a release build wraps).
pub fn tokens_overflow(u: &Usage) -> bool {
    if known_bugs_on() {
        return false;
    }
    [u.output, u.cache_write_5m, u.cache_write_1h, u.cache_read]
        .iter()
        .try_fold(u.input, |a, b| a.checked_add(*b))
        .is_none()
}

/// Known bug 2: `pricing::normalize` slices a model id at a byte offset that can fall inside a
/// character that is not ASCII, and panics.
pub fn normalize_panics(id: &str) -> bool {
    !known_bugs_on() && !id.is_ascii()
}

/// Known bug 4: a response whose `message.id` is empty and that has no `requestId` gets the key
/// "" (so all such responses count as one).
pub fn empty_key(key: &str) -> bool {
    !known_bugs_on() && key.is_empty()
}

/// Split fuzz input into a few byte strings at 0xFF bytes (never part of UTF-8 text).
pub fn fields(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = data.splitn(n, |&b| b == 0xff).collect();
    while v.len() < n {
        v.push(&[]);
    }
    v
}

/// A u64 from up to 8 bytes (little-endian).
pub fn num(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    let n = b.len().min(8);
    a[..n].copy_from_slice(&b[..n]);
    u64::from_le_bytes(a)
}

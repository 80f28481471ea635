//! Shared by the fuzz targets: the embedded price table (parsed once per thread) and helpers
//! to cut fuzz input into fields.
#![allow(dead_code)]

use ccb::core::pricing::PriceTable;

/// The embedded price table, shared by every input (its cache of prices for unknown models is
/// bounded, so millions of distinct ids do not grow it).
pub fn embedded() -> std::rc::Rc<PriceTable> {
    thread_local! {
        static T: std::rc::Rc<PriceTable> = std::rc::Rc::new(PriceTable::newest().expect("the embedded price table parses"));
    }
    T.with(|t| t.clone())
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

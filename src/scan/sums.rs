//! One file's partial sums: what a report keeps of a transcript file between runs (per 15-minute
//! slot, session and model), and their compact encoding in the ledger's cache.

use super::*;
use crate::core::plan::{Class, Payer};
use crate::core::report::{Agg, Dataset, SessionAttr};
use jiff::tz::TimeZone;
use std::collections::{HashMap, HashSet};

// ---------------------------------------------------------------- one file's partial sums

/// A session as its file first shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileSession {
    pub id: String,
    pub project: String,
    pub class: Class,
    /// Its responses' `gitBranch` ("" when none): one `FileSession` per (session, branch).
    pub branch: String,
}

/// The responses a file owns, summed per (slot, session, model).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileSum {
    pub sessions: Vec<FileSession>,
    pub models: Vec<String>,
    pub buckets: HashMap<(i64, u32, u32), Agg>,
    pub malformed: u64,
}

impl FileSum {
    pub(super) fn session(&mut self, id: &str, branch: &str, make: impl FnOnce() -> FileSession) -> u32 {
        // Files hold one session or a few: a linear search beats hashing.
        match self.sessions.iter().position(|s| s.id == id && s.branch == branch) {
            Some(i) => i as u32,
            None => {
                self.sessions.push(make());
                (self.sessions.len() - 1) as u32
            }
        }
    }

    pub(super) fn model(&mut self, m: &str) -> u32 {
        match self.models.iter().position(|x| x == m) {
            Some(i) => i as u32,
            None => {
                self.models.push(m.to_string());
                (self.models.len() - 1) as u32
            }
        }
    }

    pub(super) fn add_to(&self, ds: &mut Dataset, since_ms: i64, days: &mut DayCache) {
        let smap: Vec<u32> = self
            .sessions
            .iter()
            .map(|s| {
                ds.session(SessionAttr {
                    id: s.id.clone(),
                    project: s.project.clone(),
                    class: s.class.clone(),
                    payer: Payer::NotRecorded,
                    reason: None,
                    ccb: false,
                    user: None,
                    host: None,
                    branch: s.branch.clone(),
                })
            })
            .collect();
        let mmap: Vec<u16> = self.models.iter().map(|m| ds.model(m)).collect();
        for (&(slot, s, m), agg) in &self.buckets {
            let start = slot * SLOT_MS;
            if start < since_ms {
                continue;
            }
            ds.add_slot(slot, days.day(start), smap[s as usize], mmap[m as usize], agg);
        }
        ds.malformed += self.malformed;
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let mut e = Enc(Vec::with_capacity(64 + self.buckets.len() * 24));
        e.u(2);
        e.u(self.malformed);
        e.u(self.sessions.len() as u64);
        for s in &self.sessions {
            e.s(&s.id);
            e.s(&s.project);
            e.s(s.class.as_str());
            e.s(&s.branch);
        }
        e.u(self.models.len() as u64);
        for m in &self.models {
            e.s(m);
        }
        let mut b: Vec<_> = self.buckets.iter().collect();
        b.sort_unstable_by_key(|(k, _)| **k);
        e.u(b.len() as u64);
        let mut prev = 0i64;
        for (&(slot, s, m), a) in b {
            e.i(slot - prev);
            prev = slot;
            e.u(s as u64);
            e.u(m as u64);
            let u = &a.usage;
            for v in [u.input, u.output, u.cache_write_5m, u.cache_write_1h, u.cache_read, u.web_search, a.responses] {
                e.u(v);
            }
            e.i(a.cost.nanos());
            e.i(a.first_ms - slot * SLOT_MS);
            e.i(a.last_ms - a.first_ms);
        }
        e.0
    }

    pub(super) fn decode(b: &[u8]) -> Option<FileSum> {
        let mut f = FileSum::default();
        let mut buckets = Vec::new();
        f.malformed = decode_with(b, |s| f.sessions.push(s), |m| f.models.push(m), |k, a| buckets.push((k, a)))?;
        f.buckets = buckets.into_iter().collect();
        Some(f)
    }
}

/// Walk an encoded [`FileSum`]: its sessions, models and buckets in order; returns its malformed
/// line count, or `None` (having called back for part of it) when it does not decode.
pub(super) fn decode_with(
    b: &[u8],
    mut session: impl FnMut(FileSession),
    mut model: impl FnMut(String),
    mut bucket: impl FnMut((i64, u32, u32), Agg),
) -> Option<u64> {
    let mut d = Dec { b, i: 0 };
    if d.u()? != 2 {
        return None;
    }
    let malformed = d.u()?;
    let sessions = d.u()?;
    for _ in 0..sessions {
        session(FileSession { id: d.s()?, project: d.s()?, class: Class::parse(&d.s()?), branch: d.s()? });
    }
    let models = d.u()?;
    for _ in 0..models {
        model(d.s()?);
    }
    let n = d.u()?;
    let mut slot = 0i64;
    for _ in 0..n {
        slot += d.i()?;
        let (s, m) = (d.u()?, d.u()?);
        if s >= sessions || m >= models {
            return None;
        }
        let mut a = Agg::default();
        a.usage.input = d.u()?;
        a.usage.output = d.u()?;
        a.usage.cache_write_5m = d.u()?;
        a.usage.cache_write_1h = d.u()?;
        a.usage.cache_read = d.u()?;
        a.usage.web_search = d.u()?;
        a.responses = d.u()?;
        a.cost = crate::core::money::Usd(d.i()?);
        a.first_ms = slot.checked_mul(SLOT_MS)?.checked_add(d.i()?)?;
        a.last_ms = a.first_ms.checked_add(d.i()?)?;
        bucket((slot, s as u32, m as u32), a);
    }
    (d.i == b.len()).then_some(malformed)
}

/// Add an encoded [`FileSum`] to a dataset, all of it or (when it does not decode) none of it.
pub(super) fn add_encoded(
    b: &[u8],
    ds: &mut Dataset,
    since_ms: i64,
    days: &mut DayCache,
    scratch: &mut Scratch,
) -> bool {
    scratch.sessions.clear();
    scratch.models.clear();
    scratch.buckets.clear();
    let Some(malformed) = decode_with(
        b,
        |s| scratch.sessions.push(s),
        |m| scratch.models.push(m),
        |k, a| {
            if k.0 * SLOT_MS >= since_ms {
                scratch.buckets.push((k, a));
            }
        },
    ) else {
        return false;
    };
    let smap: Vec<u32> = scratch
        .sessions
        .drain(..)
        .map(|s| {
            ds.session(SessionAttr {
                id: s.id,
                project: s.project,
                class: s.class,
                payer: Payer::NotRecorded,
                reason: None,
                ccb: false,
                user: None,
                host: None,
                branch: s.branch,
            })
        })
        .collect();
    let mmap: Vec<u16> = scratch.models.iter().map(|m| ds.model(m)).collect();
    for &((slot, s, m), ref a) in &scratch.buckets {
        ds.add_slot(slot, days.day(slot * SLOT_MS), smap[s as usize], mmap[m as usize], a);
    }
    ds.malformed += malformed;
    true
}

#[derive(Default)]
pub(super) struct Scratch {
    pub(super) sessions: Vec<FileSession>,
    pub(super) models: Vec<String>,
    pub(super) buckets: Vec<((i64, u32, u32), Agg)>,
}

/// Dates of slots in the report's time zone, each worked out once.
pub(super) struct DayCache<'a> {
    pub(super) tz: &'a TimeZone,
    /// The last day seen, as [start, end) in milliseconds.
    pub(super) last: Option<(i64, i64, jiff::civil::Date)>,
}

impl DayCache<'_> {
    pub(super) fn day(&mut self, ms: i64) -> jiff::civil::Date {
        if let Some((a, b, d)) = self.last {
            if ms >= a && ms < b {
                return d;
            }
        }
        let d = day_of(ms, self.tz);
        let bounds = d
            .to_zoned(self.tz.clone())
            .ok()
            .and_then(|z| Some((z.timestamp().as_millisecond(), z.tomorrow().ok()?.timestamp().as_millisecond())));
        if let Some((a, b)) = bounds {
            self.last = Some((a, b, d));
        }
        d
    }
}

pub(super) struct Enc(pub(super) Vec<u8>);

impl Enc {
    pub(super) fn u(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    pub(super) fn i(&mut self, v: i64) {
        self.u(((v << 1) ^ (v >> 63)) as u64);
    }
    pub(super) fn s(&mut self, s: &str) {
        self.u(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }
}

pub(super) struct Dec<'a> {
    pub(super) b: &'a [u8],
    pub(super) i: usize,
}

impl Dec<'_> {
    pub(super) fn u(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let x = *self.b.get(self.i)?;
            self.i += 1;
            v |= ((x & 0x7f) as u64) << shift;
            if x < 0x80 {
                return Some(v);
            }
        }
        None
    }
    pub(super) fn i(&mut self) -> Option<i64> {
        let u = self.u()?;
        Some((u >> 1) as i64 ^ -((u & 1) as i64))
    }
    pub(super) fn s(&mut self) -> Option<String> {
        let n = self.u()? as usize;
        let s = self.b.get(self.i..self.i.checked_add(n)?)?;
        self.i += n;
        String::from_utf8(s.to_vec()).ok()
    }
}

pub(super) fn keys_blob(k: &[u64]) -> Vec<u8> {
    k.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(super) fn keys_of(b: &[u8]) -> Option<Vec<u64>> {
    (b.len() % 8 == 0)
        .then(|| b.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())).collect())
}

/// Response identities are hashes already: sets of them need only mix the bits, not SipHash.
#[derive(Default, Clone, Copy)]
pub(super) struct KeyHash;

#[derive(Default)]
pub(super) struct KeyHasher(pub(super) u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, b: &[u8]) {
        for &x in b {
            self.0 = (self.0.rotate_left(8) ^ x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (x ^ (x >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl std::hash::BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

pub(super) type KeySet = HashSet<u64, KeyHash>;

/// A quick 64-bit hash of a few KB, eight bytes at a time (change detection, not security).
pub(super) fn fast_hash(b: &[u8]) -> u64 {
    let mut h = 0x9E37_79B9_7F4A_7C15u64 ^ b.len() as u64;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let x = u64::from_le_bytes(c.try_into().unwrap_or_default());
        h = (h ^ x).wrapping_mul(0x100_0000_01B3).rotate_left(29);
    }
    for &x in chunks.remainder() {
        h = (h ^ x as u64).wrapping_mul(0x100_0000_01B3);
    }
    h ^ (h >> 31)
}

pub(super) fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| (h ^ x as u64).wrapping_mul(0x100000001b3))
}

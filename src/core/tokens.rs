//! One reading of a token count, shared by the three sources (the gate's stream, claude's
//! transcripts, claude's telemetry), so that a figure means the same wherever it is read.
//!
//! A count is a whole number from 0 to [`MAX_TOKENS`]. JSON allows `1000.0` and `1e3` for it (and
//! claude's JavaScript reads them as 1000), so they are 1000 here too; a negative, fractional or
//! absurd count, or one that is not a number, is not a count: the record is malformed, and the
//! source that read it says so rather than taking it as 0 or as a huge figure.

use serde::Deserialize;

/// No response has a trillion tokens (2^40): above this a count is corrupted or crafted.
pub const MAX_TOKENS: u64 = 1 << 40;

/// What a field holding a token count held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// No such field, or `null`.
    Absent,
    Valid(u64),
    /// Something that cannot be a count.
    Bad,
}

impl Count {
    /// The count, `Absent` as 0; `None` when bad.
    pub fn or_zero(self) -> Option<u64> {
        match self {
            Count::Absent => Some(0),
            Count::Valid(n) => Some(n),
            Count::Bad => None,
        }
    }
}

/// A count from a JSON value.
pub fn from_json(v: &serde_json::Value) -> Count {
    match v {
        serde_json::Value::Null => Count::Absent,
        serde_json::Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => checked(u),
            (None, Some(f)) => from_f64(f),
            (None, None) => Count::Bad,
        },
        _ => Count::Bad,
    }
}

/// A count written as text (OTLP attributes carry numbers as strings): `"1000"`, `"1000.0"`.
pub fn from_text(s: &str) -> Count {
    let s = s.trim();
    if s.is_empty() {
        return Count::Absent;
    }
    if let Ok(u) = s.parse::<u64>() {
        return checked(u);
    }
    match s.parse::<f64>() {
        Ok(f) => from_f64(f),
        Err(_) => Count::Bad,
    }
}

fn checked(u: u64) -> Count {
    if u <= MAX_TOKENS {
        Count::Valid(u)
    } else {
        Count::Bad
    }
}

fn from_f64(f: f64) -> Count {
    if f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f <= MAX_TOKENS as f64 {
        Count::Valid(f as u64)
    } else {
        Count::Bad
    }
}

/// For serde: an optional count field, by the same rule (`#[serde(deserialize_with)]`). A bad
/// count fails the record, as a wrong type would.
pub fn de_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    match from_json(&v) {
        Count::Absent => Ok(None),
        Count::Valid(n) => Ok(Some(n)),
        Count::Bad => Err(serde::de::Error::custom("not a token count")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_rule_for_every_spelling() {
        let cases = [
            (json!(null), Count::Absent),
            (json!(0), Count::Valid(0)),
            (json!(1000), Count::Valid(1000)),
            (json!(1000.0), Count::Valid(1000)),
            (json!(1e3), Count::Valid(1000)),
            (json!(1u64 << 40), Count::Valid(1 << 40)),
            (json!((1u64 << 40) + 1), Count::Bad),
            (json!(u64::MAX), Count::Bad),
            (json!(-1), Count::Bad),
            (json!(-0.0), Count::Valid(0)),
            (json!(2.5), Count::Bad),
            (json!(1e300), Count::Bad),
            (json!("1000"), Count::Bad),
            (json!(true), Count::Bad),
            (json!([1]), Count::Bad),
        ];
        for (v, want) in cases {
            assert_eq!(from_json(&v), want, "{v}");
        }
        for (s, want) in [
            ("", Count::Absent),
            ("1000", Count::Valid(1000)),
            ("1000.0", Count::Valid(1000)),
            (" 7 ", Count::Valid(7)),
            ("-5", Count::Bad),
            ("2000000000000", Count::Bad),
            ("NaN", Count::Bad),
            ("inf", Count::Bad),
            ("12abc", Count::Bad),
            ("18446744073709551615", Count::Bad),
        ] {
            assert_eq!(from_text(s), want, "{s:?}");
        }
    }

    #[test]
    fn serde_fields_read_by_the_same_rule() {
        #[derive(Deserialize)]
        struct U {
            #[serde(default, deserialize_with = "de_opt")]
            n: Option<u64>,
        }
        let read = |s: &str| serde_json::from_str::<U>(s).map(|u| u.n).ok();
        assert_eq!(read(r#"{"n": 1000.0}"#), Some(Some(1000)));
        assert_eq!(read(r#"{"n": null}"#), Some(None));
        assert_eq!(read(r#"{}"#), Some(None));
        assert_eq!(read(r#"{"n": -1}"#), None);
        assert_eq!(read(r#"{"n": 18446744073709551615}"#), None);
    }
}

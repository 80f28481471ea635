//! Names ccb writes down as text (ledger columns, the report cache, JSON), as types.
//!
//! Each such enum is declared with [`recorded!`], which gives it its names: `as_str`, `Display`,
//! `Serialize` (as the name) and `parse`, which never fails. A name this ccb does not know, read
//! from a shared ledger that a newer ccb wrote, becomes `Unknown(name)`: shown and written back
//! verbatim, never an error, never mistaken for a known one.
//!
//! Here: [`Source`] (where a response was heard). Elsewhere: the session's class, billing mode
//! and payer ([`crate::core::plan`]) and how it ended ([`crate::core::exit::Ending`]).

/// Give an enum with an `Unknown(String)` case its stored names: `$t { Variant => "name", … }`.
macro_rules! recorded {
    ($t:ident { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            /// Every case this ccb knows, in declaration order.
            pub const KNOWN: &'static [$t] = &[$($t::$v),*];

            /// The name as stored and shown.
            pub fn as_str(&self) -> &str {
                match self {
                    $($t::$v => $s,)*
                    $t::Unknown(s) => s,
                }
            }

            /// The case for a stored name; a name this ccb does not know is kept as `Unknown`.
            pub fn parse(s: &str) -> $t {
                match s {
                    $($s => $t::$v,)*
                    _ => $t::Unknown(s.to_string()),
                }
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $t {
            type Err = std::convert::Infallible;
            fn from_str(s: &str) -> Result<$t, Self::Err> {
                Ok($t::parse(s))
            }
        }

        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                ser.serialize_str(self.as_str())
            }
        }
    };
}
pub(crate) use recorded;

/// Where a response's usage was first heard (`usage.source`). Each response is recorded once,
/// by whichever source saw it first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// ccb's gate: the API call itself, through the local proxy claude is pointed at.
    Gate,
    /// Claude's own `api_request` telemetry event, sent to ccb's receiver.
    Telemetry,
    /// A line of the session's transcript file.
    Transcript,
    /// Found in a transcript by `ccb ledger repair`, after the session.
    Repair,
    /// A name written by a newer ccb, kept verbatim.
    Unknown(String),
}

recorded!(Source { Gate => "gate", Telemetry => "telemetry", Transcript => "transcript", Repair => "repair" });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_round_trip_and_keep_names_from_the_future() {
        let table = [
            (Source::Gate, "gate"),
            (Source::Telemetry, "telemetry"),
            (Source::Transcript, "transcript"),
            (Source::Repair, "repair"),
            (Source::Unknown("something-new".into()), "something-new"),
            (Source::Unknown(String::new()), ""),
        ];
        for (s, name) in table {
            assert_eq!(s.as_str(), name);
            assert_eq!(s.to_string(), name);
            assert_eq!(Source::parse(name), s, "{name}");
            assert_eq!(name.parse::<Source>().unwrap(), s);
            assert_eq!(serde_json::to_value(&s).unwrap(), serde_json::json!(name));
        }
        assert_eq!(Source::KNOWN.len(), 4);
        // Names are exact: another spelling is not a known source.
        assert_eq!(Source::parse("Gate"), Source::Unknown("Gate".into()));
    }
}

//! Timestamps: protobuf `Timestamp` inside, RFC 3339 on the REST wire.

use prost_types::Timestamp;

/// The current time, truncated to microseconds.
pub fn now() -> Timestamp {
    let mut ts = Timestamp::from(std::time::SystemTime::now());
    ts.nanos -= ts.nanos % 1_000;
    ts
}

/// RFC 3339 form, e.g. `2025-01-02T03:04:05.123456Z`.
pub fn rfc3339(ts: &Timestamp) -> String {
    ts.to_string()
}

/// Parses an RFC 3339 date-time (with `Z` or an offset).
pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

/// Serde adapter: a `Timestamp` as an RFC 3339 string.
pub mod serde_rfc3339 {
    use prost_types::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises as RFC 3339.
    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(ts))
    }

    /// Parses RFC 3339.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_rfc3339(&s)
            .ok_or_else(|| serde::de::Error::custom("not an RFC 3339 date-time"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let ts = Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_456_000,
        };
        let s = rfc3339(&ts);
        assert_eq!(s, "2023-11-14T22:13:20.123456Z");
        assert_eq!(parse_rfc3339(&s), Some(ts));
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20+01:00").map(|t| t.seconds),
            Some(1_700_000_000)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(now().nanos % 1000, 0);
    }
}

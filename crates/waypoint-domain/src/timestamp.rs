//! How a time is written by serde: as chrono writes it (RFC 3339 text) for a human-readable
//! format (JSON, what people and other programs read), and as two integers, seconds and
//! nanoseconds since the Unix epoch, for a binary one (the file store's catalog rows, ADR 0009):
//! a listing decodes thousands of times, and integers need no parsing. Used as
//! `#[serde(with = "waypoint_domain::timestamp")]` on the times a plan's view carries.

use chrono::{DateTime, Utc};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Writes `at`: text for a human-readable format, `(seconds, nanoseconds)` otherwise.
pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        serialize_text(at, serializer)
    } else {
        (at.timestamp(), at.timestamp_subsec_nanos()).serialize(serializer)
    }
}

/// Writes `at` as chrono's serde writes it, whatever the format: for a time of a summary, which
/// is only ever written as text (a listing writes ten thousand).
pub fn serialize_text<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    match Rfc3339::of(at) {
        Some(text) => serializer.serialize_str(text.as_str()),
        None => at.serialize(serializer),
    }
}

/// [`serialize_text`] for a time that may be absent.
pub fn serialize_text_option<S: Serializer>(at: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
    at.as_ref().map(Text).serialize(serializer)
}

/// A time that serializes as [`serialize_text`] writes it.
struct Text<'a>(&'a DateTime<Utc>);

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_text(self.0, serializer)
    }
}

/// A time as chrono writes it with serde (RFC 3339 in UTC, `Z`, the seconds' fraction in as
/// few of 3, 6 or 9 digits as keep it whole, none when it is zero, a leap second as second 60),
/// written digit by digit: chrono's own goes through `fmt` a piece at a time, which a listing
/// of ten thousand plans pays for in each one.
struct Rfc3339 {
    bytes: [u8; 30],
    len: usize,
}

impl Rfc3339 {
    /// `None` outside the years 0 to 9999, which chrono writes with a sign (and this does not).
    fn of(at: &DateTime<Utc>) -> Option<Self> {
        use chrono::{Datelike, Timelike};
        let date = at.date_naive();
        let year = u32::try_from(date.year()).ok().filter(|&year| year <= 9999)?;
        let time = at.time();
        let (mut second, mut nano) = (time.second(), time.nanosecond());
        if nano >= 1_000_000_000 {
            second += 1;
            nano -= 1_000_000_000;
        }
        let mut text = Self { bytes: [0; 30], len: 0 };
        text.digits(year, 4);
        text.push(b'-');
        text.digits(date.month(), 2);
        text.push(b'-');
        text.digits(date.day(), 2);
        text.push(b'T');
        text.digits(time.hour(), 2);
        text.push(b':');
        text.digits(time.minute(), 2);
        text.push(b':');
        text.digits(second, 2);
        if nano != 0 {
            text.push(b'.');
            match (nano % 1_000_000, nano % 1_000) {
                (0, _) => text.digits(nano / 1_000_000, 3),
                (_, 0) => text.digits(nano / 1_000, 6),
                _ => text.digits(nano, 9),
            }
        }
        text.push(b'Z');
        Some(text)
    }

    fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    /// `value`'s last `width` decimal digits, zeros before.
    fn digits(&mut self, mut value: u32, width: usize) {
        for at in (self.len..self.len + width).rev() {
            self.bytes[at] = b'0' + (value % 10) as u8;
            value /= 10;
        }
        self.len += width;
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).expect("ASCII digits and separators")
    }
}

/// Reads what [`serialize`] wrote in the same format.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    if deserializer.is_human_readable() {
        DateTime::<Utc>::deserialize(deserializer)
    } else {
        let (seconds, nanos) = <(i64, u32)>::deserialize(deserializer)?;
        DateTime::from_timestamp(seconds, nanos)
            .ok_or_else(|| D::Error::custom(format!("a time out of range: {seconds} s and {nanos} ns")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by hand, a time reads as chrono's serde writes it, to the byte: every precision
    /// of the fraction, a leap second, the ends of the years written without a sign, and (by
    /// chrono itself) the years past them.
    #[test]
    fn times_are_written_as_chrono_writes_them() {
        #[derive(Serialize)]
        struct Ours<'a>(#[serde(serialize_with = "serialize_text")] &'a DateTime<Utc>);
        let mut seconds: Vec<i64> = vec![0, -1, 1, 59, 86_399, 951_782_400, 1_765_152_000, 4_102_444_800];
        let first = chrono::NaiveDate::from_ymd_opt(0, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();
        let last = chrono::NaiveDate::from_ymd_opt(9999, 12, 31).unwrap().and_hms_opt(23, 59, 59).unwrap().and_utc();
        let beyond = chrono::NaiveDate::from_ymd_opt(10_000, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();
        seconds.extend([first.timestamp(), first.timestamp() - 1, last.timestamp(), beyond.timestamp()]);
        // And spread over the years written without a sign, by a fixed sequence.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..2_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let span = (last.timestamp() - first.timestamp()) as u64;
            seconds.push(first.timestamp() + (state % span) as i64);
        }
        let nanos = [0, 1, 7_000, 120_000_000, 999_999_999, 5_000, 123_456_000, 100, 999_000_000];
        let mut compared = 0;
        for &second in &seconds {
            for &nano in &nanos {
                let at = DateTime::from_timestamp(second, nano).unwrap();
                let ours = serde_json::to_string(&Ours(&at)).unwrap();
                assert_eq!(ours, serde_json::to_string(&at).unwrap(), "{second} s {nano} ns");
                compared += 1;
            }
        }
        assert_eq!(compared, seconds.len() * nanos.len());
        // A leap second: chrono keeps it as second 59 with a billion nanoseconds or more.
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap()
            .and_utc();
        assert_eq!(serde_json::to_string(&Ours(&leap)).unwrap(), serde_json::to_string(&leap).unwrap());
        assert_eq!(serde_json::to_string(&Ours(&leap)).unwrap(), "\"2016-12-31T23:59:60.500Z\"");
        // An absent time, and a present one through the option's path.
        #[derive(Serialize)]
        struct Maybe(#[serde(serialize_with = "serialize_text_option")] Option<DateTime<Utc>>);
        assert_eq!(serde_json::to_string(&Maybe(None)).unwrap(), "null");
        assert_eq!(serde_json::to_string(&Maybe(Some(leap))).unwrap(), serde_json::to_string(&Some(leap)).unwrap());
    }
}

//! Time zones of naive timestamps.
//!
//! A PostgreSQL `timestamp` (without time zone), a MySQL `DATETIME` or a text timestamp with
//! no offset is a wall-clock reading with no zone. Two conventions fill such columns: the
//! database (`DEFAULT now()`, `NOW()`) in the zone an application's session gets, or an ORM
//! that writes UTC. [`Zone`] is the zone jobwarden reads them in; [`Zone::local_to_utc`] turns
//! a wall-clock reading (given as the Unix seconds it would be if it were UTC) into the real
//! instant. Pure: the zone data is compiled in (chrono-tz), so nothing here reads the system's
//! zone files or the clock.

use std::fmt;

use chrono::{DateTime, FixedOffset, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

/// A zone naive values are read in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Zone {
    #[default]
    Utc,
    /// A fixed offset east of UTC (`+05:30`, or what a database reports without a name).
    Fixed(FixedOffset),
    /// An IANA zone, with its daylight-saving rules.
    Named(Tz),
}

/// Names that mean UTC itself, in IANA and in the databases' own spellings.
const UTC_NAMES: &[&str] = &[
    "utc",
    "etc/utc",
    "gmt",
    "etc/gmt",
    "gmt0",
    "etc/gmt0",
    "etc/gmt+0",
    "etc/gmt-0",
    "zulu",
    "etc/zulu",
    "universal",
    "etc/universal",
    "greenwich",
    "etc/greenwich",
    "uct",
    "etc/uct",
    "z",
    "+00:00",
    "-00:00",
    "+0000",
];

impl Zone {
    /// Parses `UTC`, an ISO 8601 offset (`+05:30`, `-05:00`: east of UTC is positive), or an
    /// IANA name (`America/New_York`).
    pub fn parse(text: &str) -> Result<Zone, String> {
        let t = text.trim();
        if UTC_NAMES.contains(&t.to_ascii_lowercase().as_str()) {
            return Ok(Zone::Utc);
        }
        if let Some(offset) = parse_offset(t) {
            return Ok(if offset.local_minus_utc() == 0 {
                Zone::Utc
            } else {
                Zone::Fixed(offset)
            });
        }
        t.parse::<Tz>().map(Zone::Named).map_err(|_| {
            format!("`{t}` is not a time zone: write \"UTC\", an IANA name such as \"America/New_York\", an offset such as \"+05:30\", or \"database\"")
        })
    }

    /// A zone by name only (UTC's names, or IANA): what a database reports, where an offset
    /// may follow another sign convention than ISO's (PostgreSQL reads `-05:00` as POSIX does).
    pub fn named(text: &str) -> Option<Zone> {
        let t = text.trim();
        if UTC_NAMES.contains(&t.to_ascii_lowercase().as_str()) {
            return Some(Zone::Utc);
        }
        if t.starts_with(['+', '-']) {
            return None;
        }
        t.parse::<Tz>().ok().map(Zone::Named)
    }

    /// A fixed offset, in seconds east of UTC.
    pub fn fixed(seconds_east: i32) -> Zone {
        match FixedOffset::east_opt(seconds_east) {
            Some(o) if seconds_east != 0 => Zone::Fixed(o),
            _ => Zone::Utc,
        }
    }

    /// Whether readings in this zone are UTC readings, at every instant.
    pub fn is_utc(&self) -> bool {
        match self {
            Zone::Utc => true,
            Zone::Fixed(o) => o.local_minus_utc() == 0,
            Zone::Named(tz) => UTC_NAMES.contains(&tz.name().to_ascii_lowercase().as_str()),
        }
    }

    /// The real instant of a wall-clock reading in this zone. `local` is the reading as Unix
    /// seconds computed as if it were UTC (which is what a UTC session's `extract(epoch ...)`
    /// or `UNIX_TIMESTAMP` of a naive value gives). An ambiguous reading (the hour repeated
    /// when clocks go back) takes the later instant, so a job can only look younger; a reading
    /// in the hour skipped when clocks go forward is taken with the offset after the change.
    pub fn local_to_utc(&self, local: f64) -> f64 {
        match self {
            Zone::Utc => local,
            Zone::Fixed(o) => local - f64::from(o.local_minus_utc()),
            Zone::Named(tz) => {
                let whole = local.floor();
                let frac = local - whole;
                let Some(naive) =
                    DateTime::<Utc>::from_timestamp(whole as i64, 0).map(|d| d.naive_utc())
                else {
                    return local;
                };
                let offset = offset_of_local(tz, &naive).unwrap_or(0);
                whole - f64::from(offset) + frac
            }
        }
    }

    /// Seconds east of UTC at the instant `utc` (Unix seconds).
    pub fn offset_at(&self, utc: f64) -> i32 {
        match self {
            Zone::Utc => 0,
            Zone::Fixed(o) => o.local_minus_utc(),
            Zone::Named(tz) => {
                DateTime::<Utc>::from_timestamp(utc.floor() as i64, 0).map_or(0, |d| {
                    tz.offset_from_utc_datetime(&d.naive_utc())
                        .fix()
                        .local_minus_utc()
                })
            }
        }
    }
}

/// The offset (seconds east) a named zone has at a local reading.
fn offset_of_local(tz: &Tz, naive: &NaiveDateTime) -> Option<i32> {
    match tz.offset_from_local_datetime(naive) {
        LocalResult::Single(o) => Some(o.fix().local_minus_utc()),
        // The later instant has the smaller offset.
        LocalResult::Ambiguous(a, b) => {
            Some(a.fix().local_minus_utc().min(b.fix().local_minus_utc()))
        }
        LocalResult::None => {
            let later = *naive + chrono::Duration::hours(3);
            match tz.offset_from_local_datetime(&later) {
                LocalResult::Single(o) | LocalResult::Ambiguous(o, _) => {
                    Some(o.fix().local_minus_utc())
                }
                LocalResult::None => None,
            }
        }
    }
}

/// `+05:30`, `-05:00`, `+0530`, `+05`.
fn parse_offset(t: &str) -> Option<FixedOffset> {
    let (sign, rest) = match t.as_bytes().first()? {
        b'+' => (1, &t[1..]),
        b'-' => (-1, &t[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) || !matches!(digits.len(), 2 | 4) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = if digits.len() == 4 {
        digits[2..].parse().ok()?
    } else {
        0
    };
    if hours > 15 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Utc => f.write_str("UTC"),
            Zone::Fixed(o) => write!(f, "{o}"),
            Zone::Named(tz) => f.write_str(tz.name()),
        }
    }
}

/// `[database] timezone`: the zone naive timestamps are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// A zone given in the file.
    Zone(Zone),
    /// The zone an application's session gets from the database.
    Database,
}

impl Setting {
    pub fn parse(text: &str) -> Result<Setting, String> {
        if text.trim().eq_ignore_ascii_case("database") {
            Ok(Setting::Database)
        } else {
            Zone::parse(text).map(Setting::Zone)
        }
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Setting::Zone(z) => z.fmt(f),
            Setting::Database => f.write_str("database"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-15T12:00:00Z, winter in New York (UTC-5).
    const WINTER: f64 = 1_768_478_400.0;
    /// 2026-07-15T12:00:00Z, summer in New York (UTC-4).
    const SUMMER: f64 = 1_784_116_800.0;

    #[test]
    fn names_offsets_and_utc() {
        assert_eq!(Zone::parse("UTC"), Ok(Zone::Utc));
        assert_eq!(Zone::parse("Etc/UTC"), Ok(Zone::Utc));
        assert_eq!(Zone::parse("+00:00"), Ok(Zone::Utc));
        assert_eq!(Zone::parse("+05:30").unwrap().offset_at(WINTER), 19_800);
        assert_eq!(Zone::parse("-0500").unwrap().offset_at(WINTER), -18_000);
        let ny = Zone::parse("America/New_York").unwrap();
        assert!(!ny.is_utc());
        assert_eq!(ny.to_string(), "America/New_York");
        assert!(Zone::parse("Mars/Olympus")
            .unwrap_err()
            .contains("Mars/Olympus"));
        assert!(Zone::parse("+25:00").is_err());
        assert_eq!(Setting::parse("Database"), Ok(Setting::Database));
    }

    #[test]
    fn wall_clock_readings_become_instants() {
        let ny = Zone::parse("America/New_York").unwrap();
        // 07:00 on the wall in New York in January is 12:00 UTC.
        assert_eq!(ny.local_to_utc(WINTER - 5.0 * 3600.0), WINTER);
        // 08:00 in July (daylight saving) is 12:00 UTC.
        assert_eq!(ny.local_to_utc(SUMMER - 4.0 * 3600.0), SUMMER);
        let kolkata = Zone::parse("Asia/Kolkata").unwrap();
        assert_eq!(kolkata.local_to_utc(WINTER + 19_800.5), WINTER + 0.5);
        assert_eq!(Zone::fixed(-18_000).local_to_utc(WINTER - 18_000.0), WINTER);
        assert_eq!(Zone::Utc.local_to_utc(WINTER), WINTER);
    }

    #[test]
    fn the_repeated_hour_takes_the_later_instant() {
        // 2026-11-01 01:30 happens twice in New York: at 05:30Z (EDT) and 06:30Z (EST).
        let ny = Zone::parse("America/New_York").unwrap();
        let local = 1_793_496_600.0; // 2026-11-01T01:30:00 read as UTC
        assert_eq!(ny.local_to_utc(local), local + 5.0 * 3600.0);
        // 2026-03-08 02:30 never happens; it is read with the offset after the change (EDT).
        let skipped = 1_772_937_000.0; // 2026-03-08T02:30:00 read as UTC
        assert_eq!(ny.local_to_utc(skipped), skipped + 4.0 * 3600.0);
    }
}

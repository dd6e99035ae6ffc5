//! Time on a call, as callprobe's internals carry it: points of the call's
//! own timeline ([`CallTime`], t = 0 when the first INVITE left), signed
//! offsets from a reference point on it ([`Offset`]: LiveKit's times count
//! from the INVITE that got through, and a server clock can put them before
//! it), and plain lengths as [`Duration`].
//!
//! Owns every conversion between those and milliseconds: [`CallTime::ms`],
//! [`Offset::ms`] and [`Millis`] (for `Duration`) are what `report::model`
//! turns internals into report numbers with; [`CallTime::from_ms`],
//! [`Offset::from_ms`] and [`duration_from_ms`] read report numbers back;
//! [`human_ms`] (and `Display`) says a time in words (`554 ms`, `1.25 s`).
//! Milliseconds are `nanoseconds / 10⁶`, so a value made from milliseconds
//! gives the same number back.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const NANOS_PER_MS: f64 = 1_000_000.0;
const NANOS_PER_MS_INT: i128 = 1_000_000;

/// A point of the call's own timeline: how long after the first INVITE left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallTime(Duration);

impl CallTime {
    /// The first INVITE left.
    pub const ZERO: CallTime = CallTime(Duration::ZERO);

    /// `at` on the timeline that starts at `start` (zero for an `at` before it).
    pub fn between(start: Instant, at: Instant) -> CallTime {
        CallTime(at.saturating_duration_since(start))
    }

    /// The point `since_start` after the first INVITE.
    pub const fn after(since_start: Duration) -> CallTime {
        CallTime(since_start)
    }

    /// From milliseconds since the first INVITE (negative or not a number: zero).
    pub fn from_ms(ms: f64) -> CallTime {
        CallTime(duration_from_ms(ms))
    }

    /// How long after the first INVITE.
    pub const fn since_start(self) -> Duration {
        self.0
    }

    /// Milliseconds since the first INVITE, as the report has them.
    pub fn ms(self) -> f64 {
        self.0.ms()
    }

    /// To the nearest multiple of `resolution` (halves round up).
    pub fn round_to(self, resolution: Duration) -> CallTime {
        let step = resolution.as_nanos();
        if step == 0 {
            return self;
        }
        let nanos = (self.0.as_nanos() + step / 2) / step * step;
        CallTime(duration_from_nanos(nanos))
    }
}

impl Add<Duration> for CallTime {
    type Output = CallTime;
    fn add(self, d: Duration) -> CallTime {
        CallTime(self.0.saturating_add(d))
    }
}

/// The time from `earlier` to `self`; zero when `earlier` is later.
impl Sub for CallTime {
    type Output = Duration;
    fn sub(self, earlier: CallTime) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

/// `554 ms`, `1.25 s` ([`human_ms`]).
impl fmt::Display for CallTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&human_ms(self.ms()))
    }
}

/// A signed time relative to a reference point, to the nanosecond.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(i64);

impl Offset {
    pub const ZERO: Offset = Offset(0);

    /// From (fractional, possibly negative) milliseconds; not a number: zero.
    pub fn from_ms(ms: f64) -> Offset {
        // `as` saturates at the ends of i64 and maps NaN to 0.
        Offset((ms * NANOS_PER_MS).round() as i64)
    }

    /// A wall-clock time in whole milliseconds since the Unix epoch (as
    /// LiveKit's API and our polls give it), relative to the epoch.
    pub fn from_unix_ms(unix_ms: i64) -> Offset {
        Offset::from_nanos(i128::from(unix_ms) * NANOS_PER_MS_INT)
    }

    /// Milliseconds after (negative: before) the reference point.
    pub fn ms(self) -> f64 {
        self.0 as f64 / NANOS_PER_MS
    }

    /// Whole milliseconds, halves away from zero.
    pub fn whole_ms(self) -> i64 {
        let ms = i128::from(self.0);
        let half = NANOS_PER_MS_INT / 2;
        let rounded = if ms >= 0 { (ms + half) / NANOS_PER_MS_INT } else { (ms - half) / NANOS_PER_MS_INT };
        rounded as i64
    }

    /// As a length; zero when negative.
    pub fn clamped_duration(self) -> Duration {
        Duration::from_nanos(u64::try_from(self.0).unwrap_or(0))
    }

    fn from_nanos(nanos: i128) -> Offset {
        Offset(i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX }))
    }
}

/// The offset of a length after the reference point.
impl From<Duration> for Offset {
    fn from(d: Duration) -> Offset {
        Offset::from_nanos(i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
    }
}

impl Add<Duration> for Offset {
    type Output = Offset;
    fn add(self, d: Duration) -> Offset {
        Offset::from_nanos(i128::from(self.0) + i128::from(Offset::from(d).0))
    }
}

/// How far `self` lies after `reference` (negative: before).
impl Sub for Offset {
    type Output = Offset;
    fn sub(self, reference: Offset) -> Offset {
        Offset::from_nanos(i128::from(self.0) - i128::from(reference.0))
    }
}

/// `554 ms`, `-1.25 s` ([`human_ms`]).
impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&human_ms(self.ms()))
    }
}

/// A [`Duration`] in the report's units.
pub trait Millis {
    /// Fractional milliseconds.
    fn ms(&self) -> f64;
    /// Whole milliseconds, the fraction dropped.
    fn whole_ms(&self) -> u64;
    /// Fractional seconds (the milliseconds / 1000).
    fn seconds(&self) -> f64;
}

impl Millis for Duration {
    fn ms(&self) -> f64 {
        self.as_nanos() as f64 / NANOS_PER_MS
    }
    fn whole_ms(&self) -> u64 {
        u64::try_from(self.as_millis()).unwrap_or(u64::MAX)
    }
    fn seconds(&self) -> f64 {
        self.ms() / 1000.0
    }
}

/// A length from (fractional) milliseconds; negative or not a number: zero.
pub fn duration_from_ms(ms: f64) -> Duration {
    // `as` saturates at the ends of u64 and maps NaN and negatives to 0.
    Duration::from_nanos((ms * NANOS_PER_MS).round() as u64)
}

/// Whole milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.whole_ms())
}

/// The wall-clock time `unix_ms` milliseconds after the Unix epoch.
pub fn from_unix_ms(unix_ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(unix_ms)
}

/// A time in milliseconds in words: `554 ms` below a second, else `1.25 s`.
pub fn human_ms(ms: f64) -> String {
    if ms.abs() >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

fn duration_from_nanos(nanos: u128) -> Duration {
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_come_back_as_they_went_in() {
        for ms in [0.0, 0.2, 1.1, 305.4, 305.6, 3700.25, 6020.5, 30_001.6] {
            assert_eq!(CallTime::from_ms(ms).ms(), ms);
            assert_eq!(Offset::from_ms(ms).ms(), ms);
            assert_eq!(Offset::from_ms(-ms).ms(), -ms);
            assert_eq!(duration_from_ms(ms).ms(), ms);
        }
        assert_eq!(CallTime::from_ms(-5.0), CallTime::ZERO);
        assert_eq!(CallTime::from_ms(f64::NAN), CallTime::ZERO);
        assert_eq!(Offset::from_ms(f64::NAN), Offset::ZERO);
    }

    #[test]
    fn call_times_measure_from_the_start_and_never_go_negative() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_micros(1_234_567);
        assert_eq!(CallTime::between(t0, later).ms(), 1234.567);
        assert_eq!(CallTime::between(later, t0), CallTime::ZERO);
        let (a, b) = (CallTime::from_ms(100.0), CallTime::from_ms(350.5));
        assert_eq!((b - a, a - b), (duration_from_ms(250.5), Duration::ZERO));
        assert_eq!(a + duration_from_ms(250.5), b);
        assert!(a < b);
    }

    #[test]
    fn rounding_to_a_resolution_takes_the_nearest_step() {
        let tenth = Duration::from_micros(100);
        assert_eq!(CallTime::from_ms(12.349_999).round_to(tenth).ms(), 12.3);
        assert_eq!(CallTime::from_ms(12.35).round_to(tenth).ms(), 12.4);
        assert_eq!(CallTime::from_ms(0.04).round_to(tenth), CallTime::ZERO);
        assert_eq!(CallTime::from_ms(7.5).round_to(Duration::from_millis(1)).ms(), 8.0);
    }

    #[test]
    fn offsets_relate_wall_clock_times_to_a_reference() {
        let reference = Offset::from_unix_ms(1_000_000) + duration_from_ms(40.2);
        assert_eq!((Offset::from_unix_ms(1_000_100) - reference).ms(), 59.8);
        assert_eq!((Offset::from_unix_ms(1_000_000) - reference).ms(), -40.2);
        assert_eq!(reference.whole_ms(), 1_000_040);
        assert_eq!((Offset::from_unix_ms(1_000_000) + duration_from_ms(0.5)).whole_ms(), 1_000_001);
        assert_eq!(Offset::from_ms(-2.5).whole_ms(), -3);
        assert_eq!(
            (Offset::from_ms(-3.0).clamped_duration(), Offset::from_ms(3.0).clamped_duration()),
            (Duration::ZERO, Duration::from_millis(3))
        );
        assert!(Offset::from_ms(4999.0) <= Offset::from(Duration::from_secs(5)));
    }

    #[test]
    fn times_in_words() {
        assert_eq!(human_ms(554.4), "554 ms");
        assert_eq!(human_ms(1250.0), "1.25 s");
        assert_eq!(human_ms(-1330.0), "-1.33 s");
        assert_eq!(CallTime::from_ms(360.0).to_string(), "360 ms");
        assert_eq!(Offset::from_ms(1330.0).to_string(), "1.33 s");
        assert_eq!(Duration::from_millis(1500).seconds(), 1.5);
        assert_eq!(Duration::from_micros(1_999_999).whole_ms(), 1999);
        assert_eq!(unix_ms(UNIX_EPOCH + Duration::from_micros(1_741_944_413_000_999)), 1_741_944_413_000);
        assert_eq!(unix_ms(from_unix_ms(1_741_944_413_000)), 1_741_944_413_000);
    }
}

//! The cached value of the `Date` response header.
//!
//! Every response carries `Date` (RFC 9110 §6.6.1) in IMF-fixdate form,
//! which only changes once a second. Each thread keeps the formatted string
//! of the current second and reformats it only when the second changes.
//!
//! A worker running a handler inline goes one step further, as nginx does
//! with its per-iteration time cache: [`LoopDate::pin`] records, against the
//! event-loop iteration's start (one clock read the reactor made anyway),
//! until when the cached second stays current. A response written inside
//! that section reads no clock at all, and carries the second in which the
//! iteration started (a handler that blocks its worker delays the Date of
//! the responses after it in the iteration, as in nginx). Anywhere else (a handler answering
//! from its own thread, the server's own error answers) a response pays
//! one `SystemTime::now()`.

use std::cell::Cell;
use std::io::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) const HTTP_DATE_LEN: usize = 29;

#[derive(Clone, Copy)]
struct Cached {
    /// Unix second of `date`; `u64::MAX` means "not yet formatted".
    secs: u64,
    date: [u8; HTTP_DATE_LEN],
}

thread_local! {
    static CACHE: Cell<Cached> = const {
        Cell::new(Cached {
            secs: u64::MAX,
            date: [0; HTTP_DATE_LEN],
        })
    };
    /// Monotonic instant at which the cached second stops being the
    /// current one (`None`: not known, read the clock). A cell of its own:
    /// pinning a section, once per request, reads this and nothing else.
    static CURRENT_UNTIL: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Inside a [`LoopDate`] section: the cached date is current, no clock
    /// read (a cell of its own, so that entering and leaving a section
    /// writes one flag, not the whole cache).
    static PINNED: Cell<bool> = const { Cell::new(false) };
}

/// The IMF-fixdate of the current second (ASCII, 29 bytes),
/// e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) fn http_date() -> [u8; HTTP_DATE_LEN] {
    let mut cached = CACHE.with(Cell::get);
    if !PINNED.with(Cell::get) {
        let secs = unix_secs(SystemTime::now());
        if cached.secs != secs {
            cached = Cached {
                secs,
                date: format_http_date(secs),
            };
            CACHE.with(|cache| cache.set(cached));
            CURRENT_UNTIL.with(|until| until.set(None));
        }
    }
    cached.date
}

/// A section of a worker's event-loop iteration during which responses take
/// the date without reading the clock. Dropping it ends the section.
pub(crate) struct LoopDate(());

impl LoopDate {
    /// Starts a section at `now`, the start of the current event-loop
    /// iteration: the date is as of that instant (a response may carry a
    /// second that ended while the iteration's batch was being handled,
    /// as nginx's cached time does). The clock is read only when `now` has
    /// passed the end of the cached second.
    #[inline]
    pub(crate) fn pin(now: Instant) -> LoopDate {
        let until = CURRENT_UNTIL.with(Cell::get);
        if !matches!(until, Some(until) if now < until) {
            refresh(now);
        }
        PINNED.with(|pinned| pinned.set(true));
        LoopDate(())
    }
}

/// Reads the clock and notes until when the second it read lasts, `now`
/// being the current instant.
#[cold]
#[inline(never)]
fn refresh(now: Instant) {
    let mut cached = CACHE.with(Cell::get);
    let wall = SystemTime::now();
    let secs = unix_secs(wall);
    let into_second = wall.duration_since(UNIX_EPOCH).map_or(Duration::ZERO, |d| {
        Duration::from_nanos(d.subsec_nanos().into())
    });
    if cached.secs != secs {
        cached.secs = secs;
        cached.date = format_http_date(secs);
    }
    CACHE.with(|cache| cache.set(cached));
    // A wall-clock step shows at the next second boundary at the latest.
    let until = now + (Duration::from_secs(1) - into_second);
    CURRENT_UNTIL.with(|current| current.set(Some(until)));
}

impl Drop for LoopDate {
    fn drop(&mut self) {
        PINNED.with(|pinned| pinned.set(false));
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The last second httpdate can format (9999-12-31T23:59:59Z); it panics
/// beyond.
const MAX_SECS: u64 = 253_402_300_799;

/// Formats the Unix time `secs` as an IMF-fixdate (clamped to year 9999, in
/// case the clock is absurd).
fn format_http_date(secs: u64) -> [u8; HTTP_DATE_LEN] {
    let time = UNIX_EPOCH + Duration::from_secs(secs.min(MAX_SECS));
    let mut buf = [0u8; HTTP_DATE_LEN];
    let mut cursor = &mut buf[..];
    let written = write!(cursor, "{}", httpdate::HttpDate::from(time));
    debug_assert!(
        written.is_ok() && cursor.is_empty(),
        "IMF-fixdate is 29 bytes"
    );
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCH_DATE: &[u8] = b"Thu, 01 Jan 1970 00:00:00 GMT";

    fn current(date: &[u8]) -> bool {
        let date = std::str::from_utf8(date).unwrap();
        let shown = httpdate::parse_http_date(date).unwrap();
        let age = SystemTime::now().duration_since(shown).unwrap();
        age < Duration::from_secs(5)
    }

    /// Makes the cache hold 1970 and say it stays current until `until`.
    fn plant_epoch(until: Option<Instant>) {
        CACHE.with(|cache| {
            cache.set(Cached {
                secs: 0,
                date: format_http_date(0),
            })
        });
        CURRENT_UNTIL.with(|current| current.set(until));
    }

    #[test]
    fn a_pinned_section_reads_no_clock_until_its_second_ends() {
        let now = Instant::now();
        plant_epoch(Some(now + Duration::from_secs(3600)));
        {
            let _pinned = LoopDate::pin(now);
            // The planted second is "current": the cached date is used as is.
            assert_eq!(&http_date(), EPOCH_DATE);
        }
        // Outside the section every response reads the clock.
        let date = http_date();
        assert!(current(&date), "{date:?}");
    }

    #[test]
    fn pinning_past_the_end_of_the_cached_second_reads_the_clock() {
        let now = Instant::now();
        plant_epoch(Some(now));
        let _pinned = LoopDate::pin(now);
        let date = http_date();
        assert!(current(&date), "{date:?}");
        plant_epoch(None);
        let _again = LoopDate::pin(now);
        let date = http_date();
        assert!(current(&date), "{date:?}");
    }

    #[test]
    fn a_pinned_date_stays_current_for_at_most_a_second() {
        let now = Instant::now();
        plant_epoch(None);
        drop(LoopDate::pin(now));
        let until = CURRENT_UNTIL.with(Cell::get).unwrap();
        assert!(until > now && until <= now + Duration::from_secs(1));
    }

    #[test]
    fn formats_imf_fixdate() {
        assert_eq!(
            &format_http_date(784_111_777),
            b"Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(&format_http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            &format_http_date(253_402_300_799),
            b"Fri, 31 Dec 9999 23:59:59 GMT"
        );
        assert_eq!(
            &format_http_date(u64::MAX / 2),
            b"Fri, 31 Dec 9999 23:59:59 GMT"
        );
    }

    #[test]
    fn current_date_matches_clock() {
        let before = SystemTime::now();
        let date = String::from_utf8(http_date().to_vec()).unwrap();
        let after = SystemTime::now();
        assert_eq!(date.len(), HTTP_DATE_LEN);
        let parsed = httpdate::parse_http_date(&date).unwrap();
        let floor = |t: SystemTime| {
            UNIX_EPOCH + Duration::from_secs(t.duration_since(UNIX_EPOCH).unwrap().as_secs())
        };
        assert!(floor(before) <= parsed && parsed <= floor(after), "{date}");
    }

    #[test]
    fn cached_per_second_and_per_thread() {
        // Two reads in the same second agree; retry if a second boundary
        // falls between them.
        for _ in 0..3 {
            let a = http_date();
            let b = http_date();
            if a == b {
                let other = std::thread::spawn(http_date).join().unwrap();
                assert!(current(&other), "{other:?}");
                return;
            }
        }
        panic!("date changed on every read");
    }
}

//! The cached value of the `Date` response header.
//!
//! Every response carries `Date` (RFC 9110 §6.6.1) in IMF-fixdate form,
//! which only changes once a second. Each worker thread keeps the formatted
//! string of the current second and reformats it only when the second
//! changes, so a response pays for one clock read and a 29-byte copy.

use std::cell::Cell;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) const HTTP_DATE_LEN: usize = 29;

thread_local! {
    /// (Unix second, its IMF-fixdate); `u64::MAX` means "not yet formatted".
    static CACHE: Cell<(u64, [u8; HTTP_DATE_LEN])> = const { Cell::new((u64::MAX, [0; HTTP_DATE_LEN])) };
}

/// Calls `f` with the IMF-fixdate of the current second (ASCII, 29 bytes),
/// e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) fn with_http_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (cached_secs, mut date) = CACHE.with(Cell::get);
    if cached_secs != secs {
        date = format_http_date(secs);
        CACHE.with(|cache| cache.set((secs, date)));
    }
    // `f` gets a copy, so it may call back into this module freely.
    f(&date)
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
        let date = with_http_date(|d| String::from_utf8(d.to_vec()).unwrap());
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
            let a = with_http_date(<[u8]>::to_vec);
            let b = with_http_date(<[u8]>::to_vec);
            if a == b {
                let other = std::thread::spawn(|| with_http_date(<[u8]>::to_vec))
                    .join()
                    .unwrap();
                assert_eq!(other.len(), HTTP_DATE_LEN);
                // Nested use is fine: the callback gets a copy.
                with_http_date(|outer| {
                    with_http_date(|inner| assert_eq!(outer.len(), inner.len()))
                });
                return;
            }
        }
        panic!("date changed on every read");
    }
}

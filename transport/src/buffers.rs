//! A per-thread pool of byte buffers: buffers the transport has finished
//! sending are kept (up to a bound) and handed out again for the next
//! response, so a busy keep-alive connection does not allocate per request.

use std::cell::RefCell;

/// Buffers larger than this are not kept.
const MAX_KEPT_CAPACITY: usize = 64 * 1024;
/// At most this many buffers are kept per thread.
const MAX_KEPT: usize = 64;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for at least `capacity` bytes: from this
/// thread's pool if one fits, else newly allocated.
pub fn take(capacity: usize) -> Vec<u8> {
    let reused = POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        // The buffer given back last usually fits: the next answer is
        // much like the one just sent.
        if pool.last()?.capacity() >= capacity {
            return pool.pop();
        }
        let i = pool.iter().rposition(|b| b.capacity() >= capacity)?;
        Some(pool.swap_remove(i))
    });
    reused.unwrap_or_else(|| Vec::with_capacity(capacity))
}

/// Gives a buffer back to this thread's pool (dropped if the pool is full
/// or the buffer is large).
pub fn give(mut buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > MAX_KEPT_CAPACITY {
        return;
    }
    buf.clear();
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < MAX_KEPT {
            pool.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_and_big_ones_do_not() {
        let mut a = take(100);
        a.extend_from_slice(b"hello");
        let ptr = a.as_ptr();
        give(a);
        let b = take(50);
        assert_eq!(b.as_ptr(), ptr, "the pooled buffer is reused");
        assert!(b.is_empty());
        give(Vec::with_capacity(MAX_KEPT_CAPACITY + 1));
        assert!(take(MAX_KEPT_CAPACITY + 1).capacity() > MAX_KEPT_CAPACITY);
    }
}

//! Per-thread recycling of what every request head needs, so that a worker
//! serving keep-alive requests stops allocating once it is warm.
//!
//! * The head's bytes: each complete head is copied into a per-thread arena
//!   block, with the table of where its header fields are right after it,
//!   and handed out as one [`Bytes`]; the target, path, query and header
//!   values of the request are slices of it. Once every request cut
//!   from a block has been dropped, the block is reused from its start
//!   ([`BytesMut::try_reclaim`]); while some are still alive (pipelined
//!   requests, a handler that kept its request or moved it to another
//!   thread), a fresh block is allocated and the old one is freed with its
//!   last request.
//! * The header map (boxed, so that a request without one stays small): a
//!   [`Request`](crate::Request) gives its map back (cleared, capacity
//!   kept) when it is dropped, and the next one is taken from here.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;

use crate::fields;

/// Size of an arena block; a larger head gets a block of its own size.
const BLOCK: usize = 16 * 1024;

/// Most header maps kept per thread.
const MAX_POOLED_MAPS: usize = 64;

/// Maps that grew beyond this many fields are not kept: one unusual request
/// should not pin a large map for the thread's lifetime.
const MAX_POOLED_CAPACITY: usize = 64;

/// A new map has room for this many fields (more if the head has more), so
/// that it rarely has to grow once recycled.
const MIN_NEW_CAPACITY: usize = 16;

thread_local! {
    static ARENA: RefCell<BytesMut> = RefCell::new(BytesMut::new());
    // Boxed: the maps are handed out boxed, and kept that way.
    #[allow(clippy::vec_box)]
    static HEADER_MAPS: RefCell<Vec<Box<HeaderMap>>> = const { RefCell::new(Vec::new()) };
}

/// Copies `head` into this thread's arena, followed by the table of its
/// header `fields` (slices of `head`; see [`fields::entry`]) and where the
/// table starts, and returns the copy.
pub(crate) fn share_head(head: &[u8], fields: &[httparse::Header<'_>]) -> Bytes {
    let base = head.as_ptr() as usize;
    let offset = |part: &[u8]| (part.as_ptr() as usize - base) as u32;
    let len = head.len() + fields.len() * fields::ENTRY + fields::TABLE_START;
    ARENA.with_borrow_mut(|arena| {
        if !arena.try_reclaim(len) {
            *arena = BytesMut::with_capacity(len.max(BLOCK));
        }
        arena.extend_from_slice(head);
        for field in fields {
            let name = field.name.as_bytes();
            arena.extend_from_slice(&fields::entry([
                offset(name),
                name.len() as u32,
                offset(field.value),
                field.value.len() as u32,
            ]));
        }
        arena.extend_from_slice(&(head.len() as u32).to_ne_bytes());
        arena.split().freeze()
    })
}

/// Marks this thread as one that serves connections (a worker, when it
/// makes a connection's protocol): from now on it keeps the header maps
/// dropped on it for later requests. Other threads (a handler's, an
/// application runtime's) make and drop maps without keeping any.
pub(crate) fn keep_header_maps() {
    HEADER_MAPS.with_borrow_mut(|pool| {
        if pool.capacity() == 0 {
            pool.reserve_exact(MAX_POOLED_MAPS);
        }
    });
}

/// An empty header map with room for `fields` fields, recycled if this
/// thread keeps any.
pub(crate) fn header_map(fields: usize) -> Box<HeaderMap> {
    let recycled = HEADER_MAPS.with_borrow_mut(Vec::pop);
    match recycled {
        Some(mut map) => {
            map.reserve(fields);
            map
        }
        None => Box::new(HeaderMap::with_capacity(fields.max(MIN_NEW_CAPACITY))),
    }
}

/// Gives a header map back for a later request, if this thread serves
/// connections (see [`keep_header_maps`]; a thread a handler moved its
/// request to has no use for it).
pub(crate) fn recycle_header_map(mut map: Box<HeaderMap>) {
    let capacity = map.capacity();
    if capacity == 0 || capacity > MAX_POOLED_CAPACITY {
        return;
    }
    map.clear();
    // During thread teardown the pool may be gone; the map is then dropped.
    let _ = HEADER_MAPS.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.capacity() > 0 && pool.len() < MAX_POOLED_MAPS {
            pool.push(map);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_block_is_reused_once_its_slices_are_dropped() {
        ARENA.with_borrow_mut(|arena| *arena = BytesMut::new());
        let first = share_head(b"GET / HTTP/1.1\r\n\r\n", &[]);
        let start = first.as_ptr();
        drop(first);
        // Walk through the rest of the block and past its end.
        let mut last = start;
        for _ in 0..(2 * BLOCK / 22) {
            let copy = share_head(b"GET / HTTP/1.1\r\n\r\n", &[]);
            assert_eq!(&copy[..18], b"GET / HTTP/1.1\r\n\r\n");
            last = copy.as_ptr();
        }
        // The last head went back to the block's start, not to a new block.
        assert!(last < start.wrapping_add(BLOCK));
        assert!(last >= start);
    }

    #[test]
    fn arena_allocates_while_slices_are_alive() {
        ARENA.with_borrow_mut(|arena| *arena = BytesMut::new());
        let kept = share_head(&[b'a'; 100], &[]);
        let mut copies = Vec::new();
        for _ in 0..(2 * BLOCK / 100) {
            copies.push(share_head(&[b'b'; 100], &[]));
        }
        assert_eq!(&kept[..100], &[b'a'; 100][..]);
        assert!(copies.iter().all(|c| c[..100] == [b'b'; 100]));
        let big = share_head(&vec![b'c'; 3 * BLOCK], &[]);
        assert_eq!(big.len(), 3 * BLOCK + fields::TABLE_START);
    }

    #[test]
    fn only_threads_that_serve_connections_keep_header_maps() {
        std::thread::spawn(|| {
            // A handler's thread: making a map (a response's fields, a
            // request's map built lazily) does not make it keep any.
            let mut map = header_map(4);
            map.append(http::header::HOST, "h".parse().unwrap());
            recycle_header_map(map);
            assert_eq!(HEADER_MAPS.with_borrow(Vec::len), 0);
            assert_eq!(HEADER_MAPS.with_borrow(Vec::capacity), 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn header_maps_come_back_empty() {
        keep_header_maps();
        let mut map = header_map(2);
        map.append(http::header::HOST, "h".parse().unwrap());
        let pooled = HEADER_MAPS.with_borrow(Vec::len);
        recycle_header_map(map);
        assert_eq!(HEADER_MAPS.with_borrow(Vec::len), pooled + 1);
        let map = header_map(2);
        assert_eq!(HEADER_MAPS.with_borrow(Vec::len), pooled);
        assert!(map.is_empty());
        assert!(map.capacity() >= MIN_NEW_CAPACITY);
        // A map that grew large, or an empty one, is not kept.
        recycle_header_map(Box::new(HeaderMap::with_capacity(4 * MAX_POOLED_CAPACITY)));
        recycle_header_map(Box::default());
        assert_eq!(HEADER_MAPS.with_borrow(Vec::len), pooled);
    }
}

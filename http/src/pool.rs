//! Per-thread recycling of what every request head needs, so that a worker
//! serving keep-alive requests stops allocating once it is warm.
//!
//! Each complete head is copied into a per-thread arena block and handed out
//! as one [`Bytes`]; the target, path, query and header values of the
//! request are slices of it. Once every request cut from a block has been
//! dropped, the block is reused from its start ([`BytesMut::try_reclaim`]);
//! while some are still alive (pipelined requests, a handler that kept its
//! request or moved it to another thread), a fresh block is allocated and
//! the old one is freed with its last request.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};

/// Size of an arena block; a larger head gets a block of its own size.
const BLOCK: usize = 16 * 1024;

thread_local! {
    static ARENA: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// Copies `head` into this thread's arena and returns the copy.
pub(crate) fn share(head: &[u8]) -> Bytes {
    ARENA.with_borrow_mut(|arena| {
        if !arena.try_reclaim(head.len()) {
            *arena = BytesMut::with_capacity(head.len().max(BLOCK));
        }
        arena.extend_from_slice(head);
        arena.split().freeze()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_block_is_reused_once_its_slices_are_dropped() {
        ARENA.with_borrow_mut(|arena| *arena = BytesMut::new());
        let first = share(b"GET / HTTP/1.1\r\n\r\n");
        let start = first.as_ptr();
        drop(first);
        // Walk through the rest of the block and past its end.
        let mut last = start;
        for _ in 0..(2 * BLOCK / 18) {
            let copy = share(b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(&copy[..], b"GET / HTTP/1.1\r\n\r\n");
            last = copy.as_ptr();
        }
        // The last head went back to the block's start, not to a new block.
        assert!(last < start.wrapping_add(BLOCK));
        assert!(last >= start);
    }

    #[test]
    fn arena_allocates_while_slices_are_alive() {
        ARENA.with_borrow_mut(|arena| *arena = BytesMut::new());
        let kept = share(&[b'a'; 100]);
        let mut copies = Vec::new();
        for _ in 0..(2 * BLOCK / 100) {
            copies.push(share(&[b'b'; 100]));
        }
        assert_eq!(&kept[..], &[b'a'; 100][..]);
        assert!(copies.iter().all(|c| c[..] == [b'b'; 100]));
        let big = share(&vec![b'c'; 3 * BLOCK]);
        assert_eq!(big.len(), 3 * BLOCK);
    }
}

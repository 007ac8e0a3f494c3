//! podtap's global allocator: the system allocator, except that blocks of `HUGE` bytes or more are
//! mapped without reserving memory (`MAP_NORESERVE`).
//!
//! Why: decoders of wire formats size a collection from a count read off the wire before reading a
//! single element (the `kafka-protocol` crate does it for every array). A forged count in a message
//! of a few bytes then asks for hundreds of GiB; the system allocator is refused (the kernel's
//! heuristic overcommit turns down requests larger than memory) and Rust aborts the process: one
//! packet would stop the sensor. A mapping that reserves nothing costs nothing until it is written;
//! the decoder stops at the end of the message having touched a page or two, and the mapping is
//! returned. podtap's own allocations are far below `HUGE`. (Under `vm.overcommit_memory = 2` the
//! kernel refuses such a mapping as well; kubelet sets 1, under which no request is refused at all.)

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    ptr::null_mut,
};

thread_local! {
    /// Bytes allocated minus bytes freed by this thread: what a data structure built on one thread
    /// costs (the metadata store's bytes per pod). A plain `Cell` without destructor, so the
    /// allocator can touch it at any time; no atomic on the allocation path.
    static THREAD_NET: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = THREAD_NET.try_with(|n| n.set(n.get().wrapping_add(delta)));
}

/// Net heap bytes this thread has allocated so far (see `THREAD_NET`); differences between two
/// reads measure what was built in between.
#[must_use]
pub fn thread_net_allocated() -> isize {
    THREAD_NET.try_with(Cell::get).unwrap_or(0)
}

fn signed(n: usize) -> isize {
    isize::try_from(n).unwrap_or(isize::MAX)
}

/// See the module comment.
pub struct Allocator;

/// Blocks at least this large are mapped (with the page alignment `mmap` gives).
const HUGE: usize = 64 << 20;
const PAGE: usize = 4096;

fn is_huge(size: usize, align: usize) -> bool {
    size >= HUGE && align <= PAGE
}

fn map(size: usize) -> *mut u8 {
    // SAFETY: a fresh anonymous private mapping; no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        null_mut()
    } else {
        p.cast()
    }
}

// SAFETY: every block is either the system allocator's (below `HUGE`) or a mapping of exactly its
// layout's size (at or above it); `dealloc` and `realloc` tell them apart by the same layout test.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(signed(layout.size()));
        if is_huge(layout.size(), layout.align()) {
            map(layout.size())
        } else {
            // SAFETY: the caller's layout contract, passed on.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(signed(layout.size()));
        if is_huge(layout.size(), layout.align()) {
            // Anonymous mappings are zero-filled.
            map(layout.size())
        } else {
            // SAFETY: the caller's layout contract, passed on.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-signed(layout.size()));
        if is_huge(layout.size(), layout.align()) {
            // SAFETY: `ptr` is a mapping of `layout.size()` bytes made by `map`.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            // SAFETY: `ptr` came from the system allocator with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old_huge = is_huge(layout.size(), layout.align());
        let new_huge = is_huge(new_size, layout.align());
        match (old_huge, new_huge) {
            (false, false) | (true, true) => {
                count(signed(new_size).wrapping_sub(signed(layout.size())));
            }
            // alloc + dealloc below count themselves.
            _ => {}
        }
        match (old_huge, new_huge) {
            // SAFETY: a system block resized by the system allocator.
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            (true, true) => {
                // SAFETY: `ptr` is a mapping of `layout.size()` bytes; the kernel moves it.
                let p = unsafe {
                    libc::mremap(ptr.cast(), layout.size(), new_size, libc::MREMAP_MAYMOVE)
                };
                if p == libc::MAP_FAILED {
                    null_mut()
                } else {
                    p.cast()
                }
            }
            _ => {
                // SAFETY: `new_size` is non-zero and, rounded to the alignment, fits (the caller's
                // contract for `realloc`).
                let new_layout =
                    unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
                // SAFETY: a valid layout, as above.
                let new = unsafe { self.alloc(new_layout) };
                if !new.is_null() {
                    // SAFETY: both blocks are live and at least `min` bytes long; they are distinct.
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                new
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_forged_huge_capacity_is_mapped_not_refused() {
        // 2^31 elements of 72 bytes: 144 GiB, more than any test machine has.
        let mut v: Vec<[u8; 72]> = Vec::with_capacity(1 << 31);
        v.push([1; 72]);
        v.push([2; 72]);
        assert_eq!(v[1][0], 2);
        v.shrink_to_fit();
        assert_eq!(v.len(), 2);
        let mut w: Vec<u8> = Vec::with_capacity(HUGE_TEST);
        w.resize(10, 7);
        w.reserve(2 * HUGE_TEST);
        assert_eq!(w, vec![7; 10]);
    }

    const HUGE_TEST: usize = super::HUGE;
}

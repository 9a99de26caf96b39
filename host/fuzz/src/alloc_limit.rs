//! The targets' allocator: the system's, refusing any single allocation
//! larger than [`MAX_ALLOCATION`] by aborting with a message, so an input
//! that makes a decoder reserve memory without bound is a finding at once
//! (libFuzzer's own `-malloc_limit_mb` needs a sanitizer's allocator, which
//! stable Rust does not have; its `-rss_limit_mb` still bounds the total).

use std::alloc::{GlobalAlloc, Layout, System};

/// Largest single allocation a target may make: 1 GiB.
pub const MAX_ALLOCATION: usize = 1 << 30;

/// [`System`], with the [`MAX_ALLOCATION`] bound.
pub struct Limited;

fn refuse(size: usize) -> ! {
    // No allocation here: write the message with a fixed buffer.
    let mut msg =
        *b"batpak-fuzz: an allocation of 0x0000000000000000 bytes, more than the 1 GiB limit\n";
    let digits = b"0123456789abcdef";
    for i in 0..16 {
        msg[32 + i] = digits[(size >> (60 - 4 * i)) & 0xf];
    }
    // SAFETY: writes a valid buffer to standard error.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
    }
    std::process::abort()
}

// SAFETY: every call is forwarded to `System` unchanged, or aborts.
unsafe impl GlobalAlloc for Limited {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOCATION {
            refuse(layout.size());
        }
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOCATION {
            refuse(layout.size());
        }
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MAX_ALLOCATION {
            refuse(new_size);
        }
        System.realloc(ptr, layout, new_size)
    }
}

//! Giving freed memory back to the system.
//!
//! glibc's allocator keeps freed memory in per-thread arenas, so one large list or apply leaves
//! the agent's resident size high long after the data is gone. On a 1 GB Raspberry Pi that
//! memory belongs to the pods: after big pieces of work the agent asks glibc to return it.

/// Returns free heap memory to the kernel (`malloc_trim`); a no-op on other C libraries.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

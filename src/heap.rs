//! Handing freed heap memory back to the operating system.

/// glibc keeps what a large one-off job (a configuration parse, a render of
/// 10,000 trunks, a burst of DNS lookups) freed, so RSS would stay at the peak;
/// this returns the free pages, so RSS follows what is live. Costs a walk of the
/// allocator's free lists: call it after such jobs, not per request.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; no pointers are touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

//! Settings of the host made once at start-up.

/// Raises the soft limits on open files (a descriptor per client and per
/// worker connection) and locked memory (io_uring rings on older kernels) to
/// the hard limits.
pub(crate) fn raise_limits() {
    for resource in [libc::RLIMIT_NOFILE, libc::RLIMIT_MEMLOCK] {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: plain getrlimit/setrlimit on a local struct.
        unsafe {
            if libc::getrlimit(resource, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
                limit.rlim_cur = limit.rlim_max;
                libc::setrlimit(resource, &limit);
            }
        }
    }
}

/// The soft limit on open files (after [`raise_limits`], the hard one).
pub(crate) fn open_file_limit() -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain getrlimit on a local struct.
    match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } {
        0 => usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX),
        _ => 1024,
    }
}

/// Turns transparent huge pages off for this process. Memory is then
/// resident a 4 KiB page at a time, not 2 MiB: with thousands of idle
/// connections each touching a little memory, huge pages would make most
/// of the resident memory untouched bytes. Affects only this process.
pub fn no_huge_pages() {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

/// Gives memory this thread freed back to the system. The allocator keeps
/// freed pages a while for reuse and gives them back only when it is next
/// busy, so a core that served a burst and fell quiet would hold its peak
/// for good; called now and then from each core. `all`: every page it can
/// (a millisecond or more with a large heap, so only on a quiet core);
/// otherwise what is quick to give.
pub(crate) fn return_free_memory(all: bool) {
    // SAFETY: mi_collect only walks this thread's heap; it is harmless if
    // mimalloc is not the global allocator (nothing is there to collect).
    unsafe { libmimalloc_sys::mi_collect(all) };
}

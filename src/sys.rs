//! Checks and settings of the host made once at start-up.

/// Fails with a clear message where io_uring can't be used (old kernels,
/// seccomp profiles that block it, `kernel.io_uring_disabled`): glommio
/// would panic at executor start instead.
pub fn check_io_uring() -> Result<(), String> {
    // struct io_uring_params is 120 bytes; zeroed asks for defaults.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup(entries, params) with a writable params buffer.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!(
            "io_uring is not available: {e} (hiku needs Linux 5.8+ with io_uring allowed; \
             check kernel.io_uring_disabled and the container's seccomp profile)"
        ));
    }
    // SAFETY: closing the ring fd we just opened.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

/// Raises the soft limits on open files (a descriptor per client and per
/// worker connection) and locked memory (io_uring rings) to the hard limits.
pub fn raise_limits() {
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

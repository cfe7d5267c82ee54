//! What this host and this program are: the boot, our own path, the local time.

static EXE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Notes the path of our own program, at start-up (before any chdir): on OpenBSD
/// `current_exe()` reckons it from `argv[0]` and the current directory, which the
/// daemon leaves. Debug builds (the test suites') take `ETRND_TEST_EXE` instead
/// when it is set: the launcher through which `make cross` runs a router's build
/// under qemu-user, where the program itself cannot be executed directly.
pub fn remember_exe() {
    #[cfg(debug_assertions)]
    if let Some(p) = std::env::var_os("ETRND_TEST_EXE") {
        let _ = EXE.set(p.into());
        return;
    }
    if let Ok(p) = std::env::current_exe() {
        let _ = EXE.set(p);
    }
}

/// The path of our own program, as noted at start-up (or as asked now if it was
/// not).
pub fn exe() -> std::io::Result<std::path::PathBuf> {
    match EXE.get() {
        Some(p) => Ok(p.clone()),
        None => std::env::current_exe(),
    }
}

/// An id of this boot: Linux's `boot_id`; the BSDs' `kern.boottime` (the moment of
/// the boot, which a later boot cannot share). `None` where neither exists.
pub fn boot_id() -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        let s = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let s = s.trim();
        (!s.is_empty() && s.len() < 100).then(|| s.to_string())
    }
    #[cfg(any(
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly"
    ))]
    {
        let mut mib = [libc::CTL_KERN, libc::KERN_BOOTTIME];
        // SAFETY: timeval is plain old data; zeroed is valid.
        let mut tv: libc::timeval = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::timeval>();
        // SAFETY: the name, the buffer and its length are valid for the call.
        let rc = unsafe {
            libc::sysctl(
                mib.as_mut_ptr(),
                2,
                (&mut tv as *mut libc::timeval).cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        (rc == 0 && tv.tv_sec > 0).then(|| format!("{}.{:06}", tv.tv_sec, tv.tv_usec))
    }
    #[cfg(not(any(
        target_os = "linux",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly"
    )))]
    {
        None
    }
}

/// Month (0–11), day of the month, hour, minute and second of `unix` in local time.
///
/// The C library is asked only for the zone's offset, at a moment a 32-bit
/// `time_t` holds (after January 2038 the offset of then); the fields are reckoned
/// in 64 bits, so the log's time stamps never wrap.
pub fn local_time(unix: u64) -> [u32; 5] {
    // Typed by localtime_r: libc::time_t is deprecated on musl (it is to be 64-bit).
    let probe = unix.min(i32::MAX as u64) as _;
    // SAFETY: tm is plain old data; zeroed is a valid initial value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call.
    let known = !unsafe { libc::localtime_r(&probe, &mut tm) }.is_null();
    // c_long: 64 bits here, 32 on 32-bit targets.
    #[allow(clippy::useless_conversion)]
    let offset = if known { i64::from(tm.tm_gmtoff) } else { 0 };
    crate::vocab::date::fields(unix as i64 + offset)
}

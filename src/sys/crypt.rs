//! crypt(3), for the auth helper's checks of stored password hashes.

// glibc keeps crypt(3) in libcrypt (libxcrypt); musl has it in libc, and a
// `-lcrypt` where no libcrypt exists fails the link of every static router build.
#[cfg_attr(
    any(
        all(target_os = "linux", target_env = "gnu"),
        target_os = "freebsd",
        target_os = "netbsd"
    ),
    link(name = "crypt")
)]
extern "C" {
    #[link_name = "crypt"]
    fn c_crypt(key: *const libc::c_char, salt: *const libc::c_char) -> *mut libc::c_char;
}

/// crypt(3) of `password` under `setting`. Not reentrant: called only in the auth
/// helper (one thread) and in one test.
pub fn crypt(password: &[u8], setting: &str) -> Option<String> {
    let key = std::ffi::CString::new(password).ok()?;
    let salt = std::ffi::CString::new(setting).ok()?;
    // SAFETY: both are NUL-terminated; crypt returns NULL or a pointer to a static
    // NUL-terminated buffer, copied out at once.
    let out = unsafe { c_crypt(key.as_ptr(), salt.as_ptr()) };
    if out.is_null() {
        return None;
    }
    // SAFETY: a non-NULL result is a NUL-terminated string.
    let s = unsafe { std::ffi::CStr::from_ptr(out) }.to_str().ok()?;
    // libxcrypt's failure tokens start with '*'.
    (!s.starts_with('*')).then(|| s.to_string())
}

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

/// crypt(3) is not reentrant (one static buffer): calls take turns.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// crypt(3) of `password` under `setting`. Calls take turns (crypt(3) keeps its
/// result in one static buffer; the auth helper has one thread, the tests many).
pub fn crypt(password: &[u8], setting: &str) -> Option<String> {
    let key = std::ffi::CString::new(password).ok()?;
    let salt = std::ffi::CString::new(setting).ok()?;
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
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

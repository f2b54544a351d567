//! A small tmpfs a test can fill up and free again: a full disk as users meet it.
//!
//! Mounting needs root (CI runs the tests as root). Without it, [`Tmpfs::mount`] fails the test
//! saying so: a test that needs a full disk must not pass without one.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A tmpfs mounted on a fresh directory; unmounted when dropped, a failed test included.
pub struct Tmpfs {
    dir: tempfile::TempDir,
    target: CString,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` bytes (rounded up to pages by the kernel).
    pub fn mount(size: u64) -> Tmpfs {
        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            panic!(
                "this test needs root: it mounts a small tmpfs and fills it (mount -t tmpfs). \
                 Run it as root, as CI does (e.g. `sudo -E cargo test -p spotify-gateway --test \
                 file_store_faults`)"
            );
        }
        let dir = tempfile::tempdir().expect("mount point");
        let target = CString::new(dir.path().as_os_str().as_bytes()).expect("path without NUL");
        let options = CString::new(format!("size={size}")).expect("options");
        // SAFETY: every pointer is a NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        if rc != 0 {
            panic!(
                "mount -t tmpfs on {} failed: {} (root without CAP_SYS_ADMIN, as in some \
                 containers, cannot mount)",
                dir.path().display(),
                std::io::Error::last_os_error()
            );
        }
        Tmpfs { dir, target }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the file system refuses (ENOSPC); returns its path.
    pub fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        loop {
            if let Err(e) = file.write_all(&chunk) {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filling: {e}");
                return path;
            }
        }
    }

    /// Bytes available on the file system (`df`'s "available").
    pub fn available(&self) -> u64 {
        // SAFETY: statvfs(3) writes only into `stats`, which we own.
        let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(self.target.as_ptr(), &mut stats) };
        assert_eq!(rc, 0, "statvfs: {}", std::io::Error::last_os_error());
        stats.f_bavail * stats.f_frsize
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // SAFETY: `target` is a NUL-terminated string we own. A process still holding a file
        // there (a gateway a panic left behind) makes the plain unmount fail: detach then.
        unsafe {
            if libc::umount2(self.target.as_ptr(), 0) != 0 {
                libc::umount2(self.target.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}

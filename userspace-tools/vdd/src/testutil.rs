//! Helpers shared by vdd's unit tests and its integration tests (`tests/`), which cannot see
//! `#[cfg(test)]` items of the library.

use std::path::PathBuf;

/// A test's scratch directory, removed when dropped: at the end of the test and also when the
/// test fails (the panic unwinds through the drop).
pub struct TmpDir(PathBuf);

impl TmpDir {
    /// `{temp}/{prefix}-{pid}-{name}-{n}`, empty.
    pub fn new(prefix: &str, name: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "{prefix}-{}-{name}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Self(d)
    }
}

impl std::ops::Deref for TmpDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TmpDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

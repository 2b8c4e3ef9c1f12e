pub use vdd::testutil::TmpDir;

pub fn tmpdir(name: &str) -> TmpDir {
    TmpDir::new("vdd-it", name)
}

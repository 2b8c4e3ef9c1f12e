//! sd_notify: the one implementation lives in `vd_sys::notify` (vd-ivshmem-server uses it too).

pub use vd_sys::notify::notify;

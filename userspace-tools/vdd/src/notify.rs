//! systemd readiness (`Type=notify`) with the `sd-notify` crate. It sends to a path in
//! `$NOTIFY_SOCKET`, which is what systemd passes; an abstract-namespace `@name` (which
//! sd_notify(3) also allows) is not supported by `sd-notify` 0.4.5 and fails with a logged error.

use sd_notify::NotifyState;

/// Whether the process runs under a service manager that wants notifications.
fn wanted() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// `READY=1` and `STATUS=status`; `Ok(false)` when `NOTIFY_SOCKET` is not set.
pub fn ready(status: &str) -> std::io::Result<bool> {
    sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(status)])?;
    Ok(wanted())
}

/// `STOPPING=1`; `Ok(false)` when `NOTIFY_SOCKET` is not set.
pub fn stopping() -> std::io::Result<bool> {
    sd_notify::notify(false, &[NotifyState::Stopping])?;
    Ok(wanted())
}

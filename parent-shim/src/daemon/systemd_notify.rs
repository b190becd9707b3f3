//! `sd_notify`: the daemon tells systemd (`Type=notify`) when it is ready and when it stops.

use serde_json::json;

use crate::report::event_log::emit;

/// Tells systemd (`Type=notify`) about a state change, if it is listening.
pub fn sd_notify(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() else { return };
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    let sent = match bytes.strip_prefix(b"@") {
        Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr)),
        None => socket.send_to(state.as_bytes(), &path),
    };
    if let Err(e) = sent {
        emit("warn", "sd_notify_failed", json!({"error": e.to_string()}));
    }
}

//! systemd's readiness notification (`sd_notify(3)`, `READY=1`): under `Type=notify`,
//! `systemctl start ezimg-serve` returns once the PXE tree and `dnsmasq.conf` are written and
//! the socket is bound, so the units ordered after it (ezimg-dnsmasq) find the file. Without
//! `$NOTIFY_SOCKET` (not under systemd) it does nothing.

use std::os::unix::net::UnixDatagram;

use anyhow::{Context, Result};

/// Send `READY=1` to `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
pub fn ready() -> Result<()> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let sock = UnixDatagram::unbound().context("creating a socket for NOTIFY_SOCKET")?;
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str());
    let sent = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)
                .context("NOTIFY_SOCKET: an abstract socket name")?;
            sock.send_to_addr(b"READY=1", &addr)
        }
        None => sock.send_to(b"READY=1", &target),
    };
    sent.with_context(|| format!("notifying systemd at {}", target.to_string_lossy()))?;
    Ok(())
}

//! The local admin token file: at start the node makes sure its own user holds an admin token
//! for it, in a file only that user can read; `alink-cli` uses it by default when it talks to
//! that node on this machine. Another user of the machine, or a web page, cannot read it.
//!
//! The file is `<state dir>/tokens/<address key>.token` (mode 0600, directories 0700), where the
//! state dir is `$ALINK_STATE_DIR`, else `$XDG_STATE_HOME/aethrolink`, else
//! `~/.local/state/aethrolink`, and the address key is `loopback-<port>` for a node reachable on
//! loopback (bound to a loopback or unspecified address), else `<ip>-<port>`.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Why the token file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("no state directory: set ALINK_STATE_DIR, XDG_STATE_HOME or HOME")]
    NoStateDir,
    #[error("token file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("token file {path} can be read by other users (mode {mode:o}); it must be 0600")]
    TooOpen { path: String, mode: u32 },
}

/// Where node state for this user lives (`--state-dir`, env, XDG, home).
pub fn state_dir(explicit: Option<&Path>) -> Result<PathBuf, TokenFileError> {
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = env("ALINK_STATE_DIR") {
        return Ok(dir);
    }
    if let Some(dir) = env("XDG_STATE_HOME") {
        return Ok(dir.join("aethrolink"));
    }
    env("HOME").map(|h| h.join(".local/state/aethrolink")).ok_or(TokenFileError::NoStateDir)
}

/// The key of a node bound to `addr`.
pub fn address_key_of_bind(addr: SocketAddr) -> String {
    let ip = addr.ip();
    if ip.is_loopback() || ip.is_unspecified() {
        format!("loopback-{}", addr.port())
    } else {
        format!("{}-{}", ip_text(ip), addr.port())
    }
}

/// The key of the node a client reaches at `host:port` (`None`: not a node on this machine that
/// the file could be for — a DNS name other than localhost).
pub fn address_key_of_server(host: &str, port: u16) -> Option<String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return Some(format!("loopback-{port}"));
    }
    let ip: IpAddr = host.parse().ok()?;
    Some(address_key_of_bind(SocketAddr::new(ip, port)))
}

/// An IP as a file-name part (`:` of IPv6 as `_`).
fn ip_text(ip: IpAddr) -> String {
    ip.to_string().replace(':', "_")
}

/// The token file of `address_key` under `state_dir`.
pub fn token_path(state_dir: &Path, address_key: &str) -> PathBuf {
    state_dir.join("tokens").join(format!("{address_key}.token"))
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> TokenFileError + '_ {
    move |source| TokenFileError::Io { path: path.display().to_string(), source }
}

/// Reads the token in `path`: `None` if there is no file; refused if others could read it.
pub fn read_token(path: &Path) -> Result<Option<String>, TokenFileError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TokenFileError::TooOpen { path: path.display().to_string(), mode });
    }
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    Ok(Some(text.trim().to_owned()).filter(|t| !t.is_empty()))
}

/// Writes `token` to `path` atomically, readable by this user only (directories 0700).
pub fn write_token(path: &Path, token: &str) -> Result<(), TokenFileError> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_err(dir))?;
        // A directory made earlier with a wider mode is narrowed: the file's name says which
        // nodes exist, and nobody else needs to list it.
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let tmp = path.with_extension(format!("token.tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io_err(&tmp))?;
    file.write_all(format!("{token}\n").as_bytes()).and_then(|()| file.sync_all()).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_binds_and_servers_share_a_key() {
        let key = |s: &str| s.parse::<SocketAddr>().map(address_key_of_bind).unwrap_or_default();
        assert_eq!(key("127.0.0.1:7777"), "loopback-7777");
        assert_eq!(key("0.0.0.0:7777"), "loopback-7777");
        assert_eq!(key("[::1]:7777"), "loopback-7777");
        assert_eq!(key("192.168.1.5:80"), "192.168.1.5-80");
        assert_eq!(address_key_of_server("localhost", 7777).as_deref(), Some("loopback-7777"));
        assert_eq!(address_key_of_server("127.0.0.1", 7777).as_deref(), Some("loopback-7777"));
        assert_eq!(address_key_of_server("[::1]", 7777).as_deref(), Some("loopback-7777"));
        assert_eq!(address_key_of_server("[fe80::1]", 1).as_deref(), Some("fe80__1-1"));
        assert_eq!(address_key_of_server("example.com", 7777), None);
    }

    #[test]
    fn the_file_is_private_and_a_shared_one_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = token_path(dir.path(), "loopback-1");
        assert!(read_token(&path)?.is_none());
        write_token(&path, "alink_x")?;
        assert_eq!(std::fs::metadata(&path)?.mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(dir.path().join("tokens"))?.mode() & 0o777, 0o700);
        assert_eq!(read_token(&path)?.as_deref(), Some("alink_x"));
        write_token(&path, "alink_y")?;
        assert_eq!(read_token(&path)?.as_deref(), Some("alink_y"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        assert!(matches!(read_token(&path), Err(TokenFileError::TooOpen { .. })));
        Ok(())
    }
}

//! Node configuration: flags (each with an `ALINK_*` environment equivalent, same names as the
//! Go node where they overlap) and the registry YAML file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use aethrolink_actors::model::{JsonObject, LaunchSpec, TargetSource, TargetSpec};
use aethrolink_actors::registry::validate_target;
use aethrolink_actors::runtime::adapter_catalog;
use clap::{Parser, ValueEnum};
use serde::Deserialize;

/// Default registry file, used when `--registry` is not given (missing is fine).
pub const DEFAULT_REGISTRY: &str = "configs/registry.yaml";

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `alink-node` flags.
#[derive(Clone, Debug, Parser)]
#[command(name = "alink-node", version, about = "AethroLink node: routes tasks between local AI agent runtimes")]
pub struct NodeArgs {
    /// Address to bind.
    #[arg(long, env = "ALINK_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to bind (0 picks a free one; the bound address is printed on stdout).
    #[arg(long, env = "ALINK_PORT", default_value_t = 7777)]
    pub port: u16,
    /// SQLite database: `sqlite://./aethrolink.db`, `sqlite:///abs/path.db` or `sqlite::memory:`.
    #[arg(long, env = "ALINK_DATABASE", default_value = "sqlite://./aethrolink.db")]
    pub database: String,
    /// Directory for artifacts larger than the inline threshold.
    #[arg(long, env = "ALINK_ARTIFACT_DIR", default_value = "artifacts")]
    pub artifact_dir: PathBuf,
    /// Registry YAML file (default `configs/registry.yaml`; a missing default is fine, a missing
    /// explicit file is an error).
    #[arg(long, env = "ALINK_REGISTRY")]
    pub registry: Option<PathBuf>,
    /// Stable node id; when not given, the persisted one, else (a new node) one derived from the
    /// node's public key and persisted in the database.
    #[arg(long, env = "ALINK_NODE_ID")]
    pub node_id: Option<String>,
    /// Log format on stderr (`RUST_LOG` filters).
    #[arg(long, env = "ALINK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// Interval of peer target sync (Go duration; `0` disables).
    #[arg(long, env = "ALINK_PEER_SYNC_INTERVAL", default_value = "30s", value_parser = crate::duration::parse_duration)]
    pub peer_sync_interval: std::time::Duration,
    /// Go-compatibility mode: accept node-protocol requests (relayed tasks) from peers that do
    /// not sign them, as the Go node does. Off by default: unsigned callers are refused 401.
    #[arg(long, env = "ALINK_ALLOW_UNSIGNED_PEERS", value_parser = clap::builder::FalseyValueParser::new(), default_value = "false")]
    pub allow_unsigned_peers: bool,
    /// Accept node-protocol requests correctly signed by any node, not only by registered peers'
    /// pinned keys.
    #[arg(long, env = "ALINK_ACCEPT_FROM_ANY_NODE", value_parser = clap::builder::FalseyValueParser::new(), default_value = "false")]
    pub accept_from_any_node: bool,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "ALINK_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Artifacts up to this many bytes are stored inline in SQLite; larger ones as files.
    #[arg(long, env = "ALINK_ARTIFACT_INLINE_MAX", default_value_t = aethrolink_actors::artifacts::DEFAULT_INLINE_MAX)]
    pub artifact_inline_max: usize,
    /// Another name the node answers to in `Host` (repeatable; `name` or `name:port`). Loopback
    /// names and the bound address are always accepted; any other Host is refused 421 (DNS
    /// rebinding).
    #[arg(long = "allowed-host", env = "ALINK_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// A web origin (`http(s)://host[:port]`) allowed to call the API from a browser, with CORS
    /// grants (repeatable). Other foreign origins are refused 403; the node's own origin always works.
    #[arg(long = "allowed-origin", env = "ALINK_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// How long a runtime has to confirm a cancel before the node ends the task itself (ms).
    #[arg(long, env = "ALINK_CANCEL_GRACE_MS", default_value_t = 10_000)]
    pub cancel_grace_ms: u64,
    /// Longest a client may take to send a request head, from connecting (or, on a kept-alive
    /// connection, from the request's first byte) — Go duration; `0` disables.
    #[arg(long, env = "ALINK_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = crate::duration::parse_duration)]
    pub header_read_timeout: std::time::Duration,
    /// A kept-alive connection with no request in flight is closed after this (Go duration; `0`
    /// disables). A request being served, an SSE stream included, stops the clock.
    #[arg(long, env = "ALINK_IDLE_TIMEOUT", default_value = "60s", value_parser = crate::duration::parse_duration)]
    pub idle_timeout: std::time::Duration,
    /// HTTP connections open at once; a connection beyond is answered 503 and closed.
    #[arg(long, env = "ALINK_MAX_CONNECTIONS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// On shutdown, how long in-flight requests may take before every connection still open is
    /// dropped (Go duration).
    #[arg(long, env = "ALINK_SHUTDOWN_GRACE", default_value = "10s", value_parser = crate::duration::parse_duration)]
    pub shutdown_grace: std::time::Duration,
    /// Serve the HTTP API over TLS with this PEM certificate chain (leaf first); needs `--tls-key`.
    #[arg(long, env = "ALINK_TLS_CERT", value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, SEC1 or RSA) of `--tls-cert`; needs `--tls-cert`.
    #[arg(long, env = "ALINK_TLS_KEY", value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plaintext HTTP on a non-loopback address. Without it (or TLS) such a bind is refused.
    #[arg(long, env = "ALINK_INSECURE_PLAINTEXT", value_parser = clap::builder::FalseyValueParser::new(), default_value = "false")]
    pub insecure_plaintext: bool,
}

impl NodeArgs {
    /// Checks the `--allowed-host` and `--allowed-origin` entries.
    pub fn check_allowlists(&self) -> Result<(), ConfigError> {
        for host in &self.allowed_hosts {
            crate::api::guard::parse_allowed_host(host).map_err(ConfigError::Flag)?;
        }
        for origin in &self.allowed_origins {
            crate::api::guard::parse_allowed_origin(origin).map_err(ConfigError::Flag)?;
        }
        Ok(())
    }

    /// The listener's TLS configuration, read from `--tls-cert`/`--tls-key` (`None`: plaintext).
    pub fn tls(&self) -> Result<Option<crate::tls::TlsConfig>, ConfigError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(crate::tls::TlsConfig::from_pem_files(cert, key)?)),
            (None, None) => Ok(None),
            (Some(_), None) => Err(ConfigError::Flag("--tls-cert needs --tls-key (give both, or neither)".into())),
            (None, Some(_)) => Err(ConfigError::Flag("--tls-key needs --tls-cert (give both, or neither)".into())),
        }
    }

    /// The address to bind.
    pub fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let ip = if host == "localhost" { "127.0.0.1" } else { host };
        format!("{ip}:{}", self.port)
            .parse::<SocketAddr>()
            .or_else(|_| format!("[{ip}]:{}", self.port).parse())
            .map_err(|_| ConfigError::Flag(format!("--host '{}' is not an IP address", self.host)))
    }
}

/// Configuration errors; each names the file, line or flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("registry file {path}: {message}")]
    Registry { path: String, message: String },
    #[error("{0}")]
    Flag(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// Refuses plaintext HTTP on a non-loopback address unless the operator said so. Pure.
pub fn check_exposure(bound: SocketAddr, tls: bool, insecure_plaintext: bool) -> Result<(), ConfigError> {
    if bound.ip().is_loopback() || tls || insecure_plaintext {
        return Ok(());
    }
    Err(ConfigError::Flag(format!(
        "refusing to serve plaintext HTTP on non-loopback address {bound}: anyone on that network could read and \
         alter the traffic. Serve HTTPS with --tls-cert and --tls-key, bind to 127.0.0.1 (--host), or pass \
         --insecure-plaintext (ALINK_INSECURE_PLAINTEXT=true) if every host on that network is trusted"
    )))
}

/// The registry file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    /// Targets by id (`runtimes` is accepted as the historical name).
    #[serde(default, alias = "runtimes")]
    targets: BTreeMap<String, TargetEntry>,
}

/// One target in the registry file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetEntry {
    adapter: String,
    #[serde(default)]
    dialect: Option<String>,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    healthcheck: Option<String>,
    #[serde(default)]
    launch: LaunchSpec,
    #[serde(default)]
    defaults: JsonObject,
    #[serde(default)]
    capabilities: Vec<String>,
    /// `ask` (default), `allow` or `reject`: how agent permission requests are answered.
    #[serde(default)]
    permissions: Option<aethrolink_actors::model::PermissionPolicy>,
}

/// Loads the registry file. `explicit` is whether the path was given by the operator: a missing
/// explicit file is an error, a missing default file means "no file targets".
pub fn load_registry(path: &Path, explicit: bool) -> Result<Vec<TargetSpec>, ConfigError> {
    let display = path.display().to_string();
    let err = |message: String| ConfigError::Registry { path: display.clone(), message };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(Vec::new()),
        Err(e) => return Err(err(e.to_string())),
    };
    parse_registry(&text).map_err(err)
}

/// Parses registry YAML text into validated targets.
pub fn parse_registry(text: &str) -> Result<Vec<TargetSpec>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let file: RegistryFile = yaml_serde::from_str(text).map_err(|e| e.to_string())?;
    let mut targets = Vec::with_capacity(file.targets.len());
    for (id, entry) in file.targets {
        let spec = TargetSpec {
            target_id: id.clone(),
            adapter: entry.adapter,
            dialect: entry.dialect,
            endpoint: entry.endpoint,
            healthcheck: entry.healthcheck,
            launch: entry.launch,
            defaults: entry.defaults,
            capabilities: entry.capabilities,
            owner: "local".to_owned(),
            source: TargetSource::File,
            permissions: entry.permissions,
        };
        validate_target(&spec, &adapter_catalog()).map_err(|m| format!("targets.{id}: {m}"))?;
        targets.push(spec);
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets_and_names_line_and_field_on_error() {
        let ok = parse_registry(
            "targets:\n  echo:\n    adapter: loopback\n    capabilities: [demo.echo]\n    defaults: {a: 1}\n",
        );
        let Ok(targets) = ok else { panic!("{ok:?}") };
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].capabilities, vec!["demo.echo".to_string()]);
        let unknown = parse_registry("targets:\n  echo:\n    adapter: loopback\n    colour: red\n");
        assert!(matches!(&unknown, Err(e) if e.contains("colour") && e.contains("line 4")), "{unknown:?}");
        let bad_type = parse_registry("targets:\n  echo:\n    adapter: loopback\n    capabilities: 3\n");
        assert!(matches!(&bad_type, Err(e) if e.contains("capabilities") && e.contains("line")), "{bad_type:?}");
        let bad_adapter = parse_registry("targets:\n  x:\n    adapter: warp\n");
        assert!(matches!(&bad_adapter, Err(e) if e.contains("targets.x") && e.contains("warp")), "{bad_adapter:?}");
        assert!(parse_registry("runtimes:\n  y:\n    adapter: loopback\n").is_ok());
        assert_eq!(parse_registry("").map(|t| t.len()), Ok(0));
    }

    #[test]
    fn plaintext_off_loopback_needs_tls_or_the_flag() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap_or_else(|e| panic!("{s}: {e}"));
        assert!(check_exposure(addr("127.0.0.1:7777"), false, false).is_ok());
        assert!(check_exposure(addr("[::1]:7777"), false, false).is_ok());
        let refused = check_exposure(addr("0.0.0.0:7777"), false, false);
        assert!(
            matches!(&refused, Err(e) if e.to_string().contains("--insecure-plaintext") && e.to_string().contains("--tls-cert")),
            "{refused:?}"
        );
        assert!(check_exposure(addr("192.168.1.5:7777"), true, false).is_ok());
        assert!(check_exposure(addr("0.0.0.0:7777"), false, true).is_ok());
    }
}

//! Node configuration: flags (each with an `ALINK_*` environment equivalent, same names as the
//! Go node where they overlap) and the registry YAML file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use aethrolink_actors::model::{JsonObject, LaunchSpec, TargetSource, TargetSpec};
use aethrolink_actors::registry::{FieldStep, TargetError, validate_target};
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
    /// Port of the Aether gateway (gRPC, on `--host`; 0 picks a free one, printed on stdout
    /// after the HTTP address).
    #[arg(long, env = "ALINK_AETHER_PORT", default_value_t = 50051)]
    pub aether_port: u16,
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
    /// Go-compatibility mode: anonymous loopback callers may register targets that spawn a
    /// process (a launch command, env or cwd) and take over registry-file targets, as with the
    /// Go node. Off by default: that needs a token with the `agents:register` scope.
    #[arg(long, env = "ALINK_ALLOW_ANONYMOUS_REGISTER", value_parser = clap::builder::FalseyValueParser::new(), default_value = "false")]
    pub allow_anonymous_register: bool,
    /// Require a token on every request, also from loopback (off loopback it always is).
    #[arg(long, env = "ALINK_REQUIRE_AUTH", value_parser = clap::builder::FalseyValueParser::new(), default_value = "false")]
    pub require_auth: bool,
    /// The operator's admin key: presented as a bearer token (or the gateway's `x-api-key`) it
    /// has every right. Prefer `--admin-key-file` (a flag is visible in the process list).
    #[arg(long, env = "ALINK_ADMIN_KEY", hide_env_values = true, conflicts_with = "admin_key_file")]
    pub admin_key: Option<String>,
    /// A file holding the admin key (must not be readable by group or others).
    #[arg(long, env = "ALINK_ADMIN_KEY_FILE")]
    pub admin_key_file: Option<PathBuf>,
    /// Where the node keeps per-user state: the local admin token file (default
    /// `$XDG_STATE_HOME/aethrolink`, else `~/.local/state/aethrolink`).
    #[arg(long, env = "ALINK_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
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
    /// Serve the Aether gateway over TLS with this PEM certificate chain (leaf first); needs
    /// `--aether-tls-key`. With it the gateway is served off loopback too.
    #[arg(long, env = "ALINK_AETHER_TLS_CERT", value_name = "PEM", requires = "aether_tls_key")]
    pub aether_tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, SEC1 or RSA) of `--aether-tls-cert`; needs `--aether-tls-cert`.
    #[arg(long, env = "ALINK_AETHER_TLS_KEY", value_name = "PEM", requires = "aether_tls_cert")]
    pub aether_tls_key: Option<PathBuf>,
    /// Require gateway clients to present a certificate chained to this PEM CA (mTLS); needs
    /// `--aether-tls-cert`.
    #[arg(long, env = "ALINK_AETHER_TLS_CLIENT_CA", value_name = "PEM", requires = "aether_tls_cert")]
    pub aether_tls_client_ca: Option<PathBuf>,
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

    /// The admin key from `--admin-key` or `--admin-key-file` (whose mode is checked).
    pub fn admin_key(&self) -> Result<Option<String>, ConfigError> {
        use std::os::unix::fs::MetadataExt as _;
        let key = match (&self.admin_key, &self.admin_key_file) {
            (Some(key), _) => key.trim().to_owned(),
            (None, Some(path)) => {
                let shown = path.display();
                let meta =
                    std::fs::metadata(path).map_err(|e| ConfigError::Flag(format!("--admin-key-file {shown}: {e}")))?;
                if meta.mode() & 0o077 != 0 {
                    return Err(ConfigError::Flag(format!(
                        "--admin-key-file {shown}: readable by group or others (mode {:o}); chmod 600 it",
                        meta.mode() & 0o777
                    )));
                }
                std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::Flag(format!("--admin-key-file {shown}: {e}")))?
                    .trim()
                    .to_owned()
            }
            (None, None) => return Ok(None),
        };
        if key.len() < 16 {
            return Err(ConfigError::Flag("the admin key must be at least 16 characters".into()));
        }
        Ok(Some(key))
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
        self.addr_with_port(self.port)
    }

    /// The gateway's TLS configuration, read from `--aether-tls-*` (`None`: plaintext).
    pub fn aether_tls(&self) -> Result<Option<crate::tls::TlsConfig>, ConfigError> {
        match (&self.aether_tls_cert, &self.aether_tls_key) {
            (Some(cert), Some(key)) => {
                Ok(Some(crate::tls::TlsConfig::gateway(cert, key, self.aether_tls_client_ca.as_deref())?))
            }
            (None, None) if self.aether_tls_client_ca.is_some() => {
                Err(ConfigError::Flag("--aether-tls-client-ca needs --aether-tls-cert and --aether-tls-key".into()))
            }
            (None, None) => Ok(None),
            _ => Err(ConfigError::Flag(
                "--aether-tls-cert and --aether-tls-key go together (give both, or neither)".into(),
            )),
        }
    }

    /// The Aether gateway's address (`--host`, `--aether-port`).
    pub fn aether_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.addr_with_port(self.aether_port)
    }

    fn addr_with_port(&self, port: u16) -> Result<SocketAddr, ConfigError> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let ip = if host == "localhost" { "127.0.0.1" } else { host };
        format!("{ip}:{port}")
            .parse::<SocketAddr>()
            .or_else(|_| format!("[{ip}]:{port}").parse())
            .map_err(|_| ConfigError::Flag(format!("--host '{}' is not an IP address", self.host)))
    }
}

/// Configuration errors; each names the file, line or flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The registry file could not be read.
    #[error("registry file {path}: {message}")]
    Registry { path: String, message: String },
    /// The registry file was read, and is wrong at `issue`.
    #[error("registry file {path}: {issue}")]
    RegistryInvalid { path: String, issue: RegistryIssue },
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

/// What is wrong in a registry file, and where: `line 7, targets.chat.launch.command: …`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, {field}: {message}")]
pub struct RegistryIssue {
    /// 1-based line of the field (of its nearest enclosing key when the field is not written
    /// out, e.g. a missing one, or one inside a `{…}` / `[…]` flow collection).
    pub line: usize,
    /// Dotted path of the field (`targets.chat.launch.command`, `targets.chat.capabilities[1]`);
    /// [`TOP_LEVEL`] for the file as a whole.
    pub field: String,
    pub message: String,
}

/// The field of a [`RegistryIssue`] about the file as a whole.
pub const TOP_LEVEL: &str = "(top level)";

/// The registry file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with a `targets` key (target id -> target)")]
struct RegistryFile {
    /// Targets by id.
    #[serde(default)]
    targets: Option<Targets>,
    /// The historical name of `targets`.
    #[serde(default)]
    runtimes: Option<Targets>,
}

/// The targets of the file in file order, duplicates kept (a duplicate id is refused after
/// parsing, naming both lines, rather than collapsed as a map would).
#[derive(Debug, Default)]
struct Targets(Vec<(String, TargetEntry)>);

impl<'de> Deserialize<'de> for Targets {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Targets;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a mapping of target id -> target")
            }
            fn visit_unit<E>(self) -> Result<Targets, E> {
                Ok(Targets::default())
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Targets, A::Error> {
                let mut targets = Vec::new();
                while let Some(entry) = map.next_entry::<String, TargetEntry>()? {
                    targets.push(entry);
                }
                Ok(Targets(targets))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// One target in the registry file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a target: a mapping with at least `adapter`")]
struct TargetEntry {
    /// Required; checked after parsing so that its absence is reported like any other value.
    #[serde(default)]
    adapter: Option<String>,
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
/// explicit file is an error, a missing default file means "no file targets". Errors name the
/// path as given, the line and the field.
pub fn load_registry(path: &Path, explicit: bool) -> Result<Vec<TargetSpec>, ConfigError> {
    let display = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(Vec::new()),
        Err(e) => return Err(ConfigError::Registry { path: display, message: e.to_string() }),
    };
    parse_registry(&text).map_err(|issue| ConfigError::RegistryInvalid { path: display, issue })
}

/// Parses registry YAML text into validated targets (in file order); the error names the line
/// and the field at fault.
pub fn parse_registry(text: &str) -> Result<Vec<TargetSpec>, RegistryIssue> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let file: RegistryFile = yaml_serde::from_str(text).map_err(|e| parse_issue(text, &e))?;
    let (root, entries) = match (file.targets, file.runtimes) {
        (Some(_), Some(_)) => {
            let line = locate(text, &[FieldStep::Key("runtimes".into())]);
            return Err(RegistryIssue {
                line,
                field: "runtimes".into(),
                message: "`runtimes` is the old name of `targets`: give one of them, not both".into(),
            });
        }
        (Some(t), None) => ("targets", t.0),
        (None, Some(t)) => ("runtimes", t.0),
        (None, None) => return Ok(Vec::new()),
    };
    let catalog = adapter_catalog();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut targets = Vec::with_capacity(entries.len());
    for (id, entry) in &entries {
        let at = |steps: Vec<FieldStep>, message: String| {
            let mut path = vec![FieldStep::Key(root.to_owned()), FieldStep::Key(id.clone())];
            path.extend(steps);
            RegistryIssue { line: locate(text, &path), field: dotted(&path), message }
        };
        let occurrence = seen.entry(id.as_str()).or_insert(0);
        *occurrence += 1;
        if *occurrence > 1 {
            let lines = locate_all(text, &[FieldStep::Key(root.to_owned())], id);
            let first = lines.first().map_or(String::new(), |l| format!(" (first defined on line {l})"));
            let line =
                lines.get(*occurrence - 1).copied().unwrap_or_else(|| locate(text, &[FieldStep::Key(root.into())]));
            return Err(RegistryIssue {
                line,
                field: dotted(&[FieldStep::Key(root.to_owned()), FieldStep::Key(id.clone())]),
                message: format!("duplicate target id '{id}'{first}: each target id may appear once"),
            });
        }
        let Some(adapter) = entry.adapter.clone() else {
            let known: Vec<&str> = catalog.entries().iter().map(|e| e.kind.as_str()).collect();
            let message = format!("adapter is required (this node runs {})", known.join(", "));
            return Err(at(vec![FieldStep::Key("adapter".into())], message));
        };
        let spec = TargetSpec {
            target_id: id.clone(),
            adapter,
            dialect: entry.dialect.clone(),
            endpoint: entry.endpoint.clone(),
            healthcheck: entry.healthcheck.clone(),
            launch: entry.launch.clone(),
            defaults: entry.defaults.clone(),
            capabilities: entry.capabilities.clone(),
            owner: "local".to_owned(),
            source: TargetSource::File,
            permissions: entry.permissions,
            resubmit_safe: false,
        };
        validate_target(&spec, &catalog).map_err(|e| at(e.field, e.message))?;
        targets.push(spec);
    }
    Ok(targets)
}

/// A parse error of `yaml_serde` as an issue: its line, the path it names (plus the key, for an
/// unknown field), or for a YAML syntax error the keys enclosing its line.
fn parse_issue(text: &str, e: &yaml_serde::Error) -> RegistryIssue {
    let location = e.location();
    let line = location.as_ref().map_or(1, yaml_serde::Location::line);
    let mut message = e.to_string();
    if let Some(l) = &location
        && let Some(stripped) = message.strip_suffix(&format!(" at line {} column {}", l.line(), l.column()))
    {
        message = stripped.to_owned();
    }
    // `yaml_serde` writes `<path>: <message>`, except at the top level.
    let (mut field, message) = match message.split_once(": ") {
        Some((path, rest)) if !path.is_empty() && !path.contains(' ') => (path.to_owned(), rest.to_owned()),
        _ => (String::new(), message),
    };
    if let Some(key) = message.strip_prefix("unknown field `").and_then(|r| r.split_once('`')).map(|(k, _)| k) {
        field = if field.is_empty() { key.to_owned() } else { format!("{field}.{key}") };
    }
    if field.is_empty() {
        field = path_at_line(text, line);
    }
    RegistryIssue { line, field, message }
}

fn dotted(path: &[FieldStep]) -> String {
    TargetError { field: path.to_vec(), message: String::new() }.field_path()
}

/// A content line of block-style YAML: its 1-based number, indentation and text.
struct YamlLine<'a> {
    number: usize,
    indent: usize,
    text: &'a str,
}

/// The lines that carry content (no blank, comment-only or document-marker lines).
fn yaml_lines(text: &str) -> Vec<YamlLine<'_>> {
    text.lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let text = raw.trim_start_matches(' ');
            let blank = text.trim().is_empty() || text.starts_with('#') || text.starts_with('%');
            let marker = matches!(text.trim_end(), "---" | "...");
            (!blank && !marker).then(|| YamlLine { number: i + 1, indent: raw.len() - text.len(), text })
        })
        .collect()
}

/// The key a line starts with (`key:`, `"key":`, `'key':`), if it does.
fn line_key(text: &str) -> Option<&str> {
    let (key, rest) = if let Some(quoted) = text.strip_prefix('"') {
        quoted.split_once("\":")?
    } else if let Some(quoted) = text.strip_prefix('\'') {
        quoted.split_once("':")?
    } else {
        let end = text.find(": ").or_else(|| text.trim_end().strip_suffix(':').map(str::len))?;
        (&text[..end], &text[end + 1..])
    };
    (rest.is_empty() || rest.starts_with([' ', '\t'])).then_some(key.trim_end())
}

/// Indices of the lines inside the block of `lines[parent]` (all lines for `None`) that sit at
/// the block's own indentation.
fn children(lines: &[YamlLine<'_>], parent: Option<usize>) -> Vec<usize> {
    let (from, floor) = match parent {
        Some(p) => (p + 1, Some(lines[p].indent)),
        None => (0, None),
    };
    let in_block = |l: &YamlLine<'_>| {
        floor.is_none_or(|f| l.indent > f || (l.indent == f && (l.text == "-" || l.text.starts_with("- "))))
    };
    let block: Vec<usize> = (from..lines.len()).take_while(|&i| in_block(&lines[i])).collect();
    let Some(indent) = block.first().map(|&i| lines[i].indent) else { return Vec::new() };
    block.into_iter().filter(|&i| lines[i].indent == indent).collect()
}

/// The line of the field at `path` in block-style YAML `text`; when it is not written out
/// (missing, or inside a flow collection), the line of its nearest ancestor that is; line 1
/// when none is.
fn locate(text: &str, path: &[FieldStep]) -> usize {
    let lines = yaml_lines(text);
    let mut at: Option<usize> = None;
    for step in path {
        let kids = children(&lines, at);
        let found = match step {
            FieldStep::Key(key) => kids.into_iter().find(|&i| line_key(lines[i].text) == Some(key.as_str())),
            FieldStep::Index(n) => {
                kids.into_iter().filter(|&i| lines[i].text == "-" || lines[i].text.starts_with("- ")).nth(*n)
            }
        };
        match found {
            Some(i) => at = Some(i),
            None => break,
        }
    }
    at.map_or_else(|| lines.first().map_or(1, |l| l.number), |i| lines[i].number)
}

/// Every line where `key` is written directly under the field at `parent` (to name a duplicate).
fn locate_all(text: &str, parent: &[FieldStep], key: &str) -> Vec<usize> {
    let lines = yaml_lines(text);
    let mut at: Option<usize> = None;
    for step in parent {
        let FieldStep::Key(k) = step else { return Vec::new() };
        match children(&lines, at).into_iter().find(|&i| line_key(lines[i].text) == Some(k.as_str())) {
            Some(i) => at = Some(i),
            None => return Vec::new(),
        }
    }
    children(&lines, at)
        .into_iter()
        .filter(|&i| line_key(lines[i].text) == Some(key))
        .map(|i| lines[i].number)
        .collect()
}

/// The dotted keys enclosing `line` (its own key included), [`TOP_LEVEL`] when there are none.
fn path_at_line(text: &str, line: usize) -> String {
    let lines = yaml_lines(text);
    let Some(mut i) = lines.iter().rposition(|l| l.number <= line) else { return TOP_LEVEL.to_owned() };
    let mut keys = Vec::new();
    let mut indent = usize::MAX;
    loop {
        let l = &lines[i];
        // A list item may sit at its key's own indentation (`command:` / `- x`): it is inside.
        let own = l.indent + usize::from(l.text == "-" || l.text.starts_with("- "));
        if own < indent {
            indent = own;
            if let Some(key) = line_key(l.text) {
                keys.push(key);
            }
        }
        if i == 0 || indent == 0 {
            break;
        }
        i -= 1;
    }
    if keys.is_empty() {
        return TOP_LEVEL.to_owned();
    }
    keys.reverse();
    keys.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The issue `text` is refused with: its line and field, and a piece of its message.
    fn refused(text: &str) -> RegistryIssue {
        match parse_registry(text) {
            Err(issue) => issue,
            Ok(t) => panic!("accepted: {t:?}\n{text}"),
        }
    }

    #[track_caller]
    fn assert_issue(text: &str, line: usize, field: &str, needle: &str) {
        let issue = refused(text);
        assert_eq!((issue.line, issue.field.as_str()), (line, field), "{issue}\n{text}");
        assert!(issue.message.contains(needle), "{issue:?} lacks {needle:?}");
        assert_eq!(issue.to_string(), format!("line {line}, {field}: {}", issue.message));
    }

    #[test]
    fn parses_targets_in_file_order() {
        let ok = parse_registry(
            "targets:\n  zed:\n    adapter: loopback\n    capabilities: [demo.echo]\n    defaults: {a: 1}\n  alpha:\n    adapter: loopback\n",
        );
        let Ok(targets) = ok else { panic!("{ok:?}") };
        assert_eq!(targets.iter().map(|t| t.target_id.as_str()).collect::<Vec<_>>(), ["zed", "alpha"]);
        assert_eq!(targets[0].capabilities, vec!["demo.echo".to_string()]);
        assert!(parse_registry("runtimes:\n  y:\n    adapter: loopback\n").is_ok());
        assert_eq!(parse_registry("").map(|t| t.len()), Ok(0));
        assert_eq!(parse_registry("# nothing yet\n").map(|t| t.len()), Ok(0));
        assert_eq!(parse_registry("targets:\n").map(|t| t.len()), Ok(0));
    }

    #[test]
    fn the_shipped_registry_loads() {
        let text = include_str!("../configs/registry.yaml");
        let targets = parse_registry(text).unwrap_or_else(|e| panic!("configs/registry.yaml: {e}"));
        assert!(targets.iter().any(|t| t.target_id == "echo"));
    }

    #[test]
    fn value_checks_name_line_and_field() {
        let base = "# a comment\ntargets:\n  echo:\n    adapter: loopback\n";
        assert_issue(
            &format!("{base}  x:\n    adapter: warp\n"),
            6,
            "targets.x.adapter",
            "adapter 'warp' is not known",
        );
        assert_issue(
            &format!("{base}  x:\n    adapter: Warp Drive\n"),
            6,
            "targets.x.adapter",
            "not an adapter kind name",
        );
        assert_issue(&format!("{base}  x:\n    capabilities: [c]\n"), 5, "targets.x.adapter", "adapter is required");
        assert_issue(
            &format!("{base}  x:\n    adapter: acp_http\n    endpoint: http://127.0.0.1:9\n    dialect: klingon\n"),
            8,
            "targets.x.dialect",
            "klingon",
        );
        assert_issue(
            &format!("{base}  x:\n    adapter: acp\n    dialect: klingon\n    launch:\n      command: [a]\n"),
            7,
            "targets.x.dialect",
            "klingon",
        );
        assert_issue(
            &format!("{base}  x:\n    adapter: acp\n    launch:\n      mode: managed\n      command: []\n"),
            9,
            "targets.x.launch.command",
            "launch.command is required",
        );
        // Not written out: the nearest enclosing key's line.
        assert_issue(
            &format!("{base}  x:\n    adapter: acp\n    launch:\n      cwd: /tmp\n"),
            7,
            "targets.x.launch.command",
            "launch.command is required",
        );
        assert_issue(&format!("{base}  x:\n    adapter: acp_http\n"), 5, "targets.x.endpoint", "endpoint is required");
        assert_issue(
            &format!("{base}  x:\n    adapter: acp_http\n    endpoint: not a url\n"),
            7,
            "targets.x.endpoint",
            "is not a URL",
        );
        assert_issue(
            &format!("{base}  x:\n    adapter: acp_http\n    endpoint: http://h:1\n    healthcheck: ftp://h/\n"),
            8,
            "targets.x.healthcheck",
            "http:// or https://",
        );
        assert_issue(&format!("{base}  'bad id':\n    adapter: loopback\n"), 5, "targets.bad id", "may only contain");
        assert_issue(
            &format!("{base}  x:\n    adapter: loopback\n    capabilities:\n      - a\n      - ' '\n"),
            9,
            "targets.x.capabilities[1]",
            "must not contain empty strings",
        );
        // Inside a flow list: the list's line.
        assert_issue(
            &format!("{base}  x:\n    adapter: loopback\n    capabilities: [a, '']\n"),
            7,
            "targets.x.capabilities[1]",
            "must not contain empty strings",
        );
        assert_issue(
            "runtimes:\n  x:\n    adapter: loopback\n    capabilities: ['']\n",
            4,
            "runtimes.x.capabilities[0]",
            "empty",
        );
    }

    #[test]
    fn a_duplicate_target_id_is_refused_naming_both_lines() {
        let text = "targets:\n  a:\n    adapter: loopback\n  b:\n    adapter: loopback\n  a:\n    adapter: loopback\n";
        assert_issue(text, 6, "targets.a", "duplicate target id 'a' (first defined on line 2)");
        // Even when the second one is invalid, and quoted differently.
        assert_issue(
            "targets:\n  a:\n    adapter: loopback\n  \"a\":\n    adapter: loopback\n",
            4,
            "targets.a",
            "duplicate",
        );
        assert_issue("targets: {a: {adapter: loopback}, a: {adapter: loopback}}\n", 1, "targets.a", "duplicate");
    }

    #[test]
    fn parse_and_top_level_mistakes_name_line_and_field() {
        assert_issue("- echo\n- other\n", 1, TOP_LEVEL, "expected a mapping with a `targets` key");
        assert_issue(
            "targets:\n  echo:\n    adapter: loopback\n\ntarget:\n  x: 1\n",
            5,
            "target",
            "unknown field `target`",
        );
        assert_issue("just words\n", 1, TOP_LEVEL, "expected a mapping");
        assert_issue("targets: [echo]\n", 1, "targets", "expected a mapping of target id -> target");
        assert_issue("targets:\n  echo: loopback\n", 2, "targets.echo", "expected a target");
        assert_issue(
            "targets:\n  echo:\n    adapter: loopback\n    colour: red\n",
            4,
            "targets.echo.colour",
            "unknown field `colour`",
        );
        assert_issue(
            "targets:\n  echo:\n    adapter: loopback\n    launch:\n      command: [a]\n      comand: [b]\n",
            6,
            "targets.echo.launch.comand",
            "unknown field",
        );
        assert_issue(
            "targets:\n  echo:\n    adapter: loopback\n    capabilities: 3\n",
            4,
            "targets.echo.capabilities",
            "invalid type",
        );
        assert_issue("targets:\n  echo:\n    adapter: [loopback]\n", 3, "targets.echo.adapter", "expected a string");
        assert_issue(
            "targets:\n  echo:\n    adapter: loopback\n    permissions: maybe\n",
            4,
            "targets.echo.permissions",
            "maybe",
        );
        assert_issue(
            "targets:\n  a:\n    adapter: loopback\nruntimes:\n  b:\n    adapter: loopback\n",
            4,
            "runtimes",
            "not both",
        );
        // A syntax error: the keys enclosing its line.
        let syntax = refused("targets:\n  echo:\n    adapter: loopback\n   bad: [\n");
        assert!(syntax.line >= 3 && syntax.field.starts_with("targets"), "{syntax:?}");
    }

    #[test]
    fn the_locator_follows_block_indentation() {
        let text = "# c\ntargets:\n  a:\n    adapter: acp\n    launch:\n      command:\n      - x\n      - y\n  b: {adapter: loopback}\n";
        let key = |k: &str| FieldStep::Key(k.into());
        assert_eq!(locate(text, &[key("targets")]), 2);
        assert_eq!(locate(text, &[key("targets"), key("a"), key("launch"), key("command")]), 6);
        assert_eq!(locate(text, &[key("targets"), key("a"), key("launch"), key("command"), FieldStep::Index(1)]), 8);
        assert_eq!(locate(text, &[key("targets"), key("b"), key("adapter")]), 9, "flow: the enclosing line");
        assert_eq!(locate(text, &[key("targets"), key("c")]), 2, "missing: the parent's line");
        assert_eq!(locate(text, &[key("nope")]), 2, "nothing found: the first content line");
        assert_eq!(locate_all(text, &[key("targets")], "a"), [3]);
        assert_eq!(path_at_line(text, 7), "targets.a.launch.command");
        assert_eq!(path_at_line(text, 1), TOP_LEVEL);
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

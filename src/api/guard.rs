//! Browser safety: what keeps a web page the user visits from driving the node (CSRF) or reading
//! it through a rebound DNS name. Checked on every request before routing, in this order:
//!
//! 1. `Host` must name the node (loopback names, the bound address, `--allowed-host`) → else 421;
//!    a request without `Host` (HTTP/1.0) only on a loopback bind.
//! 2. An `Origin` must be this node's own (same origin) or configured (`--allowed-origin`) → else
//!    403. CORS grants are sent only to configured origins (and their preflights answered).
//! 3. A body must be `application/json` → else 415 (a page cannot send that cross-origin
//!    without a preflight, which is refused).
//!
//! [`BrowserPolicy`] decides, purely; [`guard`] is the middleware that applies it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_METHOD, CONTENT_TYPE, HOST, ORIGIN, VARY,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use super::json::{BodyBudget, carries_body, refuse, unsupported_media_type};

/// Names every node answers to, whatever its bind address.
const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];
/// Longest `Host`/`Origin` value quoted back in an error.
const QUOTE_MAX: usize = 200;
/// What a granted preflight allows.
const PREFLIGHT_METHODS: &str = "GET, POST";
const PREFLIGHT_HEADERS: &str = "content-type, authorization, idempotency-key, last-event-id";
const PREFLIGHT_MAX_AGE: &str = "600";

/// A `host[:port]` as the node compares it: lower case, IPv6 in brackets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authority {
    /// The name or IP literal (`[…]` for IPv6).
    pub host: String,
    /// The port, when one was given.
    pub port: Option<u16>,
}

impl Authority {
    /// Parses `host[:port]` (as in `Host`, `--allowed-host`, an origin); `None` if malformed.
    pub fn parse(text: &str) -> Option<Authority> {
        let text = text.trim().to_ascii_lowercase();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (inner, after) = rest.split_once(']')?;
            inner.parse::<std::net::Ipv6Addr>().ok()?;
            (format!("[{inner}]"), after)
        } else {
            match text.split_once(':') {
                Some((host, _)) => (host.to_owned(), &text[host.len()..]),
                None => (text.clone(), ""),
            }
        };
        let port = match port.strip_prefix(':') {
            None if port.is_empty() => None,
            None => return None,
            Some("") => None,
            Some(p) => Some(p.parse::<u16>().ok()?),
        };
        let name_ok = host.starts_with('[')
            || (!host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
        name_ok.then_some(Authority { host, port })
    }

    /// The IP this authority names, if it is an IP literal.
    fn ip(&self) -> Option<IpAddr> {
        self.host.trim_start_matches('[').trim_end_matches(']').parse().ok()
    }
}

/// An origin (`scheme://host[:port]`), its port made explicit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginName {
    /// `http` or `https`.
    pub scheme: String,
    pub host: String,
    /// The port, the scheme's default when none was given.
    pub port: u16,
}

impl OriginName {
    /// Parses an `Origin` value or an `--allowed-origin` entry; `None` if it is not an http(s)
    /// origin (`null`, a path, another scheme).
    pub fn parse(text: &str) -> Option<OriginName> {
        let text = text.trim().trim_end_matches('/').to_ascii_lowercase();
        let (scheme, rest) = text.split_once("://")?;
        let default_port = match scheme {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        if rest.contains(['/', '?', '#', '@']) {
            return None;
        }
        let authority = Authority::parse(rest)?;
        Some(OriginName {
            scheme: scheme.to_owned(),
            host: authority.host,
            port: authority.port.unwrap_or(default_port),
        })
    }
}

/// Validates an `--allowed-host` entry (`name` or `name:port`).
pub fn parse_allowed_host(text: &str) -> Result<Authority, String> {
    Authority::parse(text).ok_or_else(|| format!("--allowed-host '{text}' is not a host name or host:port"))
}

/// Validates an `--allowed-origin` entry (`http(s)://host[:port]`, no path).
pub fn parse_allowed_origin(text: &str) -> Result<OriginName, String> {
    OriginName::parse(text)
        .ok_or_else(|| format!("--allowed-origin '{text}' is not an origin like http://host:port (no path, no '*')"))
}

/// Why a request was refused before routing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `Host` names something else (DNS rebinding, or a misdirected request).
    ForeignHost(String),
    /// No `Host`, on a bind that is not loopback.
    MissingHost,
    /// `Origin` is neither this node nor configured.
    ForeignOrigin(String),
}

impl Refusal {
    fn into_error(self) -> ApiError {
        match self {
            Refusal::ForeignHost(host) => ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "Host '{}' does not name this node; to serve it under that name, start the node with --allowed-host",
                    quote(&host)
                ),
            ),
            Refusal::MissingHost => ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "request has no Host header; only a node bound to loopback accepts that",
            ),
            Refusal::ForeignOrigin(origin) => ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "Origin '{}' is not allowed; to let that web origin call this node, start it with --allowed-origin",
                    quote(&origin)
                ),
            ),
        }
    }
}

fn quote(text: &str) -> String {
    text.chars().take(QUOTE_MAX).collect()
}

/// What an `Origin` header is to this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginVerdict {
    /// The node itself (a page it served): allowed, no CORS headers needed.
    SameOrigin,
    /// A configured origin: allowed, with CORS grants.
    Granted,
    /// Anything else.
    Refused,
}

/// Which hosts and origins the node serves. Pure: the middleware applies its answers.
#[derive(Clone, Debug)]
pub struct BrowserPolicy {
    /// The address the listener is bound to (its IP is a name of the node; its port is the
    /// node's port for origins).
    bound: SocketAddr,
    /// The node's own scheme: `https` when it serves TLS, else `http`.
    scheme: &'static str,
    /// `--allowed-host` entries; one without a port matches any port.
    allowed_hosts: Vec<Authority>,
    /// `--allowed-origin` entries.
    allowed_origins: Vec<OriginName>,
    /// The body limit, to drain a refused body the way the JSON extractors do.
    body_limit: usize,
}

impl BrowserPolicy {
    /// Builds the policy; an entry that does not parse is an error naming it.
    pub fn new(
        bound: SocketAddr,
        tls: bool,
        allowed_hosts: &[String],
        allowed_origins: &[String],
        body_limit: usize,
    ) -> Result<Self, String> {
        let allowed_hosts = allowed_hosts.iter().map(|h| parse_allowed_host(h)).collect::<Result<_, _>>()?;
        let allowed_origins = allowed_origins.iter().map(|o| parse_allowed_origin(o)).collect::<Result<_, _>>()?;
        let scheme = if tls { "https" } else { "http" };
        Ok(BrowserPolicy { bound, scheme, allowed_hosts, allowed_origins, body_limit })
    }

    /// Whether `authority` is a name of this node: a loopback name, the bound IP (any IP literal
    /// on a wildcard bind: an IP cannot be rebound), or an `--allowed-host` entry.
    pub fn names_node(&self, authority: &Authority) -> bool {
        if LOOPBACK_NAMES.contains(&authority.host.as_str()) {
            return true;
        }
        if let Some(ip) = authority.ip()
            && (self.bound.ip().is_unspecified() || ip == self.bound.ip())
        {
            return true;
        }
        self.allowed_hosts.iter().any(|entry| {
            entry.host == authority.host
                && entry.port.is_none_or(|p| p == authority.port.unwrap_or(self.default_port()))
        })
    }

    /// The port a `Host` without one means: the node's scheme's default.
    fn default_port(&self) -> u16 {
        if self.scheme == "https" { 443 } else { 80 }
    }

    /// Checks the request's `Host` (`None`: the request had none).
    pub fn check_host(&self, host: Option<&str>) -> Result<(), Refusal> {
        match host {
            None if self.bound.ip().is_loopback() => Ok(()),
            None => Err(Refusal::MissingHost),
            Some(text) => match Authority::parse(text) {
                Some(authority) if self.names_node(&authority) => Ok(()),
                _ => Err(Refusal::ForeignHost(text.to_owned())),
            },
        }
    }

    /// What `origin` is to this node, for a request that came with `host`.
    pub fn check_origin(&self, origin: &str, host: Option<&str>) -> OriginVerdict {
        let Some(parsed) = OriginName::parse(origin) else { return OriginVerdict::Refused };
        if self.allowed_origins.contains(&parsed) {
            return OriginVerdict::Granted;
        }
        // The node's own origin has its scheme: under TLS `http://` of the same host is foreign.
        if parsed.scheme != self.scheme {
            return OriginVerdict::Refused;
        }
        let default_port = self.default_port();
        let same_as_host = host.and_then(Authority::parse).is_some_and(|h| {
            h.host == parsed.host && h.port.unwrap_or(default_port) == parsed.port && self.names_node(&h)
        });
        let node_under_own_name = parsed.port == self.bound.port()
            && self.names_node(&Authority { host: parsed.host.clone(), port: Some(parsed.port) });
        if same_as_host || node_under_own_name { OriginVerdict::SameOrigin } else { OriginVerdict::Refused }
    }
}

fn header(headers: &HeaderMap, name: axum::http::HeaderName) -> Option<&str> {
    // A header that is not visible ASCII cannot name anything allowed: treat it as foreign.
    headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"))
}

/// The middleware: refuses what [`BrowserPolicy`] refuses (draining a body first, like the JSON
/// extractors), answers preflights of configured origins, and adds their CORS grants.
pub async fn guard(State(policy): State<Arc<BrowserPolicy>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    // An absolute-form request line carries its own authority, which takes the place of Host.
    let host = req.uri().authority().map(|a| a.as_str()).or_else(|| header(headers, HOST));
    let host = host.map(str::to_owned);
    let verdict = header(headers, ORIGIN).map(|o| (o.to_owned(), policy.check_origin(o, host.as_deref())));
    let refusal = match (policy.check_host(host.as_deref()), &verdict) {
        (Err(r), _) => Some(r.into_error()),
        (Ok(()), Some((origin, OriginVerdict::Refused))) => Some(Refusal::ForeignOrigin(origin.clone()).into_error()),
        (Ok(()), _) if carries_body(headers) => unsupported_media_type(headers.get(CONTENT_TYPE)),
        (Ok(()), _) => None,
    };
    if let Some(error) = refusal {
        let (parts, body) = req.into_parts();
        let budget = BodyBudget { limit: policy.body_limit };
        tracing::info!(method = %parts.method, path = %parts.uri.path(), host = host.as_deref().unwrap_or(""), "request refused before routing");
        return refuse(body, &parts.headers, budget, error).await.into_response();
    }
    let granted = match verdict {
        Some((origin, OriginVerdict::Granted)) => HeaderValue::from_str(&origin).ok(),
        _ => None,
    };
    let Some(origin) = granted else { return next.run(req).await };
    if req.method() == Method::OPTIONS && req.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD) {
        let mut preflight = StatusCode::NO_CONTENT.into_response();
        let h = preflight.headers_mut();
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(PREFLIGHT_METHODS));
        h.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(PREFLIGHT_HEADERS));
        h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(PREFLIGHT_MAX_AGE));
        h.insert(VARY, HeaderValue::from_static("origin"));
        return preflight;
    }
    let mut response = next.run(req).await;
    response.headers_mut().insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    response.headers_mut().append(VARY, HeaderValue::from_static("origin"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(bind: &str, hosts: &[&str], origins: &[&str]) -> BrowserPolicy {
        policy_tls(bind, false, hosts, origins)
    }

    fn policy_tls(bind: &str, tls: bool, hosts: &[&str], origins: &[&str]) -> BrowserPolicy {
        let hosts: Vec<String> = hosts.iter().map(|s| (*s).to_owned()).collect();
        let origins: Vec<String> = origins.iter().map(|s| (*s).to_owned()).collect();
        match BrowserPolicy::new(bind.parse().unwrap_or_else(|e| panic!("{bind}: {e}")), tls, &hosts, &origins, 1024) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    /// A parsed authority as `(host, port)`.
    type Parsed<'a> = Option<(&'a str, Option<u16>)>;

    #[test]
    fn authorities_parse_strictly() {
        let cases: [(&str, Parsed<'_>); 11] = [
            ("localhost", Some(("localhost", None))),
            ("LocalHost:7777", Some(("localhost", Some(7777)))),
            ("127.0.0.1:80", Some(("127.0.0.1", Some(80)))),
            ("[::1]:7777", Some(("[::1]", Some(7777)))),
            ("[::1]", Some(("[::1]", None))),
            ("node.lan:", Some(("node.lan", None))),
            ("::1", None),
            ("evil.com:99999", None),
            ("user@evil.com", None),
            ("", None),
            ("[nope]:80", None),
        ];
        for (text, want) in cases {
            let got = Authority::parse(text);
            assert_eq!(got.as_ref().map(|a| (a.host.as_str(), a.port)), want, "{text}");
        }
    }

    #[test]
    fn hosts_must_name_the_node() {
        let loopback = policy("127.0.0.1:7777", &["node.lan", "proxy.example:443"], &[]);
        let lan = policy("192.168.1.5:7777", &[], &[]);
        let wildcard = policy("0.0.0.0:7777", &[], &[]);
        let cases: [(&BrowserPolicy, Option<&str>, bool); 16] = [
            (&loopback, Some("localhost"), true),
            (&loopback, Some("localhost:7777"), true),
            (&loopback, Some("127.0.0.1:7777"), true),
            (&loopback, Some("[::1]:7777"), true),
            (&loopback, Some("evil.com"), false),
            (&loopback, Some("evil.com:7777"), false),
            (&loopback, Some("localhost.evil.com"), false),
            (&loopback, Some("node.lan:7777"), true),
            (&loopback, Some("proxy.example:443"), true),
            (&loopback, Some("proxy.example"), false),
            (&loopback, None, true),
            (&lan, Some("192.168.1.5:7777"), true),
            (&lan, Some("10.0.0.1:7777"), false),
            (&lan, None, false),
            (&wildcard, Some("10.0.0.1:7777"), true),
            (&wildcard, Some("evil.com:7777"), false),
        ];
        for (policy, host, ok) in cases {
            assert_eq!(policy.check_host(host).is_ok(), ok, "{host:?} on {}", policy.bound);
        }
    }

    #[test]
    fn origins_are_the_node_itself_or_configured() {
        let p = policy("127.0.0.1:7777", &["node.lan"], &["https://console.example", "http://localhost:3000/"]);
        let host = Some("127.0.0.1:7777");
        let cases: [(&str, Option<&str>, OriginVerdict); 11] = [
            ("http://127.0.0.1:7777", host, OriginVerdict::SameOrigin),
            ("http://localhost:7777", host, OriginVerdict::SameOrigin),
            ("http://node.lan:7777", Some("node.lan:7777"), OriginVerdict::SameOrigin),
            ("http://node.lan", Some("node.lan"), OriginVerdict::SameOrigin),
            ("https://console.example", host, OriginVerdict::Granted),
            ("HTTP://LOCALHOST:3000", host, OriginVerdict::Granted),
            ("http://localhost:3001", host, OriginVerdict::Refused),
            ("http://evil.com", host, OriginVerdict::Refused),
            ("http://evil.com:7777", Some("evil.com:7777"), OriginVerdict::Refused),
            ("null", host, OriginVerdict::Refused),
            ("file://", host, OriginVerdict::Refused),
        ];
        for (origin, host, want) in cases {
            assert_eq!(p.check_origin(origin, host), want, "{origin} with Host {host:?}");
        }
    }

    #[test]
    fn under_tls_the_own_origin_is_https() {
        let p = policy_tls("127.0.0.1:7777", true, &["node.lan"], &["http://localhost:3000"]);
        let host = Some("127.0.0.1:7777");
        let cases: [(&str, Option<&str>, OriginVerdict); 6] = [
            ("https://127.0.0.1:7777", host, OriginVerdict::SameOrigin),
            ("https://localhost:7777", host, OriginVerdict::SameOrigin),
            ("http://127.0.0.1:7777", host, OriginVerdict::Refused),
            ("https://node.lan", Some("node.lan"), OriginVerdict::SameOrigin),
            ("http://node.lan", Some("node.lan"), OriginVerdict::Refused),
            ("http://localhost:3000", host, OriginVerdict::Granted),
        ];
        for (origin, host, want) in cases {
            assert_eq!(p.check_origin(origin, host), want, "{origin} with Host {host:?}");
        }
        let plain = policy("127.0.0.1:7777", &[], &[]);
        assert_eq!(plain.check_origin("https://127.0.0.1:7777", host), OriginVerdict::Refused);
        let proxied = policy_tls("127.0.0.1:7777", true, &["proxy.example:443"], &[]);
        assert!(proxied.check_host(Some("proxy.example")).is_ok(), "no port under TLS means 443");
    }

    #[test]
    fn allowlist_entries_are_validated() {
        assert!(parse_allowed_host("node.lan:8080").is_ok());
        assert!(parse_allowed_host("http://node.lan").is_err());
        assert!(parse_allowed_origin("http://node.lan:8080").is_ok());
        assert!(parse_allowed_origin("*").is_err());
        assert!(parse_allowed_origin("http://node.lan/app").is_err());
    }
}

//! Endpoint URLs in Tile38's syntax.
//!
//! Options after `?` follow Tile38: unknown ones are ignored, empty ones are skipped, the first of a
//! repeated option wins, and booleans are true when they start with a digit 1-9 or with `t`/`y`
//! (either case). Values Tile38 rejects (a bad MQTT `qos`) are rejected here too.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};

/// The transport an endpoint uses; metrics are kept per scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `http://` webhook (POST of the JSON event).
    Http,
    /// `https://` webhook.
    Https,
    /// `redis://host:port/channel` (PUBLISH).
    Redis,
    /// `kafka://host:port/topic` (produce to the key's partition).
    Kafka,
    /// `mqtt://host:port/topic` (PUBLISH at the endpoint's QoS).
    Mqtt,
    /// `nats://host:port/subject` (core publish, or JetStream with `jetstream=true`).
    Nats,
    /// `amqp://` or `amqps://` `user:pass@host:port/queue` (publish to the queue's exchange).
    Amqp,
}

impl Scheme {
    /// All schemes, in the order metrics list them.
    pub const ALL: [Scheme; 7] = [
        Scheme::Http,
        Scheme::Https,
        Scheme::Redis,
        Scheme::Kafka,
        Scheme::Mqtt,
        Scheme::Nats,
        Scheme::Amqp,
    ];

    /// The scheme's name as written in URLs (`amqp` also stands for `amqps`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Redis => "redis",
            Scheme::Kafka => "kafka",
            Scheme::Mqtt => "mqtt",
            Scheme::Nats => "nats",
            Scheme::Amqp => "amqp",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Certificate files named by an endpoint's options (`cacert`, `cert`, `key`), all PEM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsFiles {
    /// Roots to verify the broker with instead of the platform's store (`cacert`).
    pub ca_cert: Option<PathBuf>,
    /// The client certificate chain (`cert`).
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (`key`).
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    fn is_empty(&self) -> bool {
        self.ca_cert.is_none() && self.cert.is_none() && self.key.is_none()
    }
}

/// How a Kafka endpoint authenticates (`auth=`), as Tile38.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum KafkaAuth {
    /// `auth=none` (the default): plain TCP, or TLS when `ssl=true`.
    #[default]
    None,
    /// `auth=sasl`: SASL PLAIN, or SCRAM with `sha256=true` / `sha512=true`, with the user and password
    /// taken from the `KAFKA_USERNAME` and `KAFKA_PASSWORD` environment variables; TLS when `ssl=true`.
    Sasl,
    /// `auth=tls`: TLS with the client certificate `cert` and `key`.
    Tls,
}

/// The security options of a Kafka endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KafkaSecurity {
    /// `auth=`.
    pub auth: KafkaAuth,
    /// `ssl=`: TLS for `auth=none` and `auth=sasl`.
    pub ssl: bool,
    /// `sha256=`: SCRAM-SHA-256 instead of PLAIN.
    pub sha256: bool,
    /// `sha512=`: SCRAM-SHA-512 (wins over `sha256`, as in Tile38 where it is applied last).
    pub sha512: bool,
    /// `cacert`, `cert`, `key`.
    pub files: TlsFiles,
}

impl KafkaSecurity {
    /// Whether the connection uses TLS.
    pub fn tls(&self) -> bool {
        self.auth == KafkaAuth::Tls || self.ssl
    }
}

/// An MQTT broker, topic and publish options.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MqttTarget {
    /// Host name or address.
    pub host: String,
    /// TCP port (default 1883).
    pub port: u16,
    /// The topic: every path segment after the host, unescaped and joined by `/`.
    pub topic: String,
    /// `qos=` 0, 1 or 2 (default 0, as Tile38).
    pub qos: u8,
    /// `retained=` 0 or 1.
    pub retained: bool,
    /// `client_id=`; when absent each connection gets `tile38-` and random hex, as Tile38 does.
    pub client_id: Option<String>,
    /// The user and password of the URL's `user:pass@`, if any.
    pub credentials: Option<(String, String)>,
    /// `cacert`, `cert`, `key`; naming any of them turns TLS on, as in Tile38.
    pub tls: TlsFiles,
}

/// A NATS server, subject and connect options.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NatsTarget {
    /// Host name or address.
    pub host: String,
    /// TCP port (default 4222).
    pub port: u16,
    /// The subject.
    pub subject: String,
    /// `user=` and `pass=`, used only when both are set (Tile38's rule).
    pub credentials: Option<(String, String)>,
    /// `token=`.
    pub token: Option<String>,
    /// `secure=`: connect with TLS.
    pub secure: bool,
    /// `tls=` with `tlscert=` and `tlskey=`: present a client certificate.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// `cacert=`: roots (PEM) to verify the server with instead of the platform's store; it turns
    /// TLS on, as `secure` does. Ours: Tile38's NATS endpoint has no such option.
    pub ca_cert: Option<PathBuf>,
    /// `jetstream=`: publish through JetStream and wait for the stream's acknowledgement.
    pub jetstream: bool,
}

/// An AMQP broker, the exchange and queue (both named after the URL's queue, as Tile38) and the
/// publish options.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AmqpTarget {
    /// `amqps://`.
    pub tls: bool,
    /// `cacert=` (with `amqps://` only): roots (PEM) to verify the broker with instead of the
    /// platform's store. Ours: Tile38's AMQP endpoint has no such option.
    pub ca_cert: Option<PathBuf>,
    /// The broker URI handed to the client: scheme, `user:pass@host:port` and the virtual host
    /// (Tile38's "namespace") when the URL has one.
    pub uri: String,
    /// The queue, which is also the exchange's name.
    pub queue: String,
    /// `route=` (default `tile38`).
    pub route: String,
    /// `type=` of the exchange (default `direct`). A `topic` exchange gets no queue of its own.
    pub kind: String,
    /// `durable=` (default true).
    pub durable: bool,
    /// `auto_delete=`.
    pub auto_delete: bool,
    /// `internal=`.
    pub internal: bool,
    /// `no_wait=`.
    pub no_wait: bool,
    /// `mandatory=`: an unroutable message counts as a failed delivery.
    pub mandatory: bool,
    /// `immediate=` (RabbitMQ refuses it, as for Tile38).
    pub immediate: bool,
    /// `delivery_mode=` (default 1, transient; 2 is persistent).
    pub delivery_mode: u8,
    /// `priority=` (default 0).
    pub priority: u8,
}

/// Where an endpoint delivers, once parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Target {
    /// An HTTP or HTTPS URL, posted to as is.
    Http(reqwest::Url),
    /// A Redis server and the channel to PUBLISH on.
    Redis {
        /// Host name or address.
        host: String,
        /// TCP port (default 6379).
        port: u16,
        /// The channel.
        channel: String,
    },
    /// A Kafka broker and the topic to produce to.
    Kafka {
        /// Host name or address.
        host: String,
        /// TCP port (default 9092).
        port: u16,
        /// The topic.
        topic: String,
        /// `auth`, `ssl`, `sha256`, `sha512`, `cacert`, `cert`, `key`.
        security: Box<KafkaSecurity>,
    },
    /// An MQTT broker.
    Mqtt(Box<MqttTarget>),
    /// A NATS server.
    Nats(Box<NatsTarget>),
    /// An AMQP broker.
    Amqp(Box<AmqpTarget>),
}

/// One parsed endpoint. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    url: Arc<str>,
    scheme: Scheme,
    target: Target,
}

impl Endpoint {
    /// Parses one endpoint URL.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] for an unknown scheme, a missing `//`, a bad host or port, a missing
    /// channel, topic, subject or queue, a name that is not valid percent-encoded UTF-8, or an option
    /// value Tile38 also rejects.
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |reason| Error::InvalidEndpoint {
            url: url.to_owned(),
            reason,
        };
        let (scheme_str, rest) = url.split_once(':').ok_or_else(|| bad("missing scheme"))?;
        let scheme_lower = scheme_str.to_ascii_lowercase();
        let scheme = match scheme_lower.as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "redis" => Scheme::Redis,
            "kafka" => Scheme::Kafka,
            "mqtt" => Scheme::Mqtt,
            "nats" => Scheme::Nats,
            "amqp" | "amqps" => Scheme::Amqp,
            _ => return Err(bad("unknown scheme")),
        };
        let rest = rest
            .strip_prefix("//")
            .ok_or_else(|| bad("missing the two slashes"))?;
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        let options = Options::parse(query);
        let target = match scheme {
            Scheme::Http | Scheme::Https => {
                let parsed = reqwest::Url::parse(url).map_err(|_| bad("malformed URL"))?;
                if parsed.host_str().is_none_or(str::is_empty) {
                    return Err(bad("missing host"));
                }
                Target::Http(parsed)
            }
            Scheme::Redis | Scheme::Kafka => {
                let (authority, name) = path
                    .split_once('/')
                    .ok_or_else(|| bad("missing channel or topic"))?;
                if name.is_empty() || name.contains('/') {
                    return Err(bad("missing channel or topic"));
                }
                let name = unescape(name).ok_or_else(|| bad("bad escape in channel or topic"))?;
                let default_port = if scheme == Scheme::Redis { 6379 } else { 9092 };
                let (host, port) = split_host_port(authority, default_port)
                    .ok_or_else(|| bad("bad host or port"))?;
                if scheme == Scheme::Redis {
                    Target::Redis {
                        host,
                        port,
                        channel: name,
                    }
                } else {
                    let auth = match options.get("auth") {
                        None | Some("none") => KafkaAuth::None,
                        Some("sasl") => KafkaAuth::Sasl,
                        Some("tls") => KafkaAuth::Tls,
                        Some(_) => return Err(bad("kafka auth must be none, sasl or tls")),
                    };
                    let security = KafkaSecurity {
                        auth,
                        ssl: options.flag("ssl"),
                        sha256: options.flag("sha256"),
                        sha512: options.flag("sha512"),
                        files: options.tls_files("cacert", "cert", "key"),
                    };
                    if auth == KafkaAuth::Tls
                        && (security.files.cert.is_none() || security.files.key.is_none())
                    {
                        return Err(bad("kafka auth=tls needs cert and key"));
                    }
                    Target::Kafka {
                        host,
                        port,
                        topic: name,
                        security: Box::new(security),
                    }
                }
            }
            Scheme::Mqtt => {
                let (authority, topic) = path
                    .split_once('/')
                    .ok_or_else(|| bad("missing MQTT topic name"))?;
                let topic = topic
                    .split('/')
                    .map(unescape)
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("invalid MQTT topic name"))?
                    .join("/");
                // A topic of only slashes is as empty as no topic for a subscriber, and Tile38 would
                // publish to it; brokers refuse an empty topic, so it is rejected here.
                if topic.trim_matches('/').is_empty() {
                    return Err(bad("missing MQTT topic name"));
                }
                let (credentials, host_port) = split_userinfo(authority)
                    .ok_or_else(|| bad("bad escape in user or password"))?;
                let (host, port) =
                    split_host_port(host_port, 1883).ok_or_else(|| bad("bad host or port"))?;
                let qos = match options.get("qos") {
                    None => 0,
                    Some(q) => match q.parse::<u8>() {
                        Ok(q @ 0..=2) => q,
                        _ => return Err(bad("invalid MQTT qos value")),
                    },
                };
                let retained = match options.get("retained") {
                    None | Some("0") => false,
                    Some("1") => true,
                    Some(_) => return Err(bad("invalid MQTT retained, should be [0, 1]")),
                };
                Target::Mqtt(Box::new(MqttTarget {
                    host,
                    port,
                    topic,
                    qos,
                    retained,
                    client_id: options.get("client_id").map(str::to_owned),
                    credentials,
                    tls: options.tls_files("cacert", "cert", "key"),
                }))
            }
            Scheme::Nats => {
                let (authority, subject) = path
                    .split_once('/')
                    .ok_or_else(|| bad("missing NATS subject"))?;
                // Tile38 ignores what follows a second slash (`nats://h:4222/subject/?opts`).
                let subject = subject.split('/').next().unwrap_or_default();
                let subject = unescape(subject).ok_or_else(|| bad("invalid NATS topic name"))?;
                if subject.is_empty() || subject.contains([' ', '\t', '\r', '\n']) {
                    return Err(bad("missing NATS subject"));
                }
                let (host, port) =
                    split_host_port(authority, 4222).ok_or_else(|| bad("bad host or port"))?;
                if options.get("credential").is_some() {
                    return Err(bad("NATS credential files are not supported"));
                }
                let credentials = match (options.get("user"), options.get("pass")) {
                    (Some(u), Some(p)) => Some((u.to_owned(), p.to_owned())),
                    _ => None,
                };
                let client_cert = if options.flag("tls") {
                    match (options.get("tlscert"), options.get("tlskey")) {
                        (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
                        _ => return Err(bad("NATS tls=true needs tlscert and tlskey")),
                    }
                } else {
                    None
                };
                Target::Nats(Box::new(NatsTarget {
                    host,
                    port,
                    subject,
                    credentials,
                    token: options.get("token").map(str::to_owned),
                    secure: options.flag("secure"),
                    client_cert,
                    ca_cert: options.get("cacert").map(PathBuf::from),
                    jetstream: options.flag("jetstream"),
                }))
            }
            Scheme::Amqp => {
                let mut parts = path.split('/');
                let authority = parts.next().unwrap_or_default();
                let (first, second) = (parts.next(), parts.next());
                // `host/queue`, `host/queue/` and `host/vhost/queue`, as Tile38 reads them.
                let (vhost, queue) = match (first, second) {
                    (Some(ns), Some(q)) if !q.is_empty() => (Some(ns), q),
                    (Some(q), _) => (None, q),
                    (None, _) => (None, ""),
                };
                let queue = unescape(queue).ok_or_else(|| bad("invalid AMQP queue name"))?;
                if queue.is_empty() {
                    return Err(bad("missing AMQP queue name"));
                }
                let tls = scheme_lower == "amqps";
                let ca_cert = options.get("cacert").map(PathBuf::from);
                if ca_cert.is_some() && !tls {
                    return Err(bad("AMQP cacert needs amqps://"));
                }
                let (_, host_port) = split_userinfo(authority)
                    .ok_or_else(|| bad("bad escape in user or password"))?;
                split_host_port(host_port, if tls { 5671 } else { 5672 })
                    .ok_or_else(|| bad("bad host or port"))?;
                let uri = match vhost {
                    Some(ns) => format!("{scheme_lower}://{authority}/{ns}"),
                    None => format!("{scheme_lower}://{authority}"),
                };
                let small = |name, default: u8| match options.get(name) {
                    None => Ok(default),
                    Some(v) => v
                        .parse::<u8>()
                        .map_err(|_| bad("invalid AMQP number option")),
                };
                Target::Amqp(Box::new(AmqpTarget {
                    tls,
                    ca_cert,
                    uri,
                    queue,
                    route: options.get("route").unwrap_or("tile38").to_owned(),
                    kind: options.get("type").unwrap_or("direct").to_owned(),
                    durable: options.get("durable").is_none_or(query_bool),
                    auto_delete: options.flag("auto_delete"),
                    internal: options.flag("internal"),
                    no_wait: options.flag("no_wait"),
                    mandatory: options.flag("mandatory"),
                    immediate: options.flag("immediate"),
                    delivery_mode: small("delivery_mode", 1)?,
                    priority: small("priority", 0)?,
                }))
            }
        };
        Ok(Self {
            url: Arc::from(url),
            scheme,
            target,
        })
    }

    /// Parses a comma-separated list of endpoints, tried in order (failover, not fan-out).
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] for the first bad URL, or for an empty list.
    pub fn parse_list(urls: &str) -> Result<Vec<Self>> {
        if urls.trim().is_empty() {
            return Err(Error::InvalidEndpoint {
                url: urls.to_owned(),
                reason: "empty endpoint list",
            });
        }
        urls.split(',').map(|u| Self::parse(u.trim())).collect()
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Where it delivers.
    pub fn target(&self) -> &Target {
        &self.target
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// The options after `?`: the first non-empty value of each name, in order.
struct Options(Vec<(String, String)>);

impl Options {
    fn parse(query: Option<&str>) -> Self {
        let mut kept: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            if !v.is_empty() && !kept.iter().any(|(seen, _)| *seen == k) {
                kept.push((k.into_owned(), v.into_owned()));
            }
        }
        Self(kept)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, name: &str) -> bool {
        self.get(name).is_some_and(query_bool)
    }

    fn tls_files(&self, ca: &str, cert: &str, key: &str) -> TlsFiles {
        let path = |name| self.get(name).map(PathBuf::from);
        let files = TlsFiles {
            ca_cert: path(ca),
            cert: path(cert),
            key: path(key),
        };
        if files.is_empty() {
            TlsFiles::default()
        } else {
            files
        }
    }
}

/// Tile38's reading of a boolean option: true when it starts with 1-9, `t` or `y` in either case.
fn query_bool(s: &str) -> bool {
    matches!(
        s.as_bytes().first(),
        Some(b'1'..=b'9' | b't' | b'T' | b'y' | b'Y')
    )
}

/// Go's `url.QueryUnescape`, which Tile38 applies to names: `+` is a space, `%XX` a byte, and the
/// result must be UTF-8 here.
fn unescape(s: &str) -> Option<String> {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Splits `user:pass@host:port` into the unescaped credentials and `host:port`.
#[allow(clippy::type_complexity)]
fn split_userinfo(authority: &str) -> Option<(Option<(String, String)>, &str)> {
    let Some((userinfo, host_port)) = authority.rsplit_once('@') else {
        return Some((None, authority));
    };
    let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    Some((Some((decode(user)?, decode(pass)?)), host_port))
}

fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if authority.is_empty() {
        return None;
    }
    // A bracketed IPv6 literal keeps its colons.
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (authority, default_port),
    };
    if host.is_empty() || host.contains([':', '@', ' ']) || port == 0 {
        return None;
    }
    Some((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, expected: std::result::Result<(Scheme, Target), &str>) {
        match (Endpoint::parse(url), expected) {
            (Ok(ep), Ok((scheme, target))) => {
                assert_eq!(ep.scheme(), scheme, "{url}");
                assert_eq!(ep.target(), &target, "{url}");
                assert_eq!(ep.url(), url);
            }
            (Err(Error::InvalidEndpoint { reason, .. }), Err(want)) => {
                assert_eq!(reason, want, "{url}")
            }
            (got, want) => panic!("{url}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parses_tile38_urls() {
        let redis = |h: &str, p, c: &str| Target::Redis {
            host: h.into(),
            port: p,
            channel: c.into(),
        };
        let kafka = |h: &str, p, t: &str| Target::Kafka {
            host: h.into(),
            port: p,
            topic: t.into(),
            security: Box::default(),
        };
        let http = |u: &str| Target::Http(reqwest::Url::parse(u).unwrap());
        check(
            "http://127.0.0.1:8080/hook",
            Ok((Scheme::Http, http("http://127.0.0.1:8080/hook"))),
        );
        check(
            "https://example.com/x?a=1",
            Ok((Scheme::Https, http("https://example.com/x?a=1"))),
        );
        check(
            "redis://localhost:6380/fences",
            Ok((Scheme::Redis, redis("localhost", 6380, "fences"))),
        );
        check(
            "redis://localhost/fences",
            Ok((Scheme::Redis, redis("localhost", 6379, "fences"))),
        );
        check(
            "kafka://10.0.0.1:9093/geo",
            Ok((Scheme::Kafka, kafka("10.0.0.1", 9093, "geo"))),
        );
        check(
            "kafka://broker/geo?auth=none",
            Ok((Scheme::Kafka, kafka("broker", 9092, "geo"))),
        );
        check(
            "kafka://[::1]:9000/geo",
            Ok((Scheme::Kafka, kafka("::1", 9000, "geo"))),
        );
        check("ftp://x/y", Err("unknown scheme"));
        check("nohost", Err("missing scheme"));
        check("redis:localhost/ch", Err("missing the two slashes"));
        check("redis://localhost:6379", Err("missing channel or topic"));
        check("kafka://localhost:9092/", Err("missing channel or topic"));
        check("kafka://localhost:99999/t", Err("bad host or port"));
        check("kafka://:9092/t", Err("bad host or port"));
        check("http://", Err("malformed URL"));
    }

    #[test]
    fn parses_broker_urls_with_tile38_options() {
        let ep = |u: &str| Endpoint::parse(u).unwrap().target().clone();
        let Target::Mqtt(m) = ep("mqtt://u%40x:p%3Aw@broker:1884/geo/fleet%2Fa?qos=1&retained=1&client_id=c1&cacert=/ca.pem&qos=2")
        else {
            panic!("mqtt")
        };
        assert_eq!((m.host.as_str(), m.port), ("broker", 1884));
        assert_eq!(m.topic, "geo/fleet/a");
        assert_eq!((m.qos, m.retained), (1, true), "the first qos wins");
        assert_eq!(m.client_id.as_deref(), Some("c1"));
        assert_eq!(m.credentials, Some(("u@x".into(), "p:w".into())));
        assert_eq!(m.tls.ca_cert, Some(PathBuf::from("/ca.pem")));
        let Target::Mqtt(m) = ep("mqtt://broker/t") else {
            panic!("mqtt")
        };
        assert_eq!((m.port, m.qos, m.retained), (1883, 0, false));
        assert_eq!(m.tls, TlsFiles::default());

        let Target::Nats(n) =
            ep("nats://10.0.0.2:4223/geo.events/?user=a&pass=b&token=t&secure=yes&jetstream=1")
        else {
            panic!("nats")
        };
        assert_eq!(
            (n.host.as_str(), n.port, n.subject.as_str()),
            ("10.0.0.2", 4223, "geo.events")
        );
        assert_eq!(n.credentials, Some(("a".into(), "b".into())));
        assert_eq!(n.token.as_deref(), Some("t"));
        assert!(n.secure && n.jetstream && n.client_cert.is_none() && n.ca_cert.is_none());
        let Target::Nats(n) = ep("nats://h/s?cacert=/ca.pem") else {
            panic!("nats")
        };
        assert_eq!(n.ca_cert, Some(PathBuf::from("/ca.pem")));
        let Target::Nats(n) = ep("nats://h/s?user=a") else {
            panic!("nats")
        };
        assert_eq!(
            (n.port, n.credentials.clone()),
            (4222, None),
            "user without pass is ignored"
        );

        let Target::Amqp(a) = ep("amqp://guest:guest@localhost:5673/geo?route=r&durable=false&delivery_mode=2&priority=3&mandatory=t") else {
            panic!("amqp")
        };
        assert_eq!(a.uri, "amqp://guest:guest@localhost:5673");
        assert_eq!(
            (a.queue.as_str(), a.route.as_str(), a.kind.as_str()),
            ("geo", "r", "direct")
        );
        assert!(!a.durable && a.mandatory && !a.tls);
        assert_eq!((a.delivery_mode, a.priority), (2, 3));
        let Target::Amqp(a) = ep("amqps://h/vhost1/q1/") else {
            panic!("amqp")
        };
        assert_eq!(
            (a.uri.as_str(), a.queue.as_str()),
            ("amqps://h/vhost1", "q1")
        );
        assert!(a.tls && a.durable && a.ca_cert.is_none());
        let Target::Amqp(a) = ep("amqps://h/q1?cacert=/ca.pem") else {
            panic!("amqp")
        };
        assert_eq!(a.ca_cert, Some(PathBuf::from("/ca.pem")));
        assert_eq!((a.route.as_str(), a.delivery_mode), ("tile38", 1));
        let Target::Amqp(a) = ep("amqp://h/q1/") else {
            panic!("amqp")
        };
        assert_eq!((a.uri.as_str(), a.queue.as_str()), ("amqp://h", "q1"));

        let Target::Kafka { security, .. } =
            ep("kafka://b:9093/t?auth=sasl&ssl=true&sha512=1&cacert=/ca.pem")
        else {
            panic!("kafka")
        };
        assert_eq!(security.auth, KafkaAuth::Sasl);
        assert!(security.tls() && security.sha512 && !security.sha256);
        assert_eq!(security.files.ca_cert, Some(PathBuf::from("/ca.pem")));
        let Target::Kafka { security, .. } = ep("kafka://b/t?auth=tls&cert=/c.pem&key=/k.pem")
        else {
            panic!("kafka")
        };
        assert!(security.tls());

        for (url, reason) in [
            ("mqtt://h:1883", "missing MQTT topic name"),
            ("mqtt://h:1883/", "missing MQTT topic name"),
            ("mqtt://h/t?qos=3", "invalid MQTT qos value"),
            ("mqtt://h/t?qos=x", "invalid MQTT qos value"),
            (
                "mqtt://h/t?retained=2",
                "invalid MQTT retained, should be [0, 1]",
            ),
            ("mqtt://h/%ff", "invalid MQTT topic name"),
            ("mqtt://:1/t", "bad host or port"),
            ("nats://h:4222", "missing NATS subject"),
            ("nats://h:4222/", "missing NATS subject"),
            (
                "nats://h/s?credential=/x.creds",
                "NATS credential files are not supported",
            ),
            ("nats://h/s?tls=1", "NATS tls=true needs tlscert and tlskey"),
            ("amqp://guest:guest@h:5672", "missing AMQP queue name"),
            ("amqp://h:5672/", "missing AMQP queue name"),
            ("amqp://h:99999/q", "bad host or port"),
            ("amqp://h/q?priority=300", "invalid AMQP number option"),
            ("amqp://h/q?cacert=/ca.pem", "AMQP cacert needs amqps://"),
            (
                "kafka://b/t?auth=kerberos",
                "kafka auth must be none, sasl or tls",
            ),
            ("kafka://b/t?auth=tls", "kafka auth=tls needs cert and key"),
        ] {
            check(url, Err(reason));
        }
    }

    #[test]
    fn parses_failover_lists_in_order() {
        let list = Endpoint::parse_list("http://a:1/x, redis://b:2/c").unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].scheme(), Scheme::Http);
        assert_eq!(list[1].url(), "redis://b:2/c");
        assert!(Endpoint::parse_list("").is_err());
        assert!(Endpoint::parse_list("http://a/x,bad").is_err());
    }
}

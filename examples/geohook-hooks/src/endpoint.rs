//! Endpoint URLs in Tile38's syntax.

use std::fmt;
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
    /// `kafka://host:port/topic` (produce to partition 0).
    Kafka,
}

impl Scheme {
    /// All schemes, in the order metrics list them.
    pub const ALL: [Scheme; 4] = [Scheme::Http, Scheme::Https, Scheme::Redis, Scheme::Kafka];

    /// The scheme's name as written in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Redis => "redis",
            Scheme::Kafka => "kafka",
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

/// Where an endpoint delivers, once parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
    },
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
    /// [`Error::InvalidEndpoint`] for an unknown scheme, a missing `//`, a bad host or port, or a missing
    /// channel or topic.
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |reason| Error::InvalidEndpoint {
            url: url.to_owned(),
            reason,
        };
        let (scheme_str, rest) = url.split_once(':').ok_or_else(|| bad("missing scheme"))?;
        let scheme = match scheme_str.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "redis" => Scheme::Redis,
            "kafka" => Scheme::Kafka,
            _ => return Err(bad("unknown scheme")),
        };
        let rest = rest
            .strip_prefix("//")
            .ok_or_else(|| bad("missing the two slashes"))?;
        let target = match scheme {
            Scheme::Http | Scheme::Https => {
                let parsed = reqwest::Url::parse(url).map_err(|_| bad("malformed URL"))?;
                if parsed.host_str().is_none_or(str::is_empty) {
                    return Err(bad("missing host"));
                }
                Target::Http(parsed)
            }
            Scheme::Redis | Scheme::Kafka => {
                // Options after `?` are accepted and ignored, as Tile38 ignores the ones it does not know.
                let rest = rest.split_once('?').map_or(rest, |(path, _)| path);
                let (authority, name) = rest
                    .split_once('/')
                    .ok_or_else(|| bad("missing channel or topic"))?;
                if name.is_empty() || name.contains('/') {
                    return Err(bad("missing channel or topic"));
                }
                let default_port = if scheme == Scheme::Redis { 6379 } else { 9092 };
                let (host, port) = split_host_port(authority, default_port)
                    .ok_or_else(|| bad("bad host or port"))?;
                if scheme == Scheme::Redis {
                    Target::Redis {
                        host,
                        port,
                        channel: name.to_owned(),
                    }
                } else {
                    Target::Kafka {
                        host,
                        port,
                        topic: name.to_owned(),
                    }
                }
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
    fn parses_failover_lists_in_order() {
        let list = Endpoint::parse_list("http://a:1/x, redis://b:2/c").unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].scheme(), Scheme::Http);
        assert_eq!(list[1].url(), "redis://b:2/c");
        assert!(Endpoint::parse_list("").is_err());
        assert!(Endpoint::parse_list("http://a/x,bad").is_err());
    }
}

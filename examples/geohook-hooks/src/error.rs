//! The one error type of this crate.

use std::time::Duration;

/// Everything that can go wrong in this crate.
///
/// Input errors (a bad endpoint URL, a bad hook definition, a bad configuration) are kept apart from
/// delivery errors (the peer is down, refused the message or timed out): the first are the caller's to
/// report to the client, the second are retried by the queue and only show up in metrics and logs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An endpoint URL could not be parsed. Tile38 replies `invalid argument '<url>'` for these.
    #[error("invalid endpoint '{url}': {reason}")]
    InvalidEndpoint {
        /// The URL as given.
        url: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A hook definition is not valid (empty name, no endpoint, a detect or command word that does not exist).
    #[error("invalid hook '{name}': {reason}")]
    InvalidHook {
        /// The hook's name.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A configuration field is out of range.
    #[error("invalid configuration: {field}: {reason}")]
    InvalidConfig {
        /// The field's name.
        field: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// The HTTP request failed before a status arrived (connect, TLS, I/O, timeout).
    #[error("http delivery to {url} failed: {source}")]
    Http {
        /// The endpoint URL.
        url: String,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The HTTP peer answered with a status other than 200, 201 or 202.
    #[error("http delivery to {url} answered status {status}")]
    HttpStatus {
        /// The endpoint URL.
        url: String,
        /// The status code received.
        status: u16,
    },
    /// Connecting to or publishing on a Redis server failed.
    #[error("redis delivery to {url} failed: {source}")]
    Redis {
        /// The endpoint URL.
        url: String,
        /// The client's error.
        #[source]
        source: redis::RedisError,
    },
    /// Connecting to or producing on a Kafka broker failed.
    #[error("kafka delivery to {url} failed: {source}")]
    Kafka {
        /// The endpoint URL.
        url: String,
        /// The client's error.
        #[source]
        source: rskafka::client::error::Error,
    },
    /// Connecting to or publishing on an MQTT broker failed.
    #[error("mqtt delivery to {url} failed: {source}")]
    Mqtt {
        /// The endpoint URL.
        url: String,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Connecting to or publishing on a NATS server failed.
    #[error("nats delivery to {url} failed: {source}")]
    Nats {
        /// The endpoint URL.
        url: String,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Connecting to, declaring on or publishing on an AMQP broker failed.
    #[error("amqp delivery to {url} failed: {source}")]
    Amqp {
        /// The endpoint URL.
        url: String,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The broker answered, but refused the message or could not route it.
    #[error("delivery to {url} refused: {reason}")]
    Rejected {
        /// The endpoint URL.
        url: String,
        /// What the broker said.
        reason: &'static str,
    },
    /// The peer did not answer within the configured send timeout.
    #[error("delivery to {url} timed out after {timeout:?}")]
    Timeout {
        /// The endpoint URL.
        url: String,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// TLS could not be set up for an HTTPS endpoint or a broker (a certificate file is missing or bad).
    #[error("tls setup failed: {reason}")]
    Tls {
        /// What failed.
        reason: String,
    },
    /// The hook journal could not be read, written, repaired or compacted (the file system failed).
    #[error("hook journal {path}: {source}")]
    JournalIo {
        /// The journal file.
        path: std::path::PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The hook journal holds a record with a valid checksum that does not decode, or damage that
    /// repair refuses to cut (anything but a torn tail).
    #[error("hook journal {path}: {reason}")]
    JournalCorrupt {
        /// The journal file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

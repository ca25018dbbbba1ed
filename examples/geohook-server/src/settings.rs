//! Settings that `CONFIG SET` changes at run time and `CONFIG REWRITE`
//! persists to the JSON file `config` in the data directory (Tile38's name).

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The file name of the persisted settings inside the data directory.
pub(crate) const CONFIG_NAME: &str = "config";

/// Run-time settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Settings {
    /// Password clients must give with AUTH; empty means none.
    ///
    /// Default: empty.
    pub(crate) requirepass: String,
    /// Refuse clients that are not on loopback when the server listens on
    /// another address and no password is set.
    ///
    /// Default: true.
    #[serde(rename = "protected-mode", with = "yes_no")]
    pub(crate) protected_mode: bool,
    /// Shrink the append-only file automatically once it is at least this
    /// many bytes; 0 turns automatic shrinking off.
    ///
    /// Default: 0.
    #[serde(rename = "aofshrink-min-size")]
    pub(crate) aofshrink_min_size: u64,
    /// When not 0, shrink only once the file has also grown by this many
    /// percent over its size after the previous shrink; 0 means size alone
    /// decides.
    ///
    /// Default: 0.
    #[serde(rename = "aofshrink-percentage")]
    pub(crate) aofshrink_percentage: u64,
    /// Cap on how fast a shrink writes the compacted state, in bytes per
    /// second; 0 means no cap. A shrink that writes as fast as the disk takes
    /// it makes every `appendfsync always` write wait behind its stream; a cap
    /// well below the disk's bandwidth keeps that latency close to normal at
    /// the price of a longer shrink (see aof-compactor's `Rewrite::max_rate`).
    ///
    /// Default: 0.
    #[serde(rename = "aofshrink-max-rate")]
    pub(crate) aofshrink_max_rate: u64,
    /// Tile38's `maxmemory`: while jemalloc's allocated bytes are above it,
    /// commands that add data are refused with the OOM error (the same path
    /// as memwatch's soft level); 0 turns it off.
    ///
    /// Default: 0.
    pub(crate) maxmemory: u64,
    /// Most commands one connection runs from a pipeline before its
    /// replies are written and other clients get a turn; the rest of the
    /// pipeline runs after. Redis gets the same effect from reading at
    /// most 16 KiB per turn; a count also bounds a pipeline of tiny
    /// commands whose bytes and replies are far below every byte cap.
    /// 0 turns the cap off (the bytes read and the reply budget still
    /// bound a batch).
    ///
    /// Default: 1000.
    #[serde(rename = "client-pipeline-max")]
    pub(crate) client_pipeline_max: u64,
    /// The leader this node follows (`FOLLOW host port`); empty for a leader.
    ///
    /// Default: empty.
    #[serde(rename = "follow_host")]
    pub(crate) follow_host: String,
    /// The leader's port, with `follow_host`.
    ///
    /// Default: 0.
    #[serde(rename = "follow_port")]
    pub(crate) follow_port: u16,
    /// The password a follower sends with AUTH to its leader (the leader's
    /// `requirepass`); empty sends none.
    ///
    /// Default: empty.
    pub(crate) leaderauth: String,
    /// Tile38's `keepalive`: the TCP keep-alive period for client
    /// connections, in seconds, set on each connection when it is accepted;
    /// 0 leaves the system's default (off).
    ///
    /// Default: 300.
    pub(crate) keepalive: u64,
    /// Tile38's `autogc`: every this many seconds, jemalloc's dirty pages
    /// are returned to the system (what `GC` does); 0 is off, and jemalloc's
    /// own decay returns memory meanwhile.
    ///
    /// Default: 0.
    pub(crate) autogc: u64,
    /// Tile38's `logconfig`: a JSON object for the logger, or empty.
    /// Stored, shown and persisted; logging is set up from `RUST_LOG`.
    ///
    /// Default: empty.
    pub(crate) logconfig: String,
    /// Tile38's `replica-priority`, which a follower's INFO shows as
    /// `slave_priority`; negative means unset (hidden, as in Tile38).
    ///
    /// Default: -1.
    #[serde(rename = "replica-priority")]
    pub(crate) replica_priority: i64,
    /// Tile38's `replica_announce_ip`; stored, shown and persisted.
    ///
    /// Default: empty.
    #[serde(rename = "replica_announce_ip")]
    pub(crate) replica_announce_ip: String,
    /// Tile38's `replica_announce_port`; stored, shown and persisted; 0 is
    /// unset.
    ///
    /// Default: 0.
    #[serde(rename = "replica_announce_port")]
    pub(crate) replica_announce_port: u16,
    /// Tile38's `server_id`: this node's identity, 32 random hex digits made
    /// on its first start and kept in the file from then on (SERVER's `id`,
    /// INFO's `tile38_id`). Not a CONFIG property.
    ///
    /// Default: empty (filled at start).
    #[serde(rename = "server_id")]
    pub(crate) server_id: String,
    /// Tile38's `read_only`: READONLY yes, kept across restarts. Not a
    /// CONFIG property.
    ///
    /// Default: false.
    #[serde(rename = "read_only")]
    pub(crate) read_only: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            requirepass: String::new(),
            protected_mode: true,
            aofshrink_min_size: 0,
            aofshrink_percentage: 0,
            aofshrink_max_rate: 0,
            maxmemory: 0,
            client_pipeline_max: DEFAULT_PIPELINE_MAX,
            follow_host: String::new(),
            follow_port: 0,
            leaderauth: String::new(),
            keepalive: 300,
            autogc: 0,
            logconfig: String::new(),
            replica_priority: -1,
            replica_announce_ip: String::new(),
            replica_announce_port: 0,
            server_id: String::new(),
            read_only: false,
        }
    }
}

mod yes_no {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &bool, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if *v { "yes" } else { "no" })
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_yes_no(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("expected yes or no, got {s:?}")))
    }
}

/// Why `CONFIG SET` refused a value, in Tile38's words.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetError {
    /// No such property.
    #[error("Unsupported CONFIG parameter: {0}")]
    Unsupported(String),
    /// A property only FOLLOW changes.
    #[error("CONFIG parameter '{0}' is read-only, use FOLLOW")]
    ReadOnly(String),
    /// The value does not parse for the property.
    #[error("Invalid argument '{value}' for CONFIG SET '{name}'")]
    Invalid { name: String, value: String },
}

/// Parses `yes`/`no` (any case).
pub(crate) fn parse_yes_no(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

/// Parses a size like Tile38's `maxmemory`: plain bytes or a `kb`/`mb`/`gb`
/// suffix in binary multiples (`256mb` = 268435456).
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let (digits, mult) = if let Some(d) = lower.strip_suffix("gb") {
        (d, 1u64 << 30)
    } else if let Some(d) = lower.strip_suffix("mb") {
        (d, 1 << 20)
    } else if let Some(d) = lower.strip_suffix("kb") {
        (d, 1 << 10)
    } else if let Some(d) = lower.strip_suffix('b') {
        (d, 1)
    } else {
        (lower.as_str(), 1)
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// The default of `client-pipeline-max`: about what one 16 KiB read of
/// small commands holds, Redis's batch.
pub(crate) const DEFAULT_PIPELINE_MAX: u64 = 1000;

/// The names `CONFIG GET` shows, sorted; `CONFIG SET` accepts all but
/// `follow_host` and `follow_port`, which FOLLOW changes.
pub(crate) const PROPERTIES: &[&str] = &[
    "aofshrink-max-rate",
    "aofshrink-min-size",
    "aofshrink-percentage",
    "autogc",
    "client-pipeline-max",
    "follow_host",
    "follow_port",
    "keepalive",
    "leaderauth",
    "logconfig",
    "maxmemory",
    "protected-mode",
    "replica-priority",
    "replica_announce_ip",
    "replica_announce_port",
    "requirepass",
];

impl Settings {
    /// Reads the settings file, or the defaults when it does not exist.
    ///
    /// # Errors
    ///
    /// An unreadable or malformed file, naming the path.
    pub(crate) fn load(dir: &Path) -> anyhow::Result<Settings> {
        let path = dir.join(CONFIG_NAME);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(anyhow::anyhow!(
                "cannot read config file {}: {e}",
                path.display()
            )),
        }
    }

    /// Writes the settings file atomically: a temporary file, fsync, rename,
    /// then an fsync of the directory so the rename survives a crash.
    ///
    /// # Errors
    ///
    /// Any I/O error.
    pub(crate) fn save(&self, dir: &Path) -> std::io::Result<()> {
        let mut text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        text.push(b'\n');
        crate::fsio::write(&dir.join(CONFIG_NAME), &text)
    }

    /// Gives a node without an id its own (Tile38's `server_id`: 16 random
    /// bytes in hex) and records it in the settings file, as Tile38 writes
    /// its config at every start; returns whether an id was made.
    ///
    /// # Errors
    ///
    /// The random source or the file cannot be read or written.
    pub(crate) fn ensure_server_id(&mut self, dir: &Path) -> anyhow::Result<bool> {
        if !self.server_id.is_empty() {
            return Ok(false);
        }
        let mut bytes = [0u8; 16];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
        self.server_id = bytes.iter().map(|b| format!("{b:02x}")).collect();
        store(
            dir,
            "server_id",
            serde_json::Value::from(self.server_id.clone()),
        )?;
        Ok(true)
    }

    /// The compactor's growth rule from `aofshrink-percentage` (0 = off).
    pub(crate) fn growth_percent(&self) -> Option<u32> {
        (self.aofshrink_percentage > 0)
            .then(|| u32::try_from(self.aofshrink_percentage).unwrap_or(u32::MAX))
    }

    /// The value of one property as `CONFIG GET` shows it.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "requirepass" => self.requirepass.clone(),
            "protected-mode" => if self.protected_mode { "yes" } else { "no" }.to_string(),
            "aofshrink-min-size" => self.aofshrink_min_size.to_string(),
            "aofshrink-percentage" => self.aofshrink_percentage.to_string(),
            "aofshrink-max-rate" => self.aofshrink_max_rate.to_string(),
            "leaderauth" => self.leaderauth.clone(),
            "maxmemory" => self.maxmemory.to_string(),
            "client-pipeline-max" => self.client_pipeline_max.to_string(),
            "keepalive" => self.keepalive.to_string(),
            "autogc" => self.autogc.to_string(),
            "logconfig" => self.logconfig.clone(),
            // Tile38 shows an unset priority as empty.
            "replica-priority" if self.replica_priority < 0 => String::new(),
            "replica-priority" => self.replica_priority.to_string(),
            "replica_announce_ip" => self.replica_announce_ip.clone(),
            "replica_announce_port" => self.replica_announce_port.to_string(),
            "follow_host" => self.follow_host.clone(),
            "follow_port" => self.follow_port.to_string(),
            _ => return None,
        })
    }

    /// Sets one property from its `CONFIG SET` text.
    ///
    /// # Errors
    ///
    /// Tile38's messages: `Unsupported CONFIG parameter: x` and
    /// `Invalid argument 'v' for CONFIG SET 'name'`.
    pub(crate) fn set(&mut self, name: &str, value: &str) -> Result<(), SetError> {
        let invalid = || SetError::Invalid {
            name: name.to_owned(),
            value: value.to_owned(),
        };
        match name {
            "requirepass" => self.requirepass = value.to_string(),
            "protected-mode" => self.protected_mode = parse_yes_no(value).ok_or_else(invalid)?,
            "aofshrink-min-size" => {
                self.aofshrink_min_size = parse_size(value).ok_or_else(invalid)?
            }
            "aofshrink-percentage" => {
                self.aofshrink_percentage = value.parse().map_err(|_| invalid())?
            }
            "aofshrink-max-rate" => {
                self.aofshrink_max_rate = parse_size(value).ok_or_else(invalid)?
            }
            "leaderauth" => self.leaderauth = value.to_string(),
            "maxmemory" => self.maxmemory = parse_size(value).ok_or_else(invalid)?,
            "client-pipeline-max" => {
                self.client_pipeline_max = value.parse().map_err(|_| invalid())?
            }
            // Tile38 reads an empty value as the default for these.
            "keepalive" if value.is_empty() => self.keepalive = 300,
            "keepalive" => self.keepalive = value.parse().map_err(|_| invalid())?,
            "autogc" if value.is_empty() => self.autogc = 0,
            "autogc" => self.autogc = value.parse().map_err(|_| invalid())?,
            "logconfig" => {
                // An object, as Tile38's logger reads it, or empty.
                let ok = value.is_empty()
                    || serde_json::from_str::<serde_json::Value>(value)
                        .is_ok_and(|v| v.is_object());
                if !ok {
                    return Err(invalid());
                }
                self.logconfig = value.to_string();
            }
            "replica-priority" => {
                self.replica_priority = value
                    .parse::<i64>()
                    .ok()
                    .filter(|p| *p >= 0)
                    .ok_or_else(invalid)?
            }
            "replica_announce_ip" => self.replica_announce_ip = value.to_string(),
            "replica_announce_port" if value.is_empty() => self.replica_announce_port = 0,
            "replica_announce_port" => {
                self.replica_announce_port = value.parse().map_err(|_| invalid())?
            }
            "follow_host" | "follow_port" => return Err(SetError::ReadOnly(name.to_owned())),
            _ => return Err(SetError::Unsupported(name.to_owned())),
        }
        Ok(())
    }
}

/// Sets one member of the settings file in `dir` to `value`, keeping every
/// other member as it is (the `hook-*` properties that CONFIG REWRITE
/// stores beside these settings included); creates the file if needed.
///
/// # Errors
///
/// The file cannot be read, is not a JSON object, or cannot be written.
pub(crate) fn store(dir: &Path, name: &str, value: serde_json::Value) -> anyhow::Result<()> {
    let path = dir.join(CONFIG_NAME);
    let mut doc = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => anyhow::bail!("cannot read config file {}: {e}", path.display()),
    };
    let Some(map) = doc.as_object_mut() else {
        anyhow::bail!("config file {} is not a JSON object", path.display());
    };
    map.insert(name.to_owned(), value);
    let mut text = serde_json::to_vec_pretty(&doc)?;
    text.push(b'\n');
    crate::fsio::write(&path, &text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("256mb"), Some(268_435_456));
        assert_eq!(parse_size("1KB"), Some(1024));
        assert_eq!(parse_size("2gb"), Some(2 << 30));
        assert_eq!(parse_size("0"), Some(0));
        let mut s = Settings::default();
        s.set("aofshrink-max-rate", "64mb").unwrap();
        assert_eq!(s.get("aofshrink-max-rate").as_deref(), Some("67108864"));
        assert!(s.set("aofshrink-max-rate", "fast").is_err());
        s.set("maxmemory", "512mb").unwrap();
        assert_eq!(s.maxmemory, 512 << 20);
        assert_eq!(s.get("maxmemory").as_deref(), Some("536870912"));
        assert!(s.set("maxmemory", "lots").is_err());
        assert_eq!(s.get("client-pipeline-max").as_deref(), Some("1000"));
        s.set("client-pipeline-max", "50").unwrap();
        assert_eq!(s.client_pipeline_max, 50);
        for bad in ["-1", "many", ""] {
            assert!(s.set("client-pipeline-max", bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_size("12345"), Some(12345));
        assert_eq!(parse_size("mb"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("99999999999gb"), None);
    }

    #[test]
    fn tile38_properties_are_validated_as_tile38_does() {
        let mut s = Settings::default();
        assert_eq!(s.get("keepalive").as_deref(), Some("300"));
        assert_eq!(s.get("replica-priority").as_deref(), Some(""));
        s.set("keepalive", "60").unwrap();
        assert_eq!(s.keepalive, 60);
        s.set("keepalive", "").unwrap();
        assert_eq!(s.keepalive, 300, "empty is the default");
        assert!(s.set("keepalive", "-1").is_err());
        s.set("autogc", "30").unwrap();
        assert!(s.set("autogc", "soon").is_err());
        s.set("replica-priority", "0").unwrap();
        assert_eq!(s.get("replica-priority").as_deref(), Some("0"));
        assert!(s.set("replica-priority", "-2").is_err());
        s.set("logconfig", r#"{"level":"debug"}"#).unwrap();
        assert!(s.set("logconfig", "[1]").is_err());
        assert!(s.set("logconfig", "{").is_err());
        s.set("replica_announce_port", "7000").unwrap();
        assert!(s.set("replica_announce_port", "70000").is_err());
        let err = s.set("follow_host", "10.0.0.1").unwrap_err().to_string();
        assert!(err.contains("read-only"), "{err}");
        for p in PROPERTIES {
            assert!(s.get(p).is_some(), "{p} has a value");
        }
        assert!(PROPERTIES.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Settings::default();
        s.set("aofshrink-min-size", "1mb").unwrap();
        s.set("protected-mode", "no").unwrap();
        s.set("keepalive", "42").unwrap();
        s.set("replica-priority", "3").unwrap();
        s.set("logconfig", r#"{"level":"info"}"#).unwrap();
        s.save(dir.path()).unwrap();
        assert_eq!(Settings::load(dir.path()).unwrap(), s);
        // The id is made once, kept by the file, and written without
        // losing what else the file holds.
        let mut t = Settings::load(dir.path()).unwrap();
        assert!(t.ensure_server_id(dir.path()).unwrap());
        assert_eq!(t.server_id.len(), 32);
        assert!(t.server_id.bytes().all(|b| b.is_ascii_hexdigit()));
        let mut again = Settings::load(dir.path()).unwrap();
        assert_eq!(again.server_id, t.server_id);
        assert_eq!(again.keepalive, 42);
        assert!(!again.ensure_server_id(dir.path()).unwrap());
        store(dir.path(), "read_only", true.into()).unwrap();
        assert!(Settings::load(dir.path()).unwrap().read_only);
        assert!(s
            .set("nope", "1")
            .unwrap_err()
            .to_string()
            .starts_with("Unsupported"));
        assert!(s
            .set("aofshrink-min-size", "x")
            .unwrap_err()
            .to_string()
            .starts_with("Invalid argument"));
    }
}

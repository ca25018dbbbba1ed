//! Helpers shared by the end-to-end tests: build and start the real
//! `geohook-server` binary on a free loopback port, talk to it with the
//! `redis` client or raw TCP, and kill it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

/// The workspace root (the parent of this package).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Builds `geohook-server` once per test process (a no-op when it is up to
/// date) and returns the path of the binary. Building from here keeps a
/// fresh clone working with nothing but `cargo test`.
pub fn server_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "build",
                "-q",
                // The features `cargo test --workspace --all-features` resolves,
                // so the dependencies it built are reused, not built again.
                "--workspace",
                "--all-features",
                "--bin",
                "geohook-server",
                "--message-format=json",
            ])
            .current_dir(workspace_root())
            .stderr(Stdio::inherit())
            .output()
            .expect("run cargo build for geohook-server");
        // The executable's path comes from cargo itself, so a custom
        // CARGO_TARGET_DIR or build.target-dir is honoured.
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            // With --message-format=json the compiler's diagnostics arrive on
            // stdout, not on the inherited stderr: show them.
            let rendered: Vec<String> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["reason"] == "compiler-message")
                .filter_map(|v| v["message"]["rendered"].as_str().map(str::to_owned))
                .collect();
            panic!(
                "cargo build --bin geohook-server failed ({}):\n{}",
                out.status,
                rendered.join("\n")
            );
        }
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["reason"] == "compiler-artifact" && v["target"]["name"] == "geohook-server" {
                if let Some(exe) = v["executable"].as_str() {
                    return PathBuf::from(exe);
                }
            }
        }
        panic!("cargo did not report the geohook-server executable");
    })
    .clone()
}

/// The server's stderr, collected by a thread, with a way to wait for a line.
#[derive(Debug, Default)]
struct Log {
    text: Mutex<String>,
    grew: Condvar,
}

/// A running server process.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// The data directory.
    pub dir: PathBuf,
    /// The client port.
    pub port: u16,
    log: Arc<Log>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

/// How a start attempt ended.
#[derive(Debug)]
pub enum Started {
    /// Listening.
    Up(Server),
    /// The process exited first.
    Exited(ExitStatus, String),
}

/// Starts the server on `dir` with extra flags and environment variables,
/// on a port it picks itself; waits up to 30 s for it to listen.
pub fn try_start(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Result<Started> {
    let mut cmd = Command::new(server_bin());
    cmd.arg("--dir").arg(dir);
    // A caller that gives its own port keeps it across restarts (a leader
    // its followers reconnect to); otherwise the server picks one.
    if !args.contains(&"--port") {
        cmd.args(["--port", "0"]);
    }
    cmd.args(args);
    cmd.env("RUST_LOG", "info");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("spawn geohook-server")?;
    let log = Arc::new(Log::default());
    let stderr = child.stderr.take().expect("piped stderr");
    let l = log.clone();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stderr);
        let mut line = String::new();
        while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            l.text.lock().unwrap().push_str(&line);
            l.grew.notify_all();
            line.clear();
        }
        // Mark the end so waiters stop waiting.
        l.text.lock().unwrap().push_str("\u{0}EOF\n");
        l.grew.notify_all();
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = find_addr(&log.text.lock().unwrap(), "listening");
        if let Some(addr) = found {
            let port = addr
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .context("port in listening line")?;
            return Ok(Started::Up(Server {
                child,
                dir: dir.to_path_buf(),
                port,
                log,
                args: args.iter().map(|s| s.to_string()).collect(),
                envs: envs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }));
        }
        if let Some(status) = child.try_wait()? {
            // Let the reader thread drain what is left of stderr.
            wait_for(&log, "\u{0}EOF", Duration::from_secs(5));
            let text = log.text.lock().unwrap().replace("\u{0}EOF\n", "");
            return Ok(Started::Exited(status, text));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "server did not listen within 30 s:\n{}",
                log.text.lock().unwrap()
            );
        }
        let g = log.text.lock().unwrap();
        let _ = log.grew.wait_timeout(g, Duration::from_millis(20)).unwrap();
    }
}

/// Starts the server and fails if it does not come up.
pub fn start(dir: &Path, args: &[&str]) -> Result<Server> {
    start_env(dir, args, &[])
}

/// [`start`] with environment variables.
pub fn start_env(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Result<Server> {
    match try_start(dir, args, envs)? {
        Started::Up(s) => Ok(s),
        Started::Exited(st, log) => bail!("server exited at start with {st}:\n{log}"),
    }
}

fn find_addr(text: &str, marker: &str) -> Option<String> {
    text.lines().filter(|l| l.contains(marker)).find_map(|l| {
        let i = l.find("addr=")?;
        Some(
            l[i + 5..]
                .split_whitespace()
                .next()?
                .trim_matches('"')
                .to_string(),
        )
    })
}

fn wait_for(log: &Log, needle: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut g = log.text.lock().unwrap();
    loop {
        if g.contains(needle) {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        g = log.grew.wait_timeout(g, deadline - now).unwrap().0;
    }
}

impl Server {
    /// A Redis client connection.
    pub fn client(&self) -> redis::Connection {
        let c = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).expect("client");
        let conn = c
            .get_connection_with_timeout(Duration::from_secs(10))
            .expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        conn
    }

    /// A Redis client switched to `OUTPUT json`.
    pub fn json_client(&self) -> redis::Connection {
        let mut c = self.client();
        let r: String = redis::cmd("OUTPUT")
            .arg("json")
            .query(&mut c)
            .expect("OUTPUT json");
        assert!(r.contains("\"ok\":true"), "{r}");
        c
    }

    /// A raw TCP connection.
    pub fn raw(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.text.lock().unwrap().replace("\u{0}EOF\n", "")
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_for(&self.log, needle, timeout)
    }

    /// The address of the metrics endpoint, once logged.
    pub fn metrics_addr(&self) -> Option<String> {
        find_addr(&self.log(), "metrics endpoint up")
    }

    /// The metrics page (status line, headers and body) over HTTP/1.0.
    ///
    /// # Panics
    ///
    /// If the server was started without `--metrics-addr` or the endpoint
    /// does not answer within 10 s.
    pub fn metrics_page(&self) -> String {
        let addr = self
            .metrics_addr()
            .expect("server started with --metrics-addr");
        let mut s = TcpStream::connect(addr).expect("metrics connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut page = String::new();
        s.read_to_string(&mut page).unwrap();
        page
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL and reap.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety concerns.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({sig})");
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                wait_for(&self.log, "\u{0}EOF", Duration::from_secs(5));
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, wait, and start again on the same directory with the same flags.
    pub fn restart(mut self) -> Result<Server> {
        self.signal(libc::SIGTERM);
        let st = self
            .wait_exit(Duration::from_secs(30))
            .context("server did not stop on SIGTERM")?;
        if st.code() != Some(0) {
            bail!("exit {st} on SIGTERM:\n{}", self.log());
        }
        let args: Vec<&str> = self.args.iter().map(|s| s.as_str()).collect();
        let envs: Vec<(&str, &str)> = self
            .envs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        start_env(&self.dir, &args, &envs)
    }

    /// The path of the append-only file.
    pub fn aof(&self) -> PathBuf {
        self.dir.join("appendonly.aof")
    }

    /// One SERVER stat as a string.
    pub fn stat(&self, conn: &mut redis::Connection, name: &str) -> String {
        let v: Vec<String> = redis::cmd("SERVER").query(conn).expect("SERVER");
        v.chunks(2)
            .find(|c| c[0] == name)
            .map(|c| c[1].clone())
            .unwrap_or_else(|| panic!("no stat {name}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One sample's value on a metrics page, if the page has it.
pub fn metric_value(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Waits for `f` to return true, polling every 20 ms, up to `timeout`.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A raw connection with a buffered reader over it, for the replies the typed
/// client does not read: live fences, monitors, pushes.
#[derive(Debug)]
pub struct Raw {
    pub w: TcpStream,
    pub r: BufReader<TcpStream>,
}

impl Raw {
    /// Connects to `server`, waiting up to 60 s for each read.
    pub fn open(server: &Server) -> Raw {
        let w = server.raw();
        w.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let r = BufReader::new(w.try_clone().expect("clone the socket"));
        Raw { w, r }
    }

    /// Sends one command.
    pub fn send<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        let args: Vec<&[u8]> = args.iter().map(AsRef::as_ref).collect();
        self.w.write_all(&resp(&args)).expect("send a command");
    }

    /// Sends one command and reads one reply with [`read_reply`].
    pub fn ask<A: AsRef<[u8]>>(&mut self, args: &[A]) -> String {
        self.send(args);
        self.read()
    }

    /// Reads one reply with [`read_reply`].
    pub fn read(&mut self) -> String {
        read_reply(&mut self.r)
    }

    /// What is left until the server closes the connection.
    pub fn rest(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        self.r
            .read_to_end(&mut rest)
            .expect("closed, not timed out");
        rest
    }
}

/// One RESP value as text, as far as the raw tests need it: simple strings
/// and errors as their line, integers as their digits, bulks as their body,
/// a nil as `nil`, aggregates (arrays, maps, pushes) as `[items]`.
pub fn read_reply(r: &mut impl BufRead) -> String {
    let mut line = String::new();
    r.read_line(&mut line).expect("read a reply line");
    assert!(line.ends_with("\r\n"), "cut reply: {line:?}");
    let line = line.trim_end();
    let (kind, rest) = line.split_at(1);
    match kind {
        "$" | "*" if rest.starts_with('-') => "nil".to_owned(),
        "$" => {
            let mut b = vec![0; rest.parse::<usize>().expect("a bulk length") + 2];
            r.read_exact(&mut b).expect("a bulk body");
            b.truncate(b.len() - 2);
            String::from_utf8(b).expect("utf-8")
        }
        "*" | "%" | ">" => {
            let n = rest.parse::<usize>().expect("a length") * if kind == "%" { 2 } else { 1 };
            let items: Vec<String> = (0..n).map(|_| read_reply(r)).collect();
            format!("[{}]", items.join(" "))
        }
        ":" => rest.to_owned(),
        _ => line.to_owned(),
    }
}

/// Encodes a command as RESP, with the encoder the server and its
/// append-only file use.
pub fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    geohook_resp::encode_command(&mut out, args);
    out
}

/// Sends bytes and reads what comes back until the peer closes, at least
/// `want` bytes ending in CRLF arrived, or 2 s pass without data; returns the
/// bytes and whether the peer closed.
pub fn exchange(s: &mut TcpStream, bytes: &[u8], want: usize) -> (Vec<u8>, bool) {
    // A write may fail when the server already closed after an error.
    let _ = s.write_all(bytes);
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() >= want && out.ends_with(b"\r\n") {
                    return (out, false);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (out, true),
            Err(_) => return (out, false),
        }
    }
}

/// Every live object as `key id object fields` lines, read through SCAN, to
/// compare states across restarts and shrinks.
pub fn dump(conn: &mut redis::Connection) -> Vec<String> {
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(conn).expect("KEYS");
    let mut out = Vec::new();
    for k in keys {
        let v: redis::Value = redis::cmd("SCAN")
            .arg(&k)
            .arg("LIMIT")
            .arg(1_000_000)
            .query(conn)
            .expect("SCAN");
        out.push(format!("{k} {v:?}"));
    }
    out
}

/// Renders a reply the way Tile38's own tests print them: arrays as
/// `[a b [c d]]`, null as `nil`, errors as `ERR:<message>`, OK as `OK`.
pub fn render(r: redis::RedisResult<redis::Value>) -> String {
    fn one(v: &redis::Value) -> String {
        match v {
            redis::Value::Nil => "nil".into(),
            redis::Value::Int(i) => i.to_string(),
            redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            redis::Value::SimpleString(s) => s.clone(),
            redis::Value::Okay => "OK".into(),
            redis::Value::Array(items) => {
                format!("[{}]", items.iter().map(one).collect::<Vec<_>>().join(" "))
            }
            other => format!("{other:?}"),
        }
    }
    match r {
        Ok(v) => one(&v),
        Err(e) => {
            let msg = e
                .detail()
                .map(str::to_string)
                .unwrap_or_else(|| e.to_string());
            let code = e.code().unwrap_or("ERR");
            if code == "ERR" {
                format!("ERR:{msg}")
            } else {
                format!("ERR:{code} {msg}")
            }
        }
    }
}

/// Splits a command line on spaces; arguments here never contain spaces.
pub fn cmd_of(line: &str) -> redis::Cmd {
    let mut parts = line.split(' ');
    let mut c = redis::cmd(parts.next().expect("command name"));
    for p in parts {
        c.arg(p);
    }
    c
}

/// Runs a command line and renders the reply.
pub fn run(conn: &mut redis::Connection, line: &str) -> String {
    render(cmd_of(line).query::<redis::Value>(conn))
}

/// Runs a command line on a JSON-mode connection and returns the reply
/// without its `elapsed` member.
pub fn run_json(conn: &mut redis::Connection, line: &str) -> serde_json::Value {
    let text: String = cmd_of(line)
        .query(conn)
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    let mut v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{line}: {e}: {text}"));
    let obj = v
        .as_object_mut()
        .unwrap_or_else(|| panic!("{line}: not an object: {text}"));
    assert!(
        obj.remove("elapsed").is_some_and(|e| e.is_string()),
        "{line}: no elapsed in {text}"
    );
    v
}

/// Reads until `needle` arrived or the peer closed; returns what came.
pub fn read_until(s: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while !got.windows(needle.len()).any(|w| w == needle) {
        match std::io::Read::read(s, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}

/// A grid of points for tests that need a large collection: SETs `n` points
/// `id(i)` under `key` in one pipeline, point `i` at
/// `(lat0 + (i % rows) · dlat, lon0 + (i / rows) · dlon)`.
#[derive(Debug, Clone, Copy)]
pub struct Grid {
    /// Points per column.
    pub rows: usize,
    /// The first point's latitude and longitude.
    pub origin: (f64, f64),
    /// The steps in latitude (within a column) and longitude (between them).
    pub step: (f64, f64),
}

impl Grid {
    /// Loads `n` points of the grid (see [`Grid`]).
    pub fn load(
        &self,
        conn: &mut redis::Connection,
        key: &str,
        n: usize,
        id: impl Fn(usize) -> String,
    ) {
        let mut pipe = redis::pipe();
        for i in 0..n {
            let lat = self.origin.0 + (i % self.rows) as f64 * self.step.0;
            let lon = self.origin.1 + (i / self.rows) as f64 * self.step.1;
            pipe.cmd("SET")
                .arg(key)
                .arg(id(i))
                .arg("POINT")
                .arg(lat)
                .arg(lon)
                .ignore();
        }
        pipe.query::<()>(conn).unwrap();
    }
}

/// SETs `n` objects `t0`, `t1`, … under `key`, each a point at (33, -112)
/// with a field `note` of `pad` bytes, in pipelines of 1,000: a large
/// snapshot for tests of full syncs and shrinks.
pub fn fill_padded(conn: &mut redis::Connection, key: &str, n: usize, pad: usize) {
    let pad = "x".repeat(pad);
    for start in (0..n).step_by(1000) {
        let mut pipe = redis::pipe();
        for i in start..n.min(start + 1000) {
            pipe.cmd("SET")
                .arg(key)
                .arg(format!("t{i}"))
                .arg("FIELD")
                .arg("note")
                .arg(&pad)
                .arg("POINT")
                .arg(33)
                .arg(-112)
                .ignore();
        }
        pipe.query::<()>(conn).unwrap();
    }
}

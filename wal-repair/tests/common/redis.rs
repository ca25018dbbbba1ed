//! A private `redis-server` on a free loopback port that writes a Redis 7 multi-part AOF directory, and
//! `redis-check-aof --fix` as the peer to compare repairs with.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// True if both `redis-server` and `redis-check-aof` can be run; otherwise prints why the calling test
/// is skipped (CI installs them).
pub fn available(test: &str) -> bool {
    for tool in ["redis-server", "redis-check-aof"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            eprintln!(
                "SKIPPED {test}: {tool} not found (apt-get install redis-server redis-tools)"
            );
            return false;
        }
    }
    true
}

/// One RESP connection.
struct Conn(BufReader<TcpStream>);

impl Conn {
    fn call(&mut self, args: &[&str]) -> String {
        let mut req = Vec::new();
        wal_repair::resp::encode(args, &mut req);
        self.0.get_mut().write_all(&req).expect("send");
        let mut line = String::new();
        self.0.read_line(&mut line).expect("reply");
        if let Some(len) = line.strip_prefix('$') {
            let len: i64 = len.trim().parse().expect("bulk length");
            if len < 0 {
                return String::new();
            }
            let mut body = vec![0; len as usize + 2];
            self.0.read_exact(&mut body).expect("bulk body");
            body.truncate(len as usize);
            return String::from_utf8(body).expect("utf-8 reply");
        }
        assert!(!line.starts_with('-'), "{args:?}: {line}");
        line.trim().to_string()
    }

    fn info_field(&mut self, field: &str) -> String {
        let info = self.call(&["INFO", "persistence"]);
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .unwrap_or_else(|| panic!("{field} missing from INFO"))
            .trim()
            .to_string()
    }

    /// Waits (with a deadline) until no AOF rewrite runs or is scheduled.
    fn wait_rewrite_done(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.info_field("aof_rewrite_in_progress") != "0"
            || self.info_field("aof_rewrite_scheduled") != "0"
        {
            assert!(Instant::now() < deadline, "AOF rewrite did not finish");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Runs a `redis-server` with `appendonly yes` in `root` and leaves behind `root/appendonlydir` with a
/// base file (RDB when `rdb_preamble`, RESP otherwise) and two incremental files: the rewrite that
/// would have merged them is still running when the server shuts down, so Redis kills it and keeps
/// both. The last command written is a `SET` with a `last_len`-byte value. Returns the directory.
pub fn aof_dir(root: &Path, rdb_preamble: bool, last_len: usize) -> PathBuf {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut server = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .args([
            "--aof-use-rdb-preamble",
            if rdb_preamble { "yes" } else { "no" },
        ])
        .arg("--dir")
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    let stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "redis-server did not listen: {e}"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    let mut c = Conn(BufReader::new(stream));
    for i in 0..40 {
        c.call(&["SET", &format!("key:{i}"), &"v".repeat(i * 7)]);
    }
    c.call(&["BGREWRITEAOF"]);
    c.wait_rewrite_done();
    for i in 0..10 {
        c.call(&["SET", &format!("after:{i}"), &format!("value {i}")]);
    }
    // 50 keys at one second each: this rewrite is still running at the shutdown below, however slow
    // the machine (the shutdown kills it, so the delay costs nothing).
    c.call(&["CONFIG", "SET", "rdb-key-save-delay", "1000000"]);
    c.call(&["BGREWRITEAOF"]);
    for i in 0..10 {
        c.call(&["RPUSH", "list", &format!("item {i}")]);
    }
    c.call(&["SET", "last", &"z".repeat(last_len)]);
    let _ =
        c.0.get_mut()
            .write_all(b"*2\r\n$8\r\nSHUTDOWN\r\n$6\r\nNOSAVE\r\n");
    let status = server.wait().expect("wait for redis-server");
    assert!(status.success(), "redis-server exited with {status}");
    root.join("appendonlydir")
}

/// Copies the regular files of `from` into a new directory `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy file");
    }
}

/// Every regular file of `dir` (name, bytes), sorted, without this crate's evidence files.
pub fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry"))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(n, _)| !n.ends_with(".torn") && !n.ends_with(".lost"))
        .map(|(n, p)| (n, std::fs::read(p).expect("read")))
        .collect();
    out.sort();
    out
}

/// Runs `redis-check-aof --fix` on the manifest of `dir`, answering `y`; returns whether it succeeded.
pub fn check_aof_fix(dir: &Path) -> bool {
    let mut child = Command::new("redis-check-aof")
        .arg("--fix")
        .arg(dir.join("appendonly.aof.manifest"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run redis-check-aof");
    // It reads the answer only when there is something to cut, so a closed pipe here is fine.
    let _ = child.stdin.take().expect("stdin").write_all(b"y\n");
    child.wait().expect("wait redis-check-aof").success()
}

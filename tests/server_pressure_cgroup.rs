//! The server under a real memory limit: a child memory cgroup of this
//! process's own (cgroup v1 `memory.limit_in_bytes` or v2 `memory.max`)
//! with a 300 MiB limit, the server started inside it, and a flood of
//! 20 KB objects from several clients.
//!
//! - With no `MEMWATCH_*` variable set, the server's defaults (threshold
//!   90 %, soft level 80 % of the limit) refuse writes with the OOM error
//!   and keep it alive: PING and GET are answered throughout, writes are
//!   accepted again within 5 s of a DROP, and SIGTERM exits 0.
//! - With the soft level off it exits 2 with a file that needs no repair.
//! - With both off the kernel kills it, which shows the limit is real.
//!
//! Where the machine does not let this process create a child memory cgroup
//! (not root, no memory controller, cgroup v2 without delegation), each
//! test prints why and returns without checking anything.
//!
//! The flood lasts `PRESSURE_FLOOD_SECS` seconds (default 20; the issue's
//! figure is 40).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::{render, run, server_bin, start, wait_until};

/// The limit of the child cgroup.
const LIMIT: u64 = 300 << 20;
/// The size of each flooded object.
const OBJECT: usize = 20_000;
/// Writer connections in the flood.
const WRITERS: usize = 4;
/// The MEMWATCH variables the tests control, removed from the server's
/// environment unless a test sets them.
const VARS: &[&str] = &[
    "MEMWATCH_THRESHOLD",
    "MEMWATCH_SOFT_THRESHOLD",
    "MEMWATCH_LIMIT",
    "MEMWATCH_SIGNAL",
    "MEMWATCH_POLL_INTERVAL",
];

/// One test at a time: each holds a 300 MiB flood.
static SERIAL: Mutex<()> = Mutex::new(());

fn flood_secs() -> u64 {
    std::env::var("PRESSURE_FLOOD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// A child memory cgroup, removed on drop.
struct Cgroup {
    dir: PathBuf,
}

impl Cgroup {
    /// Creates `<own memory cgroup>/<name>` with `limit` bytes, or says why
    /// it cannot.
    fn create(name: &str, limit: u64) -> Result<Cgroup, String> {
        let text = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let v1 = text.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then(|| path.to_owned())
        });
        let (dir, file) = if let Some(path) = v1 {
            (
                Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/')),
                "memory.limit_in_bytes",
            )
        } else {
            let path = text
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .ok_or("no memory controller in /proc/self/cgroup")?;
            let own = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
            let controllers = std::fs::read_to_string(own.join("cgroup.controllers"))
                .map_err(|e| format!("cgroup v2 without cgroup.controllers: {e}"))?;
            if !controllers.split_whitespace().any(|c| c == "memory") {
                return Err(format!(
                    "the memory controller is not delegated to {}",
                    own.display()
                ));
            }
            // A child needs the controller enabled for the subtree.
            std::fs::write(own.join("cgroup.subtree_control"), "+memory").map_err(|e| {
                format!(
                    "cannot enable the memory controller under {}: {e}",
                    own.display()
                )
            })?;
            (own, "memory.max")
        };
        let dir = dir.join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir(&dir)
            .map_err(|e| format!("cannot create the cgroup {}: {e}", dir.display()))?;
        let cg = Cgroup { dir };
        std::fs::write(cg.dir.join(file), limit.to_string())
            .map_err(|e| format!("cannot set {file} in {}: {e}", cg.dir.display()))?;
        Ok(cg)
    }

    /// Removes the directory once its processes are gone (a reaped child
    /// can take a moment to leave it).
    fn remove(&self) {
        let gone = wait_until(Duration::from_secs(10), || {
            std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists()
        });
        if !gone {
            eprintln!("could not remove the cgroup {}", self.dir.display());
        }
    }
}

impl Cgroup {
    /// The most memory the cgroup was charged (v1 `memory.max_usage_in_bytes`,
    /// v2 `memory.peak`), for the figures the tests print.
    fn peak(&self) -> Option<u64> {
        ["memory.max_usage_in_bytes", "memory.peak"]
            .iter()
            .find_map(|f| {
                std::fs::read_to_string(self.dir.join(f))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            })
    }
}

/// A process's VmRSS in bytes.
fn vm_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Creates the cgroup or prints why the test checks nothing.
fn cgroup_or_skip(name: &str) -> Option<Cgroup> {
    match Cgroup::create(name, LIMIT) {
        Ok(cg) => Some(cg),
        Err(why) => {
            eprintln!("SKIPPED: a child memory cgroup is needed and cannot be made here: {why}");
            None
        }
    }
}

/// The server running inside a cgroup: a shell writes its own pid to the
/// cgroup's `cgroup.procs` and then becomes the server, so that every byte
/// the server allocates, from the first, is charged to the limit.
struct Proc {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
}

impl Proc {
    fn start(cg: &Cgroup, dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("echo $$ > \"$0/cgroup.procs\" && exec \"$@\"")
            .arg(&cg.dir)
            .arg(server_bin())
            .arg("--dir")
            .arg(dir)
            .args(["--port", "0", "--memwatch-interval", "50ms"])
            .args(args);
        for v in VARS {
            cmd.env_remove(v);
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn the server");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut g = l.lock().unwrap();
                g.push_str(&line);
                g.push('\n');
            }
        });
        let mut port = None;
        let up = wait_until(Duration::from_secs(30), || {
            port = log.lock().unwrap().lines().find_map(|l| {
                let l = l.strip_suffix('"').unwrap_or(l);
                let at = l.find("listening")?;
                let addr = l[at..].split("addr=").nth(1)?.split_whitespace().next()?;
                addr.rsplit(':').next()?.parse().ok()
            });
            port.is_some()
        });
        let log_text = log.lock().unwrap().clone();
        assert!(up, "the server did not listen:\n{log_text}");
        Proc {
            child,
            port: port.unwrap(),
            log,
        }
    }

    fn client(&self) -> redis::Connection {
        let c = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).unwrap();
        let conn = c
            .get_connection_with_timeout(Duration::from_secs(10))
            .unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        conn
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The metrics page, from the address the server logged.
    fn metrics(&self) -> String {
        let log = self.log();
        let addr = log
            .lines()
            .filter(|l| l.contains("metrics endpoint up"))
            .find_map(|l| l.split("addr=").nth(1)?.split_whitespace().next())
            .expect("metrics endpoint logged")
            .to_owned();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut page = String::new();
        s.read_to_string(&mut page).unwrap();
        page
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What the writers saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    oom: AtomicU64,
    other: AtomicU64,
    /// The first reply that was neither OK nor the OOM error.
    first_other: Mutex<Option<String>>,
}

/// Floods SETs of 20 KB strings from [`WRITERS`] connections until `stop`
/// is set or the server goes away.
fn flood(p: &Proc, stop: &Arc<AtomicBool>, tally: &Arc<Tally>) -> Vec<std::thread::JoinHandle<()>> {
    (0..WRITERS)
        .map(|w| {
            let mut c = p.client();
            let stop = stop.clone();
            let tally = tally.clone();
            std::thread::spawn(move || {
                let value = "x".repeat(OBJECT);
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let r = redis::cmd("SET")
                        .arg("pressure")
                        .arg(format!("{w}-{i}"))
                        .arg("STRING")
                        .arg(&value)
                        .query::<redis::Value>(&mut c);
                    i += 1;
                    match r {
                        Ok(redis::Value::Okay) => {
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if e.code() == Some("OOM") => {
                            tally.oom.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if e.is_io_error() || e.is_connection_dropped() => return,
                        other => {
                            tally.other.fetch_add(1, Ordering::Relaxed);
                            let mut first = tally.first_other.lock().unwrap();
                            first.get_or_insert_with(|| render(other));
                        }
                    }
                }
            })
        })
        .collect()
}

#[test]
fn with_the_defaults_writes_are_refused_and_the_server_stays_alive() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(cg) = cgroup_or_skip("defaults") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut p = Proc::start(&cg, dir.path(), &["--metrics-addr", "127.0.0.1:0"], &[]);
    assert!(p.log().contains("memwatch on"), "{}", p.log());
    let mut probe = p.client();
    assert_eq!(run(&mut probe, "SET probe p POINT 33 -115"), "OK");
    let expected_get = run(&mut probe, "GET probe p");

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let writers = flood(&p, &stop, &tally);
    // PING and GET on their own connection for the whole flood: every one
    // must be answered with its normal reply.
    let started = Instant::now();
    let end = started + Duration::from_secs(flood_secs());
    let mut probes = 0;
    while Instant::now() < end {
        assert_eq!(run(&mut probe, "PING"), "PONG", "{}", p.log());
        assert_eq!(run(&mut probe, "GET probe p"), expected_get);
        probes += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let (ok, oom, other) = (
        tally.ok.load(Ordering::Relaxed),
        tally.oom.load(Ordering::Relaxed),
        tally.other.load(Ordering::Relaxed),
    );
    eprintln!("flood: {ok} accepted, {oom} refused with OOM, {probes} PING+GET probes answered");
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "the server died:\n{}",
        p.log()
    );
    assert_eq!(
        other,
        0,
        "unexpected replies, first: {:?}",
        tally.first_other.lock().unwrap()
    );
    assert!(oom > 0, "no write was refused ({ok} accepted)\n{}", p.log());
    assert!(ok > 0);
    // The refusals are counted by reason and command, and the pressure
    // asked jemalloc for purges, at most one a second.
    let page = p.metrics();
    let gauge = |name: &str| {
        page.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .map_or(-1.0, |b| b / 1048576.0)
    };
    // Figures, not checks: where the defaults hold the process under the
    // 300 MiB limit.
    eprintln!(
        "at the end of the flood: jemalloc resident {:.0} MiB, allocated {:.0} MiB, VmRSS {:.0} MiB, \
         cgroup peak {:.0} MiB of {} MiB",
        gauge("geohook_jemalloc_resident_bytes"),
        gauge("geohook_jemalloc_allocated_bytes"),
        vm_rss(p.child.id()).unwrap_or(0) as f64 / 1048576.0,
        cg.peak().unwrap_or(0) as f64 / 1048576.0,
        LIMIT >> 20
    );
    let counter = |name: &str| -> f64 {
        page.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{page}"))
    };
    let refused = counter("geohook_refused_commands_total{reason=\"memwatch_soft\",cmd=\"set\"}");
    assert_eq!(refused, oom as f64);
    let purges = counter("geohook_pressure_purges_total");
    assert!(
        purges >= 1.0 && purges <= started.elapsed().as_secs_f64() + 1.0,
        "{purges} purges"
    );

    // After DROP the memory comes back and writes are accepted again
    // within 5 s.
    assert_eq!(run(&mut probe, "DROP pressure"), "1");
    let value = "y".repeat(OBJECT);
    let resumed = wait_until(Duration::from_secs(5), || {
        render(
            redis::cmd("SET")
                .arg("after")
                .arg("a")
                .arg("STRING")
                .arg(&value)
                .query::<redis::Value>(&mut probe),
        ) == "OK"
    });
    assert!(resumed, "writes still refused 5 s after DROP\n{}", p.log());

    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(p.child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let status = p.wait_exit(Duration::from_secs(30)).expect("no exit");
    assert_eq!(status.code(), Some(0), "{}", p.log());
}

/// Floods until the server exits; returns its status and the writes it
/// acknowledged.
fn flood_until_exit(p: &mut Proc) -> (ExitStatus, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let writers = flood(p, &stop, &tally);
    let status = p.wait_exit(Duration::from_secs(120));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let status = status.unwrap_or_else(|| panic!("the server did not exit:\n{}", p.log()));
    assert_eq!(
        tally.other.load(Ordering::Relaxed),
        0,
        "unexpected replies, first: {:?}",
        tally.first_other.lock().unwrap()
    );
    (status, tally.ok.load(Ordering::Relaxed))
}

#[test]
fn with_the_soft_level_off_it_exits_2_with_a_clean_file() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(cg) = cgroup_or_skip("nosoft") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut p = Proc::start(&cg, dir.path(), &[], &[("MEMWATCH_SOFT_THRESHOLD", "")]);
    let (status, acked) = flood_until_exit(&mut p);
    eprintln!(
        "exit {status:?} after {acked} writes; cgroup peak {:.0} MiB of {} MiB",
        cg.peak().unwrap_or(0) as f64 / 1048576.0,
        LIMIT >> 20
    );
    assert_eq!(status.code(), Some(2), "{status:?}\n{}", p.log());
    assert!(p.log().contains("memwatch fired"), "{}", p.log());
    drop(p);
    cg.remove();

    // Restarted outside the cgroup: nothing to repair, every acknowledged
    // write there.
    let server = start(dir.path(), &[]).unwrap();
    assert!(
        !server.log().contains("torn"),
        "the next start repaired something:\n{}",
        server.log()
    );
    let count: u64 = run(&mut server.client(), "SCAN pressure COUNT")
        .parse()
        .unwrap();
    assert!(count >= acked, "{count} < {acked} acknowledged");
}

#[test]
fn with_both_off_the_kernel_kills_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(cg) = cgroup_or_skip("off") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut p = Proc::start(
        &cg,
        dir.path(),
        &[],
        &[("MEMWATCH_THRESHOLD", ""), ("MEMWATCH_SOFT_THRESHOLD", "")],
    );
    assert!(p.log().contains("memwatch off"), "{}", p.log());
    let (status, _) = flood_until_exit(&mut p);
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "{status:?}\n{}",
        p.log()
    );
}

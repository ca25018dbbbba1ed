//! The README's snippet, as a user would use it: a scratch project outside
//! the workspace whose `[dependencies]` are the README's (with this crate by
//! path, default features) and whose `main.rs` is the README's Rust block,
//! built and run with cargo.
//!
//! Cost: the scratch project shares the build's target directory
//! (`CARGO_TARGET_DIR`, or the one this test binary lives in), so only the
//! feature set the README asks for is compiled, once; it builds `--offline`
//! from the registry cache with the workspace's lock file, and is killed if
//! it takes longer than `BUILD_LIMIT`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BUILD_LIMIT: Duration = Duration::from_secs(600);

/// The body of the first fenced block opened with "```" + `lang`.
fn block<'a>(readme: &'a str, lang: &str) -> &'a str {
    let open = format!("```{lang}\n");
    let start = readme
        .find(&open)
        .unwrap_or_else(|| panic!("README has no {lang} block"))
        + open.len();
    let len = readme[start..]
        .find("```")
        .unwrap_or_else(|| panic!("README's {lang} block is not closed"));
    &readme[start..start + len]
}

/// The README's `[dependencies]`, with the line naming this crate replaced
/// by a path dependency on it.
fn dependencies(readme: &str, crate_dir: &Path) -> String {
    let toml = block(readme, "toml");
    assert!(
        toml.starts_with("[dependencies]\n"),
        "the README's first toml block must be the [dependencies] table"
    );
    let mut found = false;
    let lines: Vec<String> = toml
        .lines()
        .map(|line| {
            if line.starts_with("aof-compactor =") {
                found = true;
                format!(
                    "aof-compactor = {{ path = {:?} }}",
                    crate_dir.display().to_string()
                )
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert!(found, "the README's [dependencies] must name aof-compactor");
    lines.join("\n")
}

/// Where the scratch build puts its artefacts: the target directory in use.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // This binary is <target>/<profile>/deps/<name>.
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(3)
        .expect("test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

#[test]
fn readme_snippet_builds_and_runs_outside_the_workspace() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(crate_dir.join("README.md")).expect("read README");

    let scratch = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(scratch.path().join("src")).expect("mkdir src");
    // The empty [workspace] table makes the scratch project its own
    // workspace, whatever directory the temporary one is in.
    let manifest = format!(
        "[package]\nname = \"aof-compactor-readme-scratch\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n[workspace]\n\n{}\n",
        dependencies(&readme, crate_dir)
    );
    std::fs::write(scratch.path().join("Cargo.toml"), manifest).expect("write Cargo.toml");
    std::fs::write(scratch.path().join("src/main.rs"), block(&readme, "rust"))
        .expect("write main.rs");
    // The workspace's lock file pins the versions already in the registry
    // cache, so that the offline build resolves; cargo drops what it does
    // not need. A packaged copy of the crate has no workspace lock file.
    let lock = crate_dir.join("../Cargo.lock");
    if lock.exists() {
        std::fs::copy(&lock, scratch.path().join("Cargo.lock")).expect("copy Cargo.lock");
    }

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = Command::new(cargo)
        .args(["run", "--offline", "--quiet", "--manifest-path"])
        .arg(scratch.path().join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir().join("readme-scratch"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cargo");
    // Drained on their own threads so that a long compiler error cannot
    // fill a pipe and stall the child.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).map(|_| s)
    });
    let deadline = Instant::now() + BUILD_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for cargo") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cargo run of the README snippet took longer than {BUILD_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = out.join().expect("stdout reader").expect("read stdout");
    let err = err.join().expect("stderr reader").expect("read stderr");
    assert!(
        status.success(),
        "cargo run failed ({status}):\n{err}\n{out}"
    );
    assert_eq!(out.trim(), "compacted to 8 bytes", "stderr:\n{err}");
}

//! A new user's first build: a cargo project outside this workspace that
//! depends on memwatch by path with its default features only, whose
//! `src/main.rs` is the README's quick-start block as it stands, builds and
//! behaves as the README says (exit 2 once the threshold is crossed, exit 1
//! naming a bad variable).
//!
//! Cost: one `cargo build` of the scratch project. Its target directory is
//! kept under this crate's `CARGO_TARGET_TMPDIR` (not the target directory
//! of the `cargo test` running this, whose lock that `cargo test` holds), so
//! memwatch's dependencies, jemalloc's C build included, compile once (about
//! two minutes on two cores) and later runs only relink the scratch binary.
//! The workspace's `Cargo.lock` is copied in so the scratch project resolves
//! to the same versions and builds `--offline` from the registry cache that
//! building this workspace filled. Each run of the binary takes under a
//! second: it leaks 1 MiB per 10 ms towards a 64 MiB threshold.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The first Rust block of the README's "Quick start" section.
fn readme_main() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = &readme[readme
        .find("## Quick start")
        .expect("a Quick start section")..];
    let start = section.find("```rust").expect("a rust block");
    let body = &section[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("\n```").expect("the block's end")].to_owned() + "\n"
}

fn scratch_project(dir: &Path) {
    let memwatch = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            r#"[package]
name = "scratch-memwatch-user"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
memwatch = {{ path = {:?} }}

# A project of its own, not a member of any workspace above it.
[workspace]
"#,
            memwatch.display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("src/main.rs"), readme_main()).unwrap();
    let lock = memwatch.join("../Cargo.lock");
    if lock.exists() {
        std::fs::copy(lock, dir.join("Cargo.lock")).unwrap();
    }
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn readme_main_builds_and_runs_outside_the_workspace() {
    let project = tempfile::tempdir().unwrap();
    scratch_project(project.path());
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("scratch-project-target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let build = Command::new(cargo)
        .args(["build", "--offline", "--quiet"])
        .current_dir(project.path())
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(build.status.success(), "cargo build: {}", show(&build));
    let bin = target.join("debug/scratch-memwatch-user");

    let run = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(&bin);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        cmd.envs(env.iter().copied());
        cmd.output().unwrap()
    };

    let fired = run(&[
        ("MEMWATCH_THRESHOLD", "64MiB"),
        ("MEMWATCH_POLL_INTERVAL", "10ms"),
    ]);
    assert_eq!(fired.status.code(), Some(2), "{}", show(&fired));
    assert!(
        String::from_utf8_lossy(&fired.stderr).contains("memory pressure: exiting with 2"),
        "{}",
        show(&fired)
    );

    let bad = run(&[("MEMWATCH_THRESHOLD", "lots")]);
    assert_eq!(bad.status.code(), Some(1), "{}", show(&bad));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("MEMWATCH_THRESHOLD"),
        "{}",
        show(&bad)
    );
}

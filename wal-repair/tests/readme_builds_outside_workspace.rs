//! The README's example, as a user would copy it: the `main` of a new project outside this workspace
//! that depends on the crate by path with default features. It must build and run.
//!
//! The scratch project's target directory lives under this test run's target directory and is kept
//! between runs, so only the first run pays for compiling the crate's dependencies. The workspace's
//! `Cargo.lock` is copied in so that the build resolves to versions already in the local registry
//! cache and works offline.

use std::path::Path;
use std::process::Command;

/// The first ```` ```rust ```` block of the README.
fn readme_snippet(readme: &str) -> String {
    let start = readme
        .find("```rust\n")
        .expect("a rust block in the README")
        + "```rust\n".len();
    let len = readme[start..].find("\n```").expect("the block's end");
    readme[start..start + len].to_string()
}

#[test]
fn readme_example_builds_and_runs_as_a_new_project() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(crate_dir.join("README.md")).unwrap();
    let snippet = readme_snippet(&readme);
    assert!(
        snippet.contains("fn main()"),
        "the README example is a whole program"
    );

    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir(project.path().join("src")).unwrap();
    std::fs::write(project.path().join("src/main.rs"), &snippet).unwrap();
    // An empty [workspace] table keeps cargo from looking for a workspace above the temp directory.
    let manifest = format!(
        "[package]\nname = \"readme-user\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
         [dependencies]\nwal-repair = {{ path = {:?} }}\n\n[workspace]\n",
        crate_dir.display().to_string()
    );
    std::fs::write(project.path().join("Cargo.toml"), manifest).unwrap();
    let lock = crate_dir.join("../Cargo.lock");
    if lock.exists() {
        std::fs::copy(&lock, project.path().join("Cargo.lock")).unwrap();
    }

    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("readme-user-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["run", "--quiet", "--offline"])
        .current_dir(project.path())
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("run cargo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "cargo run failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("cut 10 bytes after offset"), "{stdout}");
}

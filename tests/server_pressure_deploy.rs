//! The deployment files under `examples/geohook-server/deploy/`: the
//! container script's generated command line (a memory limit by default,
//! overridable, off when empty; MEMWATCH variables passed through only when
//! set) and the systemd unit (memory limits, restart on exit 2, accepted by
//! `systemd-analyze verify` where that tool exists).

use std::path::PathBuf;
use std::process::Command;

use e2e::{server_bin, workspace_root};

fn deploy() -> PathBuf {
    workspace_root().join("examples/geohook-server/deploy")
}

/// The script's command line with `DRY_RUN=1`, the given environment (a
/// `None` value removes the variable) and arguments, as words.
fn command_line(envs: &[(&str, Option<&str>)], args: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("bash");
    cmd.arg(deploy().join("run-container.sh"))
        .args(args)
        .env("DRY_RUN", "1")
        .env("GEOHOOK_ENGINE", "docker")
        .env("GEOHOOK_DATA", "/srv/geo");
    for v in [
        "GEOHOOK_MEMORY",
        "GEOHOOK_IMAGE",
        "GEOHOOK_PORT",
        "GEOHOOK_NAME",
        "MEMWATCH_THRESHOLD",
        "MEMWATCH_SOFT_THRESHOLD",
    ] {
        cmd.env_remove(v);
    }
    for (k, v) in envs {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output().expect("run bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The value after `flag`, if the flag is there.
fn after<'a>(words: &'a [String], flag: &str) -> Option<&'a str> {
    let i = words.iter().position(|w| w == flag)?;
    words.get(i + 1).map(String::as_str)
}

#[test]
fn the_container_script_sets_a_memory_limit_unless_told_otherwise() {
    type Case<'a> = (
        &'a [(&'a str, Option<&'a str>)],
        Option<&'a str>,
        &'a [&'a str],
    );
    // (environment, expected --memory, expected -e values)
    let cases: &[Case<'_>] = &[
        (&[], Some("1g"), &[]),
        (&[("GEOHOOK_MEMORY", Some("512m"))], Some("512m"), &[]),
        (&[("GEOHOOK_MEMORY", Some(""))], None, &[]),
        (
            &[("MEMWATCH_SOFT_THRESHOLD", Some(""))],
            Some("1g"),
            &["MEMWATCH_SOFT_THRESHOLD="],
        ),
        (
            &[
                ("MEMWATCH_THRESHOLD", Some("95%")),
                ("GEOHOOK_MEMORY", Some("4g")),
            ],
            Some("4g"),
            &["MEMWATCH_THRESHOLD=95%"],
        ),
    ];
    for &(envs, memory, passed) in cases {
        let words = command_line(envs, &[]);
        assert_eq!(&words[..2], ["docker", "run"], "{words:?}");
        assert_eq!(after(&words, "--memory"), memory, "{envs:?}: {words:?}");
        // Swap is held to the same figure, so that the limit is real.
        assert_eq!(after(&words, "--memory-swap"), memory, "{envs:?}");
        let e: Vec<&str> = words
            .iter()
            .enumerate()
            .filter(|(_, w)| *w == "-e")
            .map(|(i, _)| words[i + 1].as_str())
            .collect();
        assert_eq!(e, passed, "{envs:?}: {words:?}");
        assert_eq!(after(&words, "--restart"), Some("on-failure"));
        assert_eq!(after(&words, "-v"), Some("/srv/geo:/data"));
        // The image comes after every engine option, then the server's flags.
        let image = words
            .iter()
            .position(|w| w == "geohook-server:latest")
            .unwrap();
        assert!(words[..image].iter().all(|w| w != "--dir"));
        assert_eq!(after(&words, "--dir"), Some("/data"));
    }
    let words = command_line(&[("GEOHOOK_PORT", Some("7000"))], &["--requirepass", "s"]);
    assert_eq!(after(&words, "-p"), Some("7000:9851"));
    assert_eq!(&words[words.len() - 2..], ["--requirepass", "s"]);
}

#[test]
fn the_systemd_unit_limits_memory_and_restarts_on_exit_2() {
    let text = std::fs::read_to_string(deploy().join("geohook-server.service")).unwrap();
    let value = |key: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key}="))
            .trim()
            .to_owned()
    };
    let bytes = |v: &str| -> u64 {
        let (n, mult) = match v.as_bytes().last() {
            Some(b'G') => (&v[..v.len() - 1], 1u64 << 30),
            Some(b'M') => (&v[..v.len() - 1], 1 << 20),
            _ => (v, 1),
        };
        n.parse::<u64>().unwrap() * mult
    };
    let (high, max) = (bytes(&value("MemoryHigh")), bytes(&value("MemoryMax")));
    assert!(high < max, "MemoryHigh {high} is not below MemoryMax {max}");
    assert_eq!(value("RestartForceExitStatus"), "2");
    assert_eq!(value("Restart"), "on-abnormal");

    // systemd's own parser, with the real binary in place of the installed
    // path: no warning at all.
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED the systemd-analyze check: systemd-analyze is not installed");
        return;
    };
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("geohook-server.service");
    let bin = server_bin();
    std::fs::write(
        &unit,
        text.replace("/usr/local/bin/geohook-server", bin.to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

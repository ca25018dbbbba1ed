//! Cgroup v1 and v2 limit discovery against fixture directories.

use std::fs;
use std::path::Path;

use memwatch::{Cgroup, CgroupReader, CgroupRoots, CgroupVersion, Error, Limits};

/// A fixture: the `/proc/self/cgroup` text and the files under the mount,
/// as (relative path, contents). A path ending in `/` makes a directory.
struct Fixture {
    proc_self_cgroup: Option<&'static str>,
    files: &'static [(&'static str, &'static str)],
}

/// What discovery must find: the version, the limit, and the working set.
#[derive(Debug, PartialEq)]
struct Expected {
    version: Option<CgroupVersion>,
    limit: Option<u64>,
    working_set: Option<u64>,
}

fn build(fx: &Fixture) -> (tempfile::TempDir, CgroupRoots) {
    let dir = tempfile::tempdir().unwrap();
    let roots = CgroupRoots {
        proc_self_cgroup: dir.path().join("proc_self_cgroup"),
        mount: dir.path().join("sys_fs_cgroup"),
    };
    fs::create_dir_all(&roots.mount).unwrap();
    if let Some(text) = fx.proc_self_cgroup {
        fs::write(&roots.proc_self_cgroup, text).unwrap();
    }
    for (rel, contents) in fx.files {
        let path = roots.mount.join(rel);
        if rel.ends_with('/') {
            fs::create_dir_all(&path).unwrap();
        } else {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, contents).unwrap();
        }
    }
    (dir, roots)
}

fn check(name: &str, fx: Fixture, expected: Expected) {
    let (_dir, roots) = build(&fx);
    let cgroup = Cgroup::discover_at(&roots).unwrap_or_else(|e| panic!("{name}: {e}"));
    let got = Expected {
        version: cgroup.as_ref().map(|c| c.version),
        limit: cgroup.as_ref().and_then(|c| c.limit().unwrap()),
        working_set: cgroup
            .as_ref()
            .and_then(|c| CgroupReader::open(c).unwrap())
            .map(|mut r| r.read().unwrap()),
    };
    assert_eq!(got, expected, "{name}");
    // The effective limit folds the cgroup limit in with the others.
    let limits = Limits::discover_at(Some(u64::MAX - 1), &roots);
    assert_eq!(limits.cgroup, expected.limit, "{name}");
    let physical = limits.physical.expect("physical memory is known on Linux");
    assert_eq!(
        limits.effective(),
        Some(expected.limit.map_or(physical, |l| l.min(physical))),
        "{name}"
    );
}

const V2_STAT: &str =
    "anon 4096\nfile 800\nkernel 100\nactive_file 500\ninactive_file 300\nslab 20\n";
const V1_STAT: &str =
    "cache 900\nrss 4096\ninactive_file 999\ntotal_cache 900\ntotal_inactive_file 250\n";

#[test]
fn v2_smallest_of_max_and_high_along_the_chain() {
    check(
        "v2 nested",
        Fixture {
            proc_self_cgroup: Some("0::/kubepods/pod1/ctr\n"),
            files: &[
                ("cgroup.controllers", "cpu memory io"),
                ("kubepods/memory.max", "8589934592"),
                ("kubepods/memory.high", "max"),
                ("kubepods/pod1/memory.max", "1073741824\n"),
                ("kubepods/pod1/memory.high", "900000000\n"),
                ("kubepods/pod1/ctr/memory.max", "max\n"),
                ("kubepods/pod1/ctr/memory.high", "max\n"),
                ("kubepods/pod1/ctr/memory.current", "1000\n"),
                ("kubepods/pod1/ctr/memory.stat", V2_STAT),
            ],
        },
        Expected {
            version: Some(CgroupVersion::V2),
            limit: Some(900_000_000),
            working_set: Some(700),
        },
    );
}

#[test]
fn v2_unlimited_and_namespaced() {
    check(
        "v2 all max",
        Fixture {
            proc_self_cgroup: Some("0::/user.slice/session-1.scope\n"),
            files: &[
                ("cgroup.controllers", "memory"),
                ("user.slice/memory.max", "max"),
                ("user.slice/session-1.scope/memory.max", "max"),
                ("user.slice/session-1.scope/memory.current", "5000"),
                ("user.slice/session-1.scope/memory.stat", V2_STAT),
            ],
        },
        Expected {
            version: Some(CgroupVersion::V2),
            limit: None,
            working_set: Some(4700),
        },
    );
    // With a private cgroup namespace the process sees itself at "/", and
    // its own files sit at the mount root.
    check(
        "v2 private namespace",
        Fixture {
            proc_self_cgroup: Some("0::/\n"),
            files: &[
                ("cgroup.controllers", "memory"),
                ("memory.max", "536870912"),
                ("memory.current", "2000"),
                ("memory.stat", V2_STAT),
            ],
        },
        Expected {
            version: Some(CgroupVersion::V2),
            limit: Some(536_870_912),
            working_set: Some(1700),
        },
    );
    // A path outside the namespace root cannot be mapped; only the mount
    // root is consulted.
    check(
        "v2 path above namespace root",
        Fixture {
            proc_self_cgroup: Some("0::/../../other\n"),
            files: &[("cgroup.controllers", "memory"), ("memory.max", "1234567")],
        },
        Expected {
            version: Some(CgroupVersion::V2),
            limit: Some(1_234_567),
            working_set: None,
        },
    );
    // The leaf named by /proc/self/cgroup does not exist under the mount
    // (host view in a container without a namespace): existing ancestors
    // still count.
    check(
        "v2 missing leaf",
        Fixture {
            proc_self_cgroup: Some("0::/system.slice/gone.service\n"),
            files: &[
                ("cgroup.controllers", "memory"),
                ("system.slice/memory.high", "2147483648"),
            ],
        },
        Expected {
            version: Some(CgroupVersion::V2),
            limit: Some(2_147_483_648),
            working_set: None,
        },
    );
}

#[test]
fn v1_limit_in_bytes_with_unlimited_sentinel() {
    check(
        "v1 docker",
        Fixture {
            proc_self_cgroup: Some(
                "12:pids:/docker/abc\n11:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n",
            ),
            files: &[
                ("memory/memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory/docker/memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory/docker/abc/memory.limit_in_bytes", "536870912\n"),
                ("memory/docker/abc/memory.usage_in_bytes", "1000\n"),
                ("memory/docker/abc/memory.stat", V1_STAT),
            ],
        },
        Expected {
            version: Some(CgroupVersion::V1),
            limit: Some(536_870_912),
            working_set: Some(750),
        },
    );
    check(
        "v1 combined controllers, unlimited",
        Fixture {
            proc_self_cgroup: Some("3:cpu,memory:/batch\n"),
            files: &[
                (
                    "memory/batch/memory.limit_in_bytes",
                    "9223372036854771712\n",
                ),
                ("memory/batch/memory.usage_in_bytes", "300\n"),
                ("memory/batch/memory.stat", V1_STAT),
            ],
        },
        Expected {
            version: Some(CgroupVersion::V1),
            limit: None,
            working_set: Some(50),
        },
    );
}

#[test]
fn hybrid_host_prefers_the_v1_memory_controller() {
    check(
        "hybrid",
        Fixture {
            proc_self_cgroup: Some("5:memory:/svc\n0::/svc\n"),
            files: &[
                ("cgroup.controllers", ""),
                ("svc/memory.max", "1000"),
                ("memory/svc/memory.limit_in_bytes", "2000"),
            ],
        },
        Expected {
            version: Some(CgroupVersion::V1),
            limit: Some(2000),
            working_set: None,
        },
    );
}

#[test]
fn no_cgroup_means_no_cgroup_limit() {
    check(
        "no /proc/self/cgroup",
        Fixture {
            proc_self_cgroup: None,
            files: &[],
        },
        Expected {
            version: None,
            limit: None,
            working_set: None,
        },
    );
    check(
        "no memory controller mounted",
        Fixture {
            proc_self_cgroup: Some("0::/a\n"),
            files: &[("a/", "")],
        },
        Expected {
            version: None,
            limit: None,
            working_set: None,
        },
    );
}

#[test]
fn malformed_files_are_corrupt_errors() {
    let (_d, roots) = build(&Fixture {
        proc_self_cgroup: Some("garbage\n"),
        files: &[("cgroup.controllers", "")],
    });
    let err = Cgroup::discover_at(&roots).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");

    let (_d, roots) = build(&Fixture {
        proc_self_cgroup: Some("0::/x\n"),
        files: &[("cgroup.controllers", ""), ("x/memory.max", "lots\n")],
    });
    let cg = Cgroup::discover_at(&roots).unwrap().unwrap();
    match cg.limit().unwrap_err() {
        Error::Corrupt { path, .. } => assert!(path.ends_with(Path::new("x/memory.max"))),
        other => panic!("expected Corrupt, got {other}"),
    }
    // Discovery that fails leaves the cgroup limit out rather than guessing.
    assert_eq!(Limits::discover_at(None, &roots).cgroup, None);

    let (_d, roots) = build(&Fixture {
        proc_self_cgroup: Some("0::/x\n"),
        files: &[
            ("cgroup.controllers", ""),
            ("x/memory.current", "100"),
            ("x/memory.stat", "anon 5\n"),
        ],
    });
    let cg = Cgroup::discover_at(&roots).unwrap().unwrap();
    let err = CgroupReader::open(&cg)
        .unwrap()
        .unwrap()
        .read()
        .unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

#[test]
fn memory_events_files_along_a_v2_chain_and_none_on_v1() {
    let (dir, roots) = build(&Fixture {
        proc_self_cgroup: Some("0::/kubepods/pod1/ctr\n"),
        files: &[
            ("cgroup.controllers", "memory"),
            (
                "kubepods/memory.events",
                "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
            ),
            ("kubepods/pod1/memory.max", "1073741824\n"),
            (
                "kubepods/pod1/ctr/memory.events",
                "low 0\nhigh 3\nmax 0\noom 0\noom_kill 0\n",
            ),
        ],
    });
    let cgroup = Cgroup::discover_at(&roots).unwrap().unwrap();
    let mount = dir.path().join("sys_fs_cgroup");
    assert_eq!(
        cgroup.events_files(),
        [
            mount.join("kubepods/pod1/ctr/memory.events"),
            mount.join("kubepods/memory.events"),
        ],
        "leaf first; directories without the file are skipped"
    );

    let (_dir, roots) = build(&Fixture {
        proc_self_cgroup: Some("4:memory:/docker/abc\n"),
        files: &[
            ("memory/docker/abc/memory.limit_in_bytes", "1073741824\n"),
            ("memory/docker/abc/memory.events", "oom 0\n"),
        ],
    });
    let cgroup = Cgroup::discover_at(&roots).unwrap().unwrap();
    assert_eq!(cgroup.version, CgroupVersion::V1);
    assert!(cgroup.events_files().is_empty());
}

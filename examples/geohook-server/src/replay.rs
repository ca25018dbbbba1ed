//! Replay: applying logged commands to memory with logging off, at start
//! (the whole file) and on a follower (each command of its leader's stream).
//! Every command goes through the same write path as a client's
//! ([`crate::cmd::write::apply`]), and the failures a replay may meet are
//! told apart by their type, not their text.

use std::path::Path;
use std::time::Instant;

use crate::cmd::ctx::{CmdError, Ctx};
use crate::cmd::hooks::SetHook;
use crate::cmd::spec::{self, Cmd, Kind};
use crate::cmd::write;
use crate::hooks::engine::HookEngine;
use crate::state::{Core, Writer};
use geohook_resp::{self as resp, Limits};

/// Applies one command read back from the log. The caller sets
/// `core.loading`, so nothing is logged.
///
/// Hook commands go to `hooks`; without an engine (a log written with hooks,
/// read by a process without them) they are skipped, since the data is
/// still complete. A SETHOOK whose deadline has passed is not recreated.
///
/// # Errors
///
/// A name that is not a write, a wrong argument count, or a failure other
/// than a missing key or id or a blocked NX (expected when a shrink's
/// carried-over tail is replayed over its snapshot).
pub(crate) fn apply(
    core: &mut Core,
    hooks: Option<&HookEngine>,
    args: &[Vec<u8>],
) -> Result<(), CmdError> {
    apply_with(core, hooks, args, &Writer::replay(), &Ctx::new(false))
}

/// [`apply`] through `w`, at the clock of `ctx`: a follower passes
/// [`Writer::replicated`] so that its change sink hears its leader's writes,
/// and one context for all the commands of one read from the leader (they
/// are applied within microseconds; reading the clocks per command showed
/// in a follower's profile, see the server README).
///
/// # Errors
///
/// As [`apply`].
pub(crate) fn apply_with(
    core: &mut Core,
    hooks: Option<&HookEngine>,
    args: &[Vec<u8>],
    w: &Writer<'_>,
    ctx: &Ctx,
) -> Result<(), CmdError> {
    let Some(spec) = spec::lookup_sent(&args[0]).filter(|s| s.kind == Kind::Write) else {
        return Err(CmdError::Unknown(
            String::from_utf8_lossy(&args[0]).into_owned(),
        ));
    };
    if !spec.arity_ok(args.len()) {
        return Err(CmdError::Arity(spec.name));
    }
    let ctx = *ctx;
    let w = *w;
    match spec.cmd {
        Cmd::Sethook
        | Cmd::Delhook
        | Cmd::Pdelhook
        | Cmd::Setchan
        | Cmd::Delchan
        | Cmd::Pdelchan => {
            let Some(engine) = hooks else {
                return Ok(());
            };
            if matches!(spec.cmd, Cmd::Sethook | Cmd::Setchan) {
                let hook = match SetHook::parse(&core.db, args, ctx.now()) {
                    Ok(hook) => hook,
                    // A file written before hooks stored their `GET key id`
                    // area resolved: the object is gone, so the hook's fence
                    // cannot be rebuilt. Dropping that one hook (loudly)
                    // beats refusing to start on the whole file.
                    Err(e) if e.is_expected_on_replay() => {
                        tracing::warn!(
                            hook = %String::from_utf8_lossy(&args[1]),
                            error = %e,
                            "dropping a hook whose GET area no longer exists"
                        );
                        let name = String::from_utf8_lossy(&args[1]);
                        if spec.cmd == Cmd::Setchan {
                            engine.hooks.del_chan(&name);
                        } else {
                            engine.hooks.del_hook(&name);
                        }
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                };
                if hook.expired(ctx.now()) {
                    hook.forget(engine);
                    return Ok(());
                }
                return hook.apply(core, engine, &w, &ctx).map(drop);
            }
            write::apply(core, Some(engine), &w, &ctx, spec.cmd, args).map(drop)
        }
        // FLUSHDB clears the hooks and channels too, as it did when it ran.
        Cmd::Flushdb => write::apply(core, hooks, &w, &ctx, Cmd::Flushdb, args).map(drop),
        cmd => match write::apply(core, None, &w, &ctx, cmd, args) {
            Err(e) if !e.is_expected_on_replay() => Err(e),
            _ => Ok(()),
        },
    }
}

/// Replays the file's `bytes` into `core` with logging off, handing hook
/// commands to `hooks`. Start-up reads the file once and hands the same
/// bytes to the replication start too.
///
/// # Errors
///
/// A record that is not a valid command, or a command that fails for a
/// reason other than those [`CmdError::is_expected_on_replay`] names,
/// naming the file (`path`) and offset.
pub(crate) fn load(
    path: &Path,
    bytes: &[u8],
    core: &mut Core,
    hooks: Option<&HookEngine>,
) -> anyhow::Result<u64> {
    // The file was written by this server, so its commands fit the network
    // caps; use generous ones anyway so an old file with larger records loads.
    let limits = Limits {
        max_args: 1 << 20,
        max_bulk: 512 << 20,
        max_request: 1 << 30,
    };
    let mut start = 0;
    let mut count = 0u64;
    let mut joiner = Joiner::default();
    let started = Instant::now();
    core.loading = true;
    // Points are indexed once, in bulk, after the whole file is read: the
    // replay itself runs no spatial search.
    core.db.defer_point_index();
    loop {
        // Zero runs left by a crash on some file systems are skipped, as
        // Tile38 does.
        while start < bytes.len() && bytes[start] == 0 {
            start += 1;
        }
        match resp::parse(&bytes[start..], &limits) {
            Ok(Some((args, used))) => {
                let at = start;
                start += used;
                if args.is_empty()
                    || args[0].eq_ignore_ascii_case(geohook_repl::HEADER_COMMAND.as_bytes())
                {
                    // The replication header is read by the replication start.
                    continue;
                }
                for (args, at) in joiner.push(args, at).into_iter().flatten() {
                    if let Err(e) = apply(core, hooks, &args) {
                        anyhow::bail!(
                            "{}: command at offset {at} failed while loading: {e}",
                            path.display()
                        );
                    }
                }
                count += 1;
            }
            Ok(None) => break,
            Err(e) => anyhow::bail!("{}: damaged record at offset {start}: {e}", path.display()),
        }
    }
    if let Some((args, at)) = joiner.finish() {
        if let Err(e) = apply(core, hooks, &args) {
            anyhow::bail!(
                "{}: command at offset {at} failed while loading: {e}",
                path.display()
            );
        }
    }
    core.db.build_point_index();
    core.loading = false;
    if start < bytes.len() {
        // wal-repair runs first and cuts a torn tail, so leftovers here mean
        // the file changed under us or the two parsers disagree.
        anyhow::bail!(
            "{}: {} bytes of incomplete command at offset {start} after repair",
            path.display(),
            bytes.len() - start
        );
    }
    tracing::info!(
        commands = count,
        bytes = start,
        secs = started.elapsed().as_secs_f64(),
        "AOF loaded"
    );
    Ok(count)
}

/// The words a snapshot's SET ends with: its object, after an optional
/// `pxat ms`.
const OBJECT_WORDS: [&[u8]; 4] = [b"point", b"bounds", b"string", b"object"];

/// A SET being extended by the FSET continuation records after it.
struct Pending {
    /// `set key id` and its `field name value` triples.
    head: Vec<Vec<u8>>,
    /// The words after the fields (`pxat ms`, the object).
    tail: Vec<Vec<u8>>,
    /// The last field name, which the next continuation's names must follow.
    last: Option<Vec<u8>>,
    at: usize,
}

impl Pending {
    /// A SET in the form a snapshot writes (fields in ascending name order,
    /// no NX or XX), or the arguments back.
    fn start(args: Vec<Vec<u8>>, at: usize) -> Result<Pending, Vec<Vec<u8>>> {
        if args.len() < 5 || !args[0].eq_ignore_ascii_case(b"set") {
            return Err(args);
        }
        let mut i = 3;
        let mut last: Option<&[u8]> = None;
        while i + 2 < args.len() && args[i].eq_ignore_ascii_case(b"field") {
            if last.is_some_and(|l| l >= args[i + 1].as_slice()) {
                return Err(args);
            }
            last = Some(&args[i + 1]);
            i += 3;
        }
        let object_at = if args[i].eq_ignore_ascii_case(b"pxat") {
            i + 2
        } else {
            i
        };
        let is_object = args
            .get(object_at)
            .is_some_and(|w| OBJECT_WORDS.iter().any(|o| w.eq_ignore_ascii_case(o)));
        if !is_object {
            return Err(args);
        }
        let last = last.map(<[u8]>::to_vec);
        let mut head = args;
        let tail = head.split_off(i);
        Ok(Pending {
            head,
            tail,
            last,
            at,
        })
    }

    /// Takes `args` if it is a continuation of this SET: an FSET of the same
    /// key and id, without XX, whose names ascend after this SET's last and
    /// whose values are not zero (a zero removes a field, which a SET's
    /// FIELD would not do).
    fn take(&mut self, args: &mut Vec<Vec<u8>>) -> bool {
        if args.len() < 5
            || args.len().is_multiple_of(2)
            || !args[0].eq_ignore_ascii_case(b"fset")
            || args[1] != self.head[1]
            || args[2] != self.head[2]
            || args[3].eq_ignore_ascii_case(b"xx")
        {
            return false;
        }
        let mut last = self.last.as_deref();
        for pair in args[3..].chunks(2) {
            if last.is_some_and(|l| l >= pair[0].as_slice()) {
                return false;
            }
            let zero = std::str::from_utf8(&pair[1])
                .map_or(true, |t| geohook_db::FieldValue::parse(t).is_zero());
            if zero || std::str::from_utf8(&pair[0]).is_err() {
                return false;
            }
            last = Some(&pair[0]);
        }
        let last = last.map(<[u8]>::to_vec);
        for pair in args.drain(3..).collect::<Vec<_>>().chunks_exact(2) {
            self.head
                .extend([b"field".to_vec(), pair[0].clone(), pair[1].clone()]);
        }
        self.last = last;
        true
    }

    fn finish(mut self) -> (Vec<Vec<u8>>, usize) {
        self.head.append(&mut self.tail);
        (self.head, self.at)
    }
}

/// Joins a snapshot's SET with the FSET continuation records that follow it
/// (see `cmd::set::snapshot_batch`) into one SET before it is applied.
///
/// Applying each continuation on its own copies the object's fields once
/// per record, which makes loading an object of n fields cost n²/1000; one
/// SET whose fields ascend inserts each at the end. The joined SET has the
/// same effect as the records it replaces: the SET creates the object (or
/// fails, and then every continuation fails as a missing id), and each
/// continuation only adds fields the SET did not name.
#[derive(Default)]
pub(crate) struct Joiner {
    pending: Option<Pending>,
}

impl Joiner {
    /// Takes the next command read at offset `at`; returns the commands to
    /// apply now, in order (a held SET, then this one if it is not held).
    pub(crate) fn push(
        &mut self,
        mut args: Vec<Vec<u8>>,
        at: usize,
    ) -> [Option<(Vec<Vec<u8>>, usize)>; 2] {
        if let Some(p) = &mut self.pending {
            if p.take(&mut args) {
                return [None, None];
            }
        }
        let flushed = self.pending.take().map(Pending::finish);
        match Pending::start(args, at) {
            Ok(p) => {
                self.pending = Some(p);
                [flushed, None]
            }
            Err(args) => [flushed, Some((args, at))],
        }
    }

    /// The held SET, if any, at the end of the input.
    pub(crate) fn finish(&mut self) -> Option<(Vec<Vec<u8>>, usize)> {
        self.pending.take().map(Pending::finish)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<Vec<u8>> {
        line.split(' ').map(|w| w.as_bytes().to_vec()).collect()
    }

    /// What the joiner hands on for `lines`, as lines.
    fn joined(lines: &[&str]) -> Vec<String> {
        let mut j = Joiner::default();
        let mut out = Vec::new();
        for (at, l) in lines.iter().enumerate() {
            out.extend(j.push(words(l), at).into_iter().flatten());
        }
        out.extend(j.finish());
        out.iter()
            .map(|(args, at)| {
                let text: Vec<String> = args
                    .iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                format!("{at}: {}", text.join(" "))
            })
            .collect()
    }

    #[test]
    fn continuations_join_their_set_and_nothing_else_does() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                "a snapshot's SET and its continuations",
                &[
                    "set k a field f1 1 pxat 99 point 1 2",
                    "fset k a f2 2 f3 3",
                    "fset k a f4 4",
                    "del k b",
                ],
                &[
                    "0: set k a field f1 1 field f2 2 field f3 3 field f4 4 pxat 99 point 1 2",
                    "3: del k b",
                ],
            ),
            (
                "a SET without fields",
                &["set k a string x", "fset k a f 1"],
                &["0: set k a field f 1 string x"],
            ),
            (
                "another id",
                &["set k a point 1 2", "fset k b f 1"],
                &["0: set k a point 1 2", "1: fset k b f 1"],
            ),
            (
                "XX",
                &["set k a point 1 2", "fset k a xx f 1"],
                &["0: set k a point 1 2", "1: fset k a xx f 1"],
            ),
            (
                "a zero value removes, which a FIELD does not",
                &["set k a point 1 2", "fset k a f 0"],
                &["0: set k a point 1 2", "1: fset k a f 0"],
            ),
            (
                "names out of order",
                &["set k a field g 1 point 1 2", "fset k a f 1"],
                &["0: set k a field g 1 point 1 2", "1: fset k a f 1"],
            ),
            (
                "NX",
                &["set k a nx point 1 2", "fset k a f 1"],
                &["0: set k a nx point 1 2", "1: fset k a f 1"],
            ),
            (
                "a continuation after a rejected one is not joined",
                &["set k a point 1 2", "fset k a f 0", "fset k a g 1"],
                &["0: set k a point 1 2", "1: fset k a f 0", "2: fset k a g 1"],
            ),
        ];
        for (name, input, want) in cases {
            assert_eq!(joined(input), *want, "{name}");
        }
    }

    #[test]
    fn a_shrunk_object_with_many_fields_loads_to_the_same_state() {
        let dir = tempfile::tempdir().unwrap();
        let shared = crate::state::shared_on(&dir.path().join("a.aof"));
        let now = crate::cmd::ctx::Ctx::new(false).now();
        let mut core = shared.core.write();
        core.loading = true;
        let fields: Vec<(String, f64)> = (0..2500)
            .map(|i| (format!("f{i}"), f64::from(i + 1)))
            .collect();
        let none: &[(&str, f64)] = &[];
        for id in ["big", "small"] {
            let object = geohook_db::Object::String(id.into());
            core.db
                .set(
                    "k",
                    id,
                    object,
                    none,
                    None,
                    geohook_db::SetCondition::Always,
                    now,
                )
                .unwrap();
        }
        core.db.fset("k", "big", &fields, false, now).unwrap();
        let mut out = Vec::new();
        assert!(
            crate::cmd::set::snapshot_batch(&core.db, None, now, usize::MAX, &mut out).is_none()
        );
        let mut copy = Core {
            db: geohook_db::Database::new(),
            aof: crate::aof::Aof::open(&dir.path().join("b.aof")).unwrap(),
            loading: false,
        };
        // One SET and two continuations for the big object, one SET for the
        // small one.
        assert_eq!(
            load(Path::new("snapshot"), &out, &mut copy, None).unwrap(),
            4
        );
        assert_eq!(copy.db.canonical_dump(now), core.db.canonical_dump(now));
    }
}

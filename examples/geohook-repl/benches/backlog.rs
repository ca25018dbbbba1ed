//! Backlog throughput: appending commands and reading them back, as the
//! leader does for every write and for every follower chunk.

use divan::counter::BytesCount;
use divan::{black_box, Bencher};
use geohook_repl::{encode_command, Backlog};

fn main() {
    divan::main();
}

/// A typical geohook write: `SET fleet truckN POINT lat lon`.
fn command(i: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let id = format!("truck{i}");
    encode_command(
        &mut out,
        &["SET", "fleet", id.as_str(), "POINT", "33.462", "-112.268"],
    );
    out
}

/// Appends 10 000 commands to a 16 MiB backlog that is already full, so every
/// append also overwrites the oldest bytes.
#[divan::bench]
fn append_10k_commands(bencher: Bencher<'_, '_>) {
    let cmds: Vec<Vec<u8>> = (0..10_000).map(command).collect();
    let total: usize = cmds.iter().map(Vec::len).sum();
    let mut backlog = Backlog::new(16 << 20, 0);
    while backlog.len() < backlog.capacity() {
        backlog.append(&cmds[0]);
    }
    bencher.counter(BytesCount::new(total)).bench_local(|| {
        for c in &cmds {
            black_box(backlog.append(c));
        }
    });
}

/// Reads the whole 16 MiB backlog in 256 KiB chunks, the leader's batch size.
#[divan::bench]
fn read_16mib_in_256kib_chunks(bencher: Bencher<'_, '_>) {
    let mut backlog = Backlog::new(16 << 20, 0);
    let cmd = command(1);
    while backlog.len() < backlog.capacity() {
        backlog.append(&cmd);
    }
    let mut out = Vec::with_capacity(256 << 10);
    bencher
        .counter(BytesCount::new(backlog.len()))
        .bench_local(|| {
            let mut at = backlog.start();
            while at < backlog.end() {
                out.clear();
                at += backlog.read_from(at, 256 << 10, &mut out).unwrap() as u64;
                black_box(&out);
            }
        });
}

/// Parses 10 000 commands back into arguments, as a follower (or a node
/// replaying its own file) does.
#[divan::bench]
fn decode_10k_commands(bencher: Bencher<'_, '_>) {
    let stream: Vec<u8> = (0..10_000).flat_map(command).collect();
    let limits = geohook_repl::Limits::default();
    bencher
        .counter(BytesCount::new(stream.len()))
        .bench_local(|| {
            let mut pos = 0;
            while let Some((args, n)) =
                geohook_repl::decode_command(&stream[pos..], &limits).unwrap()
            {
                black_box(args);
                pos += n;
            }
        });
}

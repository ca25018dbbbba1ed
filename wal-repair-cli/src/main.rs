//! `wal-repair`: check or repair the tail of an append-only log from the command line.
//!
//! Exit codes: 0 clean (or repaired by `fix`); 1 torn or zero tail (repairable; `check` and
//! `fix --dry-run` only); 2 corrupt (file untouched); 3 usage, I/O or lock error; 4 repair refused
//! because it would discard more than `--max-discard` bytes. `check` of several files exits with the
//! highest of their codes.
//!
//! Output goes through `out`, never `println!`: when the reader of stdout goes away (`wal-repair
//! check … | head -1`), the write fails with `BrokenPipe` and the process ends quietly with exit code 0,
//! as ripgrep does, instead of panicking with "failed printing to stdout".

use std::fmt::Display;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use wal_repair::dir::{Layout, Part};
use wal_repair::{
    frames, resp, Config, Error, Outcome, RecordFormat, Scan, ScanConfig, StdFs, Tail,
};

/// Tell a torn log tail from corruption, and repair only the tail.
#[derive(Debug, Parser)]
#[command(version, after_help = EXIT_CODES)]
struct Cli {
    /// Print one JSON object on stdout instead of human-readable text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

const EXIT_CODES: &str =
    "Exit codes: 0 clean or repaired; 1 torn or zero tail (check, fix --dry-run); \
2 corrupt, file untouched; 3 usage, I/O or lock error; 4 repair refused by --max-discard.";

#[derive(Debug, Subcommand)]
enum Command {
    /// Classify the end of each log without modifying it (one line, or one JSON object, per file).
    Check {
        #[command(flatten)]
        common: Common,
        /// More logs to check after the first.
        more: Vec<PathBuf>,
    },
    /// Truncate a torn or zero tail, keeping the cut bytes in a sidecar file; refuse corruption.
    Fix {
        #[command(flatten)]
        common: Common,
        /// Report what would be done without modifying anything.
        #[arg(long)]
        dry_run: bool,
        /// Refuse to discard more than this many bytes.
        #[arg(long, value_name = "BYTES")]
        max_discard: Option<u64>,
        /// Directory for the sidecar file (default: beside the log).
        #[arg(long, value_name = "DIR")]
        sidecar_dir: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct Common {
    /// Record format; `auto` picks `frames` when the file starts with the frames magic, else `resp`.
    #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
    format: FormatArg,
    /// Bytes read per system call while scanning (and the chunk each thread takes at a time). Twice
    /// the library's default: the two threads of a framed scan each hand over a baton per chunk, and
    /// 256 KiB halves those hand-overs while a chunk still fits in a core's cache.
    #[arg(long, value_name = "BYTES", default_value_t = 256 << 10)]
    read_chunk: usize,
    /// Threads that read and check a framed log at once, each its own chunks (RESP logs are walked on
    /// one thread, since a RESP record's length is only known by parsing it).
    #[arg(long, value_name = "N", default_value_t = 2)]
    threads: usize,
    /// How far past a bad frame to look for a valid record before calling the tail torn.
    #[arg(long, value_name = "BYTES", default_value_t = ScanConfig::default().resync_window)]
    resync_window: u64,
    /// The log file.
    file: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Auto,
    Resp,
    Frames,
}

const EXIT_CLEAN: u8 = 0;
const EXIT_TORN: u8 = 1;
const EXIT_CORRUPT: u8 = 2;
const EXIT_ERROR: u8 = 3;
const EXIT_CAP: u8 = 4;

/// Files at least this large get a progress bar (when stderr is a terminal).
const PROGRESS_MIN_BYTES: u64 = 256 << 20;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                EXIT_ERROR
            } else {
                EXIT_CLEAN
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let json = cli.json;
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        // Whoever read our output has stopped reading: there is nobody left to tell anything.
        Err(e) if is_broken_pipe(&e) => ExitCode::from(EXIT_CLEAN),
        Err(e) => {
            if json {
                let _ = out(json!({ "status": "error", "error": format!("{e:#}") }));
            } else {
                eprintln!("wal-repair: error: {e:#}");
            }
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Writes one line to stdout, returning the error instead of panicking as `println!` does.
fn out(line: impl Display) -> io::Result<()> {
    writeln!(io::stdout().lock(), "{line}")
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<io::Error>())
        .any(|io| io.kind() == io::ErrorKind::BrokenPipe)
}

fn pick_format(arg: FormatArg, path: &Path) -> anyhow::Result<&'static dyn RecordFormat> {
    Ok(match arg {
        FormatArg::Resp => &resp::Resp,
        FormatArg::Frames => &frames::Frames,
        FormatArg::Auto => {
            let mut head = Vec::new();
            std::fs::File::open(path)
                .with_context(|| format!("opening {}", path.display()))?
                .take(frames::MAGIC.len() as u64)
                .read_to_end(&mut head)
                .with_context(|| format!("reading {}", path.display()))?;
            if head.as_slice() == frames::MAGIC {
                &frames::Frames
            } else {
                &resp::Resp
            }
        }
    })
}

fn progress_bar(path: &Path) -> Option<indicatif::ProgressBar> {
    let len = std::fs::metadata(path).ok()?.len();
    if len < PROGRESS_MIN_BYTES || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec})",
    ) {
        bar.set_style(style);
    }
    bar.set_message("scanning");
    Some(bar)
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let json = cli.json;
    match cli.command {
        Command::Check { common, more } => {
            let config = common.scan_config()?;
            let mut worst = EXIT_CLEAN;
            for path in std::iter::once(&common.file).chain(&more) {
                let code = match open_dir(path) {
                    Ok(Some((layout, parts))) => {
                        let format = dir_format(common.format, &layout, &parts)?;
                        check_dir(path, &layout, &parts, format, &config, json, false)?
                    }
                    Ok(None) => {
                        let format = pick_format(common.format, path)?;
                        let scan = scan_with_progress(path, format, &config)?;
                        report_scan(path, format, &scan, json, false)?
                    }
                    Err(Error::Corrupt {
                        path,
                        offset,
                        reason,
                    }) => report_corrupt(&path, "resp", offset, &reason, json, false)?,
                    Err(e) => return Err(e.into()),
                };
                worst = worst.max(code);
            }
            Ok(worst)
        }
        Command::Fix {
            common,
            dry_run,
            max_discard,
            sidecar_dir,
        } => {
            let config = Config {
                max_discard,
                sidecar_dir,
                scan: common.scan_config()?,
                ..Config::default()
            };
            let path = &common.file;
            let (format, result) = match open_dir(path) {
                Ok(Some((layout, parts))) => {
                    let format = dir_format(common.format, &layout, &parts)?;
                    if dry_run {
                        return check_dir(path, &layout, &parts, format, &config.scan, json, true);
                    }
                    (
                        format,
                        wal_repair::dir::repair_parts(&parts, format, &config),
                    )
                }
                Ok(None) => {
                    let format = pick_format(common.format, path)?;
                    if dry_run {
                        let scan = scan_with_progress(path, format, &config.scan)?;
                        return Ok(report_scan(path, format, &scan, json, true)?);
                    }
                    let bar = progress_bar(path);
                    let result = wal_repair::repair_with(path, format, &config, &StdFs, &mut |n| {
                        if let Some(bar) = &bar {
                            bar.set_position(n);
                        }
                    });
                    if let Some(bar) = bar {
                        bar.finish_and_clear();
                    }
                    (format, result)
                }
                Err(e) => (&resp::Resp as &dyn RecordFormat, Err(e)),
            };
            match result {
                Ok(Outcome::Clean(scan)) => Ok(report_scan(path, format, &scan, json, false)?),
                Ok(Outcome::Repaired(report)) => {
                    if json {
                        let mut v = serde_json::to_value(&report)?;
                        v["status"] = json!("repaired");
                        out(v)?;
                    } else {
                        out(format_args!(
                            "{}: repaired: truncated {} bytes after offset {} ({} tail: {}); {} records kept; \
                             cut bytes saved in {}",
                            report.path.display(),
                            report.discarded,
                            report.valid_len,
                            report.kind,
                            report.reason,
                            report.records,
                            report.sidecar.display()
                        ))?;
                    }
                    Ok(EXIT_CLEAN)
                }
                Err(Error::Corrupt {
                    path,
                    offset,
                    reason,
                }) => Ok(report_corrupt(
                    &path,
                    format.name(),
                    offset,
                    &reason,
                    json,
                    true,
                )?),
                Err(e @ Error::DiscardCapExceeded { .. }) => {
                    if json {
                        out(json!({"status": "refused", "error": e.to_string()}))?;
                    } else {
                        out(format_args!("{}: refused: {e}", path.display()))?;
                    }
                    Ok(EXIT_CAP)
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// The parts of a multi-file log if `path` is a directory or a Redis manifest; `None` for a plain file.
fn open_dir(path: &Path) -> Result<Option<(Layout, Vec<Part>)>, Error> {
    let manifest = path.extension().is_some_and(|e| e == "manifest");
    if path.is_dir() || (manifest && path.is_file()) {
        wal_repair::dir::dir_parts(path).map(Some)
    } else {
        Ok(None)
    }
}

/// A Redis multi-part AOF is RESP; a segment directory's format is picked from its first file.
fn dir_format(
    arg: FormatArg,
    layout: &Layout,
    parts: &[Part],
) -> anyhow::Result<&'static dyn RecordFormat> {
    match (layout, arg) {
        (Layout::RedisMultiPart { .. }, FormatArg::Frames) => {
            anyhow::bail!("a Redis multi-part AOF is in RESP, not in the frames format")
        }
        (Layout::RedisMultiPart { .. }, _) => Ok(&resp::Resp),
        _ => match parts.first() {
            Some(first) => pick_format(arg, &first.path),
            None => Ok(&resp::Resp),
        },
    }
}

/// Reports every part of a multi-file log, then the log as a whole: corrupt if any part but the last
/// does not end cleanly, otherwise what the last part's tail is.
fn check_dir(
    dir: &Path,
    layout: &Layout,
    parts: &[Part],
    format: &dyn RecordFormat,
    scan: &ScanConfig,
    json: bool,
    dry_run: bool,
) -> anyhow::Result<u8> {
    let config = Config {
        scan: scan.clone(),
        ..Config::default()
    };
    let scans = wal_repair::dir::check_parts(parts, format, &config)?;
    let last = scans.len().saturating_sub(1);
    let bad = scans.iter().take(last).position(|s| !s.is_clean());
    let (status, code) = match (bad, scans.last().and_then(|s| s.scan.as_ref())) {
        (Some(_), _) => ("corrupt", EXIT_CORRUPT),
        (None, Some(scan)) => scan_status(scan),
        (None, None) => ("clean", EXIT_CLEAN),
    };
    let layout_name = match layout {
        Layout::RedisMultiPart { .. } => "redis-multi-part",
        _ => "segments",
    };
    if json {
        let files: Vec<_> = scans
            .iter()
            .map(|ps| {
                let mut v = match &ps.scan {
                    Some(scan) => scan_json(&ps.part.path, format, scan),
                    None => json!({"status": "left_alone", "path": ps.part.path}),
                };
                v["role"] = json!(ps.part.role.name());
                v
            })
            .collect();
        let mut v = json!({
            "status": status,
            "path": dir,
            "layout": layout_name,
            "format": format.name(),
            "files": files,
            "modified": false,
        });
        if let Layout::RedisMultiPart { manifest } = layout {
            v["manifest"] = json!(manifest);
        }
        if let Some(i) = bad {
            v["corrupt_file"] = json!(scans[i].part.path);
        }
        out(v)?;
        return Ok(code);
    }
    let verb = if dry_run {
        "fix would"
    } else {
        "`wal-repair fix` would"
    };
    for (i, ps) in scans.iter().enumerate() {
        let role = ps.part.role.name();
        let name = ps.part.path.display();
        match &ps.scan {
            None => out(format_args!("{name} ({role}): RDB snapshot, left alone"))?,
            Some(scan) if i < last && !ps.is_clean() => out(format_args!(
                "{name} ({role}): does not end cleanly at offset {} and is not the last file: corrupt",
                scan.valid_len
            ))?,
            Some(scan) => out(format_args!("{} ({role})", scan_text(&ps.part.path, scan, verb)))?,
        }
    }
    out(format_args!(
        "{}: {layout_name}, {} files: {status}",
        dir.display(),
        scans.len()
    ))?;
    Ok(code)
}

/// Reports damage that is never repaired automatically.
fn report_corrupt(
    path: &Path,
    format: &str,
    offset: u64,
    reason: &str,
    json: bool,
    fix: bool,
) -> io::Result<u8> {
    if json {
        out(json!({"status": "corrupt", "path": path, "format": format,
                   "offset": offset, "reason": reason, "modified": false}))?;
    } else if fix {
        out(format_args!(
            "{}: corrupt at offset {offset}: {reason}; not repaired (file untouched)",
            path.display()
        ))?;
    } else {
        out(format_args!(
            "{}: corrupt at offset {offset}: {reason}; not repairable automatically",
            path.display()
        ))?;
    }
    Ok(EXIT_CORRUPT)
}

impl Common {
    fn scan_config(&self) -> anyhow::Result<ScanConfig> {
        let config = ScanConfig {
            read_chunk: self.read_chunk,
            resync_window: self.resync_window,
            threads: self.threads,
        };
        config.validate()?;
        Ok(config)
    }
}

fn scan_with_progress(
    path: &Path,
    format: &dyn RecordFormat,
    config: &ScanConfig,
) -> anyhow::Result<Scan> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let bar = progress_bar(path);
    let scan = wal_repair::scan_open_file(&mut file, path, format, config, &mut |n| {
        if let Some(bar) = &bar {
            bar.set_position(n);
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(scan?)
}

fn scan_status(scan: &Scan) -> (&'static str, u8) {
    match scan.tail {
        Tail::Clean => ("clean", EXIT_CLEAN),
        Tail::Zero => ("zero_tail", EXIT_TORN),
        Tail::Torn { .. } => ("torn", EXIT_TORN),
        Tail::Corrupt { .. } => ("corrupt", EXIT_CORRUPT),
    }
}

fn scan_json(path: &Path, format: &dyn RecordFormat, scan: &Scan) -> serde_json::Value {
    let mut v = json!({
        "status": scan_status(scan).0,
        "path": path,
        "format": format.name(),
        "file_len": scan.file_len,
        "valid_len": scan.valid_len,
        "records": scan.records,
        "discarded": scan.discarded(),
        "modified": false,
    });
    match &scan.tail {
        Tail::Torn { reason } => v["reason"] = json!(reason),
        Tail::Corrupt {
            offset,
            reason,
            next_valid,
        } => {
            v["offset"] = json!(offset);
            v["reason"] = json!(reason);
            v["next_valid"] = json!(next_valid);
        }
        Tail::Clean | Tail::Zero => {}
    }
    v
}

fn scan_text(path: &Path, scan: &Scan, verb: &str) -> String {
    let name = path.display();
    match &scan.tail {
        Tail::Clean => format!(
            "{name}: clean: {} records, {} bytes",
            scan.records, scan.file_len
        ),
        Tail::Zero => format!(
            "{name}: zero tail: {} zero bytes after {} records; {verb} truncate to {}",
            scan.discarded(),
            scan.records,
            scan.valid_len
        ),
        Tail::Torn { reason } => format!(
            "{name}: torn tail: {} bytes after offset {} are not a whole record ({reason}); {verb} \
             truncate to {} keeping {} records",
            scan.discarded(),
            scan.valid_len,
            scan.valid_len,
            scan.records
        ),
        Tail::Corrupt {
            offset,
            reason,
            next_valid,
        } => {
            let after = next_valid.map_or(String::new(), |o| {
                format!("; a valid record follows at offset {o}")
            });
            format!(
                "{name}: corrupt at offset {offset}: {reason}{after}; not repairable automatically"
            )
        }
    }
}

fn report_scan(
    path: &Path,
    format: &dyn RecordFormat,
    scan: &Scan,
    json: bool,
    dry_run: bool,
) -> io::Result<u8> {
    if json {
        out(scan_json(path, format, scan))?;
    } else {
        let verb = if dry_run {
            "fix would"
        } else {
            "`wal-repair fix` would"
        };
        out(scan_text(path, scan, verb))?;
    }
    Ok(scan_status(scan).1)
}

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
    /// Bytes read per system call while scanning.
    #[arg(long, value_name = "BYTES", default_value_t = ScanConfig::default().read_chunk)]
    read_chunk: usize,
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
            for file in std::iter::once(&common.file).chain(&more) {
                let format = pick_format(common.format, file)?;
                let scan = scan_with_progress(file, format, &config)?;
                worst = worst.max(report_scan(file, format, &scan, json, false)?);
            }
            Ok(worst)
        }
        Command::Fix {
            common,
            dry_run,
            max_discard,
            sidecar_dir,
        } => {
            let format = pick_format(common.format, &common.file)?;
            if dry_run {
                let scan = scan_with_progress(&common.file, format, &common.scan_config()?)?;
                return Ok(report_scan(&common.file, format, &scan, json, true)?);
            }
            let config = Config {
                max_discard,
                sidecar_dir,
                scan: common.scan_config()?,
                ..Config::default()
            };
            let bar = progress_bar(&common.file);
            let result = wal_repair::repair_with(&common.file, format, &config, &StdFs, &mut |n| {
                if let Some(bar) = &bar {
                    bar.set_position(n);
                }
            });
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            match result {
                Ok(Outcome::Clean(scan)) => {
                    Ok(report_scan(&common.file, format, &scan, json, false)?)
                }
                Ok(Outcome::Repaired(report)) => {
                    if json {
                        let mut v = serde_json::to_value(&report)?;
                        v["status"] = json!("repaired");
                        out(v)?;
                    } else {
                        out(format_args!(
                            "{}: repaired: truncated {} bytes after offset {} ({} tail: {}); {} records kept; \
                             cut bytes saved in {}",
                            common.file.display(),
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
                }) => {
                    if json {
                        out(
                            json!({"status": "corrupt", "path": path, "format": format.name(),
                                   "offset": offset, "reason": reason, "modified": false}),
                        )?;
                    } else {
                        out(format_args!(
                            "{}: corrupt at offset {offset}: {reason}; not repaired (file untouched)",
                            path.display()
                        ))?;
                    }
                    Ok(EXIT_CORRUPT)
                }
                Err(e @ Error::DiscardCapExceeded { .. }) => {
                    if json {
                        out(json!({"status": "refused", "error": e.to_string()}))?;
                    } else {
                        out(format_args!("{}: refused: {e}", common.file.display()))?;
                    }
                    Ok(EXIT_CAP)
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

impl Common {
    fn scan_config(&self) -> anyhow::Result<ScanConfig> {
        let config = ScanConfig {
            read_chunk: self.read_chunk,
            resync_window: self.resync_window,
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

fn report_scan(
    path: &Path,
    format: &dyn RecordFormat,
    scan: &Scan,
    json: bool,
    dry_run: bool,
) -> io::Result<u8> {
    let (status, code) = match scan.tail {
        Tail::Clean => ("clean", EXIT_CLEAN),
        Tail::Zero => ("zero_tail", EXIT_TORN),
        Tail::Torn { .. } => ("torn", EXIT_TORN),
        Tail::Corrupt { .. } => ("corrupt", EXIT_CORRUPT),
    };
    if json {
        let mut v = json!({
            "status": status,
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
        out(v)?;
        return Ok(code);
    }
    let name = path.display();
    let verb = if dry_run {
        "fix would"
    } else {
        "`wal-repair fix` would"
    };
    match &scan.tail {
        Tail::Clean => out(format_args!(
            "{name}: clean: {} records, {} bytes",
            scan.records, scan.file_len
        ))?,
        Tail::Zero => out(format_args!(
            "{name}: zero tail: {} zero bytes after {} records; {verb} truncate to {}",
            scan.discarded(),
            scan.records,
            scan.valid_len
        ))?,
        Tail::Torn { reason } => out(format_args!(
            "{name}: torn tail: {} bytes after offset {} are not a whole record ({reason}); {verb} \
             truncate to {} keeping {} records",
            scan.discarded(),
            scan.valid_len,
            scan.valid_len,
            scan.records
        ))?,
        Tail::Corrupt {
            offset,
            reason,
            next_valid,
        } => {
            let after = next_valid.map_or(String::new(), |o| {
                format!("; a valid record follows at offset {o}")
            });
            out(format_args!(
                "{name}: corrupt at offset {offset}: {reason}{after}; not repairable automatically"
            ))?;
        }
    }
    Ok(code)
}

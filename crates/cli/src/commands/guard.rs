//! `luodi guard scan FILE` and `luodi guard redact FILE --out OUT`: the server's guard on
//! files (text, or JSONL by extension), line by line in constant memory.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use luodi_guard::{Format, Guard, ScanSummary};
use luodi_server::config::ServerConfig;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Subcommand)]
pub enum GuardCommand {
    /// Count PII (per entity type) and lexicon terms (per category) in a file.
    Scan(ScanArgs),
    /// Write a copy of a file with PII and lexicon terms masked.
    Redact(RedactArgs),
}

#[derive(Args)]
pub struct ConfigArg {
    /// Config file whose `[guard]` table is used; default ./luodi.toml when it exists.
    #[arg(long, env = "LUODI_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Args)]
pub struct ScanArgs {
    /// Text file, or JSONL (.jsonl, .ndjson: only string values are scanned).
    file: PathBuf,
    #[command(flatten)]
    config: ConfigArg,
    /// Print the counts as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RedactArgs {
    /// Text file, or JSONL (.jsonl, .ndjson: only string values are changed).
    file: PathBuf,
    /// Where to write the redacted copy.
    #[arg(long, short = 'o')]
    out: PathBuf,
    #[command(flatten)]
    config: ConfigArg,
}

pub fn run(cmd: GuardCommand) -> Result<()> {
    match cmd {
        GuardCommand::Scan(args) => scan(args),
        GuardCommand::Redact(args) => redact(args),
    }
}

fn load_guard(arg: &ConfigArg) -> Result<Guard> {
    let file = arg.config.clone().or_else(|| Some(PathBuf::from("luodi.toml")).filter(|p| p.is_file()));
    let config = match &file {
        Some(path) => ServerConfig::from_file(path).map_err(anyhow::Error::msg)?,
        None => ServerConfig::default(),
    };
    Guard::new(&config.guard).map_err(|e| match &file {
        Some(path) => anyhow::anyhow!("{}: {e}", path.display()),
        None => anyhow::anyhow!("{e}"),
    })
}

fn open(path: &Path) -> Result<(BufReader<File>, u64)> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        bail!("{} is a directory, not a file", path.display());
    }
    Ok((BufReader::new(file), len))
}

fn scan(args: ScanArgs) -> Result<()> {
    let guard = load_guard(&args.config)?;
    let (reader, len) = open(&args.file)?;
    let bar = progress_bar(len);
    let started = Instant::now();
    let summary =
        luodi_guard::scan_reader(reader, &guard, Format::from_path(&args.file), |p| bar.set_position(p.bytes))
            .with_context(|| format!("reading {}", args.file.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let mb_per_s = summary.bytes as f64 / 1e6 / seconds.max(1e-9);
    if args.json {
        let mut v = serde_json::to_value(&summary)?;
        v["file"] = serde_json::Value::String(args.file.display().to_string());
        v["seconds"] = serde_json::json!(seconds);
        v["mb_per_s"] = serde_json::json!(mb_per_s);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_table(&args.file, &summary);
        eprintln!("scanned in {seconds:.2} s ({mb_per_s:.1} MB/s)");
    }
    Ok(())
}

fn redact(args: RedactArgs) -> Result<()> {
    let guard = load_guard(&args.config)?;
    let (reader, len) = open(&args.file)?;
    if let (Ok(a), Ok(b)) = (args.file.canonicalize(), args.out.canonicalize()) {
        if a == b {
            bail!("--out must differ from the input file ({})", args.file.display());
        }
    }
    let out = File::create(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let bar = progress_bar(len);
    let summary = luodi_guard::redact_stream(reader, BufWriter::new(out), &guard, Format::from_path(&args.file), |p| {
        bar.set_position(p.bytes)
    })
    .with_context(|| format!("redacting {} into {}", args.file.display(), args.out.display()))?;
    bar.finish_and_clear();
    print_table(&args.file, &summary);
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// A byte progress bar on stderr (hidden when stderr is not a terminal).
fn progress_bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn print_table(file: &Path, s: &ScanSummary) {
    println!("{}: {} lines, {} bytes, {} with findings", file.display(), s.lines, s.bytes, s.lines_with_findings);
    if s.invalid_json_lines > 0 {
        println!("{} lines were not JSON (scanned as text)", s.invalid_json_lines);
    }
    if s.invalid_utf8_lines > 0 {
        println!("{} lines were not UTF-8", s.invalid_utf8_lines);
    }
    let rows: Vec<(String, &str, u64)> = s
        .entities
        .iter()
        .map(|(e, n)| (e.to_string(), "pii", *n))
        .chain(s.categories.iter().map(|(c, n)| (c.clone(), "lexicon", *n)))
        .collect();
    if rows.is_empty() {
        println!("nothing found");
        return;
    }
    let width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0).max(4);
    println!("{:<width$}  {:<7}  {:>8}", "TYPE", "KIND", "COUNT");
    for (name, kind, n) in rows {
        println!("{name:<width$}  {kind:<7}  {n:>8}");
    }
}

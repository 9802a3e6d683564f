//! Checking model files against their pinned size and sha256, cheaply.
//!
//! Hashing 250 MB on every start would cost seconds, so after a full hash succeeds we record
//! the file's size, mtime and sha256 in a sidecar (`<model dir>/.verified.json`). On later
//! uses a file whose size and mtime still match its record is trusted without re-hashing; any
//! change (a rewrite, a truncation, a `touch`) triggers a full hash again. The size is always
//! compared against the catalog first, so a truncated file is caught without reading it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::ModelFile;
use crate::error::{IoContext, ModelError};
use crate::progress::bytes_bar;

/// The sidecar's file name inside a model directory.
pub const SIDECAR_FILE: &str = ".verified.json";

/// The first four bytes of every GGUF file.
pub const GGUF_MAGIC: &[u8; 4] = b"GGUF";

const BUF_SIZE: usize = 1 << 20;

/// Where a model file stands against its catalog record.
#[derive(Debug)]
pub(crate) enum FileState {
    Ready,
    Missing,
    /// Present but wrong; the error says what is wrong and what to run.
    Damaged(ModelError),
}

/// What the sidecar remembers about one fully hashed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    size: u64,
    mtime_secs: u64,
    mtime_nanos: u32,
    sha256: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Sidecar {
    files: BTreeMap<String, Record>,
}

/// Checks `dir/file.file_name` for model `model`: size first, then the sidecar fast path,
/// then (only if needed) a full hash, which refreshes the sidecar when it matches.
pub(crate) fn check_file(model: &str, dir: &Path, file: &ModelFile, quiet: bool) -> Result<FileState, ModelError> {
    let path = dir.join(file.file_name);
    let meta = match fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(FileState::Missing),
        Err(e) => return Err(ModelError::io(format!("cannot read {}", path.display()), e)),
    };
    let size = meta.len();
    if !meta.is_file() || size != file.size {
        let (actual, expected, name) = (size, file.size, model.to_string());
        return Ok(FileState::Damaged(if size < file.size {
            ModelError::Truncated { name, path, actual, expected }
        } else {
            ModelError::WrongSize { name, path, actual, expected }
        }));
    }
    let stamp = mtime(&meta);
    let trusted = read_sidecar(dir)
        .files
        .get(file.file_name)
        .is_some_and(|r| r.size == size && (r.mtime_secs, r.mtime_nanos) == stamp && r.sha256 == file.sha256);
    if trusted {
        return Ok(FileState::Ready);
    }

    let bar = bytes_bar(size, format!("verifying {}", file.file_name), quiet);
    let actual = hash_file(&path, |n| bar.inc(n)).ctx(|| format!("cannot read {}", path.display()))?;
    bar.finish_and_clear();
    if actual != file.sha256 {
        return Ok(FileState::Damaged(ModelError::Corrupt {
            name: model.to_string(),
            path,
            actual,
            expected: file.sha256.to_string(),
        }));
    }
    record_verified(dir, file.file_name, size, stamp, &actual);
    Ok(FileState::Ready)
}

/// Records that `dir/file_name` (of `size` bytes, modified at `stamp`) hashed to `sha256`.
/// Best effort: a read-only models directory still works, it just re-hashes on every use.
pub(crate) fn record_verified(dir: &Path, file_name: &str, size: u64, stamp: (u64, u32), sha256: &str) {
    let mut sidecar = read_sidecar(dir);
    sidecar.files.insert(
        file_name.to_string(),
        Record { size, mtime_secs: stamp.0, mtime_nanos: stamp.1, sha256: sha256.to_string() },
    );
    if let Err(e) = write_sidecar(dir, &sidecar) {
        tracing::warn!("cannot record verification in {}: {e}", dir.join(SIDECAR_FILE).display());
    }
}

/// A missing or unreadable sidecar is treated as empty: it only ever saves work, so losing
/// it costs one re-hash and nothing else.
fn read_sidecar(dir: &Path) -> Sidecar {
    fs::read(dir.join(SIDECAR_FILE)).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default()
}

/// Writes through a temp file and a rename, so a crash never leaves half a JSON document.
fn write_sidecar(dir: &Path, sidecar: &Sidecar) -> io::Result<()> {
    let mut tmp = tempfile::Builder::new().prefix(crate::store::PARTIAL_PREFIX).tempfile_in(dir)?;
    crate::extract::make_world_readable(tmp.as_file())?;
    serde_json::to_writer_pretty(&mut tmp, sidecar)?;
    tmp.write_all(b"\n")?;
    tmp.persist(dir.join(SIDECAR_FILE)).map_err(|e| e.error)?;
    Ok(())
}

/// A file's modification time as (seconds, nanoseconds) since the epoch; (0, 0) where the
/// platform cannot tell, which simply never matches a record made where it could.
pub(crate) fn mtime(meta: &fs::Metadata) -> (u64, u32) {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| (d.as_secs(), d.subsec_nanos()))
        .unwrap_or((0, 0))
}

/// The lowercase hex sha256 of a file, streamed; `progress` gets each chunk's length.
pub fn hash_file(path: &Path, mut progress: impl FnMut(u64)) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        progress(n as u64);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Fails unless `path` starts with the GGUF magic. `refetch` names the catalog model to
/// suggest re-fetching when the file came from the catalog.
pub(crate) fn check_gguf_magic(path: &Path, refetch: Option<&str>) -> Result<(), ModelError> {
    let mut magic = [0u8; 4];
    let mut file = File::open(path).ctx(|| format!("cannot open {}", path.display()))?;
    let mut got = 0;
    // A file shorter than four bytes is simply not GGUF; show what little it has.
    while got < magic.len() {
        let n = file.read(&mut magic[got..]).ctx(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    if &magic[..got] == GGUF_MAGIC {
        Ok(())
    } else {
        Err(ModelError::NotGguf {
            path: PathBuf::from(path),
            magic: magic[..got].escape_ascii().to_string(),
            refetch: refetch.map(str::to_string),
        })
    }
}

/// A writer adapter that hashes and counts everything written through it, so a file can be
/// verified while it is being written instead of read back afterwards.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), written: 0 }
    }

    /// The inner writer, the byte count and the lowercase hex sha256 of what was written.
    pub(crate) fn finish(self) -> (W, u64, String) {
        (self.inner, self.written, hex::encode(self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Hash only what the inner writer accepted, so a short write is not hashed twice.
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO_SHA: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn hashing_writer_matches_hash_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = HashingWriter::new(File::create(&path).unwrap());
        w.write_all(b"hel").unwrap();
        w.write_all(b"lo").unwrap();
        let (_, n, sha) = w.finish();
        assert_eq!((n, sha.as_str()), (5, HELLO_SHA));
        assert_eq!(hash_file(&path, |_| {}).unwrap(), HELLO_SHA);
    }

    #[test]
    fn gguf_magic() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.gguf");
        fs::write(&good, b"GGUF\x03\x00\x00\x00rest").unwrap();
        check_gguf_magic(&good, None).unwrap();
        let bad = dir.path().join("bad.gguf");
        fs::write(&bad, b"PK\x03\x04zip").unwrap();
        let err = check_gguf_magic(&bad, Some("m")).unwrap_err().to_string();
        assert!(err.contains("not a GGUF file"), "{err}");
        assert!(err.contains("luodi models fetch m --force"), "{err}");
        let tiny = dir.path().join("tiny");
        fs::write(&tiny, b"GG").unwrap();
        assert!(check_gguf_magic(&tiny, None).is_err());
    }

    #[test]
    fn unreadable_sidecar_counts_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(SIDECAR_FILE), b"{not json").unwrap();
        assert!(read_sidecar(dir.path()).files.is_empty());
        record_verified(dir.path(), "a", 1, (2, 3), "ab");
        let sc = read_sidecar(dir.path());
        assert_eq!(sc.files["a"].size, 1);
    }
}

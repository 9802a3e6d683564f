//! Assembling a model file from wheel members: stream each member out of its wheel (a zip),
//! concatenate them into a temp file next to the destination, hash while writing, and rename
//! into place only once size and sha256 match the catalog.
//!
//! Nothing is ever held in memory whole (a member can be 100 MB), and a failed or interrupted
//! assembly never leaves a file under the final name: the temp file is deleted on drop, and
//! stale ones from a killed process are swept by the store.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use zip::result::ZipError;
use zip::ZipArchive;

use crate::catalog::ModelFile;
use crate::error::{IoContext, ModelError};
use crate::progress::bytes_bar;
use crate::verify::{self, HashingWriter};

const BUF_SIZE: usize = 1 << 20;

/// Builds `dir/file.file_name` from the wheels in `wheels` (package → wheel path) and
/// returns its path. On any mismatch the destination is left untouched.
pub(crate) fn assemble(
    model: &str,
    dir: &Path,
    file: &ModelFile,
    wheels: &HashMap<&str, PathBuf>,
    quiet: bool,
) -> Result<PathBuf, ModelError> {
    let retry = format!("run `luodi models fetch {model} --force` to retry");
    let tmp = tempfile::Builder::new()
        .prefix(crate::store::PARTIAL_PREFIX)
        .tempfile_in(dir)
        .ctx(|| format!("cannot create a temp file in {}", dir.display()))?;
    let tmp_path = tmp.path().to_path_buf();
    let bar = bytes_bar(file.size, format!("extracting {}", file.file_name), quiet);
    let mut out = HashingWriter::new(BufWriter::with_capacity(BUF_SIZE, tmp));
    let mut buf = vec![0u8; BUF_SIZE];

    for part in file.parts {
        let wheel = wheels.get(part.package).ok_or_else(|| {
            // The store downloads every package a file's parts name, so this is a bug.
            ModelError::io(
                format!("no wheel downloaded for {}", part.package),
                io::Error::other("catalog inconsistency"),
            )
        })?;
        let zip_err = |source| ModelError::Zip { name: model.to_string(), wheel: wheel.clone(), source };
        let reader = File::open(wheel).ctx(|| format!("cannot open {}", wheel.display()))?;
        let mut archive = ZipArchive::new(BufReader::new(reader)).map_err(zip_err)?;
        let mut member = archive.by_name(part.member).map_err(|e| match e {
            ZipError::FileNotFound => {
                ModelError::MemberMissing { wheel: wheel.clone(), member: part.member.to_string() }
            }
            other => zip_err(other),
        })?;
        // The zip reader checks the member's CRC32 when it reaches the end, so a damaged
        // download fails here with a read error even before the sha256 comparison.
        loop {
            let n = member
                .read(&mut buf)
                .ctx(|| format!("cannot extract {} from {}; {retry}", part.member, wheel.display()))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).ctx(|| format!("cannot write {}", tmp_path.display()))?;
            bar.inc(n as u64);
        }
    }
    bar.finish_and_clear();

    let (writer, written, sha) = out.finish();
    let tmp = writer
        .into_inner()
        .map_err(|e| ModelError::io(format!("cannot write {}", tmp_path.display()), e.into_error()))?;
    if written != file.size || sha != file.sha256 {
        // Returning drops `tmp`, which deletes the temp file: nothing is installed.
        return Err(ModelError::DownloadMismatch {
            name: model.to_string(),
            file: file.file_name.to_string(),
            actual_size: written,
            actual_sha: sha,
            expected_size: file.size,
            expected_sha: file.sha256.to_string(),
        });
    }
    if file.file_name.ends_with(".gguf") {
        verify::check_gguf_magic(&tmp_path, Some(model))?;
    }
    make_world_readable(tmp.as_file()).ctx(|| format!("cannot set permissions on {}", tmp_path.display()))?;
    // Make the bytes durable before the rename makes them visible under the final name, so
    // a crash cannot leave a verified-looking file with missing contents.
    tmp.as_file().sync_all().ctx(|| format!("cannot write {}", tmp_path.display()))?;
    let dest = dir.join(file.file_name);
    tmp.persist(&dest)
        .map_err(|e| ModelError::io(format!("cannot move the new file to {}", dest.display()), e.error))?;

    let meta = fs::metadata(&dest).ctx(|| format!("cannot read {}", dest.display()))?;
    verify::record_verified(dir, file.file_name, meta.len(), verify::mtime(&meta), &sha);
    Ok(dest)
}

/// Temp files are created owner-only (0600); a model file is ordinary data, readable by
/// whoever can read the models directory, like a file written with `cp`.
pub(crate) fn make_world_readable(file: &File) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o644))
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        Ok(())
    }
}

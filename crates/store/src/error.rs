//! The store's one error type and the kind each error maps to.

/// What kind of failure an error is; the server maps kinds to HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// An argument is malformed (an unknown role, a bad page cursor).
    InvalidRequest,
    /// A secret or password did not match, or the key is revoked or expired.
    Unauthorized,
    /// The row does not exist, or belongs to another organisation.
    NotFound,
    /// A unique value is already taken (an email, a request id in use).
    Conflict,
    /// A budget's hard limit leaves no room for the request.
    QuotaExceeded,
    /// The database is busy, locked or out of connections for now: a retry
    /// later may succeed (the server answers 503 with `retry-after`).
    Unavailable,
    /// The database failed or holds data this code cannot read.
    Internal,
}

/// Every error the store returns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named thing does not exist in the caller's organisation.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique value is taken.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A malformed argument.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A page cursor that is malformed or belongs to another query.
    #[error("invalid page cursor: {0}")]
    InvalidCursor(String),
    /// The credential is unknown, revoked or expired, or the password is wrong.
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// The URL names no database this store speaks.
    #[error("unsupported database URL (want sqlite:// or postgres://): {0}")]
    UnsupportedUrl(String),
    /// The driver failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Hashing or parsing a password hash failed.
    #[error("password hashing failed: {0}")]
    Password(String),
    /// A budget cannot hold the request's worst case; says which.
    #[error("insufficient quota: {0}")]
    BudgetExceeded(String),
    /// A stored value could not be read back (bad JSON, unknown role).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// SQLite's C API answered an error (the metering writer's own
    /// connection, `sqlite_raw`): its result code and message.
    #[error("database error: SQLite {code}: {message}")]
    Sqlite {
        /// The (extended) result code.
        code: i32,
        /// SQLite's message.
        message: String,
    },
}

impl StoreError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::NotFound(_) => ErrorKind::NotFound,
            StoreError::Conflict(_) => ErrorKind::Conflict,
            StoreError::InvalidRequest(_)
            | StoreError::InvalidCursor(_)
            | StoreError::UnsupportedUrl(_) => ErrorKind::InvalidRequest,
            StoreError::Unauthorized(_) => ErrorKind::Unauthorized,
            StoreError::BudgetExceeded(_) => ErrorKind::QuotaExceeded,
            StoreError::Database(err) if is_transient(err) => ErrorKind::Unavailable,
            StoreError::Sqlite { code, .. } if sqlite_code_is_transient(*code) => {
                ErrorKind::Unavailable
            }
            StoreError::Sqlite { .. } => ErrorKind::Internal,
            StoreError::Database(_)
            | StoreError::Migrate(_)
            | StoreError::Password(_)
            | StoreError::Corrupt(_) => ErrorKind::Internal,
        }
    }
}

/// Whether a driver error is a passing overload rather than a fault: no
/// connection free in time, SQLite's BUSY/LOCKED (primary codes 5 and 6,
/// extended codes keep them in their low byte), SQLite's CANTOPEN (14) and
/// a socket's EMFILE/ENFILE (the process or the system out of file
/// descriptors, as when thousands of connections wait: SQLite answers 14
/// when it cannot open a file it needs), or PostgreSQL's serialization
/// failure, deadlock, too many connections or shutdown.
fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Io(io) => matches!(io.raw_os_error(), Some(EMFILE | ENFILE)),
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            if let Ok(n) = code.parse::<i32>() {
                return sqlite_code_is_transient(n);
            }
            matches!(code, "40001" | "40P01" | "53300" | "57P01" | "57P03")
        }
        _ => false,
    }
}

/// SQLite's BUSY, LOCKED and CANTOPEN (primary codes 5, 6 and 14; an
/// extended code keeps its primary one in its low byte).
fn sqlite_code_is_transient(code: i32) -> bool {
    matches!(code & 0xff, 5 | 6 | 14)
}

/// Linux's "too many open files" in the process, and in the system.
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

/// Turns a unique-constraint violation into [`StoreError::Conflict`] with `what`.
pub(crate) fn conflict_on_unique(err: sqlx::Error, what: &str) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(what.to_owned())
        }
        _ => StoreError::Database(err),
    }
}

/// A shorthand for results of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_timeout_is_unavailable_and_other_failures_internal() {
        let busy = StoreError::Database(sqlx::Error::PoolTimedOut);
        assert_eq!(busy.kind(), ErrorKind::Unavailable);
        let broken = StoreError::Database(sqlx::Error::RowNotFound);
        assert_eq!(broken.kind(), ErrorKind::Internal);
        assert_eq!(StoreError::Corrupt("x".into()).kind(), ErrorKind::Internal);
    }

    #[test]
    fn out_of_file_descriptors_is_unavailable() {
        let emfile = sqlx::Error::Io(std::io::Error::from_raw_os_error(EMFILE));
        assert_eq!(StoreError::Database(emfile).kind(), ErrorKind::Unavailable);
        let refused = sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into());
        assert_eq!(StoreError::Database(refused).kind(), ErrorKind::Internal);
    }

    /// SQLite's own CANTOPEN, as a file it cannot open gives it (under load:
    /// no descriptor free).
    #[tokio::test]
    async fn sqlite_cannot_open_is_unavailable() {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rw",
            dir.path().join("missing/x.db").display()
        );
        let Err(err) = sqlx::AnyConnection::connect(&url).await else {
            panic!("opened a file in a missing folder");
        };
        let err = StoreError::Database(err);
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    }
}

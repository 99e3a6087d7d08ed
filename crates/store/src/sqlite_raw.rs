//! One SQLite connection spoken to through SQLite's C API, from the one
//! thread that owns it (`ledger_thread`): no connection thread to hop to,
//! no `Any` conversion of every value, and each statement kept prepared by
//! its own text.
//!
//! sqlx runs every SQLite connection on a thread of its own; a metering
//! batch through it cost two or three hops there and back, each a wake of
//! the connection's thread and then of the writer's task, which on a
//! 2-core machine carrying 2,000 requests/s was most of a batch's time
//! (docs/PERFORMANCE.md). This connection is opened with the store's
//! settings (WAL, foreign keys, a 5 s busy timeout, `synchronous =
//! NORMAL`) and answers rows as [`RawRow`]s, which the row readers shared
//! with sqlx's rows read through [`Cells`].

use std::collections::HashMap;
use std::ffi::{c_int, CStr, CString};
use std::ptr::{self, NonNull};
use std::sync::Arc;

use libsqlite3_sys as ffi;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{Result, StoreError};

/// The most statements kept prepared; past it the cache starts again.
const CACHED: usize = 512;

/// A value bound to a statement's next `?`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Bind<'a> {
    Text(&'a str),
    MaybeText(Option<&'a str>),
    Int(i64),
}

/// One column's value.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

/// A row a statement answered, its values by position or column name.
#[derive(Debug, Clone)]
pub(crate) struct RawRow {
    names: Arc<[String]>,
    values: Vec<Value>,
}

/// A column: by position or by name.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Col<'a> {
    At(usize),
    Named(&'a str),
}

impl From<usize> for Col<'_> {
    fn from(at: usize) -> Self {
        Col::At(at)
    }
}

impl<'a> From<&'a str> for Col<'a> {
    fn from(name: &'a str) -> Self {
        Col::Named(name)
    }
}

/// A value type a row reader takes from either kind of row.
pub(crate) trait Cell: Sized {
    /// From sqlx's row.
    fn from_any(row: &AnyRow, col: Col<'_>) -> Result<Self>;
    /// From this module's row.
    fn from_raw(row: &RawRow, col: Col<'_>) -> Result<Self>;
}

/// A row either connection answered: the readers of the batch's rows
/// (budgets, counters, ledger rows) take both.
pub(crate) trait Cells {
    /// The value of `col`.
    fn cell<'c, T: Cell>(&self, col: impl Into<Col<'c>>) -> Result<T>;
}

impl Cells for AnyRow {
    fn cell<'c, T: Cell>(&self, col: impl Into<Col<'c>>) -> Result<T> {
        T::from_any(self, col.into())
    }
}

impl Cells for RawRow {
    fn cell<'c, T: Cell>(&self, col: impl Into<Col<'c>>) -> Result<T> {
        T::from_raw(self, col.into())
    }
}

impl RawRow {
    fn value(&self, col: Col<'_>) -> Result<&Value> {
        let at = match col {
            Col::At(at) => Some(at),
            Col::Named(name) => self.names.iter().position(|n| n == name),
        };
        at.and_then(|at| self.values.get(at))
            .ok_or_else(|| StoreError::Corrupt(format!("no column {col:?} in a row")))
    }
}

fn mismatch(col: Col<'_>, want: &str, got: &Value) -> StoreError {
    StoreError::Corrupt(format!("column {col:?}: want {want}, found {got:?}"))
}

fn any_get<'r, T>(row: &'r AnyRow, col: Col<'_>) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    Ok(match col {
        Col::At(at) => row.try_get(at)?,
        Col::Named(name) => row.try_get(name)?,
    })
}

impl Cell for i64 {
    fn from_any(row: &AnyRow, col: Col<'_>) -> Result<Self> {
        any_get(row, col)
    }
    fn from_raw(row: &RawRow, col: Col<'_>) -> Result<Self> {
        match row.value(col)? {
            Value::Int(v) => Ok(*v),
            other => Err(mismatch(col, "an integer", other)),
        }
    }
}

impl Cell for Option<i64> {
    fn from_any(row: &AnyRow, col: Col<'_>) -> Result<Self> {
        any_get(row, col)
    }
    fn from_raw(row: &RawRow, col: Col<'_>) -> Result<Self> {
        match row.value(col)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            other => Err(mismatch(col, "an integer or null", other)),
        }
    }
}

impl Cell for String {
    fn from_any(row: &AnyRow, col: Col<'_>) -> Result<Self> {
        any_get(row, col)
    }
    fn from_raw(row: &RawRow, col: Col<'_>) -> Result<Self> {
        match row.value(col)? {
            Value::Text(v) => Ok(v.clone()),
            other => Err(mismatch(col, "text", other)),
        }
    }
}

impl Cell for Option<String> {
    fn from_any(row: &AnyRow, col: Col<'_>) -> Result<Self> {
        any_get(row, col)
    }
    fn from_raw(row: &RawRow, col: Col<'_>) -> Result<Self> {
        match row.value(col)? {
            Value::Null => Ok(None),
            Value::Text(v) => Ok(Some(v.clone())),
            other => Err(mismatch(col, "text or null", other)),
        }
    }
}

/// A prepared statement and its columns' names.
struct Prepared {
    stmt: NonNull<ffi::sqlite3_stmt>,
    names: Arc<[String]>,
}

/// A SQLite connection used from one thread at a time.
pub(crate) struct RawConn {
    db: NonNull<ffi::sqlite3>,
    prepared: HashMap<String, Prepared>,
}

// SAFETY: SQLite allows a connection opened without its own mutex
// (`SQLITE_OPEN_NOMUTEX`) to move between threads as long as one thread
// at a time uses it; `RawConn` is not `Sync`, so only its holder can.
unsafe impl Send for RawConn {}

impl RawConn {
    /// Opens the database file `path` with the store's settings.
    pub(crate) fn open(path: &std::path::Path) -> Result<RawConn> {
        let name = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| StoreError::InvalidRequest("a NUL in the database path".into()))?;
        let mut db = ptr::null_mut();
        let flags = ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE | ffi::SQLITE_OPEN_NOMUTEX;
        // SAFETY: `name` is NUL-terminated and outlives the call; `db` is
        // a valid out-pointer.
        let rc = unsafe { ffi::sqlite3_open_v2(name.as_ptr(), &mut db, flags, ptr::null()) };
        let Some(db) = NonNull::new(db) else {
            return Err(StoreError::Corrupt(format!(
                "SQLite could not allocate a connection ({rc})"
            )));
        };
        let conn = RawConn {
            db,
            prepared: HashMap::new(),
        };
        if rc != ffi::SQLITE_OK {
            return Err(conn.error(rc));
        }
        conn.exec(crate::SQLITE_SETTINGS)?;
        // A batch's multi-row statements keep a statement journal (to undo
        // one statement alone); past 64 KiB SQLite spills it to a temporary
        // file, created and unlinked each time. The writer's batches are
        // bounded (`ledger_thread::MAX_BATCH`), so it stays in memory.
        conn.exec("PRAGMA temp_store = MEMORY;")?;
        Ok(conn)
    }

    /// Runs `sql` (statements without parameters), rows discarded.
    pub(crate) fn exec(&self, sql: &str) -> Result<()> {
        let sql = CString::new(sql)
            .map_err(|_| StoreError::InvalidRequest("a NUL in a statement".into()))?;
        // SAFETY: the connection is open; `sql` is NUL-terminated.
        let rc = unsafe {
            ffi::sqlite3_exec(
                self.db.as_ptr(),
                sql.as_ptr(),
                None,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(self.error(rc))
        }
    }

    /// Runs each of `statements` in order, each taking its parameters from
    /// the front of what `binds` has left; answers each one's rows. The
    /// first that fails ends the run with its error.
    pub(crate) fn run(
        &mut self,
        statements: &[String],
        binds: &[Bind<'_>],
    ) -> Result<Vec<Vec<RawRow>>> {
        let mut out = Vec::with_capacity(statements.len());
        let mut binds = binds.iter();
        for sql in statements {
            let (stmt, names) = self.prepare(sql)?;
            // SAFETY: `stmt` is a statement of this connection, kept
            // prepared until the cache drops it (not during this call).
            let rows = unsafe { self.step_all(stmt, names, &mut binds) };
            // SAFETY: as above; reset whether or not it ran to the end, so
            // the statement holds no read or write lock of its own.
            unsafe {
                ffi::sqlite3_reset(stmt.as_ptr());
                ffi::sqlite3_clear_bindings(stmt.as_ptr());
            }
            out.push(rows?);
        }
        if binds.next().is_some() {
            return Err(StoreError::Corrupt(
                "a script bound more values than its statements take".into(),
            ));
        }
        Ok(out)
    }

    /// Statement `sql`, prepared now or kept from before.
    fn prepare(&mut self, sql: &str) -> Result<(NonNull<ffi::sqlite3_stmt>, Arc<[String]>)> {
        if let Some(p) = self.prepared.get(sql) {
            return Ok((p.stmt, p.names.clone()));
        }
        if self.prepared.len() >= CACHED {
            self.finalize_all();
        }
        let mut stmt = ptr::null_mut();
        let len = c_int::try_from(sql.len())
            .map_err(|_| StoreError::InvalidRequest("a statement too long".into()))?;
        // SAFETY: `sql` is valid for `len` bytes (SQLite reads no further);
        // `stmt` is a valid out-pointer.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                self.db.as_ptr(),
                sql.as_ptr().cast(),
                len,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut stmt,
                ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(self.error(rc));
        }
        let Some(stmt) = NonNull::new(stmt) else {
            return Err(StoreError::Corrupt(format!("an empty statement: {sql:?}")));
        };
        // SAFETY: `stmt` was just prepared.
        let count = unsafe { ffi::sqlite3_column_count(stmt.as_ptr()) };
        let names: Arc<[String]> = (0..count)
            .map(|i| {
                // SAFETY: `i` is within the column count; the name is a
                // NUL-terminated string SQLite owns until the next call.
                let name = unsafe { ffi::sqlite3_column_name(stmt.as_ptr(), i) };
                if name.is_null() {
                    String::new()
                } else {
                    // SAFETY: non-null, NUL-terminated (above).
                    unsafe { CStr::from_ptr(name) }
                        .to_string_lossy()
                        .into_owned()
                }
            })
            .collect();
        self.prepared.insert(
            sql.to_owned(),
            Prepared {
                stmt,
                names: names.clone(),
            },
        );
        Ok((stmt, names))
    }

    /// Binds `stmt`'s parameters from `binds` and steps it to the end.
    ///
    /// # Safety
    /// `stmt` is a prepared statement of this connection.
    unsafe fn step_all<'b, 'a: 'b>(
        &self,
        stmt: NonNull<ffi::sqlite3_stmt>,
        names: Arc<[String]>,
        binds: &mut impl Iterator<Item = &'b Bind<'a>>,
    ) -> Result<Vec<RawRow>> {
        let s = stmt.as_ptr();
        // SAFETY: `s` is a prepared statement (the caller's promise).
        let wanted = unsafe { ffi::sqlite3_bind_parameter_count(s) };
        for i in 1..=wanted {
            let Some(bind) = binds.next() else {
                return Err(StoreError::Corrupt(
                    "a script bound fewer values than its statements take".into(),
                ));
            };
            // SAFETY: `i` is a parameter of `s`; text is copied by SQLite
            // (`SQLITE_TRANSIENT`) before the call returns.
            let rc = unsafe {
                match *bind {
                    Bind::Int(v) => ffi::sqlite3_bind_int64(s, i, v),
                    Bind::Text(v) | Bind::MaybeText(Some(v)) => ffi::sqlite3_bind_text(
                        s,
                        i,
                        v.as_ptr().cast(),
                        c_int::try_from(v.len())
                            .map_err(|_| StoreError::InvalidRequest("a value too long".into()))?,
                        ffi::SQLITE_TRANSIENT(),
                    ),
                    Bind::MaybeText(None) => ffi::sqlite3_bind_null(s, i),
                }
            };
            if rc != ffi::SQLITE_OK {
                return Err(self.error(rc));
            }
        }
        let mut rows = Vec::new();
        loop {
            // SAFETY: `s` is prepared and bound.
            match unsafe { ffi::sqlite3_step(s) } {
                ffi::SQLITE_ROW => {
                    let values = (0..names.len() as c_int)
                        // SAFETY: a row is current; `i` is a column of it.
                        .map(|i| unsafe { column(s, i) })
                        .collect();
                    rows.push(RawRow {
                        names: names.clone(),
                        values,
                    });
                }
                ffi::SQLITE_DONE => return Ok(rows),
                rc => return Err(self.error(rc)),
            }
        }
    }

    fn finalize_all(&mut self) {
        for (_, p) in self.prepared.drain() {
            // SAFETY: each statement was prepared on this connection and
            // is finalized once, here.
            unsafe { ffi::sqlite3_finalize(p.stmt.as_ptr()) };
        }
    }

    /// The connection's last error, as the store's error.
    fn error(&self, rc: c_int) -> StoreError {
        // SAFETY: the connection is open; the message is NUL-terminated
        // and SQLite's until the next call on this connection.
        let message = unsafe {
            let m = ffi::sqlite3_errmsg(self.db.as_ptr());
            if m.is_null() {
                String::new()
            } else {
                CStr::from_ptr(m).to_string_lossy().into_owned()
            }
        };
        // SAFETY: the connection is open.
        let code = unsafe { ffi::sqlite3_extended_errcode(self.db.as_ptr()) };
        StoreError::Sqlite {
            code: if code == 0 { rc } else { code },
            message,
        }
    }

    /// Whether the connection is inside a transaction it has not ended.
    pub(crate) fn in_transaction(&self) -> bool {
        // SAFETY: the connection is open.
        unsafe { ffi::sqlite3_get_autocommit(self.db.as_ptr()) == 0 }
    }
}

/// Column `i` of the current row of `s`.
///
/// # Safety
/// A row of `s` is current and `i` is one of its columns.
unsafe fn column(s: *mut ffi::sqlite3_stmt, i: c_int) -> Value {
    // SAFETY: the caller's promise; text is read before the next step.
    unsafe {
        match ffi::sqlite3_column_type(s, i) {
            ffi::SQLITE_INTEGER => Value::Int(ffi::sqlite3_column_int64(s, i)),
            ffi::SQLITE_FLOAT => Value::Real(ffi::sqlite3_column_double(s, i)),
            ffi::SQLITE_NULL => Value::Null,
            _ => {
                let text = ffi::sqlite3_column_text(s, i);
                let len = ffi::sqlite3_column_bytes(s, i);
                if text.is_null() {
                    Value::Text(String::new())
                } else {
                    let bytes = std::slice::from_raw_parts(text, len.max(0) as usize);
                    Value::Text(String::from_utf8_lossy(bytes).into_owned())
                }
            }
        }
    }
}

impl Drop for RawConn {
    fn drop(&mut self) {
        self.finalize_all();
        // SAFETY: every statement is finalized; the handle is closed once.
        // Closing rolls back a transaction left open.
        unsafe { ffi::sqlite3_close(self.db.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_statements_in_order_with_their_parameters() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = RawConn::open(&dir.path().join("t.db")).unwrap();
        conn.exec("CREATE TABLE t (a INTEGER, b TEXT)").unwrap();
        let statements = [
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)".to_owned(),
            "SELECT a, b FROM t ORDER BY a".to_owned(),
            "SELECT count(*) AS n FROM t WHERE b IS ?".to_owned(),
        ];
        let binds = [
            Bind::Int(2),
            Bind::Text("two"),
            Bind::Int(1),
            Bind::MaybeText(None),
            Bind::MaybeText(None),
        ];
        let out = conn.run(&statements, &binds).unwrap();
        assert_eq!(out.len(), 3);
        assert!(out[0].is_empty());
        assert_eq!(out[1].len(), 2);
        assert_eq!(out[1][0].cell::<i64>(0).unwrap(), 1);
        assert_eq!(out[1][0].cell::<Option<String>>("b").unwrap(), None);
        assert_eq!(out[1][1].cell::<String>("b").unwrap(), "two");
        assert_eq!(out[2][0].cell::<i64>("n").unwrap(), 1);
        assert!(out[1][1].cell::<i64>("b").is_err());
        // Kept prepared: the same texts again, other values.
        let again = conn
            .run(&statements[1..], &[Bind::MaybeText(Some("two"))])
            .unwrap();
        assert_eq!(again[1][0].cell::<i64>("n").unwrap(), 1);
        // Too few values, too many, a failing statement: errors, no panic.
        assert!(conn.run(&statements[..1], &binds[..3]).is_err());
        assert!(conn.run(&statements[1..2], &binds[..1]).is_err());
        assert!(conn.run(&["SELECT nope FROM t".to_owned()], &[]).is_err());
        assert!(!conn.in_transaction());
    }
}

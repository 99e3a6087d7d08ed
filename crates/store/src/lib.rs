//! Persistence for Parlance: organisations, users and roles, sign-ups
//! waiting for approval, web sessions and sign-in throttling, projects, API
//! keys, the usage ledger with its rollups, reservations, budgets and their
//! counters, prices, plans, the audit log, the chat app's conversations and
//! stored chat completions (`store: true`),
//! on SQLite (WAL, embedded) or PostgreSQL.
//!
//! One [`Store`] speaks to either database through sqlx's `Any` driver, so each
//! query is written once: the SQL uses `$1` placeholders (both databases accept
//! them), integers for times (unix milliseconds) and money (the billing unit),
//! and text for ids and JSON. Only the migrations differ, in
//! `migrations/sqlite` and `migrations/postgres`.
//!
//! Tenancy is part of the API: every read of an organisation's data takes the
//! organisation id and answers [`StoreError::NotFound`] for another
//! organisation's rows. The few system operations that span organisations
//! (finding an organisation by name, listing organisations, finding or
//! counting keys, instances and their leases, recovering reservations) say
//! so in their documentation.
//! Request ids are unique per organisation. The installation's default
//! organisation and project are named [`DEFAULT_ORG`] and
//! [`DEFAULT_PROJECT`]; opening a store folds the organisation once called
//! `local` into it (see `defaults`). The store holds no business
//! rules: costs and prices arrive as integers computed by the billing crate;
//! what it does enforce is what only a transaction can (a budget's hard limit
//! against concurrent reservations, see `budget`).

mod audit;
mod batch;
mod batch_set;
mod batch_sql;
mod batch_sqlite;
mod budget;
mod checkpoint;
mod conversations;
mod defaults;
mod error;
mod guardrails;
mod incidents;
mod instances;
mod invites;
mod keys;
mod ledger;
mod ledger_thread;
mod named;
mod prices;
mod responses;
mod rollup;
mod sessions;
mod signups;
mod sqlite_raw;
mod stored_completions;
mod tenancy;
mod throttle;
mod usage;

use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use audit::{AuditEntry, NewAuditEntry};
pub use batch::{LedgerWrite, LedgerWritten};
pub use budget::{month_of, Budget, BudgetKind, BudgetScope, BudgetStatus, SoftLimitReached};
pub use conversations::{
    Conversation, ConversationUpdate, Message, NewConversation, NewMessage, MAX_CONVERSATIONS_PAGE,
};
pub use defaults::{LocalOrgFold, DEFAULT_ORG, DEFAULT_PROJECT};
pub use error::{ErrorKind, Result, StoreError};
pub use guardrails::Guardrails;
pub use incidents::Incident;
pub use instances::Instance;
pub use invites::{Invite, InviteToken};
pub use keys::{ApiKey, KeyKind, KeySecret, NewApiKey, RateLimits, PROJECT_ARCHIVED};
pub use ledger::{NewReservation, NewUsage, Progress, Recorded, Reservation, UsageRecord};
pub use prices::{StoredPlan, StoredPrice, DEFAULT_PRICE_MODEL, PRICE_CACHE_TTL};
pub use responses::{NewStoredResponse, StoredResponse};
pub use sessions::{Session, SessionToken};
pub use signups::SignupRequest;
pub use stored_completions::{
    NewStoredChatCompletion, StoredChatCompletion, StoredChatCompletionPage,
    StoredChatCompletionQuery, MAX_STORED_COMPLETIONS_PAGE,
};
pub use tenancy::{Membership, Organization, Project, Role, User};
pub use throttle::Throttle;
pub use usage::{
    BucketWidth, CostBucket, CostGroupBy, CostResult, CostsPage, CostsQuery, GroupBy, UsageBucket,
    UsageFilter, UsagePage, UsageQuery, UsageResult, COSTS_LIMITS,
};

/// The message of the [`StoreError::Conflict`] a reservation gets when
/// its organisation's request id is already in the ledger (used, settled).
pub const REQUEST_ID_IN_LEDGER: &str = "request id already in the ledger";

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file in WAL mode.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// A handle on the database; cheap to clone (it shares one pool).
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Price rows recently read ([`Store::price_at_cached`]).
    price_cache: std::sync::Arc<prices::PriceCache>,
    /// Metering batches that fell back to one write at a time
    /// ([`Store::batches_run_one_by_one`]).
    batch_fallbacks: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// A SQLite file's metering writer (`ledger_thread`): its own thread
    /// and connection, whose page cache stays warm between batches.
    sqlite_ledger: Option<std::sync::Arc<SqliteLedger>>,
}

/// The metering writer a store on a SQLite file keeps.
#[derive(Debug, Default)]
struct SqliteLedger {
    /// Taken (and so dropped, which ends the thread) by [`Store::close`].
    writer: std::sync::Mutex<Option<ledger_thread::LedgerThread>>,
    /// Set by [`Store::close`]: the WAL checkpointer (`checkpoint`) stops.
    closed: std::sync::atomic::AtomicBool,
}

impl SqliteLedger {
    /// Whether the store is still open.
    fn is_open(&self) -> bool {
        !self.closed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Every SQLite connection's settings: the pool's and the metering
/// writer's own (`sqlite_raw`), as [`Store::connect`] describes them.
pub(crate) const SQLITE_SETTINGS: &str = "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
     PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL; \
     PRAGMA wal_autocheckpoint = 10000;";

impl Store {
    /// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://…`),
    /// applies any migrations not yet applied, then folds an old `local`
    /// organisation into the default one ([`Store::fold_local_org`]).
    ///
    /// SQLite connections run in WAL mode with foreign keys on, a 5 s busy
    /// timeout and `synchronous = NORMAL` (a committed transaction survives a
    /// crash of the process; only a power loss may drop the last ones); a
    /// store on a file checkpoints its log in the background (`checkpoint`),
    /// its commits only past 10,000 pages.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        let options: AnyConnectOptions = url.parse()?;
        let checkpointer_options = options.clone();
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool = match backend {
            Backend::Sqlite => {
                // An in-memory database exists once per connection: keep one.
                let max = if memory { 1 } else { 8 };
                AnyPoolOptions::new()
                    .max_connections(max)
                    // Nothing to test on an embedded database: a ping would
                    // be one more hop to the connection's thread per use.
                    .test_before_acquire(false)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute(SQLITE_SETTINGS).await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            // The store's queries are short and indexed: JIT
                            // compiling them costs more (~13 ms) than it saves.
                            conn.execute("SET jit = off").await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
        };
        let batch_fallbacks: std::sync::Arc<std::sync::atomic::AtomicU64> = Default::default();
        let sqlite_ledger = match (backend, memory) {
            (Backend::Sqlite, false) => {
                let file =
                    <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(url)?
                        .get_filename()
                        .to_owned();
                let kept = SqliteLedger::default();
                *kept.writer.lock().unwrap_or_else(|e| e.into_inner()) =
                    ledger_thread::LedgerThread::start(file, batch_fallbacks.clone());
                Some(std::sync::Arc::new(kept))
            }
            _ => None,
        };
        let store = Store {
            pool,
            backend,
            price_cache: Default::default(),
            batch_fallbacks,
            sqlite_ledger,
        };
        if let Some(kept) = &store.sqlite_ledger {
            checkpoint::start(&checkpointer_options, kept);
        }
        store.migrate().await?;
        store.fold_local_org().await?;
        Ok(store)
    }

    /// Applies the migrations not yet applied; running it again is a no-op.
    pub async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection; the store is unusable afterwards.
    pub async fn close(&self) {
        let closing = self.pool.close();
        if let Some(kept) = &self.sqlite_ledger {
            kept.closed
                .store(true, std::sync::atomic::Ordering::Relaxed);
            // The writer's thread ends with its queue, once it answered
            // what it holds.
            drop(kept.writer.lock().unwrap_or_else(|e| e.into_inner()).take());
        }
        closing.await;
    }

    /// Hands `writes` to the SQLite file's metering writer (which groups
    /// them with what else waits); `None` when this store has none
    /// (PostgreSQL, an in-memory database) or it is closed.
    pub(crate) fn to_ledger_thread(&self, writes: &[LedgerWrite]) -> Option<ledger_thread::Answer> {
        let kept = self.sqlite_ledger.as_ref()?;
        let writer = kept.writer.lock().unwrap_or_else(|e| e.into_inner());
        writer.as_ref()?.write(writes.to_vec())
    }

    /// Whether this store groups metering writes itself (a SQLite file:
    /// one writer thread takes every write): then a caller hands over each
    /// write as it comes ([`Store::write_batch`] of one) rather than
    /// gathering batches of its own.
    pub fn groups_writes(&self) -> bool {
        self.sqlite_ledger.is_some()
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// The current time in unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A new random id such as `proj_3kT9…` (24 alphanumerics, ~143 bits).
pub(crate) fn new_id(prefix: &str) -> String {
    let tail: String = rand::rngs::OsRng
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    format!("{prefix}_{tail}")
}

/// The URL without its password, for error messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://…{}", &url[..scheme], &url[at..]),
        _ => url.to_owned(),
    }
}

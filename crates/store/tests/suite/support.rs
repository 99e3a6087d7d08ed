//! Test databases: a temp SQLite file, or a PostgreSQL database created for
//! the case and dropped after it (the server keeps state between runs).

use std::future::Future;

use rand::distributions::Alphanumeric;
use rand::Rng;
use sqlx::{AnyConnection, Connection, Executor};
use store::{NewApiKey, Organization, Project, Store};

/// What a case gets: the store and the URL it was opened with.
pub struct Db {
    pub store: Store,
    pub url: String,
}

impl Db {
    /// A fresh organisation with one project.
    pub async fn org_with_project(&self, name: &str) -> (Organization, Project) {
        let org = self.store.create_org(name).await.unwrap();
        let project = self.store.create_project(&org.id, "default").await.unwrap();
        (org, project)
    }

    /// A raw connection beside the store, for checks the API does not offer.
    pub async fn raw(&self) -> AnyConnection {
        sqlx::any::install_default_drivers();
        AnyConnection::connect(&self.url).await.unwrap()
    }
}

/// A key request for a project.
pub fn new_key(project: &Project, name: &str) -> NewApiKey {
    NewApiKey {
        project_id: project.id.clone(),
        name: name.to_owned(),
        ..NewApiKey::default()
    }
}

/// Runs the case on its own task so a panic still lets us clean up.
async fn run_case<F, Fut>(db: Db, case: F) -> Result<(), tokio::task::JoinError>
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let store = db.store.clone();
    let result = tokio::spawn(case(db)).await;
    store.close().await;
    result
}

pub async fn on_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("parlance.db").display()
    );
    let store = Store::connect(&url).await.unwrap();
    let result = run_case(Db { store, url }, case).await;
    drop(dir);
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// `base/dbname?query` → (`base/`, `?query`).
fn split_database(url: &str) -> (String, String) {
    let (path, query) = match url.find('?') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, ""),
    };
    let slash = path
        .rfind('/')
        .filter(|&i| i > "postgres://".len())
        .unwrap_or(path.len());
    let base = if slash == path.len() {
        format!("{path}/")
    } else {
        path[..=slash].to_owned()
    };
    (base, query.to_owned())
}

/// A connection for CREATE/DROP DATABASE: the given URL, or its server's
/// `postgres` database when the named one does not exist.
async fn admin_connection(admin_url: &str) -> AnyConnection {
    sqlx::any::install_default_drivers();
    if let Ok(conn) = AnyConnection::connect(admin_url).await {
        return conn;
    }
    let (base, query) = split_database(admin_url);
    AnyConnection::connect(&format!("{base}postgres{query}"))
        .await
        .unwrap()
}

pub async fn on_postgres<F, Fut>(case: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Ok(admin_url) = std::env::var("PARLANCE_TEST_POSTGRES_URL") else {
        eprintln!("skipping PostgreSQL: set PARLANCE_TEST_POSTGRES_URL");
        return;
    };
    let suffix: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(16)
        .map(char::from)
        .collect::<String>()
        .to_lowercase();
    let name = format!("parlance_test_{suffix}");
    let mut admin = admin_connection(&admin_url).await;
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let (base, query) = split_database(&admin_url);
    let url = format!("{base}{name}{query}");
    let result = match Store::connect(&url).await {
        Ok(store) => run_case(Db { store, url }, case).await,
        Err(e) => {
            admin
                .execute(format!("DROP DATABASE {name}").as_str())
                .await
                .unwrap();
            panic!("connect to {name}: {e}");
        }
    };
    admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await
        .unwrap();
    admin.close().await.unwrap();
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

//! A PostgreSQL database of the test's own on the machine's server (127.0.0.1:5432, or
//! `HUIYING_TEST_POSTGRES`), dropped at the end; and the records backends to run a
//! story on.

use huiying::config::{Config, Secret};

/// Where the tests' databases are created: a login allowed to create databases.
fn server_url() -> String {
    std::env::var("HUIYING_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh, empty database, dropped (with its connections) when this is dropped.
pub struct PostgresDatabase {
    pub name: String,
    pub url: String,
}

impl PostgresDatabase {
    pub async fn create() -> Self {
        let name = format!("huiying_test_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_client().await;
        // UTF-8 with a Unicode-aware ctype, as docs/cluster.md asks of operators.
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {name} ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' TEMPLATE template0"
            ))
            .await
            .unwrap();
        let url = match server_url().rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("HUIYING_TEST_POSTGRES must name a database"),
        };
        Self { name, url }
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside any runtime's async context: a thread with its own.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
                let admin = admin_client().await;
                let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
            })
        })
        .join();
    }
}

async fn admin_client() -> tokio_postgres::Client {
    connect(&server_url()).await
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("the tests need PostgreSQL at {url} (scripts/install-test-deps.sh starts it): {e}"));
    tokio::spawn(connection);
    client
}

/// Where a story keeps its records.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A backend made ready for one test: a new PostgreSQL database, or nothing to make.
pub struct RecordsBackend {
    pub database: Option<PostgresDatabase>,
}

impl RecordsBackend {
    pub async fn create(backend: Backend) -> Self {
        let database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(PostgresDatabase::create().await),
        };
        Self { database }
    }

    /// Points the store at it (SQLite stays the test's temporary file).
    pub fn configure(&self, config: &mut Config) {
        if let Some(database) = &self.database {
            config.database.url = Secret::new(database.url.clone());
        }
    }
}

/// Runs each named story (an `async fn(Backend)`) once per backend, as a test each.
#[macro_export]
macro_rules! on_both_backends {
    ($($story:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $story() {
                super::$story($crate::helpers::Backend::Sqlite).await
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $story() {
                super::$story($crate::helpers::Backend::Postgres).await
            })*
        }
    };
}

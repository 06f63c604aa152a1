//! Fresh databases on the test server (`PARALLAX_TEST_POSTGRES_URL`, started
//! by `scripts/services/postgres start`).
#![allow(dead_code)]

use chrono::Utc;
use parallax_core::{Metadata, NewEvent};
use parallax_postgres::{migrate_read, migrate_write, pool};
use serde_json::json;
use sqlx::postgres::PgPool;
use uuid::Uuid;

/// The server's URL (a superuser, to create databases).
pub fn server_url() -> String {
    std::env::var("PARALLAX_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://parallax:parallax@127.0.0.1:5432/parallax".to_owned())
}

/// A new, empty database with both schemas; returns its URL and a pool.
pub async fn fresh_database() -> (String, PgPool) {
    let server = server_url();
    let admin = pool(&server, 1).await.unwrap_or_else(|e| {
        panic!("PostgreSQL does not answer at {server} ({e}); run `scripts/services/postgres start`")
    });
    let name = format!("parallax_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create a test database");
    admin.close().await;
    let (base, _) = server.rsplit_once('/').expect("a URL with a database name");
    let url = format!("{base}/{name}");
    let pool = pool(&url, 40).await.expect("connect to the test database");
    migrate_write(&pool).await.expect("create the write schema");
    migrate_read(&pool).await.expect("create the read schema");
    (url, pool)
}

/// An event of type `test.happened` whose payload is `{"n": n}`.
pub fn event(n: usize) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "test.happened".into(),
        schema_version: 1,
        payload: json!({ "n": n }).to_string(),
        metadata: Metadata::default(),
        recorded_at: Utc::now(),
    }
}

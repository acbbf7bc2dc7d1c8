//! API tokens.

use sqlx::SqliteConnection;

use super::json_text;
use crate::clock::Timestamp;
use crate::error::StorageError;
use crate::tokens::TokenRecord;

/// Inserts a new token.
pub(super) async fn insert(conn: &mut SqliteConnection, t: &TokenRecord) -> Result<(), StorageError> {
    sqlx::query(
        "INSERT INTO api_tokens (token_id, name, scopes_json, secret_hmac, created_at, expires_at, revoked_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(t.token_id.clone())
    .bind(t.name.clone())
    .bind(json_text(&t.scopes))
    .bind(t.secret_hmac.clone())
    .bind(t.created_at.as_str().to_owned())
    .bind(t.expires_at.as_ref().map(|t| t.as_str().to_owned()))
    .bind(t.revoked_at.as_ref().map(|t| t.as_str().to_owned()))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Marks tokens revoked at `at` (a token already revoked keeps its first time).
pub(super) async fn revoke(conn: &mut SqliteConnection, ids: &[String], at: &Timestamp) -> Result<(), StorageError> {
    for id in ids {
        sqlx::query("UPDATE api_tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL")
            .bind(at.as_str().to_owned())
            .bind(id.clone())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

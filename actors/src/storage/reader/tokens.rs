//! API tokens (their HMACs; never a secret).

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{StoreReader, json_col};
use crate::clock::Timestamp;
use crate::error::StorageError;
use crate::tokens::TokenRecord;

impl StoreReader {
    /// Every token, oldest first (revoked and expired ones too).
    pub async fn api_tokens(&self) -> Result<Vec<TokenRecord>, StorageError> {
        let rows = sqlx::query(
            "SELECT token_id, name, scopes_json, secret_hmac, created_at, expires_at, revoked_at FROM api_tokens \
             ORDER BY created_at, token_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }
}

fn timestamp(text: String) -> Result<Timestamp, StorageError> {
    Timestamp::parse(&text).map_err(|e| StorageError::Corrupt(format!("api_tokens: {e}")))
}

fn token_from_row(r: &SqliteRow) -> Result<TokenRecord, StorageError> {
    Ok(TokenRecord {
        token_id: r.try_get("token_id")?,
        name: r.try_get("name")?,
        scopes: json_col(r, "scopes_json")?,
        secret_hmac: r.try_get("secret_hmac")?,
        created_at: timestamp(r.try_get("created_at")?)?,
        expires_at: r.try_get::<Option<String>, _>("expires_at")?.map(timestamp).transpose()?,
        revoked_at: r.try_get::<Option<String>, _>("revoked_at")?.map(timestamp).transpose()?,
    })
}

//! Writes of the operator commands: forgetting a 3PID, listing and revoking a user's tokens.

use super::changes::{ChangeKind, log_change};
use super::{AccessTokenRecord, Store, StoreResult, on_pool};

/// What `forget-3pid` removed, and what it left to the directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ForgottenThreepid {
    /// Bindings removed, with their lookup hashes.
    pub bindings: u64,
    /// Pending invitations to the address removed.
    pub invitations: u64,
    /// Validation sessions of the address removed.
    pub sessions: u64,
    /// Entries of the user directory still holding the address (the next directory sync
    /// publishes them again unless the directory itself changes).
    pub directory_entries: u64,
}

impl Store {
    /// Removes every binding of a normalised 3PID (whoever it is bound to) with its hashes,
    /// the invitations to it and its validation sessions, in one transaction whose change row
    /// makes every instance drop it from its lookups.
    pub async fn forget_threepid(&self, medium: &str, address: &str, now: i64) -> StoreResult<ForgottenThreepid> {
        let forgotten = on_pool!(self, pool => {
            let mut tx = pool.begin_with(self.write_transaction()).await?;
            let deleted = |sql: &'static str| sqlx::query(sql).bind(medium).bind(address);
            let bindings = deleted("DELETE FROM local_threepids WHERE source = 'binding' AND medium = $1 AND address = $2")
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let invitations =
                deleted("DELETE FROM invitations WHERE medium = $1 AND address = $2").execute(&mut *tx).await?.rows_affected();
            let sessions = deleted("DELETE FROM validation_sessions WHERE medium = $1 AND address = $2")
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let directory_entries: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM local_threepids WHERE source = 'directory' AND medium = $1 AND address = $2",
            )
            .bind(medium)
            .bind(address)
            .fetch_one(&mut *tx)
            .await?;
            if bindings > 0 {
                let touched = super::changes::listed_threepids([(medium, address)].into_iter());
                log_change!(self, tx, ChangeKind::Local, None::<&str>, None::<&str>, now, touched);
            }
            tx.commit().await.map(|()| ForgottenThreepid {
                bindings,
                invitations,
                sessions,
                directory_entries: u64::try_from(directory_entries).unwrap_or(0),
            })
        })?;
        Ok(forgotten)
    }

    /// The access tokens of `user_id` (their digests), oldest first.
    pub async fn user_tokens(&self, user_id: &str) -> StoreResult<Vec<AccessTokenRecord>> {
        let tokens = on_pool!(self, pool => sqlx::query_as::<_, AccessTokenRecord>(
            "SELECT token_hash, user_id, created_at, expires_at FROM access_tokens WHERE user_id = $1 \
             ORDER BY created_at",
        )
        .bind(user_id)
        .fetch_all(pool)
        .await)?;
        Ok(tokens)
    }

    /// Deletes every access token of `user_id`; returns how many.
    pub async fn revoke_user_tokens(&self, user_id: &str) -> StoreResult<u64> {
        let deleted = on_pool!(self, pool => sqlx::query("DELETE FROM access_tokens WHERE user_id = $1")
            .bind(user_id)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(deleted)
    }
}

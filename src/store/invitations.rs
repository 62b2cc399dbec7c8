//! Pending third-party invitations (`store-invite`), delivered after a bind.

use super::{Store, StoreResult, on_pool};

/// A stored invitation.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InvitationRecord {
    /// The invitation token (given to the inviting homeserver).
    pub token: String,
    /// `email` or `msisdn`.
    pub medium: String,
    /// Normalised address of the invitee.
    pub address: String,
    /// The room.
    pub room_id: String,
    /// The inviting user.
    pub sender: String,
    /// Id of the ephemeral key made for this invitation.
    pub ephemeral_key_id: Option<String>,
    /// The `store-invite` body, as JSON text.
    pub request: String,
    /// Creation time (ms).
    pub created_at: i64,
}

impl Store {
    /// Stores an invitation unless its token is stored (an imported invitation already
    /// there); returns whether it was stored.
    pub async fn insert_invitation(&self, invitation: &InvitationRecord) -> StoreResult<bool> {
        let inserted = on_pool!(self, pool => sqlx::query(
            "INSERT INTO invitations (token, medium, address, room_id, sender, ephemeral_key_id, request, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(&invitation.token)
        .bind(&invitation.medium)
        .bind(&invitation.address)
        .bind(&invitation.room_id)
        .bind(&invitation.sender)
        .bind(&invitation.ephemeral_key_id)
        .bind(&invitation.request)
        .bind(invitation.created_at)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(inserted == 1)
    }

    /// The invitation with this token.
    pub async fn invitation(&self, token: &str) -> StoreResult<Option<InvitationRecord>> {
        let found = on_pool!(self, pool => sqlx::query_as::<_, InvitationRecord>(
            "SELECT token, medium, address, room_id, sender, ephemeral_key_id, request, created_at \
             FROM invitations WHERE token = $1",
        )
        .bind(token)
        .fetch_optional(pool)
        .await)?;
        Ok(found)
    }

    /// The pending invitations of a 3PID, oldest first.
    pub async fn invitations_for(&self, medium: &str, address: &str) -> StoreResult<Vec<InvitationRecord>> {
        let found = on_pool!(self, pool => sqlx::query_as::<_, InvitationRecord>(
            "SELECT token, medium, address, room_id, sender, ephemeral_key_id, request, created_at \
             FROM invitations WHERE medium = $1 AND address = $2 ORDER BY created_at",
        )
        .bind(medium)
        .bind(address)
        .fetch_all(pool)
        .await)?;
        Ok(found)
    }

    /// Deletes delivered invitations.
    pub async fn delete_invitations(&self, tokens: &[String]) -> StoreResult<()> {
        for token in tokens {
            on_pool!(self, pool => sqlx::query("DELETE FROM invitations WHERE token = $1")
                .bind(token)
                .execute(pool)
                .await
                .map(|_| ()))?;
        }
        Ok(())
    }

    /// Deletes invitations and ephemeral keys created before `before`; returns how many
    /// invitations.
    pub async fn purge_invitations(&self, before: i64) -> StoreResult<u64> {
        let deleted = on_pool!(self, pool => {
            let mut tx = pool.begin_with(self.write_transaction()).await?;
            sqlx::query("DELETE FROM signing_keys WHERE purpose = 'ephemeral' AND created_at < $1")
                .bind(before)
                .execute(&mut *tx)
                .await?;
            let done = sqlx::query("DELETE FROM invitations WHERE created_at < $1").bind(before).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(done.rows_affected())
        })?;
        Ok(deleted)
    }
}

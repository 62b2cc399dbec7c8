//! Terms of service accepted by users, per policy and version.

use super::{Store, StoreResult, on_pool};

impl Store {
    /// Records that `user_id` accepted these `(policy, version)` pairs; accepting twice is harmless.
    pub async fn record_terms_acceptance(
        &self,
        user_id: &str,
        accepted: &[(String, String)],
        now: i64,
    ) -> StoreResult<()> {
        for (policy, version) in accepted {
            on_pool!(self, pool => sqlx::query(
                "INSERT INTO terms_acceptances (user_id, policy_name, policy_version, accepted_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, policy_name, policy_version) DO NOTHING",
            )
            .bind(user_id)
            .bind(policy)
            .bind(version)
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ()))?;
        }
        Ok(())
    }

    /// Every `(policy, version)` pair `user_id` has accepted.
    pub async fn accepted_terms(&self, user_id: &str) -> StoreResult<Vec<(String, String)>> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, (String, String)>(
            "SELECT policy_name, policy_version FROM terms_acceptances WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_all(pool)
        .await)?;
        Ok(rows)
    }
}

//! Lookup peppers: the current one and the previous one.

use super::{Store, StoreResult, on_pool};

/// The peppers a lookup may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peppers {
    /// The pepper to hash with now.
    pub current: Option<String>,
    /// The pepper before it, still accepted until the next rotation.
    pub previous: Option<String>,
}

impl Store {
    /// The current and previous peppers.
    pub async fn peppers(&self) -> StoreResult<Peppers> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, (String, String)>(
            "SELECT pepper, state FROM peppers WHERE state IN ('current', 'previous')",
        )
        .fetch_all(pool)
        .await)?;
        let mut peppers = Peppers::default();
        for (pepper, state) in rows {
            if state == "current" {
                peppers.current = Some(pepper);
            } else {
                peppers.previous = Some(pepper);
            }
        }
        Ok(peppers)
    }

    /// Makes `pepper` the current pepper if there is none yet; returns whether it did. Several
    /// instances may race: a unique index lets exactly one win.
    pub async fn insert_first_pepper(&self, pepper: &str, now: i64) -> StoreResult<bool> {
        let inserted = on_pool!(self, pool => sqlx::query(
            "INSERT INTO peppers (pepper, state, created_at, activated_at) VALUES ($1, 'current', $2, $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(pepper)
        .bind(now)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(inserted == 1)
    }
}

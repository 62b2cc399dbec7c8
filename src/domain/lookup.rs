//! Hashed lookups: peppers and hash parameters.

use super::{now_ms, random_secret};
use crate::store::{Peppers, Store, StoreResult};

/// Makes sure a current pepper exists, creating one from the CSPRNG on first start. With
/// several instances starting together, exactly one pepper wins.
pub async fn ensure_pepper(store: &Store) -> StoreResult<Peppers> {
    let peppers = store.peppers().await?;
    if peppers.current.is_some() {
        return Ok(peppers);
    }
    if store.insert_first_pepper(&random_secret(32), now_ms()).await? {
        tracing::info!("created the first lookup pepper");
    }
    store.peppers().await
}

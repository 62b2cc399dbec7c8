//! Writes of our own 3PIDs, the lookups' side of a bind, an unbind and a directory sync. Each
//! is one transaction with its change row (see `store::local`), applied to this instance's
//! index before it answers.

use super::Lookups;
use crate::error::{ApiError, ApiResult, ErrCode};
use crate::store::{DirectoryChanges, LocalThreepidWrite, StoreResult};
use crate::vocabulary::{Source, normalize_address};

impl Lookups {
    /// Creates or updates a local 3PID (its address normalised) with its hashes for every live
    /// pepper.
    pub async fn write_local_threepid(&self, mut threepid: LocalThreepidWrite) -> ApiResult<()> {
        threepid.address = normalize_address(&threepid.medium, &threepid.address)
            .ok_or_else(|| ApiError::new(ErrCode::InvalidParam, format!("invalid {} address", threepid.medium)))?;
        self.store.write_local_threepid(&threepid, self.clock.now_ms()).await?;
        self.apply_own_write().await;
        Ok(())
    }

    /// [`Self::write_local_threepid`] of a 3PID without association times (a directory entry,
    /// or a binding made outside `3pid/bind`, as tests and imports make them).
    pub async fn add_local_threepid(
        &self,
        medium: &str,
        address: &str,
        mxid: &str,
        source: Source,
        active: bool,
    ) -> ApiResult<()> {
        self.write_local_threepid(LocalThreepidWrite {
            medium: medium.to_owned(),
            address: address.to_owned(),
            mxid: mxid.to_owned(),
            source,
            active,
            association: None,
        })
        .await
    }

    /// Removes the binding of a normalised 3PID to `mxid`; returns whether there was one.
    pub async fn remove_binding(&self, medium: &str, address: &str, mxid: &str) -> StoreResult<bool> {
        let removed = self.store.remove_binding(medium, address, mxid, self.clock.now_ms()).await?;
        if removed {
            self.apply_own_write().await;
        }
        Ok(removed)
    }

    /// Applies the difference a directory sync computed; returns the number of rows added.
    pub async fn apply_directory_changes(&self, changes: &DirectoryChanges) -> StoreResult<usize> {
        let inserted = self.store.apply_directory_changes(changes, self.clock.now_ms()).await?;
        if !changes.is_empty() {
            self.apply_own_write().await;
        }
        Ok(inserted)
    }
}

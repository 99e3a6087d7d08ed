//! Instances and their leases: each `parlance serve` process registers an
//! instance, renews its lease with a heartbeat, and names itself as the
//! owner of every reservation it makes. Recovery takes only
//! [`Store::orphaned_reservations`] — those whose owner's lease has expired
//! or is gone, and those made before leases existed — so one instance's
//! restart never settles another's live requests. System operations, not
//! tenant reads.

use sqlx::Row;

use crate::ledger::{reservation_from_row, RESERVATION_COLUMNS};
use crate::{Reservation, Result, Store};

/// A registered instance and its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Its id.
    pub id: String,
    /// Unix milliseconds when it registered.
    pub started_at: i64,
    /// Unix milliseconds until which its lease holds.
    pub lease_until: i64,
}

impl Store {
    /// Registers instance `id` at `now` (unix milliseconds) with a lease
    /// until `lease_until`; registering again renews it.
    pub async fn register_instance(&self, id: &str, now: i64, lease_until: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO instances (id, started_at, lease_until) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until",
        )
        .bind(id)
        .bind(now)
        .bind(lease_until)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Extends instance `id`'s lease to `lease_until` (never shortens it).
    /// `false` when the instance is not registered (its row was removed
    /// after its lease expired: its reservations may have been recovered).
    pub async fn renew_lease(&self, id: &str, lease_until: i64) -> Result<bool> {
        let done =
            sqlx::query("UPDATE instances SET lease_until = $2 WHERE id = $1 AND lease_until < $2")
                .bind(id)
                .bind(lease_until)
                .execute(self.pool())
                .await?;
        if done.rows_affected() > 0 {
            return Ok(true);
        }
        let row = sqlx::query("SELECT id FROM instances WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.is_some())
    }

    /// Removes instance `id` (a clean shutdown, every reservation of its
    /// settled): anything it still owns is recoverable at once.
    pub async fn end_lease(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM instances WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The instances whose lease holds at `now`.
    pub async fn live_instances(&self, now: i64) -> Result<Vec<Instance>> {
        let rows = sqlx::query(
            "SELECT id, started_at, lease_until FROM instances WHERE lease_until > $1 \
             ORDER BY started_at, id",
        )
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Instance {
                    id: row.try_get("id")?,
                    started_at: row.try_get("started_at")?,
                    lease_until: row.try_get("lease_until")?,
                })
            })
            .collect()
    }

    /// The reservations no live instance owns at `now`, oldest first: their
    /// owner's lease expired or is gone, or they have no owner (made before
    /// leases). These, and only these, a recovery may settle.
    pub async fn orphaned_reservations(&self, now: i64) -> Result<Vec<Reservation>> {
        let sql = format!(
            "SELECT {RESERVATION_COLUMNS} FROM reservations r WHERE r.owner IS NULL \
             OR NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = r.owner \
             AND i.lease_until > $1) \
             ORDER BY created_at, org_id, request_id"
        );
        let rows = sqlx::query(&sql).bind(now).fetch_all(self.pool()).await?;
        rows.iter().map(reservation_from_row).collect()
    }

    /// Forgets instances whose lease expired before `before` and that own
    /// no reservation any more; returns how many.
    pub async fn forget_instances(&self, before: i64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM instances WHERE lease_until < $1 AND NOT EXISTS \
             (SELECT 1 FROM reservations r WHERE r.owner = instances.id)",
        )
        .bind(before)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}

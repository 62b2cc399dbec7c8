//! The repository API, run on SQLite and on PostgreSQL with the same assertions.

mod common;

use common::{Backend, test_config};
use federated_identity_service::store::{AccessTokenRecord, Store};
use tempfile::TempDir;

/// Runs `check` against a fresh store of each engine. PostgreSQL is required.
async fn on_both_engines<F, Fut>(check: F)
where
    F: Fn(Store, federated_identity_service::Config) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let dir = TempDir::new().unwrap();
        let config = test_config(&dir, backend).await;
        let store = Store::connect(&config).await.unwrap_or_else(|e| panic!("{backend:?}: {e}"));
        check(store, config).await;
    }
}

/// `text` as the engine writes a literal blob (a packed value of an older release).
fn text_blob(backend: Backend, text: &str) -> String {
    match backend {
        Backend::Sqlite => format!("CAST('{text}' AS BLOB)"),
        Backend::Postgres => format!("convert_to('{text}', 'UTF8')"),
    }
}

/// The hashes of `u<n>@<domain>` for `numbers` under the pepper `p`, sorted.
fn sorted_hashes(domain: &str, numbers: &[u32]) -> Vec<federated_identity_service::vocabulary::LookupHash> {
    use federated_identity_service::vocabulary::LookupHash;
    let mut hashes: Vec<LookupHash> =
        numbers.iter().map(|n| LookupHash::of(&format!("u{n}@{domain}"), "email", "p")).collect();
    hashes.sort_unstable();
    hashes
}

/// Creates the configured database with the migrations before `version` only, then runs
/// `script` in it: data as an older release left it, for testing a migration.
async fn database_before_migration(
    version: i64,
    config: &federated_identity_service::Config,
    backend: Backend,
    script: String,
) {
    use std::borrow::Cow;

    use sqlx::AssertSqlSafe;

    let before = |migrator: &mut sqlx::migrate::Migrator| {
        migrator.migrations = Cow::Owned(migrator.migrations.iter().filter(|m| m.version < version).cloned().collect());
    };
    match backend {
        Backend::Sqlite => {
            let options =
                sqlx::sqlite::SqliteConnectOptions::new().filename(config.sqlite_path()).create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
            let mut migrator = sqlx::migrate!("migrations/sqlite");
            before(&mut migrator);
            migrator.run(&pool).await.unwrap();
            sqlx::raw_sql(AssertSqlSafe(script)).execute(&pool).await.unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&config.database_host).await.unwrap();
            let mut migrator = sqlx::migrate!("migrations/postgres");
            before(&mut migrator);
            migrator.run(&pool).await.unwrap();
            sqlx::raw_sql(AssertSqlSafe(script)).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
}

fn token(hash: &str, user: &str, expires_at: i64) -> AccessTokenRecord {
    AccessTokenRecord { token_hash: hash.into(), user_id: user.into(), created_at: 1_000, expires_at }
}

#[tokio::test]
async fn migrations_apply_once_and_reconnecting_is_harmless() {
    on_both_engines(|store, config| async move {
        store.ping().await.unwrap();
        store.insert_access_token(&token("h1", "@a:example.org", i64::MAX)).await.unwrap();
        store.close().await;
        let again = Store::connect(&config).await.expect("second start on a migrated database");
        assert!(again.find_access_token("h1", 2_000).await.unwrap().is_some(), "data survives a restart");
    })
    .await;
}

#[tokio::test]
async fn access_tokens_expire_and_are_deleted() {
    on_both_engines(|store, _| async move {
        // Millisecond timestamps beyond 32 bits must round-trip (the Node schema overflowed).
        let now: i64 = 1_800_000_000_000;
        store.insert_access_token(&token("live", "@alice:example.org", now + 60_000)).await.unwrap();
        store.insert_access_token(&token("dead", "@bob:example.org", now - 1)).await.unwrap();

        let found = store.find_access_token("live", now).await.unwrap().expect("live token");
        assert_eq!(found, token("live", "@alice:example.org", now + 60_000));
        assert_eq!(store.find_access_token("dead", now).await.unwrap(), None, "expired");
        assert_eq!(store.find_access_token("", now).await.unwrap(), None, "empty digest matches nothing");
        assert_eq!(store.find_access_token("other", now).await.unwrap(), None);

        assert!(!store.insert_access_token(&token("live", "@eve:example.org", now)).await.unwrap(), "unique digest");
        assert_eq!(store.find_access_token("live", now).await.unwrap().unwrap().user_id, "@alice:example.org");

        assert_eq!(store.purge_expired_access_tokens(now).await.unwrap(), 1);
        assert!(store.delete_access_token("live").await.unwrap());
        assert!(!store.delete_access_token("live").await.unwrap());
        assert_eq!(store.find_access_token("live", now).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn each_scheduled_run_starts_once_and_leases_expire() {
    on_both_engines(|store, _| async move {
        // Occurrence at t=1000: a gets it, b does not.
        assert!(store.try_start_run("pepper", "a", 1_000, 1_000, 5_000).await.unwrap());
        assert!(!store.try_start_run("pepper", "b", 1_000, 1_001, 5_001).await.unwrap(), "same occurrence");
        // a finishes; b's clock lags and it tries the same occurrence again: refused.
        store.finish_run("pepper", "a", 1_200, "ok").await.unwrap();
        assert!(!store.try_start_run("pepper", "b", 1_000, 1_300, 5_300).await.unwrap(), "already ran");
        // Next occurrence: whoever comes first.
        assert!(store.try_start_run("pepper", "b", 2_000, 2_000, 6_000).await.unwrap());
        // b crashed without finishing: the next occurrence waits for the lease to expire.
        assert!(!store.try_start_run("pepper", "a", 3_000, 3_000, 7_000).await.unwrap(), "lease still held");
        assert!(store.try_start_run("pepper", "a", 7_000, 7_000, 9_000).await.unwrap(), "expired lease");
        assert!(store.try_start_run("other-job", "b", 7_000, 7_000, 9_000).await.unwrap(), "leases are per job");

        store.finish_run("pepper", "b", 7_100, "stale").await.unwrap();
        let lease = store.job_lease("pepper").await.unwrap().unwrap();
        assert_eq!((lease.holder.as_str(), lease.lease_until), ("a", 9_000), "b no longer holds it");
        store.finish_run("pepper", "a", 7_500, "ok").await.unwrap();
        let lease = store.job_lease("pepper").await.unwrap().unwrap();
        assert_eq!(lease.last_status.as_deref(), Some("ok"));
        assert_eq!(
            (lease.last_scheduled_at, lease.last_started_at, lease.last_finished_at),
            (7_000, Some(7_000), Some(7_500))
        );
        assert_eq!(store.job_lease("missing").await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn racing_instances_start_each_run_exactly_once() {
    on_both_engines(|store, config| async move {
        let other = Store::connect(&config).await.unwrap();
        for round in 1..=20_i64 {
            let at = round * 1_000;
            let (first, second) = tokio::join!(
                store.try_start_run("job", "instance-1", at, at, at),
                other.try_start_run("job", "instance-2", at, at, at),
            );
            assert!(first.unwrap() ^ second.unwrap(), "round {round}: exactly one instance runs it");
        }
    })
    .await;
}

/// A push takes the change its caller worked out from its copy of the previous snapshot only
/// while that copy's digest is the stored one; a change from a stale copy (another instance
/// stored a push since) is ignored and the stored snapshot, copy and deltas, is read instead.
#[tokio::test]
async fn a_push_compares_with_a_held_copy_only_while_it_is_the_stored_snapshot() {
    use federated_identity_service::store::{HeldSnapshot, NewSnapshot, SnapshotChange};
    use federated_identity_service::vocabulary::LookupHash;

    /// The snapshot of users `numbers`, and what a reader holding it holds.
    fn snapshot(numbers: std::ops::Range<u32>) -> (NewSnapshot, HeldSnapshot) {
        let new = NewSnapshot::of(numbers.map(|n| LookupHash::of(&format!("u{n}@s.example"), "email", "p")).collect());
        let held = HeldSnapshot { digest: new.digest.clone(), hashes: new.hashes.to_vec() };
        (new, held)
    }
    /// What a reader holding `held` works out for a push of `new`.
    fn change(held: &HeldSnapshot, new: &NewSnapshot) -> SnapshotChange {
        SnapshotChange::between(held.digest.clone(), &held.hashes, &new.hashes)
    }
    on_both_engines(|store, _| async move {
        let server = "s.example:443";
        let (first, first_held) = snapshot(0..100);
        let everything: Vec<String> = snapshot(0..200).0.hashes.iter().map(LookupHash::text).collect();
        let outcome = store.replace_pushed_hashes(server, "p", first, None, 1).await.unwrap();
        assert_eq!((outcome.added, outcome.removed), (100, 0));
        // Stored as a delta by another instance, compared with the stored copy (none held).
        let (second, _) = snapshot(5..105);
        let outcome = store.replace_pushed_hashes(server, "p", second, None, 2).await.unwrap();
        assert_eq!((outcome.added, outcome.removed), (5, 5));
        // This instance still holds the first snapshot: its copy is stale and must not be used.
        let (third, third_held) = snapshot(10..110);
        let stale = change(&first_held, &third);
        assert_eq!((stale.added.len(), stale.removed.len()), (10, 10));
        let outcome = store.replace_pushed_hashes(server, "p", third, Some(&stale), 3).await.unwrap();
        assert_eq!((outcome.added, outcome.removed), (5, 5), "compared with the stored snapshot, not the held one");
        assert_eq!(store.snapshot_hashes(server, "p").await.unwrap(), Some(third_held.clone()));
        // A change from the stored snapshot is stored as it is: the outcome and the snapshot
        // read back are the fourth's (a change written wrong, added for removed, would show).
        let (fourth, fourth_held) = snapshot(12..112);
        let current = change(&third_held, &fourth);
        let outcome = store.replace_pushed_hashes(server, "p", fourth, Some(&current), 4).await.unwrap();
        assert_eq!((outcome.added, outcome.removed), (2, 2));
        assert_eq!(store.snapshot_hashes(server, "p").await.unwrap(), Some(fourth_held.clone()));
        let mut found: Vec<String> =
            store.find_pushed_hashes("p", &everything).await.unwrap().into_iter().map(|(hash, _)| hash).collect();
        found.sort_unstable();
        let mut expected: Vec<String> = fourth_held.hashes.iter().map(LookupHash::text).collect();
        expected.sort_unstable();
        assert_eq!(found, expected, "inspection finds the last snapshot's hashes and no other");
    })
    .await;
}

/// Migration 0007 drops the row per pushed hash. A snapshot stored before packed copies existed
/// (its hashes only in those rows) is packed from them first: read back, it is the rows'
/// hashes, and the next push is compared with it. A packed snapshot is left as it was.
#[tokio::test]
async fn the_migration_that_drops_pushed_rows_packs_snapshots_that_had_only_rows() {
    use federated_identity_service::store::NewSnapshot;
    use federated_identity_service::vocabulary::LookupHash;

    let text = |n: u32| LookupHash::of(&format!("u{n}@old.example"), "email", "p").text();
    let sorted = |numbers: &[u32]| sorted_hashes("old.example", numbers);
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let dir = TempDir::new().unwrap();
        let config = test_config(&dir, backend).await;
        let blob = |text: &str| text_blob(backend, text);
        let script = format!(
            "INSERT INTO push_snapshots (server, pepper, hash_count, digest, received_at, hashes) VALUES \
             ('rows.example:443', 'p', 3, 'rows only', 1, NULL), ('packed.example:443', 'p', 1, 'packed', 1, {}); \
             INSERT INTO pushed_hashes (pepper, hash, server) VALUES ('p', '{}', 'rows.example:443'), \
             ('p', '{}', 'rows.example:443'), ('p', '{}', 'rows.example:443'), ('p', '{}', 'packed.example:443');",
            blob(&text(9)),
            text(1),
            text(2),
            text(3),
            text(8),
        );
        // The schema as migrations 0001 to 0006 left it, with those rows.
        database_before_migration(7, &config, backend, script).await;
        let store = Store::connect(&config).await.unwrap_or_else(|e| panic!("{backend:?}: {e}"));
        let legacy = store.snapshot_hashes("rows.example:443", "p").await.unwrap().expect("packed from its rows");
        assert_eq!((legacy.digest.as_str(), legacy.hashes), ("rows only", sorted(&[1, 2, 3])), "{backend:?}");
        let packed = store.snapshot_hashes("packed.example:443", "p").await.unwrap().expect("still there");
        assert_eq!(packed.hashes, sorted(&[9]), "{backend:?}: a packed copy is kept, not rebuilt from rows");
        assert_eq!(store.own_data().await.unwrap(), [("pushed hashes", 4)], "{backend:?}");
        // The next push is compared with the migrated copy.
        let next = NewSnapshot::of([2, 3, 4].iter().map(|n| LookupHash::parse(&text(*n)).unwrap()).collect());
        let outcome = store.replace_pushed_hashes("rows.example:443", "p", next, None, 2).await.unwrap();
        assert_eq!((outcome.added, outcome.removed), (1, 1), "{backend:?}");
        store.close().await;
    }
}

/// Migration 0009 packs new values as the hashes' bytes; values written before (their texts
/// end to end) stay as they are and are still read: a snapshot whose copy and delta are texts
/// reads back as before, the next push is compared with it (also when it holds the same hashes
/// under a digest taken another way), and a copy written again is bytes.
#[tokio::test]
async fn values_packed_as_texts_before_migration_0009_are_still_read() {
    use federated_identity_service::store::NewSnapshot;
    use federated_identity_service::vocabulary::LookupHash;

    let sorted = |numbers: &[u32]| sorted_hashes("texts.example", numbers);
    let texts = |numbers: &[u32]| sorted(numbers).iter().map(LookupHash::text).collect::<String>();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let dir = TempDir::new().unwrap();
        let config = test_config(&dir, backend).await;
        let blob = |text: &str| text_blob(backend, text);
        // A copy of 1, 2, 3 and a delta adding 4 and removing 1, as the service wrote them
        // before migration 0009.
        let script = format!(
            "INSERT INTO push_snapshots (server, pepper, hash_count, digest, received_at, delta_count, delta_hashes) \
             VALUES ('texts.example:443', 'p', 3, 'texts', 1, 1, 2); \
             INSERT INTO push_copies (server, pepper, hashes) VALUES ('texts.example:443', 'p', {}); \
             INSERT INTO push_deltas (server, pepper, position, added, removed) VALUES ('texts.example:443', 'p', 1, {}, {});",
            blob(&texts(&[1, 2, 3])),
            blob(&texts(&[4])),
            blob(&texts(&[1])),
        );
        database_before_migration(9, &config, backend, script).await;
        let store = Store::connect(&config).await.unwrap_or_else(|e| panic!("{backend:?}: {e}"));
        let read = store.snapshot_hashes("texts.example:443", "p").await.unwrap().expect("read");
        assert_eq!((read.digest.as_str(), read.hashes), ("texts", sorted(&[2, 3, 4])), "{backend:?}");
        // The same hashes under a digest taken another way (as after a change of the digest's
        // algorithm): compared hash by hash, nothing changes but the digest.
        let same = NewSnapshot::of(sorted(&[2, 3, 4]));
        let digest = same.digest.clone();
        let outcome = store.replace_pushed_hashes("texts.example:443", "p", same, None, 2).await.unwrap();
        assert_eq!((outcome.added, outcome.removed), (0, 0), "{backend:?}: the same hashes");
        let read = store.snapshot_hashes("texts.example:443", "p").await.unwrap().expect("read");
        assert_eq!((read.digest, read.hashes), (digest, sorted(&[2, 3, 4])), "{backend:?}: the new digest");
        // A small change: a delta in bytes after the text copy and delta.
        let next = NewSnapshot::of(sorted(&[2, 3, 4, 5]));
        let outcome = store.replace_pushed_hashes("texts.example:443", "p", next, None, 3).await.unwrap();
        assert_eq!((outcome.added, outcome.removed), (1, 0), "{backend:?}: compared with the texts");
        let read = store.snapshot_hashes("texts.example:443", "p").await.unwrap().expect("read");
        assert_eq!(read.hashes, sorted(&[2, 3, 4, 5]), "{backend:?}: texts and bytes together");
        // A whole new snapshot: its copy is written again, in bytes.
        let whole = NewSnapshot::of(sorted(&[10, 11, 12, 13, 14, 15]));
        let outcome = store.replace_pushed_hashes("texts.example:443", "p", whole, None, 4).await.unwrap();
        assert_eq!((outcome.added, outcome.removed), (6, 4), "{backend:?}");
        let read = store.snapshot_hashes("texts.example:443", "p").await.unwrap().expect("read");
        assert_eq!(read.hashes, sorted(&[10, 11, 12, 13, 14, 15]), "{backend:?}");
        store.close().await;
    }
}

/// On PostgreSQL a logged change is announced to listeners when it commits, whoever wrote it
/// (here another connection pool, as another instance or a command would be), once per
/// transaction; SQLite announces nothing and its instances poll the log.
#[tokio::test]
async fn logged_changes_are_announced_to_listeners_on_postgresql() {
    use std::time::Duration;

    use federated_identity_service::store::NewSnapshot;
    use federated_identity_service::vocabulary::LookupHash;

    on_both_engines(|store, config| async move {
        let listener = store.listen_for_changes().await.unwrap();
        let Some(mut listener) = listener else {
            let engine = config.database_engine();
            assert_eq!(
                engine,
                Some(federated_identity_service::config::DatabaseEngine::Sqlite),
                "only SQLite has none"
            );
            return;
        };
        let writer = Store::connect(&config).await.unwrap();
        let snapshot =
            NewSnapshot::of((0..10).map(|n| LookupHash::of(&format!("u{n}@s.example"), "email", "p")).collect());
        writer.replace_pushed_hashes("s.example:443", "p", snapshot, None, 1).await.unwrap();
        let announced = tokio::time::timeout(Duration::from_secs(2), listener.changed()).await;
        assert!(matches!(announced, Ok(Ok(()))), "a push by another writer is announced: {announced:?}");
        let again = tokio::time::timeout(Duration::from_secs(1), listener.changed()).await;
        assert!(again.is_err(), "once: {again:?}");
    })
    .await;
}

//! User directories: OpenLDAP (`slapd`, from an LDIF fixture), the SQL `users` table, and the
//! Synapse database deciding who is active; incremental syncs.

mod common;

use common::TestServer;
use common::ldap::LdapServer;
use federated_identity_service::Config;
use federated_identity_service::domain::directory::SyncSummary;
use federated_identity_service::state::AppState;
use federated_identity_service::vocabulary::hash_3pid;
use reqwest::Method;
use serde_json::{Value, json};

const FIXTURE: &str = include_str!("fixtures/directory.ldif");

fn ldap_config(ldap: &LdapServer, base: &str) -> impl FnOnce(&mut Config) {
    let (url, base, dn, password) = (ldap.url.clone(), base.to_owned(), ldap.admin_dn.clone(), ldap.password.clone());
    move |config| {
        config.userdb_engine = "ldap".into();
        config.ldap_uri = url;
        config.ldap_base = base;
        config.ldap_user = dn;
        config.ldap_password = password;
        config.ldap_filter = "(objectClass=inetOrgPerson)".into();
        config.server_name = "example.org".into();
        config.directory_publish_all = true;
        config.phone_default_region = "FR".into();
        config.cron_service = false;
    }
}

/// What the lookup answers for these 3PIDs: `(medium, address) -> mxid` of `mappings`, and
/// the inactive ones.
async fn look_up(server: &TestServer, threepids: &[(&str, &str)]) -> (Value, Value) {
    let pepper = server.state.store.peppers().await.unwrap().current.unwrap();
    let hashes: Vec<String> = threepids.iter().map(|(medium, address)| hash_3pid(address, medium, &pepper)).collect();
    let token = server.token_for("@reader:example.org").await;
    let body = json!({ "algorithm": "sha256", "pepper": pepper, "addresses": hashes }).to_string();
    let response = server.call_as(Some(&token), Method::POST, "/_matrix/identity/v2/lookup", Some(&body)).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let by_address = |map: &Value| -> Value {
        let mut out = serde_json::Map::new();
        for ((_, address), hash) in threepids.iter().zip(&hashes) {
            if let Some(mxid) = map.get(hash) {
                out.insert((*address).to_owned(), mxid.clone());
            }
        }
        Value::Object(out)
    };
    (by_address(&response.body["mappings"]), by_address(response.body.get("inactive_mappings").unwrap_or(&json!({}))))
}

/// One directory sync of `state`'s service, which has a directory.
async fn sync(state: &AppState) -> anyhow::Result<SyncSummary> {
    state.directory_sync.as_ref().expect("a user directory is configured").sync().await
}

#[tokio::test]
async fn ldap_users_become_lookups_and_later_syncs_apply_only_changes() {
    let ldap = LdapServer::from_env();
    let base = ldap.branch_from_ldif(FIXTURE).await;
    let server = TestServer::start_with(ldap_config(&ldap, &base)).await;

    let first = sync(&server.state).await.unwrap();
    assert_eq!(first.users, 6);
    assert_eq!((first.added, first.removed, first.changed), (5, 0, 0), "{first:?}");
    assert_eq!(first.skipped, 2, "the duplicate and the invalid address");
    let (found, _) = look_up(
        &server,
        &[
            ("email", "alice@example.org"),
            ("msisdn", "33612345678"),
            ("email", "bob@example.org"),
            ("email", "bob.alt@example.org"),
            ("email", "carol@example.org"),
            ("email", "not-an-address"),
        ],
    )
    .await;
    assert_eq!(
        found,
        json!({
            "alice@example.org": "@alice:example.org",
            "33612345678": "@alice:example.org",
            "bob@example.org": "@bob:example.org",
            "bob.alt@example.org": "@bob:example.org",
            "carol@example.org": "@carol:example.org",
        })
    );

    let unchanged = sync(&server.state).await.unwrap();
    assert_eq!((unchanged.added, unchanged.removed, unchanged.changed), (0, 0, 0), "nothing to do");

    ldap.set_mails(&format!("uid=bob,{base}"), &["bob@example.org", "bob.new@example.org"]).await;
    ldap.delete(&format!("uid=Carol,{base}")).await;
    ldap.add_users(&base, "dave", 1).await;
    let second = sync(&server.state).await.unwrap();
    assert_eq!(
        (second.added, second.removed, second.changed),
        (2, 2, 0),
        "bob.new and dave0 added; bob.alt and carol removed: {second:?}"
    );
    let (found, _) = look_up(
        &server,
        &[
            ("email", "bob.alt@example.org"),
            ("email", "bob.new@example.org"),
            ("email", "carol@example.org"),
            ("email", "dave0@example.org"),
        ],
    )
    .await;
    assert_eq!(found, json!({ "bob.new@example.org": "@bob:example.org", "dave0@example.org": "@dave0:example.org" }));
    server.stop().await;
}

#[tokio::test]
async fn the_ldap_search_is_paged() {
    let ldap = LdapServer::from_env();
    let base = ldap.branch_from_ldif("dn: {base}\nobjectClass: organizationalUnit\nou: {ou}\n").await;
    ldap.add_users(&base, "user", 1_200).await;
    let server = TestServer::start_with(ldap_config(&ldap, &base)).await;
    let summary = sync(&server.state).await.unwrap();
    assert_eq!((summary.users, summary.added), (1_200, 1_200), "more than one page of 500");
    server.stop().await;
}

#[tokio::test]
async fn an_unreachable_directory_or_bad_credentials_fail_the_sync_not_the_server() {
    let ldap = LdapServer::from_env();
    let base = ldap.branch_from_ldif(FIXTURE).await;
    let server = TestServer::start_with(|config| {
        ldap_config(&ldap, &base)(config);
        config.ldap_password = "wrong password".into();
    })
    .await;
    let error = sync(&server.state).await.unwrap_err().to_string();
    assert!(error.contains("bind"), "{error}");
    assert_eq!(server.call(Method::GET, "/_matrix/identity/v2", None).await.status, 200);
    server.stop().await;

    let server = TestServer::start_with(|config| {
        ldap_config(&ldap, &base)(config);
        config.ldap_uri = "ldap://127.0.0.1:1".into();
    })
    .await;
    assert!(sync(&server.state).await.unwrap_err().to_string().contains("cannot reach"));
    server.stop().await;
}

fn synapse_database(path: &std::path::Path, users: &[(&str, i64)]) {
    let path = path.to_owned();
    let users: Vec<(String, i64)> =
        users.iter().map(|(name, deactivated)| ((*name).to_owned(), *deactivated)).collect();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async move {
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
            sqlx::query("CREATE TABLE users (name TEXT PRIMARY KEY, deactivated SMALLINT NOT NULL DEFAULT 0)")
                .execute(&pool)
                .await
                .unwrap();
            for (name, deactivated) in users {
                sqlx::query("INSERT INTO users (name, deactivated) VALUES ($1, $2)")
                    .bind(name)
                    .bind(deactivated)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            pool.close().await;
        });
    })
    .join()
    .unwrap();
}

#[tokio::test]
async fn only_users_with_an_active_matrix_account_are_published() {
    let ldap = LdapServer::from_env();
    let base = ldap.branch_from_ldif(FIXTURE).await;
    let dir = tempfile::tempdir().unwrap();
    let synapse = dir.path().join("homeserver.db");
    synapse_database(&synapse, &[("@alice:example.org", 0), ("@bob:example.org", 1), ("@alice:other.org", 0)]);
    let path = synapse.display().to_string();
    let server = TestServer::start_with(|config| {
        ldap_config(&ldap, &base)(config);
        config.directory_publish_all = false;
        config.matrix_database_engine = "sqlite".into();
        config.matrix_database_host = path;
        config.additional_features = true;
    })
    .await;
    sync(&server.state).await.unwrap();
    let (active, inactive) = look_up(
        &server,
        &[("email", "alice@example.org"), ("email", "bob@example.org"), ("email", "carol@example.org")],
    )
    .await;
    assert_eq!(active, json!({ "alice@example.org": "@alice:example.org" }));
    assert_eq!(
        inactive,
        json!({ "bob@example.org": "@bob:example.org", "carol@example.org": "@carol:example.org" }),
        "deactivated and absent accounts are kept unpublished"
    );
    server.stop().await;
}

#[tokio::test]
async fn without_a_synapse_database_the_directory_is_published_only_when_asked() {
    let ldap = LdapServer::from_env();
    let base = ldap.branch_from_ldif(FIXTURE).await;
    let server = TestServer::start_with(|config| {
        ldap_config(&ldap, &base)(config);
        config.directory_publish_all = false;
    })
    .await;
    sync(&server.state).await.unwrap();
    let (active, _) = look_up(&server, &[("email", "alice@example.org")]).await;
    assert_eq!(active, json!({}));
    server.stop().await;
}

#[tokio::test]
async fn an_sql_users_table_is_a_directory_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.db");
    people_database(
        &path,
        &[
            ("erin", Some("erin@example.org"), Some("+33 6 98 76 54 32")),
            ("erin", Some("erin2@example.org"), None),
            ("frank", None, None),
        ],
    );
    let server = TestServer::start_with(sql_directory(&path)).await;
    let summary: SyncSummary = sync(&server.state).await.unwrap();
    assert_eq!((summary.users, summary.added), (2, 3));
    let (found, _) =
        look_up(&server, &[("email", "erin@example.org"), ("email", "erin2@example.org"), ("msisdn", "33698765432")])
            .await;
    assert_eq!(
        found,
        json!({ "erin@example.org": "@erin:example.org", "erin2@example.org": "@erin:example.org", "33698765432": "@erin:example.org" })
    );
    server.stop().await;
}

/// (Re)creates an SQLite users table `people (login, email, phone)` with these rows.
fn people_database(path: &std::path::Path, rows: &[(&str, Option<&str>, Option<&str>)]) {
    let db = path.to_owned();
    let rows: Vec<(String, Option<String>, Option<String>)> =
        rows.iter().map(|(l, e, p)| ((*l).to_owned(), e.map(str::to_owned), p.map(str::to_owned))).collect();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async move {
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&db).create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
            sqlx::query("DROP TABLE IF EXISTS people").execute(&pool).await.unwrap();
            sqlx::query("CREATE TABLE people (login TEXT, email TEXT, phone TEXT)").execute(&pool).await.unwrap();
            for (login, email, phone) in rows {
                sqlx::query("INSERT INTO people VALUES ($1, $2, $3)")
                    .bind(login)
                    .bind(email)
                    .bind(phone)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            pool.close().await;
        });
    })
    .join()
    .unwrap();
}

fn sql_directory(path: &std::path::Path) -> impl FnOnce(&mut Config) {
    let host = path.display().to_string();
    move |config| {
        config.userdb_engine = "sqlite".into();
        config.userdb_host = host;
        config.userdb_query = "SELECT login, email, phone FROM people".into();
        config.server_name = "example.org".into();
        config.directory_publish_all = true;
    }
}

#[tokio::test]
async fn users_whose_uid_is_not_a_matrix_localpart_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.db");
    let bad = ["Bad User!", "o'brien", "star*", "paren(", "\u{e9}lodie", "quote\"d"];
    let mut rows: Vec<(&str, Option<&str>, Option<&str>)> = vec![("good", Some("good@example.org"), None)];
    rows.extend(bad.iter().map(|login| (*login, Some("bad@example.org"), None)));
    people_database(&path, &rows);
    let server = TestServer::start_with(sql_directory(&path)).await;
    let summary = sync(&server.state).await.unwrap();
    assert_eq!((summary.users, summary.added, summary.skipped), (7, 1, 6), "{summary:?}");
    let (found, inactive) = look_up(&server, &[("email", "good@example.org"), ("email", "bad@example.org")]).await;
    assert_eq!(found, json!({ "good@example.org": "@good:example.org" }));
    assert_eq!(inactive, json!({}));
    server.stop().await;
}

#[tokio::test]
async fn the_pusher_waits_for_the_first_sync_and_never_wipes_a_target_with_an_empty_snapshot() {
    use federated_identity_service::domain::pusher::PushTarget;
    let b = TestServer::start_with(|config| config.trusted_servers_addresses = vec!["127.0.0.1".into()]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.db");
    people_database(&path, &[("erin", Some("erin@example.org"), None), ("gus", Some("gus@example.org"), None)]);
    let target = vec![PushTarget::Name(format!("http://{}", b.address))];
    let pushing = |publish_all: bool| {
        let (path, target) = (path.clone(), target.clone());
        move |config: &mut Config| {
            sql_directory(&path)(config);
            config.base_url = "https://example.org/".into();
            config.federated_identity_services = target;
            config.directory_publish_all = publish_all;
        }
    };
    let a = TestServer::start_with(pushing(true)).await;
    let pushed =
        async || b.state.store.push_snapshots().await.unwrap().iter().map(|s| s.hash_count).collect::<Vec<_>>();

    // Before the first sync: nothing is sent.
    let summary = a.state.pusher.push_all().await.unwrap();
    assert!(summary.contains("waiting for the first successful directory sync"), "{summary}");
    assert!(pushed().await.is_empty());
    sync(&a.state).await.unwrap();
    a.state.pusher.push_all().await.unwrap();
    assert_eq!(pushed().await, vec![2]);

    // The directory still lists its users, but none is published: the target keeps them.
    let a = a.restart_with(|config| config.directory_publish_all = false).await;
    sync(&a.state).await.unwrap();
    let error = a.state.pusher.push_all().await.expect_err("an empty snapshot is refused");
    assert!(format!("{error:#}").contains("refusing to replace 2 pushed hashes"), "{error:#}");
    assert_eq!(pushed().await, vec![2]);

    // The directory really is empty: the target is told so.
    people_database(&path, &[]);
    let summary = sync(&a.state).await.unwrap();
    assert_eq!(summary.users, 0);
    a.state.pusher.push_all().await.unwrap();
    assert_eq!(pushed().await, vec![0]);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn digits_only_phone_numbers_are_published_without_a_region_and_national_ones_need_one() {
    let ldap = LdapServer::from_env();
    let ldif = "dn: {base}\nobjectClass: organizationalUnit\nou: {ou}\n\n\
                dn: uid=dana,{base}\nobjectClass: inetOrgPerson\nuid: dana\ncn: Dana\nsn: D\nmobile: 33698765432\n\n\
                dn: uid=eve,{base}\nobjectClass: inetOrgPerson\nuid: eve\ncn: Eve\nsn: E\nmobile: 06 11 22 33 44\n";
    let base = ldap.branch_from_ldif(ldif).await;
    let configure = ldap_config(&ldap, &base);
    let server = TestServer::start_with(|config| {
        configure(config);
        config.phone_default_region = String::new();
    })
    .await;
    let summary = sync(&server.state).await.unwrap();
    assert_eq!((summary.added, summary.skipped), (1, 1), "{summary:?}");
    let (found, _) = look_up(&server, &[("msisdn", "33698765432"), ("msisdn", "33611223344")]).await;
    assert_eq!(found, json!({ "33698765432": "@dana:example.org" }));

    // With the region, the national number is published in its international form.
    let server = server.restart_with(|config| config.phone_default_region = "FR".into()).await;
    let summary = sync(&server.state).await.unwrap();
    assert_eq!((summary.added, summary.skipped), (1, 0), "{summary:?}");
    let (found, _) = look_up(&server, &[("msisdn", "33698765432"), ("msisdn", "33611223344")]).await;
    assert_eq!(found, json!({ "33698765432": "@dana:example.org", "33611223344": "@eve:example.org" }));
    server.stop().await;
}

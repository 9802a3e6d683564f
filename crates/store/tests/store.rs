//! One suite, run against SQLite (a temporary file) and against the real PostgreSQL on
//! 127.0.0.1:5432 (database `test`, tables under a prefix unique to the run, dropped after).

use luodi_store::{Filter, GuardAction, Interaction, NewFeedback, Store, StoreError};
use serde_json::json;

fn interaction(id: &str, created_ms: i64, question: &str, answer: &str) -> Interaction {
    Interaction {
        id: id.into(),
        created_ms,
        api_key_id: Some("key-1".into()),
        route: "chat".into(),
        model_version: if created_ms % 2 == 0 { "m@a".into() } else { "m@b".into() },
        style: None,
        messages: json!([{"role": "user", "content": question}]),
        answer: answer.into(),
        finish_reason: "stop".into(),
        prompt_tokens: 12,
        completion_tokens: 7,
        ttft_ms: Some(55.5),
        latency_ms: 612.25,
        cache: "miss".into(),
        guard: vec![GuardAction {
            direction: "input".into(),
            subject: "CN_ID".into(),
            action: "hash".into(),
            rule: "pii.CN_ID".into(),
            count: 1,
        }],
    }
}

fn feedback(request_id: &str, reviewer: &str, rating: Option<i64>, correction: Option<&str>) -> NewFeedback {
    NewFeedback {
        request_id: request_id.into(),
        reviewer: reviewer.into(),
        rating,
        correction: correction.map(str::to_string),
        comment: None,
        labels: vec!["tone".into()],
    }
}

async fn suite(store: &Store) {
    let batch: Vec<Interaction> = (0..25)
        .map(|i| {
            interaction(&format!("req-{i:02}"), 1_000 + i, &format!("问题 {i}：营业时间？"), &format!("Answer {i}"))
        })
        .collect();
    store.insert_interactions(&batch).await.unwrap();
    // A replayed batch (a retry after a timeout) changes nothing.
    store.insert_interactions(&batch[..3]).await.unwrap();
    assert_eq!(store.count_interactions().await.unwrap(), 25);
    let got = store.interaction("req-03").await.unwrap().unwrap();
    assert_eq!(got, batch[3], "round trip, Chinese text and JSON included");
    assert!(store.interaction("nope").await.unwrap().is_none());

    // Feedback: several reviewers kept apart; the same reviewer's second word replaces the first.
    store.add_feedback(&feedback("req-01", "alice", Some(-1), Some("我们周一至周五营业。"))).await.unwrap();
    store.add_feedback(&feedback("req-01", "bob", Some(1), None)).await.unwrap();
    store.add_feedback(&feedback("req-01", "alice", Some(1), Some("我们周一至周六营业。"))).await.unwrap();
    store.add_feedback(&feedback("req-02", "alice", Some(2), None)).await.unwrap();
    let all = store.feedback_for("req-01").await.unwrap();
    assert_eq!(all.len(), 3, "history kept");
    let current: Vec<_> = all.iter().filter(|f| f.superseded_ms.is_none()).collect();
    assert_eq!(current.len(), 2);
    assert!(current.iter().any(|f| f.reviewer == "alice" && f.correction.as_deref() == Some("我们周一至周六营业。")));
    match store.add_feedback(&feedback("missing", "alice", Some(1), None)).await {
        Err(StoreError::UnknownRequest(id)) => assert_eq!(id, "missing"),
        other => panic!("expected UnknownRequest, got {other:?}"),
    }
    assert!(matches!(
        store.add_feedback(&feedback("req-01", "alice", Some(9), None)).await,
        Err(StoreError::Invalid { field: "rating", .. })
    ));

    // Listing: newest first, cursor pagination covers everything exactly once.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list(&Filter::default(), cursor.as_deref(), 10).await.unwrap();
        seen.extend(page.items.iter().map(|i| i.id.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("req-{i:02}")).collect();
    assert_eq!(seen, expected);

    // Filters.
    let ids = |page: luodi_store::Page| page.items.into_iter().map(|i| i.id).collect::<Vec<_>>();
    let low = Filter { max_rating: Some(0), ..Default::default() };
    assert_eq!(ids(store.list(&low, None, 50).await.unwrap()), Vec::<String>::new(), "alice's -1 was superseded");
    let stars = Filter { min_rating: Some(2), ..Default::default() };
    assert_eq!(ids(store.list(&stars, None, 50).await.unwrap()), vec!["req-02"]);
    let corrected = Filter { has_correction: Some(true), ..Default::default() };
    assert_eq!(ids(store.list(&corrected, None, 50).await.unwrap()), vec!["req-01"]);
    let unreviewed = Filter { reviewed: Some(false), ..Default::default() };
    assert_eq!(store.list(&unreviewed, None, 50).await.unwrap().items.len(), 23);
    let text = Filter { text: Some("answer 1".into()), ..Default::default() };
    let mut found = ids(store.list(&text, None, 50).await.unwrap());
    found.sort();
    assert_eq!(
        found,
        (10..20)
            .chain([1])
            .map(|i| format!("req-{i:02}"))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
    let zh = Filter { text: Some("问题 7：".into()), ..Default::default() };
    assert_eq!(ids(store.list(&zh, None, 50).await.unwrap()), vec!["req-07"]);
    let percent = Filter { text: Some("%".into()), ..Default::default() };
    assert!(store.list(&percent, None, 50).await.unwrap().items.is_empty(), "LIKE wildcards are literal");
    let version = Filter {
        model_version: Some("m@b".into()),
        since_ms: Some(1_010),
        until_ms: Some(1_015),
        ..Default::default()
    };
    assert_eq!(ids(store.list(&version, None, 50).await.unwrap()), vec!["req-13", "req-11"]);
    assert!(matches!(
        store.list(&Filter::default(), Some("garbage"), 5).await,
        Err(StoreError::Invalid { field: "cursor", .. })
    ));

    // Retention.
    assert_eq!(store.purge_before(1_005).await.unwrap(), 5);
    assert_eq!(store.count_interactions().await.unwrap(), 20);
    assert!(store.feedback_for("req-01").await.unwrap().is_empty(), "feedback goes with its interaction");
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sub/luodi.db").display());
    let store = Store::open(&url, "luodi_").await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    suite(&store).await;
    store.close().await;
    // Reopening runs no migration twice and finds the data.
    let store = Store::open(&url, "luodi_").await.unwrap();
    assert_eq!(store.count_interactions().await.unwrap(), 20);
}

#[tokio::test]
async fn postgres() {
    let prefix = format!(
        "t{}_{}_",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() % 1_000_000_000
    );
    let store = Store::open("postgres://postgres@127.0.0.1:5432/test", &prefix).await.unwrap();
    assert_eq!(store.backend(), "postgres");
    suite(&store).await;
    store.drop_tables().await.unwrap();
}

#[tokio::test]
async fn bad_urls_and_prefixes_are_named() {
    let err = Store::open("mysql://x", "luodi_").await.err().unwrap();
    assert!(err.to_string().contains("store.url"), "{err}");
    let err = Store::open("sqlite://x.db", "Bad-Prefix").await.err().unwrap();
    assert!(err.to_string().contains("store.table_prefix"), "{err}");
}

#[tokio::test]
async fn api_keys_are_hashed_with_roles_and_revocable() {
    use luodi_store::keys::{key_id, verify};
    use luodi_store::Role;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("k.db").display()), "luodi_").await.unwrap();
    let (info, key) = store.create_key("console team", Role::Reviewer).await.unwrap();
    assert_eq!(key_id(&key), Some(info.id.as_str()));
    let active = store.active_keys().await.unwrap();
    assert_eq!(active.len(), 1);
    assert!(!active[0].hash.contains(&key[11..]), "the secret is not stored");
    assert!(active[0].hash.starts_with("$argon2"));
    assert!(verify(&key, &active[0].hash));
    assert!(!verify(&format!("{key}x"), &active[0].hash));
    assert_eq!(store.list_keys().await.unwrap()[0].role, Role::Reviewer);
    assert!(store.revoke_key(&info.id).await.unwrap());
    assert!(!store.revoke_key(&info.id).await.unwrap(), "already revoked");
    assert!(store.active_keys().await.unwrap().is_empty());
    assert!(store.list_keys().await.unwrap()[0].revoked_ms.is_some(), "kept, marked");
    assert!(matches!(store.create_key(" ", Role::Client).await, Err(StoreError::Invalid { field: "name", .. })));
    assert_eq!(key_id("sk-plain"), None);
    assert_eq!("owner".parse::<Role>().unwrap_err(), "unknown role `owner`; expected client, reviewer or admin");
}

//! The Redis store against the real Redis on 127.0.0.1:6379 (each test under its own key
//! prefix, removed at the end), and against a private redis-server that is stopped mid-test.

use luodi_cache::{CacheConfig, CacheError, CachedAnswer, ResponseCache};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn config(url: &str, prefix: &str) -> CacheConfig {
    CacheConfig {
        redis_url: Some(url.into()),
        redis_prefix: prefix.into(),
        redis_timeout_ms: 500,
        ..Default::default()
    }
}

fn unique(name: &str) -> String {
    format!("luodi-test:{name}:{}:{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

fn answer(text: &str, question: Option<&str>) -> CachedAnswer {
    CachedAnswer {
        text: text.into(),
        finish_reason: "stop".into(),
        prompt_tokens: 12,
        completion_tokens: 5,
        question: question.map(str::to_string),
        created: 1,
    }
}

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

#[tokio::test]
async fn two_instances_share_entries_and_purge_by_version() {
    let prefix = unique("share");
    let a = ResponseCache::new(config("redis://127.0.0.1:6379", &prefix)).unwrap();
    let b = ResponseCache::new(config("redis://127.0.0.1:6379", &prefix)).unwrap();
    let key = a.store_key("m@v1", "abc");
    assert_eq!(a.get(&key).await.unwrap(), None);
    a.put("m@v1", &key, &answer("我们的营业时间是早九点到晚五点。", None), None).await.unwrap();
    assert_eq!(b.get(&key).await.unwrap().unwrap().text, "我们的营业时间是早九点到晚五点。");

    // Semantic: stored by one replica, found by the other; another context never matches.
    let key2 = a.store_key("m@v1", "def");
    let e = unit(&[1.0, 0.2, 0.0]);
    a.put(
        "m@v1",
        &key2,
        &answer("Reset it in Settings.", Some("How do I reset my password?")),
        Some(("ctx", "How do I reset my password?", e.clone())),
    )
    .await
    .unwrap();
    let hit = b
        .get_semantic("m@v1", "ctx", "How do I reset my password, please?", &unit(&[1.0, 0.25, 0.0]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hit.question, "How do I reset my password?");
    assert!(hit.similarity > 0.99);
    assert_eq!(b.get_semantic("m@v1", "other", "How do I reset my password?", &e).await.unwrap(), None);
    assert_eq!(
        b.get_semantic("m@v1", "ctx", "How do I reset my password?", &unit(&[0.0, 0.0, 1.0])).await.unwrap(),
        None,
        "below the threshold"
    );

    // A new model version does not see v1's entries; purging v1 leaves v2's.
    let key_v2 = a.store_key("m@v2", "abc");
    assert_ne!(key, key_v2);
    a.put("m@v2", &key_v2, &answer("v2", None), None).await.unwrap();
    let removed = b.purge(Some("m@v1")).await.unwrap();
    assert_eq!(removed, 3, "two answers and one semantic list");
    assert_eq!(a.get(&key).await.unwrap(), None);
    assert_eq!(a.get(&key_v2).await.unwrap().unwrap().text, "v2");
    assert_eq!(a.stats().await.unwrap().entries, 1);
    a.purge(None).await.unwrap();
    assert_eq!(a.stats().await.unwrap().entries, 0);
}

#[tokio::test]
async fn entries_carry_the_ttl() {
    let prefix = unique("ttl");
    let cache = ResponseCache::new(CacheConfig { ttl_secs: 1, ..config("redis://127.0.0.1:6379", &prefix) }).unwrap();
    let key = cache.store_key("m", "k");
    cache.put("m", &key, &answer("x", None), None).await.unwrap();
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query(&mut redis::Client::open("redis://127.0.0.1:6379").unwrap().get_connection().unwrap())
        .unwrap();
    assert_eq!(ttl, 1);
    cache.purge(None).await.unwrap();
}

#[tokio::test]
async fn unreachable_redis_is_an_error_then_a_cool_down_never_a_hang() {
    // Port 1 on loopback: connection refused.
    let cache = ResponseCache::new(config("redis://127.0.0.1:1", "luodi-test:down")).unwrap();
    let err = cache.get("k").await.unwrap_err();
    assert!(matches!(err, CacheError::Redis(_) | CacheError::Timeout(_)), "{err:?}");
    // Within the cool-down the store is not even tried.
    assert_eq!(cache.get("k").await.unwrap_err(), CacheError::Unavailable);
    assert_eq!(cache.put("m", "k", &answer("x", None), None).await.unwrap_err(), CacheError::Unavailable);
}

struct PrivateRedis(Child);

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn redis_stopped_mid_run_means_errors_then_recovery() {
    let port = free_port();
    let start = || {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (it is on this machine class)");
        let server = PrivateRedis(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("private redis-server did not start on port {port}");
    };
    let server = start();
    let cache = ResponseCache::new(config(&format!("redis://127.0.0.1:{port}"), "luodi-test:stop")).unwrap();
    let key = cache.store_key("m", "k");
    cache.put("m", &key, &answer("before", None), None).await.unwrap();
    assert_eq!(cache.get(&key).await.unwrap().unwrap().text, "before");
    drop(server);
    let err = cache.get(&key).await.unwrap_err();
    assert_ne!(err, CacheError::Unavailable, "the first failure is the real error");
    assert_eq!(cache.get(&key).await.unwrap_err(), CacheError::Unavailable);
    // Back up (empty: it keeps nothing on disk). Once the cool-down ends (ended here rather
    // than slept through) the cache works again.
    let _server = start();
    cache.retry_store_now();
    assert_eq!(cache.get(&key).await.unwrap(), None);
    cache.put("m", &key, &answer("after", None), None).await.unwrap();
    assert_eq!(cache.get(&key).await.unwrap().unwrap().text, "after");
}

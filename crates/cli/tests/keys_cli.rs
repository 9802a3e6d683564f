//! `luodi keys create|list|revoke` through the built binary, on a SQLite store.

use std::process::{Command, Output};

fn luodi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_luodi")).args(args).output().unwrap()
}

#[test]
fn create_list_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("luodi.db").display());
    let out = luodi(&["keys", "create", "--name", "审核组", "--role", "reviewer", "--store-url", &url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(key.starts_with("ld_") && key.len() > 40, "{key}");
    let id = key[3..11].to_string();

    let list = luodi(&["keys", "list", "--store-url", &url]);
    let text = String::from_utf8(list.stdout).unwrap();
    assert!(
        text.contains(&id) && text.contains("reviewer") && text.contains("active") && text.contains("审核组"),
        "{text}"
    );
    assert!(!text.contains(&key[12..]), "the secret is never shown again");

    assert!(luodi(&["keys", "revoke", &id, "--store-url", &url]).status.success());
    let text = String::from_utf8(luodi(&["keys", "list", "--store-url", &url]).stdout).unwrap();
    assert!(text.contains("revoked"), "{text}");
    let again = luodi(&["keys", "revoke", &id, "--store-url", &url]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("no active key"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let bad = luodi(&["keys", "create", "--name", "x", "--role", "owner", "--store-url", &url]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("owner"));
}

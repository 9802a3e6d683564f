//! The schema, as numbered steps applied once each (recorded in `{prefix}schema_version`).
//! Portable SQL only: the same statements run on SQLite and PostgreSQL.

/// `{p}` is replaced by the table prefix.
pub const STEPS: &[&str] = &[
    // 1: interactions and feedback.
    "CREATE TABLE IF NOT EXISTS {p}interactions (
        id TEXT PRIMARY KEY,
        created_ms BIGINT NOT NULL,
        api_key_id TEXT,
        route TEXT NOT NULL,
        model_version TEXT NOT NULL,
        style TEXT,
        messages TEXT NOT NULL,
        answer TEXT NOT NULL,
        finish_reason TEXT NOT NULL,
        prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        ttft_ms DOUBLE PRECISION,
        latency_ms DOUBLE PRECISION NOT NULL,
        cache TEXT NOT NULL,
        guard TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS {p}interactions_created ON {p}interactions (created_ms, id);
    CREATE TABLE IF NOT EXISTS {p}feedback (
        id TEXT PRIMARY KEY,
        request_id TEXT NOT NULL,
        reviewer TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        rating BIGINT,
        correction TEXT,
        comment TEXT,
        labels TEXT NOT NULL,
        superseded_ms BIGINT
    );
    CREATE INDEX IF NOT EXISTS {p}feedback_request ON {p}feedback (request_id, reviewer);",
    // 2: API keys, stored as argon2 hashes with a role.
    "CREATE TABLE IF NOT EXISTS {p}api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        hash TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        revoked_ms BIGINT
    )",
];

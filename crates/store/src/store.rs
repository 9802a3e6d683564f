//! [`Store`]: open (and migrate), write interactions in batches, feedback, listing, retention.

use crate::migrations::STEPS;
use crate::model::{Feedback, Filter, GuardAction, Interaction, NewFeedback, Page};
use crate::StoreError;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// Table name prefix (`luodi_` by default; tests use their own).
    prefix: String,
    sqlite: bool,
}

/// A value bound to a `$n` parameter of a dynamically built query.
enum Bind {
    Int(i64),
    Text(String),
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Store {
    /// Opens `sqlite://PATH` (created if missing, WAL mode) or `postgres://...`, and brings the
    /// schema up to date. `prefix` (lowercase letters, digits, `_`) starts every table name.
    pub async fn open(url: &str, prefix: &str) -> Result<Store, StoreError> {
        if !prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            return Err(StoreError::Invalid {
                field: "store.table_prefix",
                message: format!("`{prefix}` may hold only lowercase letters, digits and `_`"),
            });
        }
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let url = if sqlite {
            let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or(path);
            if let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Invalid {
                    field: "store.url",
                    message: format!("cannot create {}: {e}", dir.display()),
                })?;
            }
            if url.contains("mode=") {
                url.to_string()
            } else {
                format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
            }
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            url.to_string()
        } else {
            return Err(StoreError::Invalid {
                field: "store.url",
                message: format!(
                    "expected sqlite://PATH or postgres://..., got `{}`",
                    url.split('@').next_back().unwrap_or(url)
                ),
            });
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 8 })
            .acquire_timeout(std::time::Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // WAL: readers never block the writer, and a committed batch survives a
                        // killed process. NORMAL sync is durable against process crashes (not
                        // power loss), the usual WAL setting.
                        for pragma in
                            ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA busy_timeout=5000"]
                        {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        let store = Store { pool, prefix: prefix.to_string(), sqlite };
        store.migrate().await?;
        Ok(store)
    }

    pub fn backend(&self) -> &'static str {
        if self.sqlite {
            "sqlite"
        } else {
            "postgres"
        }
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub(crate) fn sql(&self, text: &str) -> String {
        text.replace("{p}", &self.prefix)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::query(&self.sql("CREATE TABLE IF NOT EXISTS {p}schema_version (version BIGINT NOT NULL)"))
            .execute(&self.pool)
            .await?;
        let current: Option<i64> = sqlx::query(&self.sql("SELECT MAX(version) AS v FROM {p}schema_version"))
            .fetch_one(&self.pool)
            .await?
            .try_get("v")?;
        for (i, step) in STEPS.iter().enumerate().skip(current.unwrap_or(0) as usize) {
            let mut tx = self.pool.begin().await?;
            for statement in self.sql(step).split(';').map(str::trim).filter(|s| !s.is_empty()) {
                sqlx::query(statement).execute(&mut *tx).await?;
            }
            sqlx::query(&self.sql("INSERT INTO {p}schema_version (version) VALUES ($1)"))
                .bind(i as i64 + 1)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::info!(version = i + 1, backend = self.backend(), "store schema migrated");
        }
        Ok(())
    }

    /// Writes a batch in one transaction; a request id already stored is left as it is.
    pub async fn insert_interactions(&self, batch: &[Interaction]) -> Result<(), StoreError> {
        let sql = self.sql(
            "INSERT INTO {p}interactions (id, created_ms, api_key_id, route, model_version, style, messages, answer, \
             finish_reason, prompt_tokens, completion_tokens, ttft_ms, latency_ms, cache, guard) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT (id) DO NOTHING",
        );
        let mut tx = self.pool.begin().await?;
        for i in batch {
            sqlx::query(&sql)
                .bind(&i.id)
                .bind(i.created_ms)
                .bind(i.api_key_id.as_deref())
                .bind(&i.route)
                .bind(&i.model_version)
                .bind(i.style.as_deref())
                .bind(i.messages.to_string())
                .bind(&i.answer)
                .bind(&i.finish_reason)
                .bind(i.prompt_tokens)
                .bind(i.completion_tokens)
                .bind(i.ttft_ms)
                .bind(i.latency_ms)
                .bind(&i.cache)
                .bind(serde_json::to_string(&i.guard).unwrap_or_else(|_| "[]".into()))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    fn interaction_from(row: &AnyRow) -> Result<Interaction, StoreError> {
        let messages: String = row.try_get("messages")?;
        let guard: String = row.try_get("guard")?;
        Ok(Interaction {
            id: row.try_get("id")?,
            created_ms: row.try_get("created_ms")?,
            api_key_id: row.try_get("api_key_id")?,
            route: row.try_get("route")?,
            model_version: row.try_get("model_version")?,
            style: row.try_get("style")?,
            messages: serde_json::from_str(&messages).unwrap_or(serde_json::Value::Null),
            answer: row.try_get("answer")?,
            finish_reason: row.try_get("finish_reason")?,
            prompt_tokens: row.try_get("prompt_tokens")?,
            completion_tokens: row.try_get("completion_tokens")?,
            ttft_ms: row.try_get("ttft_ms")?,
            latency_ms: row.try_get("latency_ms")?,
            cache: row.try_get("cache")?,
            guard: serde_json::from_str::<Vec<GuardAction>>(&guard).unwrap_or_default(),
        })
    }

    pub async fn interaction(&self, id: &str) -> Result<Option<Interaction>, StoreError> {
        let row = sqlx::query(&self.sql("SELECT * FROM {p}interactions WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::interaction_from).transpose()
    }

    pub async fn count_interactions(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query(&self.sql("SELECT COUNT(*) AS n FROM {p}interactions"))
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    /// Stores feedback; the same reviewer's earlier feedback on the request is superseded
    /// (kept, marked). Unknown request ids are [`StoreError::UnknownRequest`].
    pub async fn add_feedback(&self, f: &NewFeedback) -> Result<Feedback, StoreError> {
        if let Some(r) = f.rating {
            if !(-1..=5).contains(&r) {
                return Err(StoreError::Invalid {
                    field: "rating",
                    message: format!("must be -1, 0 or 1 (thumbs) or 1 to 5 (stars), got {r}"),
                });
            }
        }
        if f.rating.is_none() && f.correction.is_none() && f.comment.is_none() && f.labels.is_empty() {
            return Err(StoreError::Invalid {
                field: "rating",
                message: "feedback needs at least one of rating, correction, comment or labels".into(),
            });
        }
        let exists = sqlx::query(&self.sql("SELECT id FROM {p}interactions WHERE id = $1"))
            .bind(&f.request_id)
            .fetch_optional(&self.pool)
            .await?
            .is_some();
        if !exists {
            return Err(StoreError::UnknownRequest(f.request_id.clone()));
        }
        let stored = Feedback {
            id: uuid::Uuid::new_v4().to_string(),
            request_id: f.request_id.clone(),
            reviewer: f.reviewer.clone(),
            created_ms: now_ms(),
            rating: f.rating,
            correction: f.correction.clone(),
            comment: f.comment.clone(),
            labels: f.labels.clone(),
            superseded_ms: None,
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(&self.sql(
            "UPDATE {p}feedback SET superseded_ms = $1 WHERE request_id = $2 AND reviewer = $3 AND superseded_ms IS NULL",
        ))
        .bind(stored.created_ms)
        .bind(&stored.request_id)
        .bind(&stored.reviewer)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&self.sql(
            "INSERT INTO {p}feedback (id, request_id, reviewer, created_ms, rating, correction, comment, labels, superseded_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)",
        ))
        .bind(&stored.id)
        .bind(&stored.request_id)
        .bind(&stored.reviewer)
        .bind(stored.created_ms)
        .bind(stored.rating)
        .bind(stored.correction.as_deref())
        .bind(stored.comment.as_deref())
        .bind(serde_json::to_string(&stored.labels).unwrap_or_else(|_| "[]".into()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// All feedback on a request, current and superseded, oldest first.
    pub async fn feedback_for(&self, request_id: &str) -> Result<Vec<Feedback>, StoreError> {
        let rows = sqlx::query(&self.sql("SELECT * FROM {p}feedback WHERE request_id = $1 ORDER BY created_ms, id"))
            .bind(request_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let labels: String = row.try_get("labels")?;
                Ok(Feedback {
                    id: row.try_get("id")?,
                    request_id: row.try_get("request_id")?,
                    reviewer: row.try_get("reviewer")?,
                    created_ms: row.try_get("created_ms")?,
                    rating: row.try_get("rating")?,
                    correction: row.try_get("correction")?,
                    comment: row.try_get("comment")?,
                    labels: serde_json::from_str(&labels).unwrap_or_default(),
                    superseded_ms: row.try_get("superseded_ms")?,
                })
            })
            .collect()
    }

    /// Interactions matching `filter`, newest first, `limit` per page (1-500); pass the
    /// previous page's `next_cursor` to continue.
    pub async fn list(&self, filter: &Filter, cursor: Option<&str>, limit: usize) -> Result<Page, StoreError> {
        let limit = limit.clamp(1, 500);
        let mut conditions = Vec::new();
        let mut binds = Vec::new();
        let param = |b: Bind, binds: &mut Vec<Bind>| {
            binds.push(b);
            format!("${}", binds.len())
        };
        let current = "FROM {p}feedback f WHERE f.request_id = i.id AND f.superseded_ms IS NULL";
        if let Some(v) = filter.since_ms {
            conditions.push(format!("i.created_ms >= {}", param(Bind::Int(v), &mut binds)));
        }
        if let Some(v) = filter.until_ms {
            conditions.push(format!("i.created_ms < {}", param(Bind::Int(v), &mut binds)));
        }
        if let Some(v) = filter.max_rating {
            conditions.push(format!("EXISTS (SELECT 1 {current} AND f.rating <= {})", param(Bind::Int(v), &mut binds)));
        }
        if let Some(v) = filter.min_rating {
            conditions.push(format!("EXISTS (SELECT 1 {current} AND f.rating >= {})", param(Bind::Int(v), &mut binds)));
        }
        match filter.has_correction {
            Some(true) => conditions
                .push(format!("EXISTS (SELECT 1 {current} AND f.correction IS NOT NULL AND f.correction <> '')")),
            Some(false) => conditions
                .push(format!("NOT EXISTS (SELECT 1 {current} AND f.correction IS NOT NULL AND f.correction <> '')")),
            None => {}
        }
        match filter.reviewed {
            Some(true) => conditions.push(format!("EXISTS (SELECT 1 {current})")),
            Some(false) => conditions.push(format!("NOT EXISTS (SELECT 1 {current})")),
            None => {}
        }
        if let Some(v) = &filter.model_version {
            conditions.push(format!("i.model_version = {}", param(Bind::Text(v.clone()), &mut binds)));
        }
        if let Some(t) = filter.text.as_ref().filter(|t| !t.is_empty()) {
            let escaped = t.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            let p = param(Bind::Text(format!("%{escaped}%")), &mut binds);
            conditions
                .push(format!("(LOWER(i.messages) LIKE {p} ESCAPE '\\' OR LOWER(i.answer) LIKE {p} ESCAPE '\\')"));
        }
        if let Some(c) = cursor {
            let (ms, id) = c
                .split_once(':')
                .and_then(|(ms, id)| Some((ms.parse::<i64>().ok()?, id.to_string())))
                .ok_or_else(|| StoreError::Invalid {
                    field: "cursor",
                    message: format!("`{c}` is not a cursor this server issued"),
                })?;
            let a = param(Bind::Int(ms), &mut binds);
            let b = param(Bind::Text(id), &mut binds);
            conditions.push(format!("(i.created_ms < {a} OR (i.created_ms = {a} AND i.id < {b}))"));
        }
        let mut sql = "SELECT i.* FROM {p}interactions i".to_string();
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(&format!(" ORDER BY i.created_ms DESC, i.id DESC LIMIT {}", limit + 1));
        let sql = self.sql(&sql);
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = match b {
                Bind::Int(v) => query.bind(v),
                Bind::Text(v) => query.bind(v),
            };
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut items = rows.iter().map(Self::interaction_from).collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|i| format!("{}:{}", i.created_ms, i.id))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// Deletes interactions older than `cutoff_ms` and their feedback; returns how many
    /// interactions went.
    pub async fn purge_before(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            &self.sql(
                "DELETE FROM {p}feedback WHERE request_id IN (SELECT id FROM {p}interactions WHERE created_ms < $1)",
            ),
        )
        .bind(cutoff_ms)
        .execute(&mut *tx)
        .await?;
        let n = sqlx::query(&self.sql("DELETE FROM {p}interactions WHERE created_ms < $1"))
            .bind(cutoff_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    /// Drops this prefix's tables (tests clean up with it).
    pub async fn drop_tables(&self) -> Result<(), StoreError> {
        for t in ["feedback", "interactions", "api_keys", "schema_version"] {
            sqlx::query(&format!("DROP TABLE IF EXISTS {}{t}", self.prefix)).execute(&self.pool).await?;
        }
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

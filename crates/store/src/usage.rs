//! Usage aggregation for OpenAI's admin usage and costs API: time buckets of a
//! minute, an hour or a day between a start and an end, grouped by project,
//! key, model or user, filtered, and paged by buckets.
//!
//! Buckets are aligned to multiples of their width since the unix epoch (a
//! day bucket is a UTC day). A page holds `limit` consecutive bucket slots,
//! empty ones included, as OpenAI returns them; `next_page` is the cursor of
//! the following page.

use std::collections::BTreeMap;

use sqlx::Row;

use crate::{Result, Store, StoreError};

/// The width of a usage bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketWidth {
    /// `1m`
    Minute,
    /// `1h`
    Hour,
    /// `1d`
    Day,
}

impl BucketWidth {
    /// The width in milliseconds.
    pub fn millis(self) -> i64 {
        match self {
            BucketWidth::Minute => 60_000,
            BucketWidth::Hour => 3_600_000,
            BucketWidth::Day => 86_400_000,
        }
    }

    /// OpenAI's default and maximum number of buckets per page.
    pub fn default_and_max_limit(self) -> (u32, u32) {
        match self {
            BucketWidth::Minute => (60, 1440),
            BucketWidth::Hour => (24, 168),
            BucketWidth::Day => (7, 31),
        }
    }
}

impl std::str::FromStr for BucketWidth {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<BucketWidth> {
        match s {
            "1m" => Ok(BucketWidth::Minute),
            "1h" => Ok(BucketWidth::Hour),
            "1d" => Ok(BucketWidth::Day),
            other => Err(StoreError::InvalidRequest(format!(
                "bucket_width must be 1m, 1h or 1d, not {other:?}"
            ))),
        }
    }
}

/// A dimension to group usage by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupBy {
    /// `project_id`
    ProjectId,
    /// `api_key_id`
    ApiKeyId,
    /// `model`
    Model,
    /// `user_id`
    UserId,
}

impl GroupBy {
    /// The column (and OpenAI field) name.
    pub fn column(self) -> &'static str {
        match self {
            GroupBy::ProjectId => "project_id",
            GroupBy::ApiKeyId => "api_key_id",
            GroupBy::Model => "model",
            GroupBy::UserId => "user_id",
        }
    }
}

impl std::str::FromStr for GroupBy {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<GroupBy> {
        match s {
            "project_id" => Ok(GroupBy::ProjectId),
            "api_key_id" => Ok(GroupBy::ApiKeyId),
            "model" => Ok(GroupBy::Model),
            "user_id" => Ok(GroupBy::UserId),
            other => Err(StoreError::InvalidRequest(format!(
                "cannot group by {other:?}"
            ))),
        }
    }
}

/// Only rows matching every non-empty list are counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageFilter {
    /// Any of these projects.
    pub project_ids: Vec<String>,
    /// Any of these keys.
    pub api_key_ids: Vec<String>,
    /// Any of these models.
    pub models: Vec<String>,
    /// Any of these users.
    pub user_ids: Vec<String>,
}

/// A usage question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    /// Inclusive, unix ms; rounded down to the bucket width.
    pub start: i64,
    /// Exclusive, unix ms.
    pub end: i64,
    /// The bucket width.
    pub bucket_width: BucketWidth,
    /// Dimensions to split each bucket by; empty gives one total per bucket.
    pub group_by: Vec<GroupBy>,
    /// Row filters.
    pub filter: UsageFilter,
    /// Buckets per page; `None` takes the width's default.
    pub limit: Option<u32>,
    /// The `next_page` cursor of a previous answer.
    pub page: Option<String>,
}

/// One group's sums inside a bucket. A dimension is `Some` only when grouped by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageResult {
    /// The project, when grouped by project.
    pub project_id: Option<String>,
    /// The key, when grouped by key.
    pub api_key_id: Option<String>,
    /// The model, when grouped by model.
    pub model: Option<String>,
    /// The user, when grouped by user.
    pub user_id: Option<String>,
    /// Σ prompt tokens.
    pub input_tokens: i64,
    /// Σ cached prompt tokens.
    pub input_cached_tokens: i64,
    /// Σ completion tokens.
    pub output_tokens: i64,
    /// Number of requests.
    pub num_model_requests: i64,
    /// Σ cost in the billing unit.
    pub cost: i64,
}

/// One time bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageBucket {
    /// Inclusive, unix ms.
    pub start_time: i64,
    /// Exclusive, unix ms.
    pub end_time: i64,
    /// One entry per group with usage; empty when there was none.
    pub results: Vec<UsageResult>,
}

/// A page of buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsagePage {
    /// Consecutive buckets, oldest first.
    pub buckets: Vec<UsageBucket>,
    /// Pass as `page` to get the next buckets; `None` at the end.
    pub next_page: Option<String>,
}

const PAGE_PREFIX: &str = "page_";

/// The page's first bucket start, from the query's start or its cursor.
fn page_start(query: &UsageQuery, aligned_start: i64, width: i64) -> Result<i64> {
    let Some(cursor) = &query.page else {
        return Ok(aligned_start);
    };
    let at: i64 = cursor
        .strip_prefix(PAGE_PREFIX)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| StoreError::InvalidRequest(format!("bad page cursor {cursor:?}")))?;
    if at < aligned_start || at.rem_euclid(width) != 0 {
        return Err(StoreError::InvalidRequest(format!(
            "page cursor {cursor:?} does not belong to this query"
        )));
    }
    Ok(at)
}

impl Store {
    /// Sums the organisation's usage into buckets; never counts another
    /// organisation's rows.
    pub async fn usage(&self, org_id: &str, query: &UsageQuery) -> Result<UsagePage> {
        let width = query.bucket_width.millis();
        let (default_limit, max_limit) = query.bucket_width.default_and_max_limit();
        let limit = i64::from(query.limit.unwrap_or(default_limit));
        if limit < 1 || limit > i64::from(max_limit) {
            return Err(StoreError::InvalidRequest(format!(
                "limit must be between 1 and {max_limit} for this bucket width"
            )));
        }
        if query.end <= query.start {
            return Err(StoreError::InvalidRequest("end must be after start".into()));
        }
        let aligned_start = query.start.div_euclid(width) * width;
        let first = page_start(query, aligned_start, width)?;
        let page_end = first.saturating_add(limit * width).min(query.end);
        if first >= query.end {
            return Ok(UsagePage {
                buckets: Vec::new(),
                next_page: None,
            });
        }
        let from = first.max(query.start);

        let mut group: Vec<GroupBy> = query.group_by.clone();
        group.sort();
        group.dedup();
        let group_cols: Vec<&str> = group.iter().map(|g| g.column()).collect();
        let mut sql = String::from("SELECT (created_at / $2) * $2 AS bucket_start");
        for col in &group_cols {
            sql.push_str(", ");
            sql.push_str(col);
        }
        sql.push_str(
            ", CAST(SUM(prompt_tokens) AS BIGINT) AS input_tokens, \
             CAST(SUM(cached_tokens) AS BIGINT) AS input_cached_tokens, \
             CAST(SUM(completion_tokens) AS BIGINT) AS output_tokens, \
             CAST(COUNT(*) AS BIGINT) AS num_model_requests, \
             CAST(SUM(cost) AS BIGINT) AS cost \
             FROM usage_ledger WHERE org_id = $1 AND created_at >= $3 AND created_at < $4",
        );
        let mut texts: Vec<&str> = Vec::new();
        let filters = [
            ("project_id", &query.filter.project_ids),
            ("api_key_id", &query.filter.api_key_ids),
            ("model", &query.filter.models),
            ("user_id", &query.filter.user_ids),
        ];
        for (column, values) in filters {
            if values.is_empty() {
                continue;
            }
            let marks: Vec<String> = values
                .iter()
                .map(|v| {
                    texts.push(v);
                    format!("${}", 4 + texts.len())
                })
                .collect();
            sql.push_str(&format!(" AND {column} IN ({})", marks.join(", ")));
        }
        let mut order = String::from("1");
        for i in 0..group_cols.len() {
            order.push_str(&format!(", {}", i + 2));
        }
        sql.push_str(&format!(" GROUP BY {order} ORDER BY {order}"));

        let mut q = sqlx::query(&sql)
            .bind(org_id)
            .bind(width)
            .bind(from)
            .bind(page_end);
        for text in texts {
            q = q.bind(text);
        }
        let rows = q.fetch_all(self.pool()).await?;

        let mut by_bucket: BTreeMap<i64, Vec<UsageResult>> = BTreeMap::new();
        for row in &rows {
            let mut result = UsageResult {
                input_tokens: row.try_get("input_tokens")?,
                input_cached_tokens: row.try_get("input_cached_tokens")?,
                output_tokens: row.try_get("output_tokens")?,
                num_model_requests: row.try_get("num_model_requests")?,
                cost: row.try_get("cost")?,
                ..UsageResult::default()
            };
            for g in &group {
                let value: Option<String> = row.try_get(g.column())?;
                match g {
                    GroupBy::ProjectId => result.project_id = value,
                    GroupBy::ApiKeyId => result.api_key_id = value,
                    GroupBy::Model => result.model = value,
                    GroupBy::UserId => result.user_id = value,
                }
            }
            let bucket: i64 = row.try_get("bucket_start")?;
            by_bucket.entry(bucket).or_default().push(result);
        }

        let mut buckets = Vec::new();
        let mut at = first;
        while at < page_end {
            buckets.push(UsageBucket {
                start_time: at,
                end_time: at + width,
                results: by_bucket.remove(&at).unwrap_or_default(),
            });
            at += width;
        }
        let next_page = (page_end < query.end).then(|| format!("{PAGE_PREFIX}{page_end}"));
        Ok(UsagePage { buckets, next_page })
    }
}

//! Usage aggregation for OpenAI's admin usage and costs API: time buckets of a
//! minute, an hour or a day between a start and an end, grouped by project,
//! key, model or user (costs: by project and line item), filtered, and paged
//! by buckets.
//!
//! Buckets are aligned to multiples of their width since the unix epoch (a
//! day bucket is a UTC day). A page holds `limit` consecutive bucket slots,
//! empty ones included, as OpenAI returns them; `next_page` is the cursor of
//! the following page.
//!
//! The sums come from the rollups kept beside the ledger (see
//! `rollup.rs`), not from the ledger itself: the range asked for is split
//! into whole hours (read from the hour rollup when the bucket width allows),
//! whole minutes (the minute rollup) and, only where `start` or the end of a
//! page falls inside a minute, the ledger rows of those partial edge minutes.
//! So the answer counts exactly the rows with `start <= created_at < end` on
//! the page, as summing the ledger would ([`Store::usage_from_ledger`] does
//! that, as the reference), at the cost of a few rows per bucket. One
//! difference from raw ledger values: an empty-string project, key or user
//! id reads as absent (the rollup stores a missing id as `''`).

use std::collections::BTreeMap;

use sqlx::Row;

use crate::rollup::{align, WIDTHS};
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
    /// `endpoint` (`/v1/chat/completions`, `/v1/responses`, …)
    Endpoint,
}

impl GroupBy {
    /// The column (and OpenAI field) name.
    pub fn column(self) -> &'static str {
        match self {
            GroupBy::ProjectId => "project_id",
            GroupBy::ApiKeyId => "api_key_id",
            GroupBy::Model => "model",
            GroupBy::UserId => "user_id",
            GroupBy::Endpoint => "endpoint",
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
            "endpoint" => Ok(GroupBy::Endpoint),
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
    /// Any of these endpoints (`/v1/embeddings`, …); empty: any.
    pub endpoints: Vec<String>,
    /// None of these endpoints (a row written before endpoints were
    /// recorded has `''`, which no endpoint excludes).
    pub not_endpoints: Vec<String>,
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
    /// The endpoint, when grouped by endpoint.
    pub endpoint: Option<String>,
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

/// A dimension to group costs by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CostGroupBy {
    /// `project_id`
    ProjectId,
    /// `line_item`: the model.
    LineItem,
}

impl std::str::FromStr for CostGroupBy {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<CostGroupBy> {
        match s {
            "project_id" => Ok(CostGroupBy::ProjectId),
            "line_item" => Ok(CostGroupBy::LineItem),
            other => Err(StoreError::InvalidRequest(format!(
                "cannot group costs by {other:?}"
            ))),
        }
    }
}

/// A costs question (OpenAI's `GET /v1/organization/costs`): daily buckets
/// only, as OpenAI offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CostsQuery {
    /// Inclusive, unix ms; rounded down to the day.
    pub start: i64,
    /// Exclusive, unix ms.
    pub end: i64,
    /// Dimensions to split each day by; empty gives one total per day.
    pub group_by: Vec<CostGroupBy>,
    /// Only these projects, when not empty.
    pub project_ids: Vec<String>,
    /// Days per page; `None` takes the default, [`COSTS_LIMITS`].
    pub limit: Option<u32>,
    /// The `next_page` cursor of a previous answer.
    pub page: Option<String>,
}

/// OpenAI's default and maximum number of daily cost buckets per page.
pub const COSTS_LIMITS: (u32, u32) = (7, 180);

/// One group's cost inside a day. A dimension is `Some` only when grouped by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CostResult {
    /// The project, when grouped by project.
    pub project_id: Option<String>,
    /// The model, when grouped by line item.
    pub line_item: Option<String>,
    /// Σ cost in the billing unit; the HTTP layer formats it as an amount.
    pub amount: i64,
}

/// One day of costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostBucket {
    /// Inclusive, unix ms.
    pub start_time: i64,
    /// Exclusive, unix ms.
    pub end_time: i64,
    /// One entry per group with usage; empty when there was none.
    pub results: Vec<CostResult>,
}

/// A page of cost buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostsPage {
    /// Consecutive days, oldest first.
    pub buckets: Vec<CostBucket>,
    /// Pass as `page` to get the next days; `None` at the end.
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
        .ok_or_else(|| StoreError::InvalidCursor(format!("{cursor:?} is malformed")))?;
    if at < aligned_start || at.rem_euclid(width) != 0 {
        return Err(StoreError::InvalidCursor(format!(
            "{cursor:?} does not belong to this query"
        )));
    }
    Ok(at)
}

/// Where the sums are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The rollups, and the ledger for partial edge minutes.
    Rollups,
    /// The ledger alone (the reference).
    Ledger,
}

/// A stretch `[lo, hi)` of time and the table it is summed from: a rollup of
/// that width (`Some`), whose buckets it covers whole, or the ledger (`None`).
type Slice = (Option<i64>, i64, i64);

/// Splits `[from, to)` into slices, each read from the widest rollup in
/// `widths` (widest first) whose buckets it covers whole, the ledger for the
/// rest: at most one ledger slice at each end, inside one minute.
fn plan(from: i64, to: i64, widths: &[i64], out: &mut Vec<Slice>) {
    if from >= to {
        return;
    }
    let Some((&width, narrower)) = widths.split_first() else {
        out.push((None, from, to));
        return;
    };
    let floor = align(from, width);
    let lo = if floor == from {
        Some(from)
    } else {
        floor.checked_add(width)
    };
    let hi = align(to, width);
    match lo {
        Some(lo) if lo < hi => {
            plan(from, lo, narrower, out);
            out.push((Some(width), lo, hi));
            plan(hi, to, narrower, out);
        }
        _ => plan(from, to, narrower, out),
    }
}

/// Positional arguments of a statement, numbered `$1, $2, …` as pushed.
#[derive(Default)]
struct Args<'a> {
    values: Vec<Arg<'a>>,
}

enum Arg<'a> {
    Int(i64),
    Text(&'a str),
}

impl<'a> Args<'a> {
    fn push(&mut self, arg: Arg<'a>) -> String {
        self.values.push(arg);
        format!("${}", self.values.len())
    }

    fn int(&mut self, value: i64) -> String {
        self.push(Arg::Int(value))
    }

    fn text(&mut self, value: &'a str) -> String {
        self.push(Arg::Text(value))
    }
}

/// The statement summing `org_id`'s rows in `[from, to)` into buckets of
/// `width`, grouped by `group`, over the slices of `plan`. Rollup and ledger
/// rows are read alike: `NULLIF(col, '')` for the nullable dimensions, which
/// the rollup stores as `''` when missing.
fn usage_sql<'a>(
    org_id: &'a str,
    width: i64,
    group: &[GroupBy],
    filter: &'a UsageFilter,
    slices: &[Slice],
) -> (String, Args<'a>) {
    let mut args = Args::default();
    let org = args.text(org_id);
    let width = args.int(width);
    let mut rollup_filter = String::new();
    let mut ledger_filter = String::new();
    let filters = [
        ("project_id", &filter.project_ids, true),
        ("api_key_id", &filter.api_key_ids, true),
        ("model", &filter.models, false),
        ("user_id", &filter.user_ids, true),
        ("endpoint", &filter.endpoints, false),
    ];
    for (column, values, nullable) in filters {
        if values.is_empty() {
            continue;
        }
        let marks: Vec<String> = values.iter().map(|v| args.text(v)).collect();
        let marks = marks.join(", ");
        rollup_filter.push_str(&format!(" AND {column} IN ({marks})"));
        if nullable {
            ledger_filter.push_str(&format!(" AND COALESCE({column}, '') IN ({marks})"));
        } else {
            ledger_filter.push_str(&format!(" AND {column} IN ({marks})"));
        }
    }
    if !filter.not_endpoints.is_empty() {
        let marks: Vec<String> = filter.not_endpoints.iter().map(|v| args.text(v)).collect();
        let clause = format!(" AND endpoint NOT IN ({})", marks.join(", "));
        rollup_filter.push_str(&clause);
        ledger_filter.push_str(&clause);
    }
    let mut inner_cols = String::new();
    let mut outer_cols = String::new();
    for g in group {
        let col = g.column();
        outer_cols.push_str(&format!(", {col}"));
        if *g == GroupBy::Model {
            inner_cols.push_str(", model");
        } else {
            inner_cols.push_str(&format!(", NULLIF({col}, '') AS {col}"));
        }
    }
    let mut parts = Vec::new();
    for &(source, lo, hi) in slices {
        let (lo, hi) = (args.int(lo), args.int(hi));
        parts.push(match source {
            Some(rollup_width) => format!(
                "SELECT (start_ms / {width}) * {width} AS bucket_start{inner_cols}, input_tokens, \
                 cached_tokens, output_tokens, requests, cost FROM usage_rollup \
                 WHERE org_id = {org} AND width_ms = {} AND start_ms >= {lo} AND start_ms < {hi}\
                 {rollup_filter}",
                args.int(rollup_width)
            ),
            None => format!(
                "SELECT (created_at / {width}) * {width} AS bucket_start{inner_cols}, \
                 prompt_tokens AS input_tokens, cached_tokens, completion_tokens AS output_tokens, \
                 CAST(1 AS BIGINT) AS requests, cost FROM usage_ledger \
                 WHERE org_id = {org} AND created_at >= {lo} AND created_at < {hi}{ledger_filter}"
            ),
        });
    }
    let order: Vec<String> = (1..=group.len() + 1).map(|i| i.to_string()).collect();
    let order = order.join(", ");
    let sql = format!(
        "SELECT bucket_start{outer_cols}, CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, \
         CAST(SUM(cached_tokens) AS BIGINT) AS input_cached_tokens, \
         CAST(SUM(output_tokens) AS BIGINT) AS output_tokens, \
         CAST(SUM(requests) AS BIGINT) AS num_model_requests, \
         CAST(SUM(cost) AS BIGINT) AS cost \
         FROM ({}) AS parts GROUP BY {order} ORDER BY {order}",
        parts.join(" UNION ALL ")
    );
    (sql, args)
}

impl Store {
    /// Sums the organisation's usage into buckets; never counts another
    /// organisation's rows. Reads the rollups (see the module documentation);
    /// the answer equals [`Store::usage_from_ledger`]'s.
    pub async fn usage(&self, org_id: &str, query: &UsageQuery) -> Result<UsagePage> {
        let limits = query.bucket_width.default_and_max_limit();
        self.usage_page(org_id, query, limits, Source::Rollups)
            .await
    }

    /// The same answer as [`Store::usage`], summed from the ledger rows
    /// directly: the reference the rollups are checked against, and the
    /// baseline of the ledger benchmark. Reads every row of the range, so it
    /// is slow on a large ledger.
    pub async fn usage_from_ledger(&self, org_id: &str, query: &UsageQuery) -> Result<UsagePage> {
        let limits = query.bucket_width.default_and_max_limit();
        self.usage_page(org_id, query, limits, Source::Ledger).await
    }

    /// The organisation's costs per UTC day, grouped by project and/or line
    /// item (the model), optionally for some projects only; amounts are
    /// integer sums in the billing unit. Read from the rollups like
    /// [`Store::usage`].
    pub async fn costs(&self, org_id: &str, query: &CostsQuery) -> Result<CostsPage> {
        let mut group_by: Vec<GroupBy> = query
            .group_by
            .iter()
            .map(|g| match g {
                CostGroupBy::ProjectId => GroupBy::ProjectId,
                CostGroupBy::LineItem => GroupBy::Model,
            })
            .collect();
        group_by.sort();
        group_by.dedup();
        let usage_query = UsageQuery {
            start: query.start,
            end: query.end,
            bucket_width: BucketWidth::Day,
            group_by,
            filter: UsageFilter {
                project_ids: query.project_ids.clone(),
                ..UsageFilter::default()
            },
            limit: query.limit,
            page: query.page.clone(),
        };
        let page = self
            .usage_page(org_id, &usage_query, COSTS_LIMITS, Source::Rollups)
            .await?;
        let buckets = page
            .buckets
            .into_iter()
            .map(|b| CostBucket {
                start_time: b.start_time,
                end_time: b.end_time,
                results: b
                    .results
                    .into_iter()
                    .map(|r| CostResult {
                        project_id: r.project_id,
                        line_item: r.model,
                        amount: r.cost,
                    })
                    .collect(),
            })
            .collect();
        Ok(CostsPage {
            buckets,
            next_page: page.next_page,
        })
    }

    /// One page of buckets: checks the limit against `(default, max)` and the
    /// cursor, then sums the page's rows from `source`.
    async fn usage_page(
        &self,
        org_id: &str,
        query: &UsageQuery,
        (default_limit, max_limit): (u32, u32),
        source: Source,
    ) -> Result<UsagePage> {
        let width = query.bucket_width.millis();
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
        // Rows count from the query's start, which only the first page's
        // first bucket may begin before.
        let from = first.max(query.start);
        let mut group: Vec<GroupBy> = query.group_by.clone();
        group.sort();
        group.dedup();
        let widths: Vec<i64> = match source {
            Source::Rollups => WIDTHS.into_iter().filter(|w| width % w == 0).collect(),
            Source::Ledger => Vec::new(),
        };
        let mut slices = Vec::new();
        plan(from, page_end, &widths, &mut slices);
        let mut by_bucket = self
            .sum_buckets(org_id, width, &group, &query.filter, &slices)
            .await?;

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

    /// Runs [`usage_sql`] and gathers its rows per bucket start, in the
    /// database's order of the group columns.
    async fn sum_buckets(
        &self,
        org_id: &str,
        width: i64,
        group: &[GroupBy],
        filter: &UsageFilter,
        slices: &[Slice],
    ) -> Result<BTreeMap<i64, Vec<UsageResult>>> {
        let mut by_bucket: BTreeMap<i64, Vec<UsageResult>> = BTreeMap::new();
        if slices.is_empty() {
            return Ok(by_bucket);
        }
        let (sql, args) = usage_sql(org_id, width, group, filter, slices);
        let mut q = sqlx::query(&sql);
        for arg in args.values {
            q = match arg {
                Arg::Int(n) => q.bind(n),
                Arg::Text(s) => q.bind(s),
            };
        }
        let rows = q.fetch_all(self.pool()).await?;
        for row in &rows {
            let mut result = UsageResult {
                input_tokens: row.try_get("input_tokens")?,
                input_cached_tokens: row.try_get("input_cached_tokens")?,
                output_tokens: row.try_get("output_tokens")?,
                num_model_requests: row.try_get("num_model_requests")?,
                cost: row.try_get("cost")?,
                ..UsageResult::default()
            };
            for g in group {
                let value: Option<String> = row.try_get(g.column())?;
                match g {
                    GroupBy::ProjectId => result.project_id = value,
                    GroupBy::ApiKeyId => result.api_key_id = value,
                    GroupBy::Model => result.model = value,
                    GroupBy::UserId => result.user_id = value,
                    GroupBy::Endpoint => result.endpoint = value,
                }
            }
            let bucket: i64 = row.try_get("bucket_start")?;
            by_bucket.entry(bucket).or_default().push(result);
        }
        Ok(by_bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::{plan, Slice};

    const MIN: i64 = 60_000;
    const HOUR: i64 = 3_600_000;

    fn slices(from: i64, to: i64, widths: &[i64]) -> Vec<Slice> {
        let mut out = Vec::new();
        plan(from, to, widths, &mut out);
        out
    }

    #[test]
    fn plan_reads_whole_hours_then_minutes_then_edge_rows() {
        let (from, to) = (HOUR - MIN - 5, 3 * HOUR + 2 * MIN + 7);
        assert_eq!(
            slices(from, to, &[HOUR, MIN]),
            [
                (None, from, HOUR - MIN),
                (Some(MIN), HOUR - MIN, HOUR),
                (Some(HOUR), HOUR, 3 * HOUR),
                (Some(MIN), 3 * HOUR, 3 * HOUR + 2 * MIN),
                (None, 3 * HOUR + 2 * MIN, to),
            ]
        );
    }

    #[test]
    fn plan_falls_back_to_narrower_sources() {
        assert_eq!(slices(5, 10, &[HOUR, MIN]), [(None, 5, 10)]);
        assert_eq!(slices(0, 2 * MIN, &[HOUR, MIN]), [(Some(MIN), 0, 2 * MIN)]);
        assert_eq!(slices(0, HOUR, &[]), [(None, 0, HOUR)]);
        assert_eq!(slices(7, 7, &[MIN]), []);
        let near_max = slices(i64::MAX - 10, i64::MAX, &[HOUR, MIN]);
        assert_eq!(near_max, [(None, i64::MAX - 10, i64::MAX)]);
    }
}

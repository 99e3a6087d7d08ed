//! `parlance usage`: an organisation's usage per time bucket, optionally
//! grouped by model, project, key or user, from the same store query
//! (`Store::usage`) and, with `--json`, the same JSON as
//! `GET /v1/organization/usage/completions`. Also the date parsing the
//! administrative commands share ([`parse_instant`]).

use std::path::Path;

use anyhow::{bail, Context};
use service::manage;
use store::{BucketWidth, GroupBy, UsageFilter, UsagePage, UsageQuery};

use crate::commands::keys::{self, StoreArgs, DEFAULT_ORG};

/// The flags of `parlance usage`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Organisation name.
    #[arg(long, default_value = DEFAULT_ORG)]
    pub org: String,
    /// First instant counted (`2026-01-31`, RFC 3339, unix seconds; default: the start of this month, UTC).
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// First instant not counted (default: now).
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
    /// Split each bucket by these, comma-separated: model, project, key, user.
    #[arg(long, value_delimiter = ',', value_name = "DIMENSIONS")]
    pub group_by: Vec<String>,
    /// Bucket width: 1m, 1h or 1d.
    #[arg(long, default_value = "1d")]
    pub bucket: String,
    /// Print the API's JSON (one page holding every bucket) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Unix ms of `YYYY-MM-DD` (midnight UTC), an RFC 3339 date-time
/// (`2026-01-31T12:00:00Z`, `…+02:00`, fractions of a second ignored), or
/// unix seconds.
pub fn parse_instant(text: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let secs: i64 = text.parse().context("unix seconds out of range")?;
        return secs.checked_mul(1000).context("unix seconds out of range");
    }
    let (date, time) = match text.split_once(['T', 't', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let mut parts = date.splitn(3, '-');
    let mut number = |what: &str| -> anyhow::Result<i64> {
        parts
            .next()
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("not a date (YYYY-MM-DD): bad {what}"))
    };
    let (year, month, day) = (number("year")?, number("month")?, number("day")?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        bail!("not a calendar date: {date}");
    }
    let mut ms = days_from_civil(year, month, day) * 86_400_000;
    if let Some(time) = time {
        ms += time_of_day_ms(time)?;
    }
    Ok(ms)
}

/// `HH:MM:SS[.fff](Z|±HH:MM)` as ms after midnight UTC (may be negative
/// or past a day, by the offset).
fn time_of_day_ms(time: &str) -> anyhow::Result<i64> {
    let (clock, offset_ms) = if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        (clock, 0)
    } else if let Some(at) = time.rfind(['+', '-']) {
        let (clock, offset) = time.split_at(at);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (h, m) = offset[1..]
            .split_once(':')
            .context("offset must be ±HH:MM")?;
        let minutes = h.parse::<i64>()? * 60 + m.parse::<i64>()?;
        (clock, sign * minutes * 60_000)
    } else {
        bail!("an RFC 3339 time needs Z or an offset such as +02:00")
    };
    let clock = clock.split('.').next().unwrap_or(clock);
    let fields: Vec<i64> = clock
        .split(':')
        .map(|f| f.parse::<i64>())
        .collect::<Result<_, _>>()
        .context("time must be HH:MM:SS")?;
    let [h, m, s] = fields[..] else {
        bail!("time must be HH:MM:SS")
    };
    if h > 23 || m > 59 || s > 60 {
        bail!("not a time of day: {clock}");
    }
    Ok(((h * 60 + m) * 60 + s) * 1000 - offset_ms)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic-Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn group(name: &str) -> anyhow::Result<GroupBy> {
    Ok(match name.trim() {
        "model" => GroupBy::Model,
        "project" | "project_id" => GroupBy::ProjectId,
        "key" | "api_key" | "api_key_id" => GroupBy::ApiKeyId,
        "user" | "user_id" => GroupBy::UserId,
        "endpoint" => GroupBy::Endpoint,
        other => bail!("--group-by {other:?}: use model, project, key, user or endpoint"),
    })
}

/// Runs `parlance usage`.
pub fn run(
    args: Args,
    data_dir_flag: Option<&Path>,
    default_data_dir: &Path,
) -> anyhow::Result<()> {
    let now = store::now_ms();
    let start = match &args.from {
        Some(from) => parse_instant(from).with_context(|| format!("--from {from:?}"))?,
        None => manage::Month::containing(manage::Timestamp::from_unix_millis(now))
            .start()
            .unix_millis(),
    };
    let end = match &args.to {
        Some(to) => parse_instant(to).with_context(|| format!("--to {to:?}"))?,
        None => now,
    };
    if end <= start {
        bail!("--to must be after --from");
    }
    let bucket_width: BucketWidth = args
        .bucket
        .parse()
        .map_err(|_| anyhow::anyhow!("--bucket must be 1m, 1h or 1d"))?;
    let group_by = args
        .group_by
        .iter()
        .filter(|g| !g.trim().is_empty())
        .map(|g| group(g))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The store's order of dimensions (project, key, model, user), for the columns.
    let mut group_by = group_by;
    group_by.sort();
    group_by.dedup();
    let (_, max) = bucket_width.default_and_max_limit();
    let mut query = UsageQuery {
        start,
        end,
        bucket_width,
        group_by: group_by.clone(),
        filter: UsageFilter::default(),
        limit: Some(max),
        page: None,
    };
    let (org, json) = (args.org.clone(), args.json);
    keys::with_store(
        &args.store,
        data_dir_flag,
        default_data_dir,
        |store| async move {
            let org_id = keys::org_id(&store, &org).await?;
            let mut all = UsagePage {
                buckets: Vec::new(),
                next_page: None,
            };
            loop {
                let page = store.usage(&org_id, &query).await?;
                all.buckets.extend(page.buckets);
                match page.next_page {
                    Some(next) => query.page = Some(next),
                    None => break,
                }
            }
            if json {
                println!("{:#}", manage::usage_page_json(&all));
            } else {
                print_table(&all, &group_by);
            }
            Ok(())
        },
    )
}

fn print_table(page: &UsagePage, group_by: &[GroupBy]) {
    let mut header = vec!["START"];
    header.extend(group_by.iter().map(|g| g.column()));
    header.extend(["REQUESTS", "INPUT", "CACHED", "OUTPUT", "COST_USD"]);
    println!("{}", header.join("\t"));
    for bucket in &page.buckets {
        for r in &bucket.results {
            let mut row = vec![(bucket.start_time / 1000).to_string()];
            for g in group_by {
                let value = match g {
                    GroupBy::ProjectId => &r.project_id,
                    GroupBy::ApiKeyId => &r.api_key_id,
                    GroupBy::Model => &r.model,
                    GroupBy::UserId => &r.user_id,
                    GroupBy::Endpoint => &r.endpoint,
                };
                row.push(value.clone().unwrap_or_else(|| "-".into()));
            }
            row.extend([
                r.num_model_requests.to_string(),
                r.input_tokens.to_string(),
                r.input_cached_tokens.to_string(),
                r.output_tokens.to_string(),
                manage::decimal(r.cost),
            ]);
            println!("{}", row.join("\t"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_parse_as_utc() {
        assert_eq!(parse_instant("2026-01-01").unwrap(), 1_767_225_600_000);
        assert_eq!(parse_instant("1767225600").unwrap(), 1_767_225_600_000);
        assert_eq!(
            parse_instant("2026-01-01T01:00:00Z").unwrap(),
            1_767_225_600_000 + 3_600_000
        );
        assert_eq!(
            parse_instant("2026-01-01T01:00:00.5+01:00").unwrap(),
            1_767_225_600_000
        );
        assert_eq!(parse_instant("2024-02-29").unwrap(), 1_709_164_800_000);
        assert!(parse_instant("2025-02-29").is_err());
        assert!(parse_instant("2026-13-01").is_err());
        assert!(parse_instant("2026-01-01T10:00").is_err());
        assert!(parse_instant("yesterday").is_err());
    }
}

//! Value rules that every source of a setting applies alike: the
//! prefill stall ratio from the file, the environment or a flag must be a
//! finite number of at least 0.

use anyhow::bail;

/// A prefill stall ratio from text (env or flag): a finite number, at
/// least 0.
pub fn parse_stall_ratio(text: &str) -> anyhow::Result<f64> {
    let ratio: f64 = text.trim().parse().map_err(|_| {
        anyhow::anyhow!("expected a number such as 1.5 (0: no bound), got {text:?}")
    })?;
    check_stall_ratio(ratio)
}

/// `ratio` if it is a finite number of at least 0.
pub(super) fn check_stall_ratio(ratio: f64) -> anyhow::Result<f64> {
    if !ratio.is_finite() || ratio < 0.0 {
        bail!("the prefill stall ratio must be a finite number of at least 0 (0: no bound), got {ratio}");
    }
    Ok(ratio)
}

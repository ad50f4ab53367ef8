//! `${VAR}` expansion and durations: the two text forms a value may take before it is
//! resolved.

use super::*;

/// Expands `${VAR}` from `lookup`; `$$` is a literal `$`. An unset variable is an error.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}').ok_or_else(|| {
                format!("`${{` without a closing `}}` in \"{}\"", redact_url(text))
            })?;
            let name = &inner[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "`${{{name}}}` is not a valid environment variable name"
                ));
            }
            let value =
                lookup(name).ok_or_else(|| format!("environment variable `{name}` is not set"))?;
            out.push_str(&value);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A humantime duration (`90s`, `5m`, `1h 30m`), or `0`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(trimmed).map_err(|e| {
        format!("`{text}` is not a duration ({e}); write it like \"90s\", \"5m\" or \"1h 30m\"")
    })
}

/// The longest pause or snooze: a year. A hold meant to last longer is a config change (an
/// `alert` rule), and a bound keeps every end a real date.
pub const MAX_HOLD: Duration = Duration::from_secs(365 * 24 * 3600);

/// The length of a pause or snooze (`"0s"` ends one): [`parse_duration`], at most [`MAX_HOLD`].
pub fn parse_hold(text: &str) -> Result<Duration, String> {
    let span = parse_duration(text)?;
    if span > MAX_HOLD {
        return Err(format!(
            "`{text}` is longer than a hold may last (at most 1 year, \"365d\"); pause or snooze again when it ends, or give the job an alert-only rule"
        ));
    }
    Ok(span)
}

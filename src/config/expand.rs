//! `${VAR}` expansion, durations and sizes: the text forms a value may take before it is
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

/// A size in bytes: a whole number with an optional unit, `B`, decimal `KB` `MB` `GB` `TB`
/// (powers of 1000) or binary `KiB` `MiB` `GiB` `TiB` (powers of 1024), in any case, with or
/// without a space: `64MiB`, `500 kB`, `1048576`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits);
    let wrong = || {
        format!("`{text}` is not a size; write it like \"64MiB\", \"500KB\" or \"1048576\" (bytes)")
    };
    let number: u64 = number.parse().map_err(|_| wrong())?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(wrong()),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large a size"))
}

/// A size as [`parse_size`] reads it: the largest binary unit that divides it (`64MiB`), else
/// bytes.
pub fn format_size(bytes: u64) -> String {
    for (unit, factor) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if bytes >= factor && bytes % factor == 0 {
            return format!("{}{unit}", bytes / factor);
        }
    }
    bytes.to_string()
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

//! "Did you mean": serde names the unknown key or value and every one it expected; the
//! closest of those by edit distance is offered, so `tabel` says `table`.

/// `message` with "; did you mean `x`?" appended when it is serde's "unknown field" or
/// "unknown variant" and one expected name is close to the given one.
pub(super) fn did_you_mean(message: &str) -> String {
    let Some(guess) = suggestion(message) else {
        return message.to_string();
    };
    format!("{message}; did you mean `{guess}`?")
}

fn suggestion(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let (given, expected) = rest.split_once('`')?;
    let expected = expected.split_once("expected")?.1;
    let names: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    closest(given, names)
}

/// The name of `names` closest to `given` (case aside), if one is close enough: at most a
/// third of the shorter one's letters apart (one for short names).
pub(super) fn closest<'a>(given: &str, names: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let given_lower = given.to_ascii_lowercase();
    names
        .into_iter()
        .map(|name| (distance(&given_lower, &name.to_ascii_lowercase()), name))
        .filter(|(d, name)| *d <= 1.max(name.chars().count().min(given.chars().count()) / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name.to_string())
}

/// Levenshtein distance, with a swap of two neighbours counted once (`tabel` -> `table`).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_offered_and_far_ones_not() {
        let check = |message: &str, expected: Option<&str>| {
            assert_eq!(suggestion(message).as_deref(), expected, "{message}");
        };
        check(
            "unknown field `tabel`, expected one of `table`, `id`, `status`",
            Some("table"),
        );
        check(
            "unknown field `heartbeat`, expected one of `heartbeat_at`, `status_since`",
            Some("heartbeat_at"),
        );
        check(
            "unknown variant `hearbeat`, expected one of `heartbeat`, `progress`, `created`",
            Some("heartbeat"),
        );
        check(
            "unknown variant `Critical`, expected `warning` or `critical`",
            Some("critical"),
        );
        check(
            "unknown variant `smoke`, expected one of `heartbeat`, `progress`, `created`",
            None,
        );
        check(
            "unknown field `colour`, expected one of `table`, `id`, `status`",
            None,
        );
        check("invalid type: integer, expected a string", None);
        assert_eq!(
            closest("runing", ["pending", "running"]).as_deref(),
            Some("running")
        );
        assert_eq!(
            did_you_mean("unknown field `tabel`, expected `table`"),
            "unknown field `tabel`, expected `table`; did you mean `table`?"
        );
    }
}

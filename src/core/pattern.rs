//! How a file under an artifact root names its job (`pattern`), which files are still being
//! written or are required (`partial`, `required` globs), and a file as detection sees it.
//! Compiled once, when the config is loaded.

use regex::Regex;

/// How a path names its job: `{job_id}/**`, `report-{job_id}.pdf`, `reports/{job_id}/final/*.md`.
#[derive(Debug, Clone)]
pub struct Pattern {
    regex: Regex,
}

/// A file-name glob (`*.part`, `report.pdf`), matched against a file's last path segment.
#[derive(Debug, Clone)]
pub struct Glob {
    regex: Regex,
}

/// A file as the detection core sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactFile {
    /// Relative to the root.
    pub path: String,
    pub size: u64,
    /// Seconds since it last changed (this host's clock).
    pub age: f64,
    pub partial: bool,
    pub required: Vec<usize>,
}

fn glob_to_regex(glob: &str) -> String {
    let mut out = String::new();
    let mut rest = glob;
    while let Some(c) = rest.chars().next() {
        if let Some(tail) = rest.strip_prefix("{job_id}") {
            out.push_str("(?P<id>[^/]+?)");
            rest = tail;
            continue;
        }
        match c {
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            other => out.push_str(&regex::escape(&other.to_string())),
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

impl Pattern {
    /// Compiles a pattern; it must be relative, contain `{job_id}` once, and no `..`.
    pub fn new(pattern: &str) -> Result<Pattern, String> {
        if pattern.starts_with('/') || pattern.split('/').any(|s| s == ".." || s.is_empty()) {
            return Err(format!(
                "`{pattern}` must be a relative path pattern without `..` or empty segments"
            ));
        }
        if pattern.matches("{job_id}").count() != 1 {
            return Err(format!("`{pattern}` must contain `{{job_id}}` exactly once: it is how a path names its job"));
        }
        let segments: Vec<&str> = pattern.split('/').collect();
        let mut re = String::from("^");
        for (i, seg) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            if *seg == "**" {
                if i == 0 && last {
                    re.push_str(".*");
                } else if last {
                    re.push_str("(?:/.*)?");
                } else {
                    if i > 0 {
                        re.push('/');
                    }
                    re.push_str("(?:[^/]+/)*");
                    continue;
                }
            } else {
                let after_globstar = i > 0 && segments[i - 1] == "**";
                if i > 0 && !after_globstar {
                    re.push('/');
                }
                re.push_str(&glob_to_regex(seg));
            }
        }
        re.push('$');
        Regex::new(&re)
            .map(|regex| Pattern { regex })
            .map_err(|e| format!("`{pattern}` is not a usable pattern: {e}"))
    }

    /// The job id a relative path names, if it matches.
    pub fn job_id(&self, rel: &str) -> Option<String> {
        let caps = self.regex.captures(rel)?;
        let id = caps.name("id")?.as_str();
        (!id.is_empty()).then(|| id.to_string())
    }
}

impl Glob {
    pub fn new(glob: &str) -> Result<Glob, String> {
        if glob.is_empty() || glob.contains('/') {
            return Err(format!(
                "`{glob}` must be a file-name glob like \"*.part\", without `/`"
            ));
        }
        Regex::new(&format!("^{}$", glob_to_regex(glob)))
            .map(|regex| Glob { regex })
            .map_err(|e| format!("`{glob}` is not a usable glob: {e}"))
    }

    pub fn matches(&self, name: &str) -> bool {
        self.regex.is_match(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(pattern: &str, path: &str) -> Option<String> {
        Pattern::new(pattern).unwrap().job_id(path)
    }

    #[test]
    fn patterns_name_jobs() {
        assert_eq!(id("{job_id}/**", "42/report.pdf").as_deref(), Some("42"));
        assert_eq!(id("{job_id}/**", "42/a/b/c.md").as_deref(), Some("42"));
        assert_eq!(id("{job_id}/**", "42").as_deref(), Some("42"));
        assert_eq!(
            id("report-{job_id}.pdf", "report-7.pdf").as_deref(),
            Some("7")
        );
        assert_eq!(id("report-{job_id}.pdf", "sub/report-7.pdf"), None);
        assert_eq!(id("{job_id}.*", "42.report.pdf").as_deref(), Some("42"));
        assert_eq!(
            id("reports/{job_id}/final/*.md", "reports/abc/final/x.md").as_deref(),
            Some("abc")
        );
        assert_eq!(
            id("reports/{job_id}/final/*.md", "reports/abc/draft/x.md"),
            None
        );
        assert_eq!(id("**/{job_id}.json", "a/b/9.json").as_deref(), Some("9"));
        assert_eq!(id("**/{job_id}.json", "9.json").as_deref(), Some("9"));
    }

    #[test]
    fn bad_patterns_and_globs() {
        assert!(Pattern::new("/abs/{job_id}").is_err());
        assert!(Pattern::new("../{job_id}").is_err());
        assert!(Pattern::new("*.pdf").is_err());
        assert!(Glob::new("a/b").is_err());
        assert!(Glob::new("*.part").unwrap().matches("x.pdf.part"));
        assert!(!Glob::new("*.part").unwrap().matches("x.pdf"));
        assert!(Glob::new("report.pdf").unwrap().matches("report.pdf"));
    }
}

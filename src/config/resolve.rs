//! From the raw file to a [`Config`]: `${VAR}` expanded, durations, identifiers, patterns and
//! per-environment `after` tables parsed, rules checked against statuses and columns, and
//! what was compiled kept. Every error is a [`Located`], with the key and its line.

use super::*;

pub(super) struct Ctx<'a> {
    pub(super) text: &'a str,
    pub(super) path: String,
    pub(super) lookup: &'a dyn Fn(&str) -> Option<String>,
    /// Lines of the keys read so far.
    pub(super) places: std::cell::RefCell<BTreeMap<String, usize>>,
}

impl<'a> Ctx<'a> {
    /// The context of the file at `path` holding `text`, its `${VAR}`s looked up by `lookup`.
    pub(super) fn new(
        text: &'a str,
        path: &std::path::Path,
        lookup: &'a dyn Fn(&str) -> Option<String>,
    ) -> Ctx<'a> {
        Ctx {
            text,
            path: path.display().to_string(),
            lookup,
            places: Default::default(),
        }
    }
}

impl Ctx<'_> {
    pub(super) fn error(
        &self,
        span: Option<Range<usize>>,
        key: Option<&str>,
        message: String,
    ) -> ConfigError {
        ConfigError::Invalid(self.located(span, key, message))
    }

    pub(super) fn located(
        &self,
        span: Option<Range<usize>>,
        key: Option<&str>,
        message: String,
    ) -> Located {
        Located {
            path: self.path.clone(),
            position: span.map(|s| line_column(self.text, s.start)),
            key: key.map(str::to_string),
            message,
        }
    }

    pub(super) fn at<T>(&self, spanned: &Spanned<T>, key: &str, message: String) -> Located {
        self.located(Some(spanned.span()), Some(key), message)
    }

    /// A string with `${VAR}` expanded. Records the key's line.
    pub(super) fn text(&self, value: &Text, key: &str) -> Result<String, Located> {
        self.places
            .borrow_mut()
            .entry(key.to_string())
            .or_insert_with(|| line_column(self.text, value.span().start).0);
        expand(value.get_ref(), self.lookup).map_err(|m| self.at(value, key, m))
    }

    pub(super) fn duration(&self, value: &Text, key: &str) -> Result<Duration, Located> {
        let text = self.text(value, key)?;
        parse_duration(&text).map_err(|m| self.at(value, key, m))
    }

    pub(super) fn field(&self, value: &Text, key: &str) -> Result<Field, Located> {
        let text = self.text(value, key)?;
        sql::parse_field(&text).map_err(|m| self.at(value, key, m))
    }

    pub(super) fn opt_field(
        &self,
        value: &Option<Text>,
        key: &str,
    ) -> Result<Option<Field>, Located> {
        value.as_ref().map(|v| self.field(v, key)).transpose()
    }

    pub(super) fn plain_field(
        &self,
        value: &Option<Text>,
        key: &str,
    ) -> Result<Option<Field>, Located> {
        let field = self.opt_field(value, key)?;
        if let (Some(f), Some(v)) = (&field, value) {
            if !f.is_plain() {
                return Err(self.at(v, key, format!(
                    "`{f}` is a JSON path, but jobwarden writes this column, so it must be a plain column"
                )));
            }
        }
        Ok(field)
    }

    pub(super) fn texts(&self, values: &[Text], key: &str) -> Result<Vec<String>, Located> {
        values.iter().map(|v| self.text(v, key)).collect()
    }
}

/// Where a `;` outside quotes and comments ends a statement in `sql`, if one does: `where`
/// is spliced into every query, so it must stay one expression.
pub(super) fn statement_end(sql: &str) -> Option<usize> {
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            q @ ('\'' | '"' | '`') => {
                i += 1;
                while i < chars.len() && chars[i] != q {
                    if chars[i] == '\\' && q == '\'' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                    i += 1;
                }
                i += 1;
            }
            ';' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

pub(super) fn resolve(
    ctx: &Ctx<'_>,
    raw: RawConfig,
    path: &Path,
    env_override: Option<&str>,
) -> Result<Config, Located> {
    let environment = match env_override {
        Some(e) => Some(e.to_string()),
        None => raw
            .environment
            .as_ref()
            .map(|e| ctx.text(e, "environment"))
            .transpose()?,
    };
    if environment.as_deref() == Some("") {
        return Err(ctx.located(None, Some("environment"), "must not be empty".into()));
    }
    let interval = match &raw.interval {
        Some(v) => ctx.duration(v, "interval")?,
        None => DEFAULT_INTERVAL,
    };
    if interval.is_zero() {
        let span = raw.interval.as_ref().map(|v| v.span());
        return Err(ctx.located(span, Some("interval"), "must be longer than zero".into()));
    }
    let terminal_counts_every = match &raw.terminal_counts_every {
        Some(v) => Some(ctx.duration(v, "terminal_counts_every")?).filter(|d| !d.is_zero()),
        None => Some(DEFAULT_TERMINAL_COUNTS_EVERY),
    };
    let database = resolve_database(ctx, &raw.database)?;
    let mut jobs = resolve_jobs(ctx, &raw.jobs)?;
    jobs.writes = super::writes::resolve_writes(ctx, raw.writes.as_ref(), &jobs)?;
    jobs.workers = resolve_workers(ctx, raw.workers.as_ref(), jobs.worker.is_some())?;
    let rules = raw
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| resolve_rule(ctx, r, i, environment.as_deref(), &jobs))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, rule) in rules.iter().enumerate() {
        if rules[..i].iter().any(|r| r.name == rule.name) {
            return Err(ctx.at(
                &raw.rules[i].name,
                &format!("rules[{i}].name"),
                format!(
                    "rule name `{}` is used twice; names key alerts, so they must be unique",
                    rule.name
                ),
            ));
        }
    }
    let base = config_folder(path);
    let base = base.as_path();
    let artifacts = raw
        .artifacts
        .iter()
        .enumerate()
        .map(|(i, a)| resolve_artifacts(ctx, a, i, base))
        .collect::<Result<Vec<_>, _>>()?;
    let http = match &raw.http {
        Some(h) => resolve_http(ctx, h, base)?,
        None => Http::default(),
    };
    let alerts = resolve_alerts(ctx, &raw.alerts)?;
    let safety = resolve_safety(ctx, raw.safety.as_ref(), interval)?;
    let audit_table = match raw.audit.as_ref().and_then(|a| a.table.as_ref()) {
        Some(t) => {
            let text = ctx.text(t, "audit.table")?;
            Some(sql::parse_table(&text).map_err(|m| ctx.at(t, "audit.table", m))?)
        }
        None => None,
    };
    let audit_max_size = match raw.audit.as_ref().and_then(|a| a.max_size.as_ref()) {
        Some(v) => {
            let text = ctx.text(v, "audit.max_size")?;
            let size = parse_size(&text).map_err(|m| ctx.at(v, "audit.max_size", m))?;
            if size < MIN_AUDIT_MAX_SIZE {
                return Err(ctx.at(
                    v,
                    "audit.max_size",
                    format!(
                        "must be at least {}, room for a few entries",
                        format_size(MIN_AUDIT_MAX_SIZE)
                    ),
                ));
            }
            size
        }
        None => DEFAULT_AUDIT_MAX_SIZE,
    };
    let state_dir = resolve_state_dir(ctx, raw.state.as_ref(), base)?;
    Ok(Config {
        path: path.to_path_buf(),
        environment,
        interval,
        dry_run: raw.dry_run.unwrap_or(false),
        terminal_counts_every,
        database,
        jobs,
        rules,
        artifacts,
        http,
        alerts,
        state_dir,
        safety,
        audit_table,
        audit_max_size,
        places: Places(ctx.places.take()),
    })
}

pub(super) fn resolve_safety(
    ctx: &Ctx<'_>,
    raw: Option<&RawSafety>,
    interval: Duration,
) -> Result<Safety, Located> {
    let count =
        |v: &Option<Spanned<i64>>, key: &str, default: i64, min: i64| -> Result<i64, Located> {
            match v {
                Some(n) if *n.get_ref() < min => {
                    Err(ctx.at(n, key, format!("must be at least {min}")))
                }
                Some(n) => Ok(*n.get_ref()),
                None => Ok(default),
            }
        };
    let Some(raw) = raw else {
        return Ok(Safety::defaults(interval));
    };
    let fraction = match &raw.max_stuck_fraction {
        Some(f) if !(0.0..=1.0).contains(f.get_ref()) => {
            return Err(ctx.at(
                f,
                "safety.max_stuck_fraction",
                "must be between 0.0 and 1.0".into(),
            ))
        }
        Some(f) => *f.get_ref(),
        None => Safety::DEFAULT_MAX_STUCK_FRACTION,
    };
    Ok(Safety {
        max_actions_per_scan: count(
            &raw.max_actions_per_scan,
            "safety.max_actions_per_scan",
            Safety::DEFAULT_MAX_ACTIONS_PER_SCAN as i64,
            0,
        )? as usize,
        max_stuck_fraction: fraction,
        min_active: count(
            &raw.min_active,
            "safety.min_active",
            Safety::DEFAULT_MIN_ACTIVE as i64,
            0,
        )? as usize,
        min_age: match &raw.min_age {
            Some(t) => ctx.duration(t, "safety.min_age")?,
            None => Safety::DEFAULT_MIN_AGE,
        },
        startup_grace: match &raw.startup_grace {
            Some(t) => ctx.duration(t, "safety.startup_grace")?,
            None => interval,
        },
        confirm_scans: count(
            &raw.confirm_scans,
            "safety.confirm_scans",
            i64::from(Safety::DEFAULT_CONFIRM_SCANS),
            1,
        )? as u32,
        max_bulk: count(
            &raw.max_bulk,
            "safety.max_bulk",
            Safety::DEFAULT_MAX_BULK as i64,
            1,
        )? as usize,
    })
}

/// The shortest `[http] token` taken: a short one can be guessed, and it unlocks every write.
const MIN_TOKEN_CHARS: usize = 16;

/// `[http]`: the address, the token, the Host names, TLS; and the rule that a token never
/// crosses a network in the clear unless the operator says so.
pub(super) fn resolve_http(ctx: &Ctx, h: &RawHttp, base: &Path) -> Result<Http, Located> {
    let listen = match &h.listen {
        Some(l) => {
            let text = ctx.text(l, "http.listen")?;
            text.trim().parse().map_err(|_| {
                ctx.at(
                    l,
                    "http.listen",
                    format!("`{text}` is not an address and port such as \"127.0.0.1:9847\" or \"[::1]:9847\""),
                )
            })?
        }
        None => default_listen(),
    };
    let token = match &h.token {
        None => None,
        Some(t) => {
            let token = ctx.text(t, "http.token")?;
            let length = token.trim().chars().count();
            if length < MIN_TOKEN_CHARS {
                let what = if length == 0 {
                    "is blank".to_string()
                } else {
                    format!("is {length} characters long")
                };
                return Err(ctx.at(
                    t,
                    "http.token",
                    format!(
                        "the token {what}: it unlocks every write, so it must be at least \
                         {MIN_TOKEN_CHARS} characters (make one with `openssl rand -hex 24`); \
                         leave `token` out for no write endpoints"
                    ),
                ));
            }
            Some(token)
        }
    };
    let file = |value: &Text, key: &str| -> Result<PathBuf, Located> {
        let path = PathBuf::from(ctx.text(value, key)?);
        Ok(if path.is_absolute() {
            path
        } else {
            base.join(path)
        })
    };
    let tls = match (&h.tls_cert, &h.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: file(cert, "http.tls_cert")?,
            key: file(key, "http.tls_key")?,
        }),
        (None, None) => None,
        (Some(cert), None) => {
            return Err(ctx.at(
                cert,
                "http.tls_cert",
                "`tls_cert` needs `tls_key` beside it".into(),
            ))
        }
        (None, Some(key)) => {
            return Err(ctx.at(
                key,
                "http.tls_key",
                "`tls_key` needs `tls_cert` beside it".into(),
            ))
        }
    };
    if tls.is_none()
        && token.is_some()
        && !listen.ip().is_loopback()
        && h.allow_plaintext != Some(true)
    {
        let message = format!(
            "the listener {listen} is reachable beyond this machine and has a token, but no TLS: \
             the token would cross the network in the clear. Set tls_cert and tls_key, bind \
             127.0.0.1, or set allow_plaintext = true if a proxy in front terminates TLS"
        );
        return Err(match &h.listen {
            Some(l) => ctx.at(l, "http.listen", message),
            None => ctx.located(None, Some("http.listen"), message),
        });
    }
    let base_path = match &h.base_path {
        None => String::new(),
        Some(b) => {
            let text = ctx.text(b, "http.base_path")?;
            let path = text.trim().trim_end_matches('/').to_string();
            let fine = path.is_empty()
                || (path.starts_with('/')
                    && !path.contains("//")
                    && path
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "/-_.~".contains(c)));
            if !fine {
                return Err(ctx.at(
                    b,
                    "http.base_path",
                    format!("`{text}` is not a path prefix such as \"/jobwarden\": it starts with `/` and holds letters, digits and `-_.~/`"),
                ));
            }
            if path
                .split('/')
                .any(|segment| segment == "." || segment == "..")
            {
                return Err(ctx.at(
                    b,
                    "http.base_path",
                    format!("`{text}` has a `.` or `..` segment, which browsers and proxies resolve away, so no link under it would reach the daemon: give the prefix as it is served, such as \"/jobwarden\""),
                ));
            }
            path
        }
    };
    let job_url = match &h.job_url {
        None => None,
        Some(u) => {
            let text = ctx.text(u, "http.job_url")?;
            if !(text.starts_with("https://") || text.starts_with("http://"))
                || !text.contains("{job_id}")
            {
                return Err(ctx.at(
                    u,
                    "http.job_url",
                    format!("`{text}` must be an http(s) URL with `{{job_id}}` in it, such as \"https://app.example/jobs/{{job_id}}\""),
                ));
            }
            Some(text)
        }
    };
    let external_url = match &h.external_url {
        None => None,
        Some(u) => {
            let text = ctx.text(u, "http.external_url")?;
            let url = text.trim().trim_end_matches('/').to_string();
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            if !rest.is_some_and(|r| !r.is_empty() && !r.contains(['?', '#', ' '])) {
                return Err(ctx.at(
                    u,
                    "http.external_url",
                    format!("`{text}` must be the http(s) URL people reach the daemon at, with its base path and no query, such as \"https://jobs.internal/jobwarden\""),
                ));
            }
            Some(url)
        }
    };
    let mut trusted_proxies = Vec::new();
    for t in &h.trusted_proxies {
        let text = ctx.text(t, "http.trusted_proxies")?;
        match crate::config::Cidr::parse(&text) {
            Some(c) => trusted_proxies.push(c),
            None => {
                return Err(ctx.at(
                    t,
                    "http.trusted_proxies",
                    format!("`{text}` is not an address or an address range, such as \"127.0.0.1\" or \"10.0.0.0/8\""),
                ))
            }
        }
    }
    let user_header = match &h.user_header {
        None => None,
        Some(v) => {
            let text = ctx.text(v, "http.user_header")?;
            let name = text.trim();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ctx.at(
                    v,
                    "http.user_header",
                    format!("`{text}` is not a header name, such as \"X-Forwarded-User\""),
                ));
            }
            if trusted_proxies.is_empty() {
                return Err(ctx.at(
                    v,
                    "http.user_header",
                    "needs http.trusted_proxies: the header is believed only from the proxies that set it (anyone else could send it), such as trusted_proxies = [\"127.0.0.1\"]".into(),
                ));
            }
            Some(name.to_ascii_lowercase())
        }
    };
    Ok(Http {
        listen,
        token,
        allowed_hosts: ctx.texts(&h.allowed_hosts, "http.allowed_hosts")?,
        tls,
        base_path,
        job_url,
        external_url,
        user_header,
        trusted_proxies,
    })
}

/// `[state] dir` (relative to the config file's folder), or [`default_state_dir`].
pub(super) fn resolve_state_dir(
    ctx: &Ctx<'_>,
    raw: Option<&RawState>,
    base: &Path,
) -> Result<PathBuf, Located> {
    Ok(match raw.and_then(|s| s.dir.as_ref()) {
        Some(dir) => {
            let dir = PathBuf::from(ctx.text(dir, "state.dir")?);
            if dir.is_absolute() {
                dir
            } else {
                base.join(dir)
            }
        }
        None => default_state_dir(ctx.lookup, base),
    })
}

/// `$STATE_DIRECTORY` (systemd's `StateDirectory=`), else `$XDG_STATE_HOME/jobwarden`, else
/// `$HOME/.local/state/jobwarden`, else `.jobwarden-state` beside the config file.
pub(super) fn default_state_dir(lookup: &dyn Fn(&str) -> Option<String>, base: &Path) -> PathBuf {
    let nonempty = |name: &str| lookup(name).filter(|v| !v.is_empty());
    if let Some(dir) = nonempty("STATE_DIRECTORY") {
        // systemd may list several, separated by colons; ours is the first.
        return PathBuf::from(dir.split(':').next().unwrap_or(&dir));
    }
    if let Some(xdg) = nonempty("XDG_STATE_HOME") {
        return PathBuf::from(xdg).join("jobwarden");
    }
    if let Some(home) = nonempty("HOME") {
        return PathBuf::from(home).join(".local/state/jobwarden");
    }
    base.join(".jobwarden-state")
}

pub(super) fn resolve_alerts(ctx: &Ctx<'_>, raw: &[RawAlert]) -> Result<Vec<AlertSink>, Located> {
    let mut sinks: Vec<AlertSink> = Vec::new();
    for (i, a) in raw.iter().enumerate() {
        let key = |k: &str| format!("alerts[{i}].{k}");
        let kind = *a.kind.get_ref();
        let url = ctx.text(&a.url, &key("url"))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ctx.at(
                &a.url,
                &key("url"),
                "must be an http:// or https:// URL".into(),
            ));
        }
        let name = match &a.name {
            Some(n) => ctx.text(n, &key("name"))?,
            None => {
                let same = sinks.iter().filter(|s| s.kind == kind).count();
                let base = kind_name(kind);
                if same == 0 {
                    base.to_string()
                } else {
                    format!("{base}-{}", same + 1)
                }
            }
        };
        if sinks.iter().any(|s| s.name == name) {
            return Err(ctx.at(
                &a.kind,
                &key("name"),
                format!("two alert sinks are named `{name}`; give each a unique `name`"),
            ));
        }
        if kind != AlertKind::Webhook && (!a.headers.is_empty() || a.hmac_secret.is_some()) {
            return Err(ctx.at(
                &a.kind,
                &key("headers"),
                format!(
                    "`headers` and `hmac_secret` are for webhook sinks, not {}",
                    kind_name(kind)
                ),
            ));
        }
        let headers = a
            .headers
            .iter()
            .map(|(k, v)| Ok((k.clone(), ctx.text(v, &key(&format!("headers.{k}")))?)))
            .collect::<Result<Vec<_>, Located>>()?;
        let queue = match &a.queue {
            Some(q) if !(1..=1_000_000).contains(q.get_ref()) => {
                return Err(ctx.at(
                    q,
                    &key("queue"),
                    format!("{} is out of range (1 to 1000000)", q.get_ref()),
                ))
            }
            Some(q) => *q.get_ref() as usize,
            None => DEFAULT_ALERT_QUEUE,
        };
        sinks.push(AlertSink {
            name,
            kind,
            url,
            min_severity: a.min_severity.unwrap_or(Severity::Warning),
            headers,
            hmac_secret: a
                .hmac_secret
                .as_ref()
                .map(|h| ctx.text(h, &key("hmac_secret")))
                .transpose()?,
            repeat_every: a
                .repeat_every
                .as_ref()
                .map(|r| ctx.duration(r, &key("repeat_every")))
                .transpose()?
                .filter(|d| !d.is_zero()),
            timeout: match &a.timeout {
                Some(t) => ctx.duration(t, &key("timeout"))?,
                None => DEFAULT_ALERT_TIMEOUT,
            },
            queue,
        });
    }
    Ok(sinks)
}

/// The config's word for an alert kind.
pub fn kind_name(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::Webhook => "webhook",
        AlertKind::Slack => "slack",
        AlertKind::Alertmanager => "alertmanager",
    }
}

pub(super) fn resolve_database(ctx: &Ctx<'_>, raw: &RawDatabase) -> Result<Database, Located> {
    let url = ctx.text(&raw.url, "database.url")?;
    let dialect = Dialect::from_url(&url).ok_or_else(|| {
        ctx.at(
            &raw.url,
            "database.url",
            format!(
                "`{}` is not a postgres://, mysql:// or sqlite:// URL",
                redact_url(&url)
            ),
        )
    })?;
    if let Some(c) = reserved_in_userinfo(&url) {
        return Err(ctx.at(
            &raw.url,
            "database.url",
            format!(
                "the user or password in `{}` holds a `{c}`, which ends that part of a URL \
                 early: percent-encode `{c}` as `{}` (and `@` as `%40`, `/` as `%2F`, `:` in \
                 a user name as `%3A`)",
                redact_url(&url),
                percent(c)
            ),
        ));
    }
    // sqlx knows MariaDB by the mysql:// scheme.
    let url = match url.strip_prefix("mariadb:") {
        Some(rest) => format!("mysql:{rest}"),
        None => url,
    };
    let max_connections = match &raw.max_connections {
        Some(m) if !(1..=100).contains(m.get_ref()) => {
            return Err(ctx.at(
                m,
                "database.max_connections",
                format!("{} is out of range (1 to 100)", m.get_ref()),
            ))
        }
        Some(m) => *m.get_ref() as u32,
        None => DEFAULT_MAX_CONNECTIONS,
    };
    let query_timeout = match &raw.query_timeout {
        Some(v) => ctx.duration(v, "database.query_timeout")?,
        None => DEFAULT_QUERY_TIMEOUT,
    };
    if query_timeout.is_zero() {
        return Err(ctx.located(
            raw.query_timeout.as_ref().map(|v| v.span()),
            Some("database.query_timeout"),
            "must be longer than zero".into(),
        ));
    }
    let timezone = match &raw.timezone {
        Some(t) => {
            let text = ctx.text(t, "database.timezone")?;
            Some(
                crate::core::zone::Setting::parse(&text)
                    .map_err(|m| ctx.at(t, "database.timezone", m))?,
            )
        }
        None => None,
    };
    Ok(Database {
        url,
        dialect,
        max_connections,
        query_timeout,
        timezone,
    })
}

/// A character of a server URL's user or password that must be percent-encoded and was not:
/// a `#`, `?` or `/` that cuts the user part short (the text before it has no `@`, but an `@`
/// follows, with no `=` of a query parameter in between), or a second `@`.
pub(super) fn reserved_in_userinfo(url: &str) -> Option<char> {
    let rest = url.split_once("://")?.1;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.matches('@').count() > 1 {
        return Some('@');
    }
    if authority.contains('@') || end == rest.len() {
        return None;
    }
    let after = &rest[end..];
    let at = after.find('@')?;
    (!after[..at].contains('='))
        .then(|| after.chars().next())
        .flatten()
}

/// `c` percent-encoded (`#` as `%23`).
fn percent(c: char) -> String {
    let mut buf = [0u8; 4];
    c.encode_utf8(&mut buf)
        .bytes()
        .map(|b| format!("%{b:02X}"))
        .collect()
}

pub(super) fn resolve_jobs(ctx: &Ctx<'_>, raw: &RawJobs) -> Result<Jobs, Located> {
    let table_text = ctx.text(&raw.table, "jobs.table")?;
    let table = sql::parse_table(&table_text).map_err(|m| ctx.at(&raw.table, "jobs.table", m))?;
    let named = |value: &Option<Text>, key: &str, default: &str| -> Result<Field, Located> {
        match value {
            Some(v) => ctx.field(v, key),
            None => Ok(Field {
                column: default.to_string(),
                path: vec![],
            }),
        }
    };
    let id = named(&raw.id, "jobs.id", "id")?;
    let status = named(&raw.status, "jobs.status", "status")?;
    for (field, value, key) in [
        (&id, &raw.id, "jobs.id"),
        (&status, &raw.status, "jobs.status"),
    ] {
        if !field.is_plain() {
            return Err(ctx.located(
                value.as_ref().map(|v| v.span()),
                Some(key),
                format!("`{field}` is a JSON path; the id and status must be plain columns"),
            ));
        }
    }
    let statuses = resolve_statuses(ctx, &raw.statuses)?;
    let pid = ctx.opt_field(&raw.pid, "jobs.pid")?;
    let host = ctx.opt_field(&raw.host, "jobs.host")?;
    if pid.is_some() != host.is_some() {
        let (value, key) = if pid.is_some() {
            (&raw.pid, "jobs.pid")
        } else {
            (&raw.host, "jobs.host")
        };
        return Err(ctx.located(
            value.as_ref().map(|v| v.span()),
            Some(key),
            "`pid` and `host` go together: a pid means nothing without the host it runs on".into(),
        ));
    }
    Ok(Jobs {
        table,
        id,
        status,
        created_at: named(&raw.created_at, "jobs.created_at", "created_at")?,
        heartbeat_at: ctx.opt_field(&raw.heartbeat_at, "jobs.heartbeat_at")?,
        status_since: ctx.opt_field(&raw.status_since, "jobs.status_since")?,
        progress: ctx.opt_field(&raw.progress, "jobs.progress")?,
        finished_at: ctx.plain_field(&raw.finished_at, "jobs.finished_at")?,
        error: ctx.plain_field(&raw.error, "jobs.error")?,
        payload: ctx.opt_field(&raw.payload, "jobs.payload")?,
        parent_id: ctx.opt_field(&raw.parent_id, "jobs.parent_id")?,
        phase: ctx.opt_field(&raw.phase, "jobs.phase")?,
        pid,
        host,
        worker: ctx.opt_field(&raw.worker, "jobs.worker")?,
        // `[workers]` is its own table, resolved with `worker`.
        workers: None,
        attempts: ctx.plain_field(&raw.attempts, "jobs.attempts")?,
        max_attempts: match &raw.max_attempts {
            Some(m) if !(1..=1000).contains(m.get_ref()) => {
                return Err(ctx.at(
                    m,
                    "jobs.max_attempts",
                    format!("{} is out of range (1 to 1000)", m.get_ref()),
                ))
            }
            Some(m) => *m.get_ref() as u32,
            None => Jobs::DEFAULT_MAX_ATTEMPTS,
        },
        where_sql: match &raw.where_sql {
            Some(w) => {
                let text = ctx.text(w, "jobs.where")?;
                if let Some(at) = statement_end(&text) {
                    return Err(ctx.at(
                        w,
                        "jobs.where",
                        format!(
                            "must be one SQL expression, but `;` at character {} ends a statement: `{}`",
                            at + 1,
                            text.trim()
                        ),
                    ));
                }
                Some(text).filter(|w| !w.trim().is_empty())
            }
            None => None,
        },
        statuses,
        // `[writes]` is its own table, resolved against these columns.
        writes: Default::default(),
    })
}

/// `[workers]`, which needs `[jobs] worker`, the job's half of the join. `worker` alone is
/// the row's owner, shown in its findings (a lock's holder, say) and judged by nothing.
pub(super) fn resolve_workers(
    ctx: &Ctx<'_>,
    raw: Option<&RawWorkers>,
    has_worker: bool,
) -> Result<Option<Workers>, Located> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if !has_worker {
        return Err(ctx.at(
            &raw.table,
            "workers.table",
            "`[workers]` needs `[jobs] worker`, the job's column naming its worker: without it \
             no job can be tied to a worker's heartbeat"
                .into(),
        ));
    }
    let table_text = ctx.text(&raw.table, "workers.table")?;
    let table =
        sql::parse_table(&table_text).map_err(|m| ctx.at(&raw.table, "workers.table", m))?;
    let plain = |value: &Text, key: &str| -> Result<Field, Located> {
        let field = ctx.field(value, key)?;
        if !field.is_plain() {
            return Err(ctx.at(
                value,
                key,
                format!("`{field}` is a JSON path; the workers' columns must be plain columns"),
            ));
        }
        Ok(field)
    };
    let id = match &raw.id {
        Some(v) => plain(v, "workers.id")?,
        None => Field {
            column: "id".into(),
            path: vec![],
        },
    };
    Ok(Some(Workers {
        table,
        id,
        heartbeat_at: ctx.field(&raw.heartbeat_at, "workers.heartbeat_at")?,
        host: raw
            .host
            .as_ref()
            .map(|v| plain(v, "workers.host"))
            .transpose()?,
        pid: raw
            .pid
            .as_ref()
            .map(|v| plain(v, "workers.pid"))
            .transpose()?,
    }))
}

pub(super) fn resolve_statuses(ctx: &Ctx<'_>, raw: &RawStatuses) -> Result<Statuses, Located> {
    let statuses = Statuses {
        pending: ctx.texts(&raw.pending, "jobs.statuses.pending")?,
        running: ctx.texts(&raw.running, "jobs.statuses.running")?,
        succeeded: ctx.texts(&raw.succeeded, "jobs.statuses.succeeded")?,
        failed: ctx.texts(&raw.failed, "jobs.statuses.failed")?,
        cancelled: ctx.texts(&raw.cancelled, "jobs.statuses.cancelled")?,
    };
    let mut seen: BTreeMap<&str, StatusClass> = BTreeMap::new();
    for class in StatusClass::ALL {
        for (i, word) in statuses.words(class).iter().enumerate() {
            let spanned = match class {
                StatusClass::Pending => &raw.pending[i],
                StatusClass::Running => &raw.running[i],
                StatusClass::Succeeded => &raw.succeeded[i],
                StatusClass::Failed => &raw.failed[i],
                StatusClass::Cancelled => &raw.cancelled[i],
            };
            let key = format!("jobs.statuses.{}", class.as_str());
            if word.is_empty() {
                return Err(ctx.at(spanned, &key, "a status word must not be empty".into()));
            }
            if let Some(other) = seen.insert(word, class) {
                return Err(ctx.at(
                    spanned,
                    &key,
                    format!(
                        "status `{word}` is already listed under `{}`",
                        other.as_str()
                    ),
                ));
            }
        }
    }
    if statuses.active().next().is_none() {
        return Err(ctx.located(
            None,
            Some("jobs.statuses"),
            "list at least one `pending` or `running` status word: those are the jobs jobwarden watches".into(),
        ));
    }
    Ok(statuses)
}

pub(super) fn resolve_rule(
    ctx: &Ctx<'_>,
    raw: &RawRule,
    i: usize,
    environment: Option<&str>,
    jobs: &Jobs,
) -> Result<Rule, Located> {
    let key = |k: &str| format!("rules[{i}].{k}");
    let name = ctx.text(&raw.name, &key("name"))?;
    if name.trim().is_empty() {
        return Err(ctx.at(&raw.name, &key("name"), "a rule needs a name".into()));
    }
    let statuses = raw
        .statuses
        .get_ref()
        .iter()
        .map(|s| {
            let word = ctx.text(s, &key("statuses"))?;
            match jobs.statuses.class_of(&word) {
                Some(c) if c.is_active() => Ok(word),
                Some(c) => Err(ctx.at(s, &key("statuses"), format!(
                    "rule `{name}` watches `{word}`, a `{}` status; rules watch pending and running statuses only",
                    c.as_str()
                ))),
                None => Err(ctx.at(s, &key("statuses"), format!(
                    "rule `{name}` watches `{word}`, which [jobs.statuses] does not list as pending or running{}",
                    super::suggest::closest(&word, jobs.statuses.active())
                        .map(|w| format!("; did you mean `{w}`?"))
                        .unwrap_or_default()
                ))),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    if statuses.is_empty() {
        return Err(ctx.at(
            &raw.statuses,
            &key("statuses"),
            format!("rule `{name}` watches no status"),
        ));
    }
    let signal = *raw.signal.get_ref();
    let needs = match signal {
        // With `[workers]`, a job's worker beats for it.
        Signal::Heartbeat => {
            (jobs.heartbeat_at.is_none() && jobs.workers.is_none()).then_some("heartbeat_at")
        }
        Signal::Progress => jobs.progress.is_none().then_some("progress"),
        Signal::Created => None,
    };
    if let Some(column) = needs {
        return Err(ctx.at(
            &raw.signal,
            &key("signal"),
            format!(
                "rule `{name}` uses signal `{}`, but [jobs] sets no `{column}` column{}",
                signal.as_str(),
                if signal == Signal::Heartbeat {
                    " (and there is no `[workers]` table to beat for the jobs)"
                } else {
                    ""
                }
            ),
        ));
    }
    let after = resolve_after(ctx, &raw.after, &key("after"), &name, environment)?;
    let phases = match &raw.phases {
        Some(p) if jobs.phase.is_none() => {
            let first = p.first().map(|t| t.span());
            return Err(ctx.located(
                first,
                Some(&key("phases")),
                format!("rule `{name}` selects by phase, but [jobs] sets no `phase` column"),
            ));
        }
        Some(p) => Some(ctx.texts(p, &key("phases"))?),
        None => None,
    };
    let action = raw.action.as_ref().map_or(Action::Alert, |a| *a.get_ref());
    let missing_class = match action {
        Action::Fail if jobs.statuses.failed.is_empty() => Some("failed"),
        Action::Requeue if jobs.statuses.pending.is_empty() => Some("pending"),
        _ => None,
    };
    if let (Some(class), Some(a)) = (missing_class, &raw.action) {
        return Err(ctx.at(a, &key("action"), format!(
            "rule `{name}` would write a `{class}` status, but [jobs.statuses] lists no `{class}` word"
        )));
    }
    Ok(Rule {
        name,
        statuses,
        signal,
        after,
        phases,
        action,
        severity: raw.severity.unwrap_or(Severity::Warning),
    })
}

/// `after = "30m"`, or `after = { development = "5m", production = "30m" }` resolved for the
/// environment in use.
pub(super) fn resolve_after(
    ctx: &Ctx<'_>,
    raw: &Spanned<toml::Value>,
    key: &str,
    rule: &str,
    environment: Option<&str>,
) -> Result<Duration, Located> {
    let duration = |text: &str, key: &str| -> Result<Duration, Located> {
        let expanded = expand(text, ctx.lookup).map_err(|m| ctx.at(raw, key, m))?;
        let d = parse_duration(&expanded).map_err(|m| ctx.at(raw, key, m))?;
        if d.is_zero() {
            return Err(ctx.at(raw, key, "must be longer than zero".into()));
        }
        Ok(d)
    };
    match raw.get_ref() {
        toml::Value::String(s) => duration(s, key),
        toml::Value::Table(table) => {
            let Some(env) = environment else {
                return Err(ctx.at(raw, key, format!(
                    "rule `{rule}` gives `after` per environment, but no environment is set: set `environment` in the file or pass --env"
                )));
            };
            match table.get(env) {
                Some(toml::Value::String(s)) => duration(s, &format!("{key}.{env}")),
                Some(_) => Err(ctx.at(
                    raw,
                    &format!("{key}.{env}"),
                    "must be a duration string like \"30m\"".into(),
                )),
                None => Err(ctx.at(
                    raw,
                    key,
                    format!(
                        "rule `{rule}` has no `after` for environment `{env}` (it has: {})",
                        table.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                )),
            }
        }
        _ => Err(ctx.at(
            raw,
            key,
            "must be a duration string (\"30m\") or a table of them per environment".into(),
        )),
    }
}

pub(super) fn resolve_artifacts(
    ctx: &Ctx<'_>,
    raw: &RawArtifacts,
    i: usize,
    base: &Path,
) -> Result<Artifacts, Located> {
    let key = |k: &str| format!("artifacts[{i}].{k}");
    let pattern = ctx.text(&raw.pattern, &key("pattern"))?;
    let compiled_pattern = crate::core::pattern::Pattern::new(&pattern)
        .map_err(|m| ctx.at(&raw.pattern, &key("pattern"), m))?;
    let globs = |list: &[Text], name: &str| -> Result<Vec<crate::core::pattern::Glob>, Located> {
        list.iter()
            .map(|g| {
                let text = ctx.text(g, &key(name))?;
                crate::core::pattern::Glob::new(&text).map_err(|m| ctx.at(g, &key(name), m))
            })
            .collect()
    };
    let compiled = CompiledArtifacts {
        pattern: compiled_pattern,
        partial: globs(&raw.partial, "partial")?,
        required: globs(&raw.required, "required")?,
    };
    if pattern.matches("{job_id}").count() != 1 {
        return Err(ctx.at(
            &raw.pattern,
            &key("pattern"),
            format!(
            "`{pattern}` must contain `{{job_id}}` exactly once: it is how a path names its job"
        ),
        ));
    }
    let root_text = ctx.text(&raw.root, &key("root"))?;
    let root = PathBuf::from(&root_text);
    Ok(Artifacts {
        root_relative: (!root.is_absolute()).then_some(root_text),
        name: ctx.text(&raw.name, &key("name"))?,
        root: if root.is_absolute() {
            root
        } else {
            base.join(root)
        },
        pattern,
        partial: ctx.texts(&raw.partial, &key("partial"))?,
        settle: match &raw.settle {
            Some(s) => ctx.duration(s, &key("settle"))?,
            None => DEFAULT_SETTLE,
        },
        watch: raw.watch.unwrap_or(WatchMode::Auto),
        reconcile_every: match &raw.reconcile_every {
            Some(s) => ctx
                .duration(s, &key("reconcile_every"))?
                .max(Duration::from_secs(1)),
            None => DEFAULT_RECONCILE_EVERY,
        },
        required_within: match &raw.required_within {
            Some(s) => ctx.duration(s, &key("required_within"))?,
            None => DEFAULT_REQUIRED_WITHIN,
        },
        required: ctx.texts(&raw.required, &key("required"))?,
        compiled,
    })
}

// ---------------------------------------------------------------------------------------------
// Printing the resolved config (`validate`).

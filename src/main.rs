//! The `jobwarden` binary: parses the command line, sets up logging, loads the config and
//! hands over to the library. Exit codes are documented in the README.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use jobwarden::adapters::notify::Notifier;
use jobwarden::app::commands::{self, Error, RecoverOptions, Strictness};
use jobwarden::app::logging;
use jobwarden::{app::demo, config, daemon};
use prometheus::Registry;

/// `--version`: the crate's version and the git revision it was built from (`unknown` outside
/// a checkout; build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("JOBWARDEN_REVISION"),
    ")"
);

/// A watchdog for jobs tables: finds jobs stuck `running` after their process died.
#[derive(Debug, Parser)]
#[command(name = "jobwarden", version = VERSION, about)]
struct Cli {
    /// The config file [default: jobwarden.toml].
    #[arg(
        short = 'c',
        long,
        global = true,
        env = "JOBWARDEN_CONFIG",
        value_name = "PATH"
    )]
    config: Option<PathBuf>,
    /// The environment whose thresholds apply (overrides `environment` in the file).
    #[arg(long = "env", global = true, env = "JOBWARDEN_ENV")]
    environment: Option<String>,
    /// Machine output on stdout (logs stay on stderr).
    #[arg(long, global = true)]
    json: bool,
    /// The format of log lines on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// `--config`, or the default file.
    fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The daemon: scan now and every `interval`, serve HTTP, act on findings.
    Run {
        /// Never write to the database, whatever the file says.
        #[arg(long)]
        dry_run: bool,
    },
    /// One read-only scan: print every active job's findings.
    Check {
        /// Exit 3 when an artifact root does not exist (by default a warning).
        #[arg(long)]
        strict: bool,
    },
    /// One scan, then apply each finding's action now.
    Recover {
        /// Print what would be written; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Treat every active job older than this in its status as overdue (e.g. "1h").
        #[arg(long, value_parser = commands::parse_older_than)]
        older_than: Option<Duration>,
        /// Lift the stuck-fraction guard and the per-scan cap for this run (never min_age).
        #[arg(long)]
        force: bool,
        /// Write only these job ids (comma-separated).
        #[arg(long, value_delimiter = ',')]
        only: Option<Vec<String>>,
        /// Write only the jobs of this incident (its id in check --json); with --force when
        /// the mass-stall guard holds it.
        #[arg(long, value_name = "ID", conflicts_with = "only")]
        incident: Option<String>,
        /// Never write these job ids (comma-separated).
        #[arg(long, value_delimiter = ',')]
        exclude: Vec<String>,
    },
    /// Print the latest entries of the audit trail (reads the state directory only; no
    /// database settings needed).
    Audit {
        /// How many entries.
        #[arg(long, default_value_t = 20)]
        last: usize,
        /// The daemon's state directory (default: the config's `[state] dir`, else the
        /// default one; /var/lib/jobwarden under the systemd unit).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Load and check the config: its verdict first, then each problem.
    Validate {
        /// Also connect and check the table, its columns and its status index.
        #[arg(long)]
        connect: bool,
        /// Also print the resolved config, with secrets redacted.
        #[arg(long)]
        print: bool,
    },
    /// Make a throwaway SQLite jobs table and run `check` on it.
    Demo,
    /// Ask the running daemon to hold every write for a while (a deploy window); alerts go
    /// on. `--for 0s` ends a pause.
    Pause {
        /// How long, such as "30m".
        #[arg(long = "for")]
        duration: String,
        /// Why, kept with the pause in the audit trail and shown on the console.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Ask the running daemon to send no alert and make no write for one job for a while.
    /// `--for 0s` ends a snooze.
    Snooze {
        /// The job's id.
        job: String,
        /// How long, such as "2h".
        #[arg(long = "for")]
        duration: String,
        /// Why, kept with the snooze and shown on the console.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Alert sinks.
    Alert {
        #[command(subcommand)]
        command: AlertCommand,
    },
    /// Print shell completions: `jobwarden completions bash > /etc/bash_completion.d/jobwarden`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or with `--dir` write one page per command there
    /// (`jobwarden.1`, `jobwarden-check.1`, ...).
    Man {
        /// Write the pages into this folder instead of printing the main one.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// Where `pause` and `snooze` find the daemon: with `--url` and a token, no config file is
/// read; otherwise its `[http]` table only (never the database settings).
#[derive(Debug, clap::Args)]
struct Target {
    /// The daemon's address (default: from `[http] listen` and `base_path`).
    #[arg(long)]
    url: Option<String>,
    /// The daemon's bearer token (default: `[http] token`). Prefer the environment variable:
    /// a command line is visible to every local user.
    #[arg(long, env = "JOBWARDEN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Reach an https daemon beyond loopback through the proxy set in the environment
    /// (HTTPS_PROXY, ALL_PROXY, NO_PROXY); without it, no proxy is used.
    #[arg(long)]
    proxy_from_env: bool,
}

impl Target {
    fn to_api(&self) -> jobwarden::adapters::api::Target {
        jobwarden::adapters::api::Target {
            url: self.url.clone(),
            token: self.token.clone(),
            proxy_from_env: self.proxy_from_env,
        }
    }
}

#[derive(Debug, Subcommand)]
enum AlertCommand {
    /// Send a sample firing and resolved alert through every sink and report each answer.
    Test,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Run { .. }) {
        "info"
    } else {
        "warn"
    };
    logging::init(
        match cli.log_format {
            LogFormat::Text => logging::LogFormat::Text,
            LogFormat::Json => logging::LogFormat::Json,
        },
        default_level,
    );
    // The daemon gets a second worker so HTTP answers while a scan decodes and judges rows;
    // one-shot commands need only one.
    let runtime = if matches!(cli.command, Command::Run { .. }) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("jobwarden: cannot start the runtime: {e}");
            return ExitCode::from(commands::EXIT_UNAVAILABLE);
        }
    };
    match runtime.block_on(execute(&cli)) {
        Ok(code) => ExitCode::from(code),
        // `jobwarden check | head`: the reader left; nothing more to say.
        Err(Error::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jobwarden: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn execute(cli: &Cli) -> Result<u8, Error> {
    let mut stdout = std::io::stdout().lock();
    let format = if cli.json {
        commands::Format::Json
    } else {
        commands::Format::Human
    };
    // The whole config, for the commands that read the table; the operator commands (`audit`,
    // `pause`, `snooze`) need only the daemon's address and token, or the state directory,
    // never the database settings; `demo`, `completions` and `man` need no config.
    let load = || {
        config::load(
            &cli.config_path(),
            cli.environment.as_deref(),
            &config::env_lookup,
        )
    };
    let explicit = cli.config.as_deref();
    match &cli.command {
        Command::Demo => demo::demo(format, &mut stdout).await,
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "jobwarden", &mut stdout);
            Ok(commands::EXIT_OK)
        }
        Command::Man { dir } => commands::man_pages(Cli::command(), dir.as_deref(), &mut stdout),
        Command::Audit { last, state_dir } => {
            let dir =
                commands::operator_state_dir(explicit, state_dir.as_deref(), &config::env_lookup)?;
            commands::audit(&dir, *last, format, &mut stdout)
        }
        Command::Pause {
            duration,
            reason,
            target,
        } => {
            let target = target.to_api();
            let http = commands::operator_http(explicit, &target, &config::env_lookup)?;
            let reason = reason.as_deref();
            commands::pause(&http, &target, duration, reason, format, &mut stdout).await
        }
        Command::Snooze {
            job,
            duration,
            reason,
            target,
        } => {
            let target = target.to_api();
            let http = commands::operator_http(explicit, &target, &config::env_lookup)?;
            commands::snooze(
                &http,
                &target,
                job,
                duration,
                reason.as_deref(),
                format,
                &mut stdout,
            )
            .await
        }
        Command::Run { dry_run } => run(cli, load()?, *dry_run).await,
        Command::Check { strict } => {
            let strictness = Strictness::from_flag(*strict);
            commands::check(&load()?, strictness, format, &mut stdout).await
        }
        Command::Recover {
            dry_run,
            older_than,
            force,
            only,
            exclude,
            incident,
        } => {
            let options = RecoverOptions {
                dry_run: *dry_run,
                older_than: *older_than,
                force: *force,
                only: only.clone(),
                exclude: exclude.clone(),
                incident: incident.clone(),
            };
            commands::recover(&load()?, options, format, &mut stdout).await
        }
        Command::Validate { connect, print } => {
            let print = if *print {
                commands::Print::Config
            } else {
                commands::Print::VerdictOnly
            };
            commands::validate(&load()?, *connect, print, format, &mut stdout).await
        }
        Command::Alert {
            command: AlertCommand::Test,
        } => commands::alert_test(&load()?, &mut stdout).await,
    }
}

/// `run`: the daemon, with SIGTERM/SIGINT as shutdown and SIGHUP as reload.
async fn run(cli: &Cli, config: config::Config, dry_run: bool) -> Result<u8, Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let _ = reload_tx.try_send(());
        }
    });
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = int.recv() => tracing::info!("SIGINT"),
        }
    };
    let path = cli.config_path();
    let environment = cli.environment.clone();
    let options = daemon::Options {
        dry_run,
        reload: Box::new(move || config::load(&path, environment.as_deref(), &config::env_lookup)),
        notifier: Notifier::from_env(),
        clock: jobwarden::adapters::clock::Clock::System,
    };
    let listener = match daemon::bind(&config).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("jobwarden: error: {e}");
            return Ok(e.exit_code());
        }
    };
    match daemon::run(
        config,
        Registry::new(),
        listener,
        options,
        reload_rx,
        shutdown,
    )
    .await
    {
        Ok(()) => Ok(commands::EXIT_OK),
        Err(e) => {
            eprintln!("jobwarden: error: {e}");
            Ok(e.exit_code())
        }
    }
}

//! The `hiku` command: parse arguments, load the config, run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use hiku::Config;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for a config that can't be used (sysexits EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

/// What `hiku --help` and the man page say after the subcommands.
const AFTER_HELP: &str = "\
Exit status: 0 after a drain; 78 (EX_CONFIG) for a config that cannot be used (start, check, reload); \
2 for bad arguments; 1 for any other failure.

Signals: SIGTERM or SIGINT drains, a second one exits at once; SIGHUP reloads the config; SIGUSR1 \
reopens the access log.

Environment: HIKU_LOG sets the log level (error, warn, info, debug, trace; default info); HIKU_IO \
picks the I/O driver (auto, io_uring, epoll); JOURNAL_STREAM (set by systemd) marks log lines with \
their syslog priority instead of their time.

Files: /etc/hiku/hiku.json, the packaged service's config (hiku@NAME runs /etc/hiku/NAME.json).";

#[derive(Parser)]
#[command(
    name = "hiku",
    version = hiku::LONG_VERSION,
    about = "A thread-per-core request scheduler for serverless workers",
    long_about = "A thread-per-core request scheduler for serverless workers. Clients POST to \
/run/<function>; hiku picks a worker with the config's balancer and proxies the call. A drop-in \
replacement for the Go Hiku scheduler (hiku start -c config.json); the config keys, endpoints and \
tuning are in the README (/usr/share/doc/hiku/README.md where the package installed it).",
    after_long_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the scheduler
    Start {
        /// The JSON config file
        #[arg(short, long, default_value = "hiku.json")]
        config: PathBuf,
        /// Cores to run on, one executor each [default: every available core]
        #[arg(long)]
        cores: Option<usize>,
        /// Let the OS move the shards between cores. By default each is pinned to a core of
        /// its own: best on a machine hiku has to itself; where it shares the cores with other
        /// busy processes, unpinned shards can run on whichever core is free
        #[arg(long)]
        no_pin: bool,
    },
    /// Ask the hiku running with this config file to reload it (as SIGHUP does)
    Reload {
        /// The JSON config file hiku runs with: its admin.listen (or host and port) and
        /// admin.token say where to ask
        #[arg(short, long, default_value = "hiku.json")]
        config: PathBuf,
        /// Ask at this host:port instead (the file's address changed, say)
        #[arg(long)]
        addr: Option<String>,
        /// Send this admin token instead (the file's token changed, say)
        #[arg(long)]
        token: Option<String>,
    },
    /// Check a config file as start would (short of binding) and exit
    Check {
        /// The JSON config file
        #[arg(short, long, default_value = "hiku.json")]
        config: PathBuf,
        /// Print the config hiku would run, every key with its value, defaults filled in
        #[arg(long)]
        print: bool,
    },
    /// Print the completions of hiku's arguments for a shell
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Write hiku's man pages (hiku.1 and one per subcommand) into a directory
    Manpages {
        /// Where to write them (made if missing)
        dir: PathBuf,
    },
}

/// Reads the config at `path`, warning of keys it ignored or read in
/// another case; with `preflight`, also makes every check `start` makes
/// short of binding (addresses, the access log), warning of admin
/// endpoints open to anyone. A config that fails is EX_CONFIG.
fn load(path: &Path, preflight: bool) -> Result<Config, ExitCode> {
    let exit = |e: hiku::ConfigError| {
        eprintln!("hiku: {e}");
        ExitCode::from(EXIT_CONFIG)
    };
    let config = Config::load(path).map_err(exit)?;
    let mut warnings = config.key_warnings();
    if preflight {
        let shown = path.display();
        warnings.extend(config.preflight().map_err(|e| exit(hiku::ConfigError(format!("{shown}: {e}"))))?);
    }
    for warning in warnings {
        log::warn!("{}: {warning}", path.display());
    }
    Ok(config)
}

/// hiku.1 and a page per subcommand (hiku-start.1, ...), as git's are.
fn write_manpages(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command().disable_help_subcommand(true), dir)
}

fn main() -> ExitCode {
    hiku::no_huge_pages();
    hiku::init_logging();
    match Cli::parse().command {
        Command::Check { config, print } => match load(&config, true) {
            Ok(c) => {
                let ok =
                    format!("{}: config OK ({} balancer, {} workers)", config.display(), c.balancer, c.workers.len());
                match print {
                    // The config on stdout, as nginx -T prints it; the verdict on stderr.
                    true => {
                        let text = serde_json::to_string_pretty(&c.to_json()).expect("a JSON value prints");
                        println!("{text}");
                        eprintln!("{ok}");
                    }
                    false => println!("{ok}"),
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "hiku", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Manpages { dir } => match write_manpages(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hiku: {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        },
        Command::Reload { config, addr, token } => {
            let loaded = match load(&config, false) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match hiku::ask_reload(&loaded, addr.as_deref(), token.as_deref()) {
                Ok(hiku::Reply { status: 200, body }) => {
                    println!("reloaded: {body}");
                    ExitCode::SUCCESS
                }
                Ok(hiku::Reply { status: 422, body }) => {
                    eprintln!("hiku: {body}");
                    ExitCode::from(EXIT_CONFIG)
                }
                Ok(hiku::Reply { status, body }) => {
                    eprintln!("hiku: reload answered {status}: {body}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("hiku: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Start { config, cores, no_pin } => {
            let loaded = match load(&config, true) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let available = std::thread::available_parallelism().map_or(1, |n| n.get());
            let cores = cores.unwrap_or(available);
            if cores == 0 || cores > available {
                eprintln!("hiku: --cores {cores} is not between 1 and the {available} available cores");
                return ExitCode::from(2);
            }
            hiku::handle_signals(loaded.shutdown_grace, loaded.shutdown_announce);
            match hiku::run(&loaded, Some(&config), cores, !no_pin) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("hiku: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

//! `hiku-perf throughput` and `hiku-perf blast`: their command lines, the
//! options made of them, and what is printed and written.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::balancers::BALANCERS;
use crate::cli::{baseline_label, exit, seconds, sibling, usage_error};
use crate::functions;
use crate::harness::front;
use crate::harness::process::until_interrupted;
use crate::throughput::blast::{self, Load};
use crate::throughput::options::{Backend, Contender, Options, Proxy, BODY, REQUEST_TIMEOUT};
use crate::throughput::{self, counters, idle, proxies, summary};

/// `hiku-perf throughput`'s command line.
#[derive(clap::Args)]
pub struct Args {
    /// A short run: 3 rounds of 2 s at 64 and 256 connections
    #[arg(long)]
    quick: bool,
    /// The tail mode: the slowest calls (p99.9, p99.99, max, timeouts) of hiku and the
    /// proxies asked for, at 1024 and 4096 connections, on 1 and on 2 cores, 8 s each with
    /// no warm-up (every connection's first call counts, as with wrk)
    #[arg(long, conflicts_with_all = ["quick", "idle_connections", "new_connection"])]
    tail: bool,
    /// Client connections, comma-separated [default: 64,256,1024; 64,256 with --quick;
    /// 1024,4096 with --tail]
    #[arg(long, value_delimiter = ',')]
    connections: Vec<usize>,
    /// Rounds; every contender is measured at every connection count in each
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds measured per contender and connection count [default: 5; 2 with --quick;
    /// 8 with --tail]
    #[arg(long)]
    duration: Option<f64>,
    /// Untimed seconds of load before each measurement [default: 1; 0.5 with --quick;
    /// 0 with --tail]
    #[arg(long)]
    warmup: Option<f64>,
    /// The balancer in the schedulers' config
    #[arg(long, default_value = "least-connections")]
    balancer: String,
    /// Cores for hiku (`--cores`), nginx (worker processes), HAProxy (threads) and the Go
    /// original (GOMAXPROCS), comma-separated, each measured in turn [default: all; 1,2
    /// with --tail]
    #[arg(long, value_delimiter = ',')]
    cores: Vec<usize>,
    /// What answers behind the proxies: `hiku-upstream` (the cheapest server there is) or
    /// `nginx` (one nginx worker, `return 200`; the binary is --nginx's, or nginx on the
    /// PATH or in /usr/sbin)
    #[arg(long, default_value = "hiku-upstream", value_parser = ["hiku-upstream", "nginx"])]
    backend: String,
    /// Another scheduler binary, started as `PATH start -c <config>`
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// An nginx binary, run as a least_conn keep-alive reverse proxy
    #[arg(long)]
    nginx: Option<PathBuf>,
    /// HAProxy (2.6+), run as a leastconn keep-alive reverse proxy with a thread per core
    /// [PATH defaults to `haproxy` on the PATH]
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "haproxy")]
    haproxy: Option<PathBuf>,
    /// A tier too, once per K: K hiku instances behind HAProxy on the front config hiku
    /// ships (`config/tier/haproxy.cfg`), labelled `tier-k{K}` (needs HAProxy 2.6+ on the
    /// PATH or in /usr/sbin, or --haproxy's)
    #[arg(long, value_delimiter = ',', value_name = "K")]
    tier: Vec<usize>,
    /// The hiku binary [default: `hiku` beside this program]
    #[arg(long)]
    hiku: Option<PathBuf>,
    /// The upstream binary [default: `hiku-upstream` beside this program]
    #[arg(long)]
    upstream: Option<PathBuf>,
    /// hiku once more, labelled LABEL, with environment variables and arguments:
    /// LABEL=[NAME=VALUE...] [ARG...], e.g. `hiku-epoll=HIKU_IO=epoll` (repeatable)
    #[arg(long = "variant", value_name = "LABEL=ARGS")]
    variants: Vec<String>,
    /// A new connection for every call: each request asks the server to close
    #[arg(long)]
    new_connection: bool,
    /// Instead of throughput: open N keep-alive connections to each proxy, send one call on
    /// each at once, and report the proxy's resident memory per idle connection
    #[arg(long, value_name = "N")]
    idle_connections: Option<usize>,
    /// With --idle-connections: send the N calls all at once, not 64 at a time
    #[arg(long, requires = "idle_connections")]
    burst: bool,
    /// Write the medians as JSON
    #[arg(long)]
    json: Option<PathBuf>,
}

impl Args {
    /// Measures, prints the tables and writes the JSON if asked.
    pub fn run(self) -> ExitCode {
        let options = match self.options() {
            Ok(options) => options,
            Err(e) => return usage_error(e),
        };
        if let Some(dir) = self.json.as_ref().and_then(|p| p.parent()).filter(|d| !d.as_os_str().is_empty()) {
            if let Err(e) = std::fs::create_dir_all(dir) {
                eprintln!("hiku-perf: {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
        }
        let measured = async {
            Ok(match self.idle_connections {
                Some(n) => summary::Report { idle: idle::run(&options, n, self.burst).await?, ..Default::default() },
                None => summary::Report {
                    results: throughput::run(&options).await?,
                    new_connection: options.new_connection,
                    tail: options.tail,
                    ..Default::default()
                },
            }
            .with_configs(proxies::proxy_configs(&options)))
        };
        let outcome = until_interrupted(measured).and_then(|report| {
            for (title, table) in summary::titled(&report) {
                print!("{title}\n{table}");
            }
            print!("{}", summary::configs(&report.configs));
            match &self.json {
                Some(path) => {
                    let json = serde_json::to_string_pretty(&report).expect("plain structs");
                    std::fs::write(path, json + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
                    eprintln!("wrote {}", path.display());
                    Ok(())
                }
                None => Ok(()),
            }
        });
        exit(outcome)
    }

    /// The measurement's options, or what is wrong with the arguments.
    fn options(&self) -> Result<Options, String> {
        let (duration, warmup, connections) = if self.quick {
            (self.duration.unwrap_or(2.0), self.warmup.unwrap_or(0.5), vec![64, 256])
        } else if self.tail {
            (self.duration.unwrap_or(8.0), self.warmup.unwrap_or(0.0), vec![1024, 4096])
        } else {
            (self.duration.unwrap_or(5.0), self.warmup.unwrap_or(1.0), vec![64, 256, 1024])
        };
        let connections = if self.connections.is_empty() { connections } else { self.connections.clone() };
        let (duration, warmup) = (seconds(duration, "--duration")?, seconds(warmup, "--warmup")?);
        if duration.is_zero() || self.rounds == 0 || connections.contains(&0) || self.idle_connections == Some(0) {
            return Err("--duration, --rounds, --idle-connections and every --connections must be positive".to_string());
        }
        if !BALANCERS.contains(&self.balancer.as_str()) {
            return Err(format!("unknown balancer {:?}; the balancers are {}", self.balancer, BALANCERS.join(", ")));
        }
        let available = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cores = match (self.cores.is_empty(), self.tail) {
            (false, _) => self.cores.clone(),
            (true, true) => vec![1, available.min(2)],
            (true, false) => vec![available],
        };
        if cores.contains(&0) {
            return Err("--cores must be at least 1".to_string());
        }
        let hiku = self.hiku.clone().unwrap_or_else(|| sibling("hiku"));
        let upstream = self.upstream.clone().unwrap_or_else(|| sibling("hiku-upstream"));
        let nginx = || {
            self.nginx.clone().or_else(|| on_path(Path::new("nginx"))).or_else(|| on_path(Path::new("/usr/sbin/nginx")))
        };
        let backend = match self.backend.as_str() {
            "nginx" => Backend::Nginx(nginx().ok_or("--backend nginx: no nginx (give its path with --nginx)")?),
            _ => Backend::HikuUpstream(upstream),
        };
        // The tail mode compares proxies: the generator straight at the
        // upstreams would only measure itself.
        let mut contenders = match self.tail {
            true => Vec::new(),
            false => vec![Contender { label: "direct".to_string(), proxy: Proxy::Direct }],
        };
        contenders.push(Contender {
            label: "hiku".to_string(),
            proxy: Proxy::Scheduler { binary: hiku.clone(), extra: Vec::new(), env: Vec::new(), hiku: true },
        });
        for spec in &self.variants {
            let variant = parse_variant(spec)?;
            let proxy = Proxy::Scheduler { binary: hiku.clone(), extra: variant.args, env: variant.env, hiku: true };
            contenders.push(Contender { label: variant.label, proxy });
        }
        if let Some(path) = &self.baseline {
            let proxy = Proxy::Scheduler { binary: path.clone(), extra: Vec::new(), env: Vec::new(), hiku: false };
            contenders.push(Contender { label: baseline_label(path), proxy });
        }
        if let Some(path) = &self.nginx {
            contenders.push(Contender { label: "nginx".to_string(), proxy: Proxy::Nginx { binary: path.clone() } });
        }
        if let Some(path) = &self.haproxy {
            let binary = on_path(path).ok_or_else(|| format!("no haproxy binary {}", path.display()))?;
            contenders.push(Contender { label: "haproxy".to_string(), proxy: Proxy::Haproxy { binary } });
        }
        for &instances in &self.tier {
            if instances == 0 {
                return Err("--tier: a tier has at least one instance".to_string());
            }
            // The instances share the machine with the front: none is pinned.
            let extra = vec!["--no-pin".to_string()];
            let haproxy = self.haproxy.as_deref().and_then(on_path).unwrap_or_else(front::haproxy);
            let proxy = Proxy::Tier { hiku: hiku.clone(), haproxy, instances, extra };
            contenders.push(Contender { label: format!("tier-k{instances}"), proxy });
        }
        for (i, c) in contenders.iter().enumerate() {
            if contenders[..i].iter().any(|earlier| earlier.label == c.label) {
                return Err(format!("two contenders are labelled {:?}", c.label));
            }
        }
        let binaries = contenders.iter().filter_map(|c| match &c.proxy {
            Proxy::Direct => None,
            Proxy::Scheduler { binary, .. } | Proxy::Nginx { binary } | Proxy::Haproxy { binary } => Some(binary),
            Proxy::Tier { hiku, .. } => Some(hiku),
        });
        let backend_binary = match &backend {
            Backend::HikuUpstream(path) | Backend::Nginx(path) => path,
        };
        for binary in binaries.chain([backend_binary]) {
            if !binary.is_file() {
                return Err(format!(
                    "no binary at {} (build with `cargo build --release -p hiku -p hiku-perf`)",
                    binary.display()
                ));
            }
        }
        Ok(Options {
            contenders,
            backend,
            balancer: self.balancer.clone(),
            cores,
            cores_given: !self.cores.is_empty() || self.tail,
            connections,
            rounds: self.rounds,
            warmup,
            duration,
            counted: duration / 2,
            perf: if self.idle_connections.is_some() { None } else { usable_perf() },
            new_connection: self.new_connection,
            tail: self.tail,
            progress: true,
        })
    }
}

/// `hiku-perf blast`'s command line.
#[derive(clap::Args)]
pub struct BlastArgs {
    /// host:port to send to; repeat to spread the connections over several
    #[arg(long, required = true)]
    target: Vec<SocketAddr>,
    /// Client connections, one request outstanding on each
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds measured
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Untimed seconds before
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
}

impl BlastArgs {
    /// Runs the generator against the targets and prints what it measured.
    pub fn run(self) -> ExitCode {
        let (duration, warmup) = match (seconds(self.duration, "--duration"), seconds(self.warmup, "--warmup")) {
            (Ok(d), Ok(w)) if !d.is_zero() && self.connections > 0 => (d, w),
            _ => return usage_error("--duration and --connections must be positive"),
        };
        let load = Load {
            targets: self.target,
            connections: self.connections,
            functions: functions::names(),
            body: BODY.to_vec(),
            warmup,
            duration,
            counted: Duration::ZERO,
            close: false,
            timeout: REQUEST_TIMEOUT,
        };
        exit(blast::run(&load, &AtomicBool::new(false), |_| {}).map_err(|e| e.to_string()).map(|t| {
            println!(
                "{} connections: {:.0} req/s  p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  p99.99 {:.3} ms  max {:.3} ms  {} ok  errors {:?}",
                self.connections,
                t.rps(),
                t.latency_ms(0.5),
                t.latency_ms(0.99),
                t.latency_ms(0.999),
                t.latency_ms(0.9999),
                t.max_ms(),
                t.ok,
                t.errors
            );
        }))
    }
}

/// A `--variant`: hiku run with variables added to its environment and
/// arguments after `start -c <config>`, under a label of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Variant {
    label: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// Parses `LABEL=[NAME=VALUE...] [ARG...]`.
fn parse_variant(spec: &str) -> Result<Variant, String> {
    let (label, rest) = spec.split_once('=').ok_or_else(|| format!("--variant {spec:?} is not LABEL=ARGS"))?;
    if label.is_empty()
        || label.contains(char::is_whitespace)
        || ["direct", "hiku", "nginx", "haproxy"].contains(&label)
    {
        return Err(format!("--variant {spec:?}: its label must be a new word, not {label:?}"));
    }
    let is_name = |n: &str| {
        n.chars().next().is_some_and(|c| c.is_ascii_uppercase() || c == '_')
            && n.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    };
    let mut words = rest.split_whitespace().peekable();
    let mut env = Vec::new();
    while let Some((name, value)) = words.peek().and_then(|w| w.split_once('=')).filter(|(n, _)| is_name(n)) {
        env.push((name.to_string(), value.to_string()));
        words.next();
    }
    Ok(Variant { label: label.to_string(), args: words.map(str::to_string).collect(), env })
}

/// `path` itself if it names a file, or a bare name found on the PATH.
fn on_path(path: &Path) -> Option<PathBuf> {
    if path.is_file() || path.components().count() > 1 {
        return path.is_file().then(|| path.to_path_buf());
    }
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs).map(|dir| dir.join(path)).find(|p| p.is_file())
}

/// `perf` from the PATH if it can count system calls here; says why not
/// otherwise.
fn usable_perf() -> Option<PathBuf> {
    let perf = PathBuf::from("perf");
    match counters::perf_unusable(&perf) {
        None => Some(perf),
        Some(why) => {
            eprintln!("perf is not usable ({why}): system calls and context switches are not counted");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        args: Args,
    }

    /// The options of `hiku-perf throughput ARGS`, with every binary an
    /// existing file.
    fn options(args: &str) -> Result<Options, String> {
        let bin = "--hiku /bin/sh --upstream /bin/sh --nginx /bin/sh";
        let line = format!("throughput {bin} {args}");
        Command::try_parse_from(line.split_whitespace()).map_err(|e| e.to_string())?.args.options()
    }

    #[test]
    fn the_tail_mode_measures_the_proxies_on_one_and_two_cores_from_the_first_call() {
        let tail = options("--tail").unwrap();
        assert_eq!(tail.connections, [1024, 4096]);
        assert_eq!(tail.cores, [1, std::thread::available_parallelism().map_or(1, |n| n.get()).min(2)]);
        assert!(tail.tail && tail.cores_given);
        assert_eq!((tail.duration, tail.warmup), (Duration::from_secs(8), Duration::ZERO));
        let labels: Vec<&str> = tail.contenders.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["hiku", "nginx"], "no `direct`: the generator alone measures nothing of a proxy");

        let plain = options("").unwrap();
        assert!(!plain.tail && !plain.cores_given);
        assert_eq!(plain.contenders[0].label, "direct");
        let given = options("--tail --cores 2 --connections 64 --duration 3 --warmup 1").unwrap();
        assert_eq!((given.cores, given.connections), (vec![2], vec![64]));
        assert_eq!((given.duration, given.warmup), (Duration::from_secs(3), Duration::from_secs(1)));

        assert!(options("--tail --quick").is_err());
        assert!(options("--tail --idle-connections 10").is_err());
        assert!(options("--cores 0").unwrap_err().contains("at least 1"));
    }

    #[test]
    fn the_backend_is_hiku_upstream_or_nginx() {
        assert_eq!(options("").unwrap().backend, Backend::HikuUpstream("/bin/sh".into()));
        assert_eq!(options("--backend nginx").unwrap().backend, Backend::Nginx("/bin/sh".into()));
        assert!(options("--backend apache").is_err());
    }

    #[test]
    fn variants_are_a_label_variables_and_arguments() {
        let variant = |label: &str, args: &[&str], env: &[(&str, &str)]| Variant {
            label: label.to_string(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        assert_eq!(parse_variant("hiku-epoll=HIKU_IO=epoll"), Ok(variant("hiku-epoll", &[], &[("HIKU_IO", "epoll")])));
        assert_eq!(parse_variant("unpinned=--no-pin"), Ok(variant("unpinned", &["--no-pin"], &[])));
        assert_eq!(
            parse_variant("x=A=1 B_2=two --cores 1 C=3"),
            Ok(variant("x", &["--cores", "1", "C=3"], &[("A", "1"), ("B_2", "two")]))
        );
        assert_eq!(parse_variant("plain="), Ok(variant("plain", &[], &[])));
        for bad in ["no-equals", "=--no-pin", "hiku=--no-pin", "a b=x"] {
            assert!(parse_variant(bad).is_err(), "{bad}");
        }
    }
}

//! The processes of one measurement: the upstreams and the contender in
//! front of them, hiku (or another scheduler with its interface), nginx or
//! HAProxy, each configured as fairly as the others, or a tier (hiku
//! instances behind HAProxy, as the README's "Running a tier" runs them).

use std::net::SocketAddr;
use std::path::Path;

use tokio::process::Child;

use crate::harness::cluster::{self, start_upstreams};
use crate::harness::front::Kind;
use crate::harness::process::{self, free_port};
use crate::harness::procstat;
use crate::harness::tier::{self, Tier};
use crate::throughput::options::{Backend, Contender, Options, Proxy, UPSTREAMS};

/// nginx's keep-alive pool per worker process.
const NGINX_KEEPALIVE: usize = 256;

/// The processes of one measurement; all are killed when this drops.
pub(crate) struct Setup {
    _upstreams: Upstreams,
    _proxy: Option<Running>,
    /// Where the generator connects.
    pub targets: Vec<SocketAddr>,
    /// Whose CPU and memory are counted.
    pub pids: Vec<u32>,
    /// Those of `pids` that are a tier's front (counted on their own too).
    pub front_pids: Vec<u32>,
}

/// Held only to be dropped (which kills it).
enum Running {
    Scheduler { _process: cluster::Scheduler },
    Nginx { _process: Nginx },
    Haproxy { _process: Child },
    Tier { _tier: Tier },
}

/// The upstreams, held only to be dropped (which kills them).
enum Upstreams {
    Hiku { _process: Child },
    Nginx { _process: Nginx },
}

/// Starts `backend` with [`UPSTREAMS`] servers: the processes, their pids
/// and their URLs.
async fn start_upstreams_of(backend: &Backend, workdir: &Path) -> Result<(Upstreams, Vec<u32>, Vec<String>), String> {
    match backend {
        Backend::HikuUpstream(binary) => {
            let (child, urls) = start_upstreams(binary, UPSTREAMS, 0).await?;
            let pid = child.id().ok_or("the upstreams exited")?;
            Ok((Upstreams::Hiku { _process: child }, vec![pid], urls))
        }
        Backend::Nginx(binary) => {
            let ports = (0..UPSTREAMS).map(|_| free_port()).collect::<Result<Vec<u16>, _>>()?;
            let dir = workdir.join(format!("backend-{}", ports[0]));
            let config = nginx_backend_config(&ports, &dir);
            let nginx = start_nginx(binary, config, ports[0], 1, &dir).await?;
            let urls = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
            let pids = nginx.pids();
            Ok((Upstreams::Nginx { _process: nginx }, pids, urls))
        }
    }
}

/// Starts the upstreams and `contender` in front of them, on `cores` cores.
pub(crate) async fn start(
    options: &Options,
    contender: &Contender,
    cores: usize,
    workdir: &Path,
) -> Result<Setup, String> {
    let (upstreams, upstream_pids, urls) = start_upstreams_of(&options.backend, workdir).await?;
    let addresses: Vec<SocketAddr> = urls
        .iter()
        .map(|u| crate::http::authority(u).and_then(|a| a.parse().ok()).ok_or_else(|| format!("bad upstream {u}")))
        .collect::<Result<_, _>>()?;
    let mut front_pids = Vec::new();
    let cores_flag = || match options.cores_given {
        true => vec!["--cores".to_string(), cores.to_string()],
        false => Vec::new(),
    };
    let (proxy, targets, pids) = match &contender.proxy {
        Proxy::Direct => (None, addresses, upstream_pids),
        Proxy::Scheduler { binary, extra, env, hiku } => {
            let (mut extra, mut env) = (extra.clone(), env.clone());
            match (hiku, options.cores_given) {
                (true, _) => extra.splice(0..0, cores_flag()).for_each(drop),
                (false, true) => env.push(("GOMAXPROCS".to_string(), cores.to_string())),
                (false, false) => {}
            }
            let port = free_port()?;
            let config = workdir.join(format!("{}.json", contender.label));
            let json =
                serde_json::json!({"host": "127.0.0.1", "port": port, "balancer": options.balancer, "workers": urls});
            std::fs::write(&config, json.to_string()).map_err(|e| format!("{}: {e}", config.display()))?;
            let log = workdir.join(format!("{}.log", contender.label));
            let address = format!("127.0.0.1:{port}");
            let scheduler = cluster::start_scheduler(binary, &config, &extra, &env, &address, &log).await?;
            let pid = scheduler.pid().ok_or_else(|| format!("{} exited", contender.label))?;
            let target = address.parse().expect("an address");
            (Some(Running::Scheduler { _process: scheduler }), vec![target], vec![pid])
        }
        Proxy::Nginx { binary } => {
            let port = free_port()?;
            let dir = workdir.join(format!("nginx-{port}"));
            let config = nginx_config(&addresses, port, cores, &dir);
            let nginx = start_nginx(binary, config, port, cores, &dir).await?;
            let pids = nginx.pids();
            let target = nginx.address;
            (Some(Running::Nginx { _process: nginx }), vec![target], pids)
        }
        Proxy::Haproxy { binary } => {
            let (haproxy, target) = start_haproxy(binary, &addresses, cores, workdir).await?;
            let pid = haproxy.id().ok_or("haproxy exited")?;
            (Some(Running::Haproxy { _process: haproxy }), vec![target], vec![pid])
        }
        Proxy::Tier { hiku, haproxy, instances, extra } => {
            let address = format!("127.0.0.1:{}", free_port()?);
            let spec = tier::Spec {
                hiku,
                haproxy,
                extra: cores_flag().into_iter().chain(extra.iter().cloned()).collect(),
                config: serde_json::json!({"host": "127.0.0.1", "balancer": options.balancer, "workers": urls}),
                instances: *instances,
                front: Kind::FnHash,
                address: address.clone(),
                workdir,
                name: &contender.label,
            };
            let tier = tier::start(spec).await?;
            front_pids.extend(tier.front.pid());
            let pids = front_pids.iter().copied().chain(tier.instances.iter().filter_map(|i| i.pid())).collect();
            (Some(Running::Tier { _tier: tier }), vec![address.parse().expect("an address")], pids)
        }
    };
    Ok(Setup { _upstreams: upstreams, _proxy: proxy, targets, pids, front_pids })
}

/// A running nginx: its master and worker processes. The workers are not
/// our children and outlive a killed master, so they are killed by pid.
struct Nginx {
    master: Child,
    /// Its process group (the master's pid).
    group: u32,
    workers: Vec<u32>,
    address: SocketAddr,
}

impl Nginx {
    fn pids(&self) -> Vec<u32> {
        self.master.id().into_iter().chain(self.workers.iter().copied()).collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // The whole process group the master leads: every worker, listed
        // or not (a worker started after the listing, or one left behind by
        // a master that already exited, would outlive it otherwise).
        // SAFETY: kill(2) on the group of the master we started as its leader.
        unsafe { libc::kill(-(self.group as libc::pid_t), libc::SIGKILL) };
        let _ = self.master.start_kill();
    }
}

/// An nginx configuration: `cores` workers, everything it writes in `dir`,
/// no access log, keep-alive clients, and `body` inside its `http` block.
fn nginx_with(cores: usize, dir: &Path, body: &str) -> String {
    let dir = dir.display();
    format!(
        "worker_processes {cores};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile 65536;
events {{
    worker_connections 16384;
}}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
{body}}}
"
    )
}

/// nginx's configuration: `cores` workers, least connections over the
/// upstreams with a keep-alive pool, everything it writes in `dir`.
pub fn nginx_config(upstreams: &[SocketAddr], port: u16, cores: usize, dir: &Path) -> String {
    let servers: String = upstreams.iter().map(|a| format!("        server {a};\n")).collect();
    let body = format!(
        "    upstream workers {{
        least_conn;
{servers}        keepalive {NGINX_KEEPALIVE};
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://workers;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }}
    }}
"
    );
    nginx_with(cores, dir, &body)
}

/// The nginx backend's configuration: one worker serving every port in
/// `ports`, `return 200` to every request, keep-alive, no logging.
pub fn nginx_backend_config(ports: &[u16], dir: &Path) -> String {
    let listens: String = ports.iter().map(|p| format!("        listen 127.0.0.1:{p} backlog=4096;\n")).collect();
    let body = format!(
        "    keepalive_timeout 75s;
    server {{
{listens}        location / {{
            default_type text/plain;
            return 200 \"hello world\";
        }}
    }}
"
    );
    nginx_with(1, dir, &body)
}

/// HAProxy's configuration, as fair as nginx's: `cores` threads (as nginx
/// has worker processes), least connections over the upstreams, keep-alive
/// to clients and to the upstreams with idle server connections shared by
/// every thread and client (`http-reuse always`), no logging.
pub fn haproxy_config(upstreams: &[SocketAddr], port: u16, cores: usize) -> String {
    let servers: String =
        upstreams.iter().enumerate().map(|(i, a)| format!("    server upstream{i} {a} maxconn 100000\n")).collect();
    format!(
        "global
    nbthread {cores}
    maxconn 100000
    # Run within the open-file limit this machine allows (as nginx and
    # hiku do) rather than refuse to start for a maxconn it could not
    # reach anyway.
    no strict-limits

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    maxconn 100000

frontend proxy
    bind 127.0.0.1:{port} backlog 4096
    default_backend upstreams

backend upstreams
    balance leastconn
{servers}"
    )
}

/// Starts HAProxy in the foreground (one process, its threads) on a free
/// port, once it listens.
async fn start_haproxy(
    binary: &Path,
    upstreams: &[SocketAddr],
    cores: usize,
    workdir: &Path,
) -> Result<(Child, SocketAddr), String> {
    let port = free_port()?;
    let config = workdir.join(format!("haproxy-{port}.cfg"));
    std::fs::write(&config, haproxy_config(upstreams, port, cores))
        .map_err(|e| format!("{}: {e}", config.display()))?;
    let log = workdir.join(format!("haproxy-{port}.log"));
    let log_file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut haproxy = process::command(binary)
        .arg("-db")
        .arg("-f")
        .arg(&config)
        .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", binary.display()))?;
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
    process::until_listening(&mut haproxy, "haproxy", &address.to_string(), &log, || true).await?;
    Ok((haproxy, address))
}

/// How the proxies among `contenders` are configured, as each measurement
/// writes it (with its own ports and directory): (label, text).
/// nginx and HAProxy are shown with the first of `options.cores`; an nginx
/// backend as "nginx backend".
pub fn proxy_configs(options: &Options) -> Vec<(String, String)> {
    let ports: Vec<u16> = (0..UPSTREAMS as u16).map(|i| 5000 + i).collect();
    let upstreams: Vec<SocketAddr> = ports.iter().map(|&p| SocketAddr::from(([127, 0, 0, 1], p))).collect();
    let cores = options.cores.first().copied().unwrap_or(1);
    let backend = match &options.backend {
        Backend::Nginx(_) => Some(("nginx backend".to_string(), nginx_backend_config(&ports, Path::new("DIR")))),
        Backend::HikuUpstream(_) => None,
    };
    options
        .contenders
        .iter()
        .filter_map(|c| {
            match &c.proxy {
                Proxy::Nginx { .. } => Some(nginx_config(&upstreams, 9020, cores, Path::new("DIR"))),
                Proxy::Haproxy { .. } => Some(haproxy_config(&upstreams, 9020, cores)),
                Proxy::Direct | Proxy::Scheduler { .. } | Proxy::Tier { .. } => None,
            }
            .map(|text| (c.label.clone(), text))
        })
        .chain(backend)
        .collect()
}

/// Starts nginx on `config` in `dir` (written there), once it listens on
/// `port` with its `cores` workers.
async fn start_nginx(binary: &Path, text: String, port: u16, cores: usize, dir: &Path) -> Result<Nginx, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let config = dir.join("nginx.conf");
    std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
    let log = dir.join("stderr.log");
    let log_file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    // On our death the master gets SIGTERM, and stops its workers itself.
    let master = process::command_dying_with(binary, libc::SIGTERM)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&config)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", binary.display()))?;
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
    let mut master = master;
    let group = master.id().ok_or("nginx exited at once")?;
    let mut workers = Vec::new();
    let up = |workers: &mut Vec<u32>| {
        *workers = procstat::children(group);
        workers.len() >= cores
    };
    process::until_listening(&mut master, "nginx", &address.to_string(), &log, || up(&mut workers)).await.map_err(
        |e| {
            let errors = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            format!("{e}\n{errors}")
        },
    )?;
    Ok(Nginx { master, group, workers, address })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_is_configured_as_fairly_as_nginx() {
        let upstreams: Vec<SocketAddr> = vec!["127.0.0.1:5000".parse().unwrap(), "127.0.0.1:5001".parse().unwrap()];
        let config = haproxy_config(&upstreams, 9020, 2);
        for line in [
            "nbthread 2",
            "mode http",
            "option http-keep-alive",
            "http-reuse always",
            "bind 127.0.0.1:9020 backlog 4096",
            "balance leastconn\n    server upstream0 127.0.0.1:5000 maxconn 100000\n    server upstream1 127.0.0.1:5001",
        ] {
            assert!(config.contains(line), "{line:?} missing from\n{config}");
        }
        assert!(!config.lines().any(|l| l.trim_start().starts_with("log")), "no logging:\n{config}");
    }

    #[test]
    fn the_nginx_backend_answers_every_port_from_one_worker() {
        let config = nginx_backend_config(&[5000, 5001], Path::new("/tmp/x"));
        for line in [
            "worker_processes 1;",
            "daemon off;",
            "listen 127.0.0.1:5000 backlog=4096;\n        listen 127.0.0.1:5001 backlog=4096;",
            "return 200 \"hello world\";",
            "keepalive_requests 1000000;",
            "access_log off;",
        ] {
            assert!(config.contains(line), "{line:?} missing from\n{config}");
        }
        assert!(!config.contains("proxy_pass"), "{config}");
    }

    #[test]
    fn nginx_is_configured_as_a_least_connections_keep_alive_proxy() {
        let upstreams: Vec<SocketAddr> = vec!["127.0.0.1:5000".parse().unwrap(), "127.0.0.1:5001".parse().unwrap()];
        let config = nginx_config(&upstreams, 9020, 2, Path::new("/tmp/x"));
        for line in [
            "worker_processes 2;",
            "daemon off;",
            "pid /tmp/x/nginx.pid;",
            "        least_conn;\n        server 127.0.0.1:5000;\n        server 127.0.0.1:5001;\n        keepalive 256;",
            "listen 127.0.0.1:9020 backlog=4096;",
            "proxy_http_version 1.1;",
            "proxy_set_header Connection \"\";",
            "access_log off;",
        ] {
            assert!(config.contains(line), "{line:?} missing from\n{config}");
        }
    }
}

//! A tier as the README's "Running a tier" runs it: K hiku instances, each
//! knowing every worker, taking the PROXY protocol from the front, serving
//! `/admin/*` on an address of its own, with `cluster.size`,
//! `cluster.peers` and `shutdown_announce_ms` set; HAProxy in front of them
//! (the shipped config rendered for the run's ports, or an L4 front).

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use crate::harness::cluster::{start_scheduler, Scheduler};
use crate::harness::front::{self, Front, Kind};
use crate::harness::process::free_port;

/// How long a stopping instance tells the front before it drains: more
/// than the shipped front's checks take to count it out (3 x 300 ms).
pub const ANNOUNCE_MS: u64 = 1500;

/// What a tier is made of.
pub struct Spec<'a> {
    /// The hiku binary.
    pub hiku: &'a Path,
    /// HAProxy's.
    pub haproxy: &'a Path,
    /// Arguments after `start -c <config>` (`--no-pin`, `--cores N`).
    pub extra: Vec<String>,
    /// The config every instance shares (`host`, `balancer`, `workers`,
    /// ...); each gets its own `port` and the tier's keys added.
    pub config: serde_json::Value,
    pub instances: usize,
    pub front: Kind,
    /// Where the front listens (`host:port`).
    pub address: String,
    /// Where the configs and logs go, and the prefix of their names.
    pub workdir: &'a Path,
    pub name: &'a str,
}

/// One instance: its config, ports and log, and the process while it runs.
pub struct Instance {
    config: PathBuf,
    log: PathBuf,
    extra: Vec<String>,
    /// Its main address (`host:port`), where the front sends calls.
    pub main: String,
    /// Its `admin.listen`.
    pub admin: String,
    running: Option<Scheduler>,
}

impl Instance {
    /// Starts it on its ports; it listens when this returns.
    pub async fn start(&mut self, hiku: &Path) -> Result<(), String> {
        self.running = Some(start_scheduler(hiku, &self.config, &self.extra, &[], &self.main, &self.log).await?);
        Ok(())
    }

    /// Sends `signal` and waits (at most `within`) for the exit.
    pub async fn stop(&mut self, signal: libc::c_int, within: Duration) -> Result<ExitStatus, String> {
        let mut running = self.running.take().ok_or_else(|| format!("instance {} is not running", self.main))?;
        running.signal(signal);
        running.exited(within).await.map_err(|e| format!("instance {}: {e}", self.main))
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().and_then(Scheduler::pid)
    }
}

/// The instances and the front; all are killed when this drops.
pub struct Tier {
    pub instances: Vec<Instance>,
    pub front: Front,
    /// How long after an instance is back the front counts it up again at
    /// the latest: its checks' `rise` successes, one `inter` apart, and one
    /// `inter` more for the first to come.
    pub rise: Duration,
}

/// The rise time of a front's `default-server check inter <ms>ms ... rise
/// <n>` (HAProxy's defaults, 2000 ms and 2, where a config leaves them out).
pub fn rise_time(config: &str) -> Duration {
    let line = config.lines().find(|l| l.trim_start().starts_with("default-server")).unwrap_or("");
    let word_after = |key: &str| {
        let mut words = line.split_whitespace();
        words.find(|w| *w == key).and(words.next())
    };
    let inter = word_after("inter").and_then(|w| w.strip_suffix("ms")?.parse::<u64>().ok()).unwrap_or(2000);
    let rise = word_after("rise").and_then(|w| w.parse::<u64>().ok()).unwrap_or(2);
    Duration::from_millis(inter * (rise + 1))
}

/// Starts the instances, then HAProxy in front of them on `spec.address`.
pub async fn start(spec: Spec<'_>) -> Result<Tier, String> {
    let ports: Vec<(u16, u16)> =
        (0..spec.instances).map(|_| Ok((free_port()?, free_port()?))).collect::<Result<_, String>>()?;
    let admins: Vec<String> = ports.iter().map(|(_, admin)| format!("127.0.0.1:{admin}")).collect();
    let mut instances = Vec::new();
    for (i, &(port, _)) in ports.iter().enumerate() {
        let peers: Vec<&String> = admins.iter().filter(|a| **a != admins[i]).collect();
        let mut json = spec.config.clone();
        let object = json.as_object_mut().ok_or("a tier's config must be a JSON object")?;
        object.insert("port".into(), port.into());
        object.insert("front".into(), serde_json::json!({"proxy_protocol": true, "trusted_proxies": ["127.0.0.1"]}));
        object.insert("admin".into(), serde_json::json!({"listen": admins[i]}));
        object.insert("cluster".into(), serde_json::json!({"size": spec.instances, "peers": peers}));
        object.insert("shutdown_announce_ms".into(), ANNOUNCE_MS.into());
        let config = spec.workdir.join(format!("{}-{i}.json", spec.name));
        std::fs::write(&config, json.to_string()).map_err(|e| format!("{}: {e}", config.display()))?;
        let mut instance = Instance {
            config,
            log: spec.workdir.join(format!("{}-{i}.log", spec.name)),
            extra: spec.extra.clone(),
            main: format!("127.0.0.1:{port}"),
            admin: admins[i].clone(),
            running: None,
        };
        instance.start(spec.hiku).await?;
        instances.push(instance);
    }
    let mains: Vec<String> = instances.iter().map(|i| i.main.clone()).collect();
    let config = match spec.front {
        Kind::FnHash => {
            let shipped = std::fs::read_to_string(front::SHIPPED).map_err(|e| format!("{}: {e}", front::SHIPPED))?;
            let internal = format!("127.0.0.1:{}", free_port()?);
            let socket = spec.workdir.join(format!("{}-haproxy.sock", spec.name)).display().to_string();
            let binds = front::Binds { public: &spec.address, internal: &internal, socket: &socket };
            front::render(&shipped, &binds, &mains, &admins)
        }
        Kind::L4 => front::l4(&spec.address, &mains),
    };
    let cfg = spec.workdir.join(format!("{}-haproxy.cfg", spec.name));
    let log = spec.workdir.join(format!("{}-haproxy.log", spec.name));
    let front = front::start(spec.haproxy, &config, &cfg, &spec.address, &log).await?;
    Ok(Tier { instances, front, rise: rise_time(&config) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rise_time_comes_from_the_fronts_checks() {
        let shipped = std::fs::read_to_string(front::SHIPPED).unwrap();
        // config/tier/haproxy.cfg: inter 300ms, rise 2.
        assert_eq!(rise_time(&shipped), Duration::from_millis(900));
        assert_eq!(rise_time(&front::l4("127.0.0.1:1", &["127.0.0.1:2".to_string()])), Duration::from_millis(900));
        assert_eq!(rise_time("backend b\n    default-server check\n"), Duration::from_millis(6000));
    }
}

//! A tier of hiku instances behind HAProxy, as the README's "Running a
//! tier" runs it: the front config hiku ships (`config/tier/haproxy.cfg`,
//! balancing on the function name) rendered for loopback ports, or an L4
//! (TCP, round-robin) front for comparison.

use std::path::{Path, PathBuf};

use tokio::process::Child;

use crate::harness::process::{command, until_listening};

/// The front config hiku ships.
pub const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/tier/haproxy.cfg");

/// How a front spreads calls over the instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The shipped config: consistent hashing on the function name.
    FnHash,
    /// TCP round-robin: a connection sticks to one instance, whatever it carries.
    L4,
}

impl Kind {
    pub fn parse(text: &str) -> Result<Kind, String> {
        match text {
            "fnhash" => Ok(Kind::FnHash),
            "l4" => Ok(Kind::L4),
            other => Err(format!("unknown front {other:?}: fnhash or l4")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::FnHash => "fnhash",
            Kind::L4 => "l4",
        }
    }
}

pub use crate::harness::shipped_front::{render, Binds};

/// An L4 front: each client connection to one instance in turn, with the
/// PROXY protocol as the shipped front sends it, and TCP checks.
pub fn l4(bind: &str, instances: &[String]) -> String {
    let mut cfg = format!(
        "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 310s\n    timeout server 310s\n\n\
         frontend hiku\n    bind {bind}\n    default_backend instances\n\n\
         backend instances\n    balance roundrobin\n    default-server check inter 300ms fall 3 rise 2 send-proxy-v2\n"
    );
    for (i, addr) in instances.iter().enumerate() {
        cfg.push_str(&format!("    server hiku{} {addr}\n", i + 1));
    }
    cfg
}

/// HAProxy running `config` (written to `path`), listening on `address`.
pub struct Front {
    child: Child,
}

impl Front {
    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// Starts `haproxy` on `config` and waits until `address` takes connections.
pub async fn start(haproxy: &Path, config: &str, path: &Path, address: &str, log: &Path) -> Result<Front, String> {
    std::fs::write(path, config).map_err(|e| format!("{}: {e}", path.display()))?;
    let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = command(haproxy)
        .arg("-db")
        .arg("-f")
        .arg(path)
        .stdout(std::process::Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", haproxy.display()))?;
    until_listening(&mut child, "HAProxy", address, log, || true).await?;
    Ok(Front { child })
}

/// The HAProxy binary: `haproxy` on the PATH, or in /usr/sbin.
pub fn haproxy() -> PathBuf {
    let sbin = PathBuf::from("/usr/sbin/haproxy");
    if sbin.exists() {
        sbin
    } else {
        PathBuf::from("haproxy")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_is_rendered_for_the_instances_given() {
        let template = std::fs::read_to_string(SHIPPED).unwrap();
        let instances = ["127.0.0.1:1".to_string(), "127.0.0.1:2".to_string(), "127.0.0.1:3".to_string()];
        let admins = ["127.0.0.1:11".to_string(), "127.0.0.1:12".to_string(), "127.0.0.1:13".to_string()];
        let binds = Binds { public: &"127.0.0.1:9", internal: &"127.0.0.1:8", socket: &"/tmp/front.sock" };
        let cfg = render(&template, &binds, &instances, &admins);
        assert!(cfg.contains("frontend hiku\n    bind 127.0.0.1:9\n"), "{cfg}");
        assert!(cfg.contains("frontend hiku_internal\n    bind 127.0.0.1:8\n"), "{cfg}");
        assert!(cfg.contains("    stats socket /tmp/front.sock mode 660 level admin\n"), "{cfg}");
        assert!(cfg.contains("balance hash path,field(3,/)") && cfg.contains("hash-type consistent"));
        assert!(cfg.contains("    server hiku3 127.0.0.1:3\n") && cfg.contains("    server hiku3 127.0.0.1:13\n"));
        assert_eq!(cfg.matches("    server hiku").count(), 6, "{cfg}");
        let l4 = l4("127.0.0.1:9", &instances);
        assert!(
            l4.contains("mode tcp") && l4.contains("balance roundrobin") && l4.contains("server hiku2 127.0.0.1:2")
        );
        assert_eq!(Kind::parse("fnhash"), Ok(Kind::FnHash));
        assert!(Kind::parse("dns").is_err());
    }
}

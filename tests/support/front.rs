//! HAProxy in front of hiku instances, on the tier config hiku ships
//! (`config/tier/haproxy.cfg`), rendered for loopback ports.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::wait_for;

/// The shipped front config.
pub const HAPROXY_CFG: &str = include_str!("../../config/tier/haproxy.cfg");

/// The HAProxy binary; a test that needs it and finds none fails saying so.
pub fn haproxy() -> PathBuf {
    let candidates = ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy", "/usr/bin/haproxy"];
    let found = candidates.iter().map(PathBuf::from).find(|p| p.exists());
    found.unwrap_or_else(|| panic!("HAProxy is needed for the tier tests and is not installed: .ci/run installs it"))
}

/// A port free now on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The shipped config with the front on `bind`, and in each backend one
/// `server` line per instance: `instances` (main addresses) for the
/// functions, `admins` (their `admin.listen`) for `/admin/*`.
pub fn render(template: &str, bind: SocketAddr, instances: &[SocketAddr], admins: &[SocketAddr]) -> String {
    let mut out = String::new();
    let mut backend = "";
    for line in template.lines() {
        let trimmed = line.trim_start();
        if let Some(name) = trimmed.strip_prefix("backend ") {
            backend = if name.trim() == "any_instance" { "admin" } else { "functions" };
        }
        if trimmed.starts_with("bind ") {
            out.push_str(&format!("    bind {bind}\n"));
        } else if trimmed.starts_with("server hiku1 ") {
            let addrs = if backend == "admin" { admins } else { instances };
            for (i, addr) in addrs.iter().enumerate() {
                out.push_str(&format!("    server hiku{} {addr}\n", i + 1));
            }
        } else if !trimmed.starts_with("server hiku") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// HAProxy running a rendered config, killed on drop.
pub struct Front {
    child: Child,
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Front {
    /// Starts HAProxy on the shipped config in front of `instances` (and
    /// their `admins`), and waits until it takes connections.
    pub fn start(instances: &[SocketAddr], admins: &[SocketAddr]) -> Front {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let dir = std::env::temp_dir().join(format!("hiku-front-{}-{}", std::process::id(), addr.port()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, render(HAPROXY_CFG, addr, instances, admins)).unwrap();
        let log = std::fs::File::create(dir.join("haproxy.log")).unwrap();
        let child = Command::new(haproxy())
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("HAProxy starts");
        let mut front = Front { child, addr, dir };
        wait_for("HAProxy to take connections", || {
            let exited = front.child.try_wait().unwrap();
            assert!(exited.is_none(), "HAProxy exited ({exited:?}): {}", front.log());
            TcpStream::connect(addr).is_ok()
        });
        front
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

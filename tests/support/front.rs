//! HAProxy in front of hiku instances, on the tier config hiku ships
//! (`config/tier/haproxy.cfg`), rendered for loopback ports.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::wait_for;

/// The shipped front configs.
pub const HAPROXY_CFG: &str = include_str!("../../config/tier/haproxy.cfg");
pub const NGINX_CONF: &str = include_str!("../../config/tier/nginx.conf");

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

// The shipped HAProxy config rendered for given addresses: the same code
// perf/ renders it with.
#[path = "../../perf/src/harness/shipped_front.rs"]
mod shipped_front;
pub use shipped_front::{render, Binds};

/// The shipped nginx config with the front on `bind` (its public server)
/// and `internal` (the admin one), and in each upstream one `server` line
/// per instance: `instances` for the functions, `admins` for `/admin/*`.
pub fn render_nginx(
    template: &str,
    bind: SocketAddr,
    internal: SocketAddr,
    instances: &[SocketAddr],
    admins: &[SocketAddr],
) -> String {
    let mut out = String::new();
    let (mut admin_upstream, mut servers) = (false, 0);
    for line in template.lines() {
        let trimmed = line.trim_start();
        if let Some(name) = trimmed.strip_prefix("upstream ") {
            admin_upstream = name.starts_with("hiku_any");
        }
        if trimmed.starts_with("listen ") {
            servers += 1;
            out.push_str(&format!("        listen {};\n", if servers == 1 { bind } else { internal }));
        } else if trimmed.starts_with("server 10.0.0.11:") {
            let (addrs, rest) = (if admin_upstream { admins } else { instances }, trimmed.split_once(' ').unwrap().1);
            let options = rest.split_once(' ').map_or("", |(_, o)| o).trim_end_matches(';');
            for addr in addrs {
                out.push_str(&format!("        server {addr} {options};\n"));
            }
        } else if !trimmed.starts_with("server 10.0.0.") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The nginx binary; a test that needs it and finds none fails saying so.
pub fn nginx() -> PathBuf {
    let found =
        ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"].iter().map(PathBuf::from).find(|p| p.exists());
    found.unwrap_or_else(|| panic!("nginx is needed for the tier tests and is not installed: .ci/run installs it"))
}

/// HAProxy or nginx running a rendered config, killed on drop.
pub struct Front {
    child: Child,
    /// Where it takes calls, and its internal address, for the admin
    /// endpoints.
    pub addr: SocketAddr,
    pub internal: SocketAddr,
    dir: PathBuf,
}

impl Front {
    /// Starts HAProxy on the shipped config in front of `instances` (and
    /// their `admins`), and waits until it takes connections.
    pub fn start(instances: &[SocketAddr], admins: &[SocketAddr]) -> Front {
        Front::launch("haproxy", |dir, addr, internal| {
            let (cfg, socket) = (dir.join("haproxy.cfg"), dir.join("haproxy.sock").display().to_string());
            let binds = Binds { public: &addr, internal: &internal, socket: &socket };
            std::fs::write(&cfg, render(HAPROXY_CFG, &binds, instances, admins)).unwrap();
            let mut cmd = Command::new(haproxy());
            cmd.arg("-db").arg("-f").arg(&cfg);
            cmd
        })
    }

    /// The same with nginx on its shipped config.
    pub fn start_nginx(instances: &[SocketAddr], admins: &[SocketAddr]) -> Front {
        Front::launch("nginx", |dir, addr, internal| {
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, render_nginx(NGINX_CONF, addr, internal, instances, admins)).unwrap();
            let mut cmd = Command::new(nginx());
            cmd.arg("-p").arg(dir).arg("-c").arg(&conf).arg("-e").arg(dir.join("error.log"));
            cmd.arg("-g").arg(format!("daemon off; pid {};", dir.join("nginx.pid").display()));
            // Its workers die with it (killed on drop: the master alone would leave them).
            cmd.process_group(0);
            cmd
        })
    }

    fn launch(name: &str, command: impl FnOnce(&std::path::Path, SocketAddr, SocketAddr) -> Command) -> Front {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let internal: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let dir = std::env::temp_dir().join(format!("hiku-front-{name}-{}-{}", std::process::id(), addr.port()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("front.log")).unwrap();
        let child = command(&dir, addr, internal).stdout(Stdio::null()).stderr(log).spawn().expect("the front starts");
        let mut front = Front { child, addr, internal, dir };
        wait_for("the front to take connections", || {
            let exited = front.child.try_wait().unwrap();
            assert!(exited.is_none(), "the front exited ({exited:?}): {}", front.log());
            TcpStream::connect(addr).is_ok()
        });
        front
    }

    pub fn log(&self) -> String {
        let log = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        log("front.log") + &log("error.log")
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        // The whole group: nginx's workers too.
        // SAFETY: kill(2) on the group of our own child (a leader only when we made it one).
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

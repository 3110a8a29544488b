//! The front config hiku ships (`config/tier/haproxy.cfg`) rendered for
//! given addresses. Plain std, no crate paths: hiku's own tier tests
//! include this file too (`tests/support/front.rs`), so both run the same
//! rendering.

use std::fmt::Display;

/// Where a rendered front listens: its public address (calls, `/health`),
/// its internal one (`/admin/*`, `/status`, `/metrics`), and the path of
/// its runtime API's socket.
pub struct Binds<'a> {
    pub public: &'a dyn Display,
    pub internal: &'a dyn Display,
    pub socket: &'a dyn Display,
}

/// `template` on `binds`, and in each backend one `server` line per
/// instance: `instances` (main addresses) for the functions, `admins`
/// (their `admin.listen`) in `any_instance`, for the admin endpoints.
pub fn render(template: &str, binds: &Binds, instances: &[impl Display], admins: &[impl Display]) -> String {
    let mut out = String::new();
    let (mut admin_backend, mut internal) = (false, false);
    for line in template.lines() {
        let trimmed = line.trim_start();
        if let Some(name) = trimmed.strip_prefix("backend ") {
            admin_backend = name.trim() == "any_instance";
        }
        if let Some(name) = trimmed.strip_prefix("frontend ") {
            internal = name.trim() == "hiku_internal";
        }
        if trimmed.starts_with("bind ") {
            let bind = if internal { binds.internal } else { binds.public };
            out.push_str(&format!("    bind {bind}\n"));
        } else if let Some(rest) = trimmed.strip_prefix("stats socket ") {
            let options = rest.split_once(' ').map_or("", |(_, o)| o);
            out.push_str(&format!("    stats socket {} {options}\n", binds.socket));
        } else if trimmed.starts_with("server hiku1 ") {
            let servers: Vec<String> = match admin_backend {
                true => admins.iter().map(ToString::to_string).collect(),
                false => instances.iter().map(ToString::to_string).collect(),
            };
            for (i, addr) in servers.iter().enumerate() {
                out.push_str(&format!("    server hiku{} {addr}\n", i + 1));
            }
        } else if !trimmed.starts_with("server hiku") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

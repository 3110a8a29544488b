//! The front config hiku ships (`config/tier/haproxy.cfg`) rendered for
//! given addresses. Plain std, no crate paths: hiku's own tier tests
//! include this file too (`tests/support/front.rs`), so both run the same
//! rendering.

use std::fmt::Display;

/// `template` with the front on `bind`, and in each backend one `server`
/// line per instance: `instances` (main addresses) for the functions,
/// `admins` (their `admin.listen`) in `any_instance`, for `/admin/*`.
pub fn render(template: &str, bind: impl Display, instances: &[impl Display], admins: &[impl Display]) -> String {
    let mut out = String::new();
    let mut admin_backend = false;
    for line in template.lines() {
        let trimmed = line.trim_start();
        if let Some(name) = trimmed.strip_prefix("backend ") {
            admin_backend = name.trim() == "any_instance";
        }
        if trimmed.starts_with("bind ") {
            out.push_str(&format!("    bind {bind}\n"));
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

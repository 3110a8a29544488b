//! Where a request goes, by its path, and who may send it there: every
//! endpoint is one [`Endpoint`], which says whether it lives on
//! `admin.listen`, needs the admin token, or is taken from workers only.

use std::net::IpAddr;

use crate::config::Config;
use crate::error::Error;
use crate::scheduler::Scheduler;

/// A request's destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/run/<fn>`: to a worker.
    Run(&'a str),
    /// One of hiku's own endpoints, with its argument: the function of
    /// `/destroySandbox/<fn>`, the query of the others.
    Local(Endpoint, &'a str),
}

/// hiku's own endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    DestroySandbox,
    /// `/health`: whether this instance takes calls, for a front's checks.
    Health,
    Status,
    Metrics,
    /// `/admin/workers`: the worker list (what a starting peer asks for).
    Workers,
    AddWorkers,
    RemoveWorkers,
    Instances,
    Reload,
}

impl Endpoint {
    /// A change an instance passes on to its peers (`cluster.peers`).
    pub fn changes_the_tier(self) -> bool {
        matches!(self, Endpoint::AddWorkers | Endpoint::RemoveWorkers | Endpoint::Reload)
    }

    /// Served on `admin.listen` (when set) and nowhere else.
    pub fn admin_only(self) -> bool {
        !matches!(self, Endpoint::DestroySandbox | Endpoint::Health)
    }

    /// Needs `Authorization: Bearer <admin.token>` (when set).
    pub fn needs_token(self) -> bool {
        matches!(
            self,
            Endpoint::Workers | Endpoint::AddWorkers | Endpoint::RemoveWorkers | Endpoint::Instances | Endpoint::Reload
        )
    }

    /// Taken only from a worker's address (with
    /// `destroy_sandbox.only_from_workers`).
    pub fn workers_only(self) -> bool {
        matches!(self, Endpoint::DestroySandbox)
    }
}

/// The route of `path` (with `query`), as the Go original routes: a `/run`
/// or `/destroySandbox` path without exactly one function name is a 400,
/// any other unknown path a 404.
pub fn route<'a>(path: &'a str, query: &'a str) -> Result<Route<'a>, Error> {
    let local = match path {
        "/status" => Some(Endpoint::Status),
        "/health" => Some(Endpoint::Health),
        "/admin/workers" => Some(Endpoint::Workers),
        "/admin/workers/add" => Some(Endpoint::AddWorkers),
        "/admin/workers/remove" => Some(Endpoint::RemoveWorkers),
        "/admin/instances" => Some(Endpoint::Instances),
        "/admin/reload" => Some(Endpoint::Reload),
        "/metrics" => Some(Endpoint::Metrics),
        _ => None,
    };
    if let Some(endpoint) = local {
        return Ok(Route::Local(endpoint, query));
    }
    let not_found = || Error::NotFound(format!("no such endpoint: {path}"));
    let mut segments = path.trim_matches('/').split('/');
    let first = segments.next().unwrap_or("");
    if first != "run" && first != "destroySandbox" {
        return Err(not_found());
    }
    match (segments.next(), segments.next()) {
        (Some(f), None) if !f.is_empty() && first == "run" => Ok(Route::Run(f)),
        (Some(f), None) if !f.is_empty() => Ok(Route::Local(Endpoint::DestroySandbox, f)),
        _ => Err(Error::BadRequest(format!("could not find a function name in path {path}"))),
    }
}

/// Who sent a request, as far as the route's rules go.
pub struct Sender<'a> {
    /// It came in on `admin.listen`.
    pub on_admin_listener: bool,
    pub peer: IpAddr,
    pub headers: &'a [httparse::Header<'a>],
}

/// Routes `path` for `from`: with `admin.listen` set, its endpoints are
/// there alone and nothing else is but `/health` (404); an endpoint that needs the token
/// without it is a 401; `destroySandbox` from an address that is no
/// worker's a 403, where the config says so.
pub fn admit<'a>(
    path: &'a str,
    query: &'a str,
    from: &Sender,
    config: &Config,
    scheduler: &Scheduler,
) -> Result<Route<'a>, Error> {
    let routed = route(path, query);
    let admin_only = matches!(routed, Ok(Route::Local(endpoint, _)) if endpoint.admin_only());
    let anywhere = matches!(routed, Ok(Route::Local(Endpoint::Health, _)));
    if config.admin.listen.is_some() && admin_only != from.on_admin_listener && !anywhere {
        return Err(Error::NotFound(format!("no such endpoint: {path}")));
    }
    let routed = routed?;
    let Route::Local(endpoint, _) = routed else { return Ok(routed) };
    if endpoint.workers_only() && config.destroy_sandbox.only_from_workers && !from_a_worker(scheduler, from.peer) {
        let why = format!("destroySandbox is taken only from workers, not from {}", from.peer);
        return Err(Error::Forbidden(why));
    }
    if endpoint.needs_token() && !token_given(config, from.headers) {
        return Err(Error::Unauthorized);
    }
    Ok(routed)
}

/// Whether `peer` is an address of a worker (as its name resolved).
fn from_a_worker(scheduler: &Scheduler, peer: IpAddr) -> bool {
    scheduler.workers().iter().any(|w| w.addrs().iter().any(|a| a.ip().to_canonical() == peer))
}

/// Whether an admin request may go on: no `admin.token`, or it carries
/// `Authorization: Bearer <token>` (compared in constant time).
fn token_given(config: &Config, headers: &[httparse::Header]) -> bool {
    let Some(token) = &config.admin.token else { return true };
    let given = headers.iter().filter(|h| h.name.eq_ignore_ascii_case("authorization")).map(|h| h.value);
    given.into_iter().any(|value| {
        let value = value.trim_ascii();
        match value.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => {
                constant_time_eq(value[7..].trim_ascii_start(), token.as_bytes())
            }
            _ => false,
        }
    })
}

/// `a == b`, taking the same time whatever the bytes (the length of `b`,
/// the secret, leaks only as the loop count over the longer of the two).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        for other in [&b""[..], b"s3cre", b"s3cret2", b"S3cret", b"s3cre\xff"] {
            assert!(!constant_time_eq(other, b"s3cret"), "{other:?}");
        }
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn routes_like_the_go_original() {
        let ok = |path| route(path, "q").unwrap();
        let status = |path| route(path, "").unwrap_err().status();
        assert_eq!(ok("/run/f"), Route::Run("f"));
        assert_eq!(ok("/run/f/"), Route::Run("f"));
        for bad in ["/run/", "/run", "/run/f/g", "/run//f", "/destroySandbox/"] {
            assert_eq!(status(bad), 400, "{bad}");
        }
        assert_eq!(ok("/destroySandbox/f"), Route::Local(Endpoint::DestroySandbox, "f"));
        assert_eq!(ok("/status"), Route::Local(Endpoint::Status, "q"));
        assert_eq!(ok("/health"), Route::Local(Endpoint::Health, "q"));
        assert_eq!(ok("/admin/workers"), Route::Local(Endpoint::Workers, "q"));
        assert_eq!(ok("/admin/workers/add"), Route::Local(Endpoint::AddWorkers, "q"));
        assert_eq!(ok("/admin/workers/remove"), Route::Local(Endpoint::RemoveWorkers, "q"));
        assert_eq!(ok("/admin/instances"), Route::Local(Endpoint::Instances, "q"));
        assert_eq!(ok("/admin/reload"), Route::Local(Endpoint::Reload, "q"));
        assert_eq!(ok("/metrics"), Route::Local(Endpoint::Metrics, "q"));
        for missing in ["/", "/runner/f", "/status/x"] {
            assert_eq!(status(missing), 404, "{missing}");
        }
    }
}

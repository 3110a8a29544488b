//! Where a request goes, by its path, and who may send it there: every
//! endpoint is one [`Endpoint`], which says whether it lives on
//! `admin.listen`, needs the admin token, or is taken from workers only.

use std::net::IpAddr;

use crate::config::Config;
use crate::error::Error;
use crate::scheduler::Scheduler;

/// A request's destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    /// `/run/<fn>`: to a worker.
    Run(&'a str),
    /// One of hiku's own endpoints, with its argument: the function of
    /// `/destroySandbox/<fn>`, the query of the others.
    Local(Endpoint, &'a str),
}

/// hiku's own endpoints, in the order of [`ENDPOINTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Status,
    /// `/health`: whether this instance takes calls, for a front's checks.
    Health,
    Metrics,
    /// `/admin/workers`: the worker list (what a starting peer asks for).
    Workers,
    AddWorkers,
    RemoveWorkers,
    Instances,
    Reload,
    /// `/destroySandbox/<fn>`: a worker's report of an evicted instance.
    DestroySandbox,
}

/// Which listener an endpoint is served on when `admin.listen` is set
/// (without it, every endpoint is on `host:port`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    /// `host:port` alone, with the calls.
    Main,
    /// `admin.listen` alone.
    Admin,
    /// Both.
    Both,
}

/// An endpoint, its path, and who may call it: on which listener, whether
/// it needs `Authorization: Bearer <admin.token>` (when set), whether it is
/// taken from a worker's address only (with
/// `destroy_sandbox.only_from_workers`), and whether an instance passes it
/// on to its peers (`cluster.peers`). Any method is taken, as the Go
/// original takes any.
#[derive(Debug)]
pub(crate) struct Spec {
    pub(crate) endpoint: Endpoint,
    /// The path; one ending in `/` is followed by a function name.
    pub(crate) path: &'static str,
    pub(crate) listener: Listener,
    pub(crate) needs_token: bool,
    pub(crate) workers_only: bool,
    pub(crate) changes_the_tier: bool,
}

/// Every endpoint of hiku's own (`/run/<fn>` goes to a worker).
pub(crate) const ENDPOINTS: [Spec; 9] = {
    const fn spec(endpoint: Endpoint, path: &'static str, listener: Listener, needs_token: bool) -> Spec {
        Spec { endpoint, path, listener, needs_token, workers_only: false, changes_the_tier: false }
    }
    use Endpoint::*;
    use Listener::*;
    [
        spec(Status, "/status", Admin, false),
        spec(Health, "/health", Both, false),
        spec(Metrics, "/metrics", Admin, false),
        spec(Workers, "/admin/workers", Admin, true),
        Spec { changes_the_tier: true, ..spec(AddWorkers, "/admin/workers/add", Admin, true) },
        Spec { changes_the_tier: true, ..spec(RemoveWorkers, "/admin/workers/remove", Admin, true) },
        spec(Instances, "/admin/instances", Admin, true),
        Spec { changes_the_tier: true, ..spec(Reload, "/admin/reload", Admin, true) },
        Spec { workers_only: true, ..spec(DestroySandbox, "/destroySandbox/", Main, false) },
    ]
};

impl Endpoint {
    /// Its row of [`ENDPOINTS`].
    pub(crate) fn spec(self) -> &'static Spec {
        &ENDPOINTS[self as usize]
    }
}

/// The route of `path` (with `query`), as the Go original routes: a `/run`
/// or `/destroySandbox` path without exactly one function name is a 400,
/// any other unknown path a 404.
pub(crate) fn route<'a>(path: &'a str, query: &'a str) -> Result<Route<'a>, Error> {
    if let Some(spec) = ENDPOINTS.iter().find(|s| s.path == path && !s.path.ends_with('/')) {
        return Ok(Route::Local(spec.endpoint, query));
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
pub(crate) struct Sender<'a> {
    /// It came in on `admin.listen`.
    pub(crate) on_admin_listener: bool,
    pub(crate) peer: IpAddr,
    pub(crate) headers: &'a [httparse::Header<'a>],
}

/// Routes `path` for `from`: with `admin.listen` set, its endpoints are
/// there alone and nothing else is but `/health` (404); an endpoint that needs the token
/// without it is a 401; `destroySandbox` from an address that is no
/// worker's a 403, where the config says so.
pub(crate) fn admit<'a>(
    path: &'a str,
    query: &'a str,
    from: &Sender,
    config: &Config,
    scheduler: &Scheduler,
) -> Result<Route<'a>, Error> {
    let routed = route(path, query);
    let listener = match routed {
        Ok(Route::Local(endpoint, _)) => endpoint.spec().listener,
        _ => Listener::Main,
    };
    let here = if from.on_admin_listener { Listener::Admin } else { Listener::Main };
    if config.admin.listen.is_some() && listener != Listener::Both && listener != here {
        return Err(Error::NotFound(format!("no such endpoint: {path}")));
    }
    let routed = routed?;
    let Route::Local(endpoint, _) = routed else { return Ok(routed) };
    let spec = endpoint.spec();
    if spec.workers_only && config.destroy_sandbox.only_from_workers && !from_a_worker(scheduler, from.peer) {
        let why = format!("destroySandbox is taken only from workers, not from {}", from.peer);
        return Err(Error::Forbidden(why));
    }
    if spec.needs_token && !token_given(config, from.headers) {
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
    fn the_table_is_in_the_order_of_its_endpoints() {
        for (i, spec) in ENDPOINTS.iter().enumerate() {
            assert_eq!(spec.endpoint as usize, i, "{spec:?}");
            assert_eq!(spec.endpoint.spec().path, spec.path);
        }
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

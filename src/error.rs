//! Every way a request can fail, each mapped to exactly one HTTP answer.

use std::fmt;
use std::time::Duration;

#[derive(Debug)]
pub enum Error {
    /// The request can't be parsed or framed (RFC 9112), or names no route.
    BadRequest(String),
    NotFound(String),
    /// An admin endpoint without the admin token.
    Unauthorized,
    /// A request from an address that may not make it.
    Forbidden(String),
    /// The request head is larger than `bytes` or has more than `fields` fields.
    HeadTooLarge {
        bytes: usize,
        fields: usize,
    },
    /// A body over the limit (in bytes) of the endpoint.
    BodyTooLarge(u64),
    /// A config reload found the file unusable (hiku runs as before).
    ConfigRefused(String),
    /// A transfer coding other than chunked.
    NotImplemented(String),
    /// The client did not send `what` within the time.
    ClientTimeout {
        what: &'static str,
        within: Duration,
    },
    NoWorkers,
    /// Every worker was full, and the queue too, or the wait was too long.
    Overloaded(String),
    /// No connection to the worker, or it failed before any response byte.
    WorkerUnreachable {
        worker: String,
        cause: String,
    },
    /// The worker answered something that is not a valid HTTP/1.1 response.
    BadResponse {
        worker: String,
        cause: String,
    },
    /// The worker sent no response head within the time.
    WorkerTimeout {
        worker: String,
        within: Duration,
    },
}

impl Error {
    pub(crate) fn status(&self) -> u16 {
        match self {
            Error::BadRequest(_) => 400,
            Error::NotFound(_) => 404,
            Error::Unauthorized => 401,
            Error::Forbidden(_) => 403,
            Error::ClientTimeout { .. } => 408,
            Error::BodyTooLarge(_) => 413,
            Error::ConfigRefused(_) => 422,
            Error::HeadTooLarge { .. } => 431,
            Error::NotImplemented(_) => 501,
            Error::NoWorkers | Error::Overloaded(_) => 503,
            Error::WorkerUnreachable { .. } | Error::BadResponse { .. } => 502,
            Error::WorkerTimeout { .. } => 504,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadRequest(m)
            | Error::NotFound(m)
            | Error::NotImplemented(m)
            | Error::Forbidden(m)
            | Error::Overloaded(m) => f.write_str(m),
            Error::ConfigRefused(m) => write!(f, "config reload refused, running as before: {m}"),
            Error::Unauthorized => f.write_str("admin endpoints need Authorization: Bearer <admin.token>"),
            Error::BodyTooLarge(limit) => write!(f, "body larger than {limit} bytes"),
            Error::HeadTooLarge { bytes, fields } => {
                write!(f, "request head larger than {bytes} bytes or {fields} fields")
            }
            Error::NoWorkers => f.write_str("can't select a worker: no workers"),
            Error::WorkerUnreachable { worker, cause } => write!(f, "worker {worker} unreachable: {cause}"),
            Error::BadResponse { worker, cause } => write!(f, "worker {worker} sent an invalid response: {cause}"),
            Error::ClientTimeout { what, within } => write!(f, "no {what} within {} ms", within.as_millis()),
            Error::WorkerTimeout { worker, within } => {
                write!(f, "worker {worker} sent no response within {} ms", within.as_millis())
            }
        }
    }
}

impl std::error::Error for Error {}

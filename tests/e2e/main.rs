//! End-to-end: the real `hiku` binary in front of test workers, checked on
//! the wire, endpoint by endpoint, a module per area.
//!
//! Every test runs twice, once on each I/O driver: `area::name::auto` leaves
//! the choice to hiku (io_uring where the kernel allows it, `HIKU_IO` not
//! set), `area::name::epoll` forces hiku onto the epoll driver it falls back
//! to where io_uring is blocked (`HIKU_IO=epoll`). `cargo test --test e2e
//! name::epoll` runs one; `cargo test --test e2e ::epoll` all on epoll.
//!
//! A test is a `fn name(driver: Driver)` that starts hiku with
//! `Hiku::on(driver)`, with `on_both_drivers!(name);` above it.

// An area test that `on_both_drivers!` does not name would never run: a
// compile error, not a test quietly left out.
#![deny(dead_code)]

#[path = "../support/mod.rs"]
mod support;

/// Makes each named `fn name(driver: Driver)` of the module it is used in
/// into two tests, `name::auto` and `name::epoll`: the test on
/// [`support::Driver::Auto`] and on [`support::Driver::Epoll`].
macro_rules! on_both_drivers {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[test]
            fn auto() {
                super::$name($crate::support::Driver::Auto)
            }

            #[test]
            fn epoll() {
                super::$name($crate::support::Driver::Epoll)
            }
        }
    )+};
}

// The areas: the `// ---- area ----` sections of the one file (cases.rs,
// included twice) these tests were in before.
mod access_log;
mod adaptive;
mod admin_protection;
mod admin_workers;
mod balancers;
mod bodies;
mod destroy_sandbox;
mod fairness;
mod forwarding;
mod front;
mod health;
mod limits;
mod shards;
mod signals;
mod status;
mod tier;
mod time_limits;

//! `hiku-upstream`: trivial HTTP/1.1 upstreams for `perf/throughput`, all
//! on one thread. Prints `upstream <url>` per server on stdout once all
//! listen, then answers every request `200 hello world` until killed.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use hiku_perf::throughput::upstream;

#[derive(Parser)]
#[command(name = "hiku-upstream", version, about = "Trivial fast HTTP/1.1 upstreams for perf/throughput")]
struct Cli {
    /// Servers to run, one port each on 127.0.0.1
    #[arg(long, default_value_t = 2)]
    servers: usize,
    /// The first server's port, the next ones after it [default: ports the OS picks]
    #[arg(long, default_value_t = 0)]
    port: u16,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    hiku_perf::harness::process::raise_open_file_limit();
    let listeners = match upstream::bind_from(cli.servers, cli.port) {
        Ok(listeners) => listeners,
        Err(e) => {
            eprintln!("hiku-upstream: cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    for listener in &listeners {
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let _ = writeln!(out, "upstream http://127.0.0.1:{port}");
    }
    let _ = out.flush();
    drop(out);
    match upstream::serve(listeners) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hiku-upstream: {e}");
            ExitCode::FAILURE
        }
    }
}

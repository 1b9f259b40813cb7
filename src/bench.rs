//! The load generator (`dyspatcher bench`): simulated members join a server and exchange sealed
//! messages while deliveries, latency, losses and the server's CPU and memory are measured.

use argh::FromArgs;

/// measure a dyspatcher server with simulated members (loopback only by default)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "bench")]
pub struct BenchArgs {
    /// the server's WebSocket URL (default: start one in this process on 127.0.0.1)
    #[argh(option)]
    pub url: Option<String>,
}

/// Runs the load generator; returns the process exit code.
pub fn run(args: BenchArgs) -> i32 {
    eprintln!("dyspatcher bench: not built yet ({args:?})");
    1
}

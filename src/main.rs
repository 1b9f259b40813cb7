//! The `dyspatcher` executable: parse the command line, then run the server or the terminal
//! client. Everything else lives in the library.

use argh::FromArgs;
use dyspatcher::cli::{Args, Command};
use dyspatcher::config::Config;

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let strs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let args = match Args::from_args(&["dyspatcher"], &strs[1..]) {
        Ok(args) => args,
        Err(early) => match early.status {
            Ok(()) => {
                println!("{}", early.output);
                std::process::exit(0);
            }
            Err(()) => {
                eprintln!("dyspatcher: {}", early.output.trim_end());
                std::process::exit(2);
            }
        },
    };
    if args.version {
        println!("dyspatcher {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    if let Some(Command::Connect(c)) = args.command {
        std::process::exit(dyspatcher::terminal::connect(c));
    }
    let config = match Config::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dyspatcher: {e}");
            std::process::exit(2);
        }
    };
    let running = match dyspatcher::server::start(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dyspatcher: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "dyspatcher {} listening on http://{}/",
        env!("CARGO_PKG_VERSION"),
        running.addr
    );
    dyspatcher::terminal::run_prompt(running);
}

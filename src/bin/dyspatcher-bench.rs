//! `dyspatcher-bench`: the load generator (also run as `dyspatcher bench`, which hands over to
//! this executable). It is its own executable so that the server a phone carries stays small;
//! everything it does lives in the library (`dyspatcher::bench`).

use argh::FromArgs;
use dyspatcher::bench::BenchArgs;

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let strs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let args = match BenchArgs::from_args(&["dyspatcher-bench"], &strs[1..]) {
        Ok(args) => args,
        Err(early) if early.status.is_ok() => {
            println!("{}", early.output);
            return;
        }
        Err(early) => {
            eprintln!("dyspatcher bench: {}", early.output.trim_end());
            std::process::exit(2);
        }
    };
    std::process::exit(dyspatcher::bench::run(args));
}

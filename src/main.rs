//! The `dyspatcher` executable: parse the command line, bind, maybe go to the background, then
//! run the server (or the terminal client). Everything else lives in the library.

use argh::FromArgs;
use dyspatcher::cli::{Args, Command};
use dyspatcher::config::Config;

fn fail(code: i32, message: impl std::fmt::Display) -> ! {
    eprintln!("dyspatcher: {message}");
    std::process::exit(code);
}

/// `dyspatcher bench …` runs `dyspatcher-bench …`, the load generator beside this executable
/// (kept apart so that the server stays small); its exit code is ours.
fn hand_to_bench(argv: &[String]) -> i32 {
    let rest = argv.iter().skip_while(|a| a.as_str() != "bench").skip(1);
    let bench = std::env::current_exe()
        .ok()
        .map(|me| me.with_file_name(format!("dyspatcher-bench{}", std::env::consts::EXE_SUFFIX)))
        .filter(|p| p.exists());
    let Some(bench) = bench else {
        fail(
            2,
            "the load generator is its own executable, dyspatcher-bench, and it is not beside \
             this one: build it with `cargo build --release` (or run \
             `cargo run --release --bin dyspatcher-bench -- …`)",
        );
    };
    match std::process::Command::new(&bench).args(rest).status() {
        Ok(status) => status.code().unwrap_or(1),
        Err(e) => fail(1, format!("{}: {e}", bench.display())),
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let strs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let args = match Args::from_args(&["dyspatcher"], &strs[1..]) {
        Ok(args) => args,
        Err(early) if early.status.is_ok() => {
            println!("{}", early.output);
            return;
        }
        Err(early) => fail(2, early.output.trim_end()),
    };
    if args.version {
        println!("dyspatcher {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    match args.command {
        Some(Command::Connect(c)) => std::process::exit(dyspatcher::terminal::connect(c)),
        Some(Command::Bench(_)) => std::process::exit(hand_to_bench(&argv)),
        Some(Command::VerifyTranscript(v)) => {
            std::process::exit(dyspatcher::transcript::verify::run(&v.file))
        }
        None => {}
    }
    let config = Config::from_args(&args).unwrap_or_else(|e| fail(2, e));
    let daemon = config.daemon.clone();
    let tls = config.tls.clone();
    // Bind before going to the background, so that a busy port is reported here.
    let bound = dyspatcher::server::bind_all(config).unwrap_or_else(|e| fail(1, e));
    let banner = dyspatcher::terminal::banner(bound.addr, tls.as_ref());
    println!("{banner}");
    if let Some(pid_file) = &daemon {
        println!(
            "going to the background; pid file {0}; stop with: kill $(cat {0})",
            pid_file.display()
        );
        let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
        if let Err(e) = daemonize::Daemonize::new()
            .pid_file(pid_file)
            .working_directory(cwd)
            .start()
        {
            fail(1, format!("--daemon: {e}"));
        }
    }
    let running = bound.run().unwrap_or_else(|e| fail(1, e));
    dyspatcher::terminal::handle_signals(&running, daemon.is_some());
    if daemon.is_some() {
        dyspatcher::terminal::run_headless(running);
    } else {
        dyspatcher::terminal::run_prompt(running);
    }
}

use std::process::ExitCode;

use tcpspy::cli::{BenchConfig, Command, Config};

fn main() -> ExitCode {
    let mut args = match tcpspy::cli::parse_args(std::env::args_os()) {
        Ok(a) => a,
        Err(e) => {
            // --help and --version land here too, and are not errors.
            let code = if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
            let _ = e.print();
            return code;
        }
    };
    let result = match args.command.take() {
        Some(Command::Bench(bench)) => BenchConfig::from_args(bench).and_then(tcpspy::bench::run),
        None => Config::from_args(args).and_then(|c| tcpspy::run(c).map(drop)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcpspy: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

use std::process::ExitCode;

use tcpspy::bench::args::BenchConfig;
use tcpspy::cli::Command;

fn main() -> ExitCode {
    let mut args = match tcpspy::cli::parse_args(std::env::args_os()) {
        Ok(a) => a,
        // --help and --version land here too, and are not errors.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            tcpspy::log::eprint_line(&format!("tcpspy: error: {}", tcpspy::cli::one_line(&e)));
            return ExitCode::from(2);
        }
    };
    let result = match args.command.take() {
        Some(Command::Bench(bench)) => BenchConfig::from_args(bench).and_then(tcpspy::bench::run),
        // A replay's status says identical (0), different (1) or error (2).
        Some(Command::Replay(replay)) => return tcpspy::replay::run::replay(replay),
        Some(Command::Mock(mock)) => tcpspy::replay::run::mock(mock),
        None => tcpspy::cli::config(args).and_then(|c| tcpspy::run(c).map(drop)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tcpspy::log::eprint_line(&format!("tcpspy: error: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

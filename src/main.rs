use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match tcpspy::cli::parse_args(std::env::args_os()) {
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
    match tcpspy::cli::Config::from_args(args).and_then(tcpspy::run) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcpspy: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

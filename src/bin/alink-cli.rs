//! `alink-cli`: command-line client of an AethroLink node.

use std::io::Write;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = aethrolink::cli::Cli::parse();
    match aethrolink::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // Whoever read stdout went away (`| head`): nothing to say, nothing failed.
        Err(aethrolink::cli::CliError::StdoutClosed) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr().lock(), "alink-cli: {e}");
            std::process::ExitCode::from(e.exit_code())
        }
    }
}

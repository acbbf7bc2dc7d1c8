//! `alink-cli`: command-line client of an AethroLink node.

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = aethrolink::cli::Cli::parse();
    match aethrolink::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("alink-cli: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

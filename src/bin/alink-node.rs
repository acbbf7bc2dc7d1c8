//! `alink-node`: the AethroLink daemon. Parses flags, sets up logging, runs the node.

use aethrolink::config::{LogFormat, NodeArgs};
use aethrolink::logging::{LineLayer, Style};
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: the node's hot paths (task records, events and their
/// JSON, passed between actors and the storage writer) allocate on one thread and free on
/// another, where glibc's arenas spent about a third of the node's CPU under a task load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let style = match format {
        LogFormat::Json => Style::Json,
        LogFormat::Pretty => Style::Pretty { ansi: std::io::IsTerminal::is_terminal(&std::io::stderr()) },
    };
    tracing_subscriber::registry().with(filter).with(LineLayer::new(style)).init();
    // Panics inside actors are caught and supervised; route their message to the log as well.
    std::panic::set_hook(Box::new(|info| {
        tracing::error!(panic = %info, "panic");
    }));
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = NodeArgs::parse();
    init_logging(args.log_format);
    let shutdown = CancellationToken::new();
    aethrolink::node::spawn_signal_handler(shutdown.clone());
    match aethrolink::node::run(args, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "alink-node failed");
            eprintln!("alink-node: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

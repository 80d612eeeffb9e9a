//! `murmur`: the Murmuration node and its command-line tools.

mod admin;
mod cli;
mod client;
mod config;
mod health;
mod inbound;
mod logging;
mod node;
mod policy;
mod signals;
mod telemetry;

fn main() -> std::process::ExitCode {
    cli::main()
}

//! `murmur`: the Murmuration node and its command-line tools.

mod admin;
mod balance;
mod cli;
mod client;
mod config;
mod demo;
mod inbound;
mod logging;
mod node;
mod proxy;
mod services;
mod signals;

fn main() -> std::process::ExitCode {
    cli::main()
}

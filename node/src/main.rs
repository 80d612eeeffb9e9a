//! `murmur`: the Murmuration node and its command-line tools.

mod admin;
mod balance;
mod cli;
mod client;
mod config;
mod demo;
mod drain;
mod health;
mod inbound;
mod logging;
mod node;
mod policy;
mod proxy;
mod readiness;
mod services;
mod signals;
mod telemetry;
mod traffic;

/// mimalloc instead of glibc malloc: the data path allocates small buffers per request, and
/// glibc's malloc and free took about a tenth of a node's CPU in the benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}

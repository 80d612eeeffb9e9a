//! `murmur`: the Murmuration node and its command-line tools (see the `murmur_node` library).

/// mimalloc instead of glibc malloc: the data path allocates small buffers per request, and
/// glibc's malloc and free took about a tenth of a node's CPU in the benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    murmur_node::cli::main()
}

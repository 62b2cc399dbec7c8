//! The `federated-identity-service` binary: see [`federated_identity_service::cli`].

/// mimalloc returns freed memory to the system: with glibc's allocator, the transient buffers of
/// each large push stayed resident (about 60 MB per million pushed hashes, measured).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    federated_identity_service::cli::main()
}

//! The `federated-identity-service` binary: see [`federated_identity_service::cli`].

fn main() -> std::process::ExitCode {
    federated_identity_service::cli::main()
}

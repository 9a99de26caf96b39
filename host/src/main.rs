//! The `batpak-host` command line: a thin layer over the library.

fn main() -> std::process::ExitCode {
    batpak_host::cli::main()
}

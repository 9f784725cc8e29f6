use clap::Parser as _;

fn main() -> std::process::ExitCode {
    blockprobe::run(blockprobe::cli::Cli::parse())
}

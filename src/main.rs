//! The `moor` binary: parse the command line and hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = moor::cli::Cli::parse();
    match moor::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", error_chain(&err));
            std::process::ExitCode::from(2)
        }
    }
}

/// The error and its causes on one line, leaving out a cause whose text the message before
/// it already includes (library errors name their source in their own message).
fn error_chain(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

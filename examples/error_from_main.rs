//! What a program prints when `main` returns a `curio::Error`: Rust prints it
//! with `Debug` after `Error: `, and `curio::Error`'s `Debug` reads like a
//! message (as `anyhow`'s does): the error's text, then the details to act on.
//!
//! By default it reads a settings file that is not there; with `--command` it
//! runs a command that fails. Either way `main` returns the error with `?`.
//!
//! ```text
//! $ cargo run --example error_from_main
//! Error: curio-example-settings.toml: No such file or directory (os error 2)
//!
//! Details:
//!     kind: Io (NotFound)
//! $ cargo run --example error_from_main -- --command
//! Error: command failed: `sh -c echo 'settings: no port given' >&2; exit 3` exited with status 3; its status and output are in Error::output()
//!
//! Details:
//!     kind: ProcessFailed
//!     status: exit status: 3
//!     stdout: 0 bytes
//!     stderr:
//!         settings: no port given
//! ```

use curio::subprocess::Command;

fn main() -> curio::Result<()> {
    let command = std::env::args().nth(1).as_deref() == Some("--command");
    curio::run(|| {
        if command {
            Command::new("sh")
                .args(["-c", "echo 'settings: no port given' >&2; exit 3"])
                .run()?;
        } else {
            let settings = curio::fs::read_to_string("curio-example-settings.toml")?;
            print!("{settings}");
        }
        Ok(())
    })
}

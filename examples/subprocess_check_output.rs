//! The tutorial's `subprocess.check_output()`: run a command to the end and
//! take its output; a command that fails is an error carrying its status and
//! output. The tutorial's command is `netstat -a`; give another after `--`.
//!
//! ```text
//! $ cargo run --example subprocess_check_output
//! Active Internet connections (servers and established)
//! ...
//! $ cargo run --example subprocess_check_output -- sh -c 'exit 3'
//! It failed! command failed: `sh -c exit 3` exited with status 3; its status and output are in Error::output()
//! ```

use curio::ErrorKind;
use curio::subprocess::Command;

fn main() -> curio::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        args = vec!["netstat".into(), "-a".into()];
    }
    curio::run(|| {
        match Command::new(&args[0]).args(&args[1..]).check_output() {
            Ok(out) => print!("{}", String::from_utf8_lossy(&out)),
            Err(e) if e.kind() == ErrorKind::ProcessFailed => println!("It failed! {e}"),
            Err(e) => return Err(e),
        }
        Ok(())
    })
}

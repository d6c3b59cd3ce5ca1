//! The tutorial's "Subprocesses": follow a command's output line by line, as it
//! runs. The tutorial's command is `ping www.python.org`; give another after `--`.
//!
//! ```text
//! $ cargo run --example simple_subprocess
//! Got: PING www.python.org (151.101.0.223) 56(84) bytes of data.
//! Got: 64 bytes from 151.101.0.223: icmp_seq=1 ttl=57 time=11.2 ms
//! ...
//! $ cargo run --example simple_subprocess -- sh -c 'for i in 1 2 3; do echo $i; sleep 1; done'
//! Got: 1
//! Got: 2
//! Got: 3
//! ```
//!
//! The default command needs `ping` and a network; without `ping`, `main`
//! returns the error "cannot run `ping`: command not found; check the
//! program's name and PATH".

use curio::subprocess::{Command, Stdio};

fn main() -> curio::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        args = vec!["ping".into(), "www.python.org".into()];
    }
    curio::run(|| {
        let mut p = Command::new(&args[0])
            .args(&args[1..])
            .stdout(Stdio::piped())
            .spawn()?;
        // Curio's `async for line in p.stdout`.
        for line in p.stdout.as_mut().expect("stdout is piped").lines() {
            print!("Got: {}", String::from_utf8_lossy(&line?));
        }
        p.wait()?;
        Ok(())
    })
}

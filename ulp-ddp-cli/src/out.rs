//! Standard output that survives a closed pipe: Rust ignores SIGPIPE, so `println!` panics when
//! the reader (`head -1`) has gone; here a broken pipe ends the process quietly (exit 0, what a
//! reader that stopped early asked for) and any other write error is reported.

use std::io::Write;

/// Writes `args` to standard output and flushes; on a closed pipe exits quietly.
pub fn write_fmt(args: std::fmt::Arguments<'_>) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_fmt(args).and_then(|()| o.flush()) {
        fail(&e);
    }
}

/// Writes `bytes` to `w` (standard output or a file); on a closed pipe exits quietly.
///
/// # Errors
///
/// Any other write error, as a message naming `what`.
pub fn write_all(w: &mut dyn Write, bytes: &[u8], what: &str) -> Result<(), String> {
    match w.write_all(bytes) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => quiet_exit(),
        r => r.map_err(|e| format!("write {what}: {e}")),
    }
}

fn fail(e: &std::io::Error) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        quiet_exit();
    }
    eprintln!("ulp-ddp: standard output: {e}");
    std::process::exit(1);
}

/// Ends the process after the reader of standard output went away.
pub fn quiet_exit() -> ! {
    std::process::exit(0)
}

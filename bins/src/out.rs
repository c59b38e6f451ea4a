//! The commands' reports on stdout. A failed write (stdout closed early, as by `| head -1`) is
//! an error the command returns, never a panic; `main` then ends quietly.

use std::io::Write;

use crate::error::{Error, Result};

/// Writes `text` to stdout as is.
pub fn write(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Error::Io {
            context: "writing to stdout".into(),
            source: e,
        })
}

/// Writes one line to stdout: `outln!("ok    {}", name)?`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::write(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

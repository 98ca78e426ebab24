//! Writing result files: every output of copytrace (bench results, traces, reports) goes
//! through here, so none is ever left half written.
use std::{fs, io, io::Write as _, path::Path};

/// Write `bytes` to `path` atomically: a reader never sees a partial file, and a failure leaves
/// no file behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!(
        "{}.partial",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let r = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r.map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))
}

//! tracefs: mounting it when needed and reading tracepoint `format` files, so that field
//! offsets come from the running kernel instead of being compiled in.
use std::{
    ffi::CString,
    fs,
    path::{Path, PathBuf},
};

use crate::error::{Error, Result};

const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Return the tracefs mount point, mounting tracefs at /sys/kernel/tracing if it is not
/// mounted anywhere (a fresh boot of a minimal system often has it unmounted; aya needs it to
/// resolve tracepoint ids).
pub fn ensure_mounted() -> Result<PathBuf> {
    if let Some(p) = mounted() {
        return Ok(p);
    }
    let target = PathBuf::from(CANDIDATES[0]);
    let c = |s: &str| CString::new(s).expect("no NUL in literal");
    let target_c = CString::new(target.as_os_str().as_encoded_bytes()).expect("no NUL in path");
    // SAFETY: valid NUL-terminated strings; a null data pointer is allowed for tracefs.
    let rc = unsafe {
        libc::mount(
            c("nodev").as_ptr(),
            target_c.as_ptr(),
            c("tracefs").as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(Error::TracefsMount {
            path: target,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(target)
}

/// The tracefs root if it is mounted (has an `events` directory).
pub fn mounted() -> Option<PathBuf> {
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("events").is_dir())
}

/// Does `category:name` exist?
pub fn tracepoint_exists(root: &Path, category: &str, name: &str) -> bool {
    root.join("events")
        .join(category)
        .join(name)
        .join("id")
        .exists()
}

/// One field of a tracepoint record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub offset: u32,
    pub size: u32,
    pub signed: bool,
}

/// The parsed `format` file of one tracepoint.
#[derive(Clone, Debug)]
pub struct Format {
    pub tracepoint: String,
    pub fields: Vec<Field>,
}

impl Format {
    pub fn read(root: &Path, category: &str, name: &str) -> Result<Format> {
        let path = root.join("events").join(category).join(name).join("format");
        let tracepoint = format!("{category}:{name}");
        let text = fs::read_to_string(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                Error::MissingTracepoint(tracepoint.clone())
            } else {
                Error::Read { path, source }
            }
        })?;
        Ok(Format::parse(tracepoint, &text))
    }

    /// Parse lines like `\tfield:int ret;\toffset:20;\tsize:4;\tsigned:1;`.
    pub fn parse(tracepoint: String, text: &str) -> Format {
        let fields = text
            .lines()
            .filter_map(|line| {
                let line = line.trim();
                let decl = line.strip_prefix("field:")?;
                let (decl, rest) = decl.split_once(';')?;
                let name = decl.split_whitespace().last()?;
                let name = name.split('[').next()?.to_string();
                let mut offset = None;
                let mut size = None;
                let mut signed = false;
                for part in rest.split(';') {
                    let Some((k, v)) = part.trim().split_once(':') else {
                        continue;
                    };
                    match k {
                        "offset" => offset = v.parse().ok(),
                        "size" => size = v.parse().ok(),
                        "signed" => signed = v == "1",
                        _ => {}
                    }
                }
                Some(Field {
                    name,
                    offset: offset?,
                    size: size?,
                    signed,
                })
            })
            .collect();
        Format { tracepoint, fields }
    }

    pub fn field(&self, name: &str) -> Result<&Field> {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| Error::MissingField {
                tracepoint: self.tracepoint.clone(),
                field: name.to_string(),
            })
    }

    pub fn offset(&self, name: &str) -> Result<u32> {
        self.field(name).map(|f| f.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOCK_SEND_LENGTH: &str = "name: sock_send_length
ID: 1780
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:void * sk;\toffset:8;\tsize:8;\tsigned:0;
\tfield:__u16 family;\toffset:16;\tsize:2;\tsigned:0;
\tfield:__u16 protocol;\toffset:18;\tsize:2;\tsigned:0;
\tfield:int ret;\toffset:20;\tsize:4;\tsigned:1;
\tfield:char comm[16];\toffset:24;\tsize:16;\tsigned:0;
\tfield:__data_loc char[] name;\toffset:40;\tsize:4;\tsigned:0;

print fmt: \"sk=%p\", REC->sk
";

    #[test]
    fn parses_offsets_sizes_and_arrays() {
        let f = Format::parse("sock:sock_send_length".into(), SOCK_SEND_LENGTH);
        assert_eq!(f.offset("ret").unwrap(), 20);
        assert_eq!(f.field("ret").unwrap().size, 4);
        assert!(f.field("ret").unwrap().signed);
        assert_eq!(f.offset("protocol").unwrap(), 18);
        assert_eq!(f.offset("comm").unwrap(), 24);
        assert_eq!(f.offset("name").unwrap(), 40);
        assert_eq!(f.offset("common_pid").unwrap(), 4);
        assert_eq!(f.fields.len(), 8);
    }

    #[test]
    fn missing_field_is_a_typed_error() {
        let f = Format::parse("sock:sock_send_length".into(), SOCK_SEND_LENGTH);
        let e = f.offset("nope").unwrap_err();
        assert_eq!(
            e.to_string(),
            "tracepoint sock:sock_send_length: no field `nope` in its format file"
        );
    }
}

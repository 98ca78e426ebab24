//! Struct member offsets from the running kernel's BTF.
//!
//! Rust eBPF programs have no CO-RE field relocations, so the one kernel struct field copytrace
//! needs (`sk_buff.data_len`, the byte count of a deferred copy) is looked up here and handed to
//! the programs as a global. aya parses BTF but does not expose member lookup, so this reads the
//! (stable, documented) BTF encoding directly: header, type section, string section.
use std::path::Path;

use crate::error::{Error, Result};

const BTF_MAGIC: u16 = 0xeb9f;

/// The kinds whose trailing data we must skip (see `include/uapi/linux/btf.h`).
mod kind {
    pub const INT: u32 = 1;
    pub const ARRAY: u32 = 3;
    pub const STRUCT: u32 = 4;
    pub const UNION: u32 = 5;
    pub const ENUM: u32 = 6;
    pub const FUNC_PROTO: u32 = 13;
    pub const VAR: u32 = 14;
    pub const DATASEC: u32 = 15;
    pub const DECL_TAG: u32 = 17;
    pub const ENUM64: u32 = 19;
}

struct Member {
    name_off: u32,
    type_id: u32,
    /// Bit offset (already stripped of the bitfield size when `kind_flag` is set).
    bit_offset: u32,
}

struct Type {
    name_off: u32,
    kind: u32,
    members: Vec<Member>,
    /// For modifiers/typedefs: the referenced type.
    referenced: u32,
}

pub struct Btf {
    types: Vec<Type>, // index = type id (0 = void)
    strings: Vec<u8>,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("BTF: {}", msg.into()),
    ))
}

fn u32_at(b: &[u8], off: usize) -> Result<u32> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
        .ok_or_else(|| bad(format!("truncated at {off}")))
}

impl Btf {
    pub fn from_sys_fs() -> Result<Btf> {
        let p = Path::new("/sys/kernel/btf/vmlinux");
        let data = std::fs::read(p).map_err(|source| Error::Read {
            path: p.to_path_buf(),
            source,
        })?;
        Btf::parse(&data)
    }

    pub fn parse(data: &[u8]) -> Result<Btf> {
        if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != BTF_MAGIC {
            return Err(bad("not little-endian BTF"));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let types_bytes = data
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or_else(|| bad("type section out of bounds"))?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or_else(|| bad("string section out of bounds"))?
            .to_vec();
        let mut types = vec![Type {
            name_off: 0,
            kind: 0,
            members: Vec::new(),
            referenced: 0,
        }];
        let mut off = 0;
        while off < types_bytes.len() {
            let name_off = u32_at(types_bytes, off)?;
            let info = u32_at(types_bytes, off + 4)?;
            let size_or_type = u32_at(types_bytes, off + 8)?;
            off += 12;
            let vlen = (info & 0xffff) as usize;
            let k = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            match k {
                kind::INT | kind::VAR | kind::DECL_TAG => off += 4,
                kind::ARRAY => off += 12,
                kind::STRUCT | kind::UNION => {
                    for i in 0..vlen {
                        let m = off + i * 12;
                        let raw = u32_at(types_bytes, m + 8)?;
                        members.push(Member {
                            name_off: u32_at(types_bytes, m)?,
                            type_id: u32_at(types_bytes, m + 4)?,
                            bit_offset: if kind_flag { raw & 0x00ff_ffff } else { raw },
                        });
                    }
                    off += vlen * 12;
                }
                kind::ENUM => off += vlen * 8,
                kind::FUNC_PROTO => off += vlen * 8,
                kind::DATASEC | kind::ENUM64 => off += vlen * 12,
                _ => {}
            }
            types.push(Type {
                name_off,
                kind: k,
                members,
                referenced: size_or_type,
            });
        }
        Ok(Btf { types, strings })
    }

    fn name(&self, off: u32) -> &str {
        let s = &self.strings[(off as usize).min(self.strings.len())..];
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or("")
    }

    /// Byte offset of `member` in `struct name`, searching anonymous nested structs/unions.
    pub fn member_offset(&self, name: &str, member: &str) -> Option<u32> {
        self.member_path_offset(name, &[member])
    }

    /// Byte offset of a member reached through named members, e.g.
    /// `("sock", ["__sk_common", "skc_family"])`.
    pub fn member_path_offset(&self, name: &str, path: &[&str]) -> Option<u32> {
        let mut t = self.types.iter().find(|t| {
            t.kind == kind::STRUCT && self.name(t.name_off) == name && !t.members.is_empty()
        })?;
        let mut bits = 0;
        for (i, member) in path.iter().enumerate() {
            let (b, type_id) = self.find_member(t, member, 0)?;
            bits += b;
            if i + 1 < path.len() {
                t = self.resolve(type_id)?;
            }
        }
        Some(bits / 8)
    }

    /// (bit offset, type id) of `member`, looking inside anonymous structs/unions too.
    fn find_member(&self, t: &Type, member: &str, base_bits: u32) -> Option<(u32, u32)> {
        for m in &t.members {
            if self.name(m.name_off) == member {
                return Some((base_bits + m.bit_offset, m.type_id));
            }
        }
        for m in t
            .members
            .iter()
            .filter(|m| m.name_off == 0 || self.name(m.name_off).is_empty())
        {
            let inner = self.resolve(m.type_id)?;
            if matches!(inner.kind, kind::STRUCT | kind::UNION)
                && let Some(found) = self.find_member(inner, member, base_bits + m.bit_offset)
            {
                return Some(found);
            }
        }
        None
    }

    /// Follow typedefs and modifiers to the underlying type.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let t = self.types.get(id as usize)?;
            match t.kind {
                // TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG
                8..=11 | 18 => id = t.referenced,
                _ => return Some(t),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-assembled BTF blob: `struct s { int a; union { int b; int c; }; int d; }`.
    fn blob() -> Vec<u8> {
        let strings = b"\0s\0a\0b\0c\0d\0int\0".to_vec();
        let (s, a, b, c, d, int) = (1u32, 3u32, 5u32, 7u32, 9u32, 11u32);
        let mut types = Vec::new();
        let mut push = |words: &[u32]| {
            for w in words {
                types.extend_from_slice(&w.to_le_bytes());
            }
        };
        // id 1: int (INT, size 4, encoding word)
        push(&[int, 1 << 24, 4, 32]);
        // id 2: anonymous union { int b; int c; }
        push(&[0, (5 << 24) | 2, 4, b, 1, 0, c, 1, 0]);
        // id 3: struct s { int a @0; union @32; int d @64 }
        push(&[s, (4 << 24) | 3, 12, a, 1, 0, 0, 2, 32, d, 1, 64]);
        let mut out = Vec::new();
        out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend(types);
        out.extend(strings);
        out
    }

    #[test]
    fn finds_direct_and_anonymous_members() {
        let btf = Btf::parse(&blob()).unwrap();
        assert_eq!(btf.member_offset("s", "a"), Some(0));
        assert_eq!(btf.member_offset("s", "b"), Some(4));
        assert_eq!(btf.member_offset("s", "c"), Some(4));
        assert_eq!(btf.member_offset("s", "d"), Some(8));
        assert_eq!(btf.member_offset("s", "e"), None);
        assert_eq!(btf.member_offset("t", "a"), None);
        assert_eq!(btf.member_path_offset("s", &["d"]), Some(8));
        assert_eq!(
            btf.member_path_offset("s", &["a", "b"]),
            None,
            "int has no members"
        );
        assert!(Btf::parse(b"garbage garbage garbage garbage").is_err());
    }

    #[test]
    fn running_kernel_has_sk_buff_data_len() {
        // Every kernel copytrace supports has BTF; sk_buff.data_len sits after `len`.
        let btf = Btf::from_sys_fs().unwrap();
        let len = btf.member_offset("sk_buff", "len").unwrap();
        let data_len = btf.member_offset("sk_buff", "data_len").unwrap();
        assert_eq!(data_len, len + 4);
        // Through a named nested struct: sock.__sk_common.skc_family (sock_common comes first).
        let family = btf
            .member_path_offset("sock", &["__sk_common", "skc_family"])
            .unwrap();
        assert_eq!(
            family,
            btf.member_offset("sock_common", "skc_family").unwrap()
        );
        assert!(btf.member_offset("sock", "sk_protocol").is_some());
        assert!(btf.member_offset("socket", "sk").is_some());
    }
}

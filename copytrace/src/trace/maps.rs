//! The object's maps by name, typed: one error for a missing map or a type mismatch.
use aya::Ebpf;

use crate::error::{Error, Result};

pub(crate) fn map_mut<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<T>
where
    T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.map_mut(name).ok_or_else(|| Error::Missing {
        kind: "map",
        name: name.to_string(),
    })?;
    T::try_from(map).map_err(|source| Error::Map {
        map: name.to_string(),
        source,
    })
}

pub(crate) fn map_ref<'a, T>(ebpf: &'a Ebpf, name: &str) -> Result<T>
where
    T: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.map(name).ok_or_else(|| Error::Missing {
        kind: "map",
        name: name.to_string(),
    })?;
    T::try_from(map).map_err(|source| Error::Map {
        map: name.to_string(),
        source,
    })
}

/// An array map created with `BPF_F_MMAPABLE`, mapped read-only into this process: reading
/// its values costs memory loads, where `Array::get` costs a system call per index (the
/// in-flight array has 65536 slots).
pub(crate) struct MappedArray<V> {
    ptr: std::ptr::NonNull<V>,
    len: usize,
    bytes: usize,
}

impl<V: aya::Pod> MappedArray<V> {
    pub(crate) fn new(ebpf: &Ebpf, name: &str) -> Result<Self> {
        use std::os::fd::{AsFd, AsRawFd};
        let map = ebpf.map(name).ok_or_else(|| Error::Missing {
            kind: "map",
            name: name.to_string(),
        })?;
        let aya::maps::Map::Array(data) = map else {
            return Err(Error::Missing {
                kind: "array map",
                name: name.to_string(),
            });
        };
        let info = data.info().map_err(|source| Error::Map {
            map: name.to_string(),
            source,
        })?;
        let len = info.max_entries() as usize;
        // The kernel lays out mmapable array values at their size rounded up to 8 bytes;
        // every shared type is a multiple of 8 (`layouts_have_no_implicit_padding`).
        assert_eq!(
            size_of::<V>() % 8,
            0,
            "{name}: value size not a multiple of 8"
        );
        let bytes = len * size_of::<V>();
        // SAFETY: a shared read-only mapping of a map fd, of the array's own size; the kernel
        // checks both.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::Io(std::io::Error::last_os_error()));
        }
        let ptr = std::ptr::NonNull::new(ptr.cast::<V>())
            .ok_or_else(|| Error::Io(std::io::Error::other("mmap returned a null mapping")))?;
        Ok(MappedArray { ptr, len, bytes })
    }

    /// Every value as it is now (the programs may be writing: each is read once, volatile).
    pub(crate) fn values(&self) -> impl Iterator<Item = V> + '_ {
        // SAFETY: `i < len` lies inside the mapping, which lives as long as `self`.
        (0..self.len).map(|i| unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(i)) })
    }
}

impl<V> Drop for MappedArray<V> {
    fn drop(&mut self) {
        // SAFETY: the mapping `new` made, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.bytes) };
    }
}

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

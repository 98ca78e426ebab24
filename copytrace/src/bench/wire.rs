//! The benchmark's control protocol: one length-prefixed JSON frame each way around the data.
//!
//! A connection starts with a [`Hello`] from the client saying what it will do; the data phase
//! follows; when the client shuts down its sending side, the server answers with a [`Report`].
//! The same protocol serves in-process servers and `copytrace serve` on another host.
use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    bench::{Mode, Pattern, Verify, sender::SenderStats},
    counters::CounterValues,
};

pub const PROTOCOL_VERSION: u32 = 1;
/// The server's answer to a hello once it is ready to measure.
pub const READY: &str = "ready";
const MAX_FRAME: u32 = 1 << 20;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    pub pattern: Pattern,
    /// For `rr`, how the server sends its responses.
    pub mode: Mode,
    pub size: usize,
    pub conn: u32,
    /// Open hardware counters on the server side too.
    pub hardware_counters: bool,
    /// How much of each message the receiving side checks (absent from older peers: full).
    #[serde(default)]
    pub verify: Verify,
    /// Test knob: the server waits this long before reading anything (a slow receiver).
    #[serde(default)]
    pub read_delay_ms: u64,
    /// Test knob: SO_RCVBUF for the server side of the connection.
    #[serde(default)]
    pub rcvbuf: Option<u32>,
}

/// What the server saw on one connection.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    /// `None` when every byte verified; else what was wrong.
    pub corruption: Option<String>,
    pub messages: u64,
    pub bytes: u64,
    pub measured_messages: u64,
    pub measured_bytes: u64,
    /// From the end of the last warm-up message to the end of the last measured one, timed by
    /// when those bytes arrived (see `bench/arrival.rs`).
    pub measured_ns: u64,
    /// Stream: the longest a read's newest byte waited in the socket for the receiver inside
    /// the measured window (see `StampedRead::waited`; absent from older peers: 0).
    #[serde(default)]
    pub wait_ns: u64,
    pub counters: CounterValues,
    /// For `rr`: the server was the sender.
    pub sender: Option<SenderStats>,
    /// For `rr`: responses sent inside the measured window.
    pub measured_responses: u64,
}

/// Write one frame; returns its size on the wire.
pub fn write_frame<T: Serialize>(w: &mut impl Write, v: &T) -> io::Result<u64> {
    let body = serde_json::to_vec(v).map_err(io::Error::other)?;
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend(body);
    w.write_all(&frame)?;
    Ok(frame.len() as u64)
}

pub fn read_frame<T: DeserializeOwned>(r: &mut impl Read) -> io::Result<T> {
    read_frame_sized(r).map(|(v, _)| v)
}

/// Read one frame; also returns its size on the wire.
pub fn read_frame_sized<T: DeserializeOwned>(r: &mut impl Read) -> io::Result<(T, u64)> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("control frame of {len} bytes: not a copytrace peer?"),
        ));
    }
    let mut body = vec![0; len as usize];
    r.read_exact(&mut body)?;
    let v =
        serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok((v, 4 + u64::from(len)))
}

/// A request/response request: the sequence number and whether it is measured.
pub const REQUEST_LEN: usize = 16;

pub fn encode_request(seq: u64, measured: bool) -> [u8; REQUEST_LEN] {
    let mut b = [0u8; REQUEST_LEN];
    b[..8].copy_from_slice(&seq.to_le_bytes());
    b[8..].copy_from_slice(&u64::from(measured).to_le_bytes());
    b
}

pub fn decode_request(b: &[u8; REQUEST_LEN]) -> (u64, bool) {
    let seq = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    let flags = u64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
    (seq, flags & 1 == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_reject_garbage() {
        let mut buf = Vec::new();
        let r = Report {
            messages: 3,
            corruption: Some("x".into()),
            ..Default::default()
        };
        write_frame(&mut buf, &r).unwrap();
        let back: Report = read_frame(&mut buf.as_slice()).unwrap();
        assert_eq!(back.messages, 3);
        assert_eq!(back.corruption.as_deref(), Some("x"));
        let garbage = [0xffu8; 8];
        assert!(read_frame::<Report>(&mut garbage.as_slice()).is_err());
        assert_eq!(decode_request(&encode_request(41, true)), (41, true));
    }
}

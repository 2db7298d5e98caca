//! The wire format of every record chainwatch puts on Kafka: one versioned envelope, one codec.
//!
//! ```text
//! offset  size  field
//! 0       2     magic "CW"
//! 2       1     schema major version (readers reject a newer major: fields changed meaning)
//! 3       1     schema minor version (additive changes; older readers ignore unknown fields)
//! 4       1     record kind: 1 block, 2 reorg, 3 match, 4 dead letter, 5 deferred notification,
//!               6 part of a record too large for one message (v1.3)
//! 5       1     compression: 0 none, 1 LZ4 frame
//! 6..     n     payload: the record as JSON (serde), compressed
//! ```
//!
//! A part (kind 6, compression 0) carries, after the 6 header bytes, a 4-byte big-endian length,
//! that many bytes of JSON ([`PartHeader`]) and then a slice of the whole record's bytes; the
//! whole record is the concatenation of its parts (`bus::parts` splits and reassembles).
//!
//! JSON keeps records inspectable (strip the 6-byte header, `lz4 -d`) and lets minor versions add
//! fields; LZ4 brings a mainnet block with receipts (~1.3 MB of JSON for 150 transactions) down by
//! 4–6×. Topic and client size limits (see `bus::kafka`) are set for 16 MiB records.
//! The schema is documented in `docs/wire-format.md`.

use chainwatch_core::MonitorMatch;
use chainwatch_core::block::{Block, BlockId};
use chainwatch_core::phase::BlockPhase;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Magic bytes at the start of every record.
pub const MAGIC: [u8; 2] = *b"CW";
/// Schema version written by this build.
pub const MAJOR: u8 = 1;
pub const MINOR: u8 = 5;
/// Largest record accepted (after decompression): 512 MiB (a block carried in parts may be far
/// larger than one message).
pub const MAX_DECODED: usize = 512 << 20;

/// Record kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Block = 1,
    Reorg = 2,
    Match = 3,
    DeadLetter = 4,
    Deferred = 5,
    Part = 6,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Kind::Block,
            2 => Kind::Reorg,
            3 => Kind::Match,
            4 => Kind::DeadLetter,
            5 => Kind::Deferred,
            6 => Kind::Part,
            _ => return None,
        })
    }
}

/// Why a record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("not a chainwatch record (bad magic bytes)")]
    BadMagic,
    #[error(
        "record schema v{found}.x is newer than this build understands (v{MAJOR}.{MINOR}): upgrade this component"
    )]
    NewerMajor { found: u8 },
    #[error("record is a {found:?}, expected a {expected:?}")]
    WrongKind { found: Option<Kind>, expected: Kind },
    #[error("unknown compression {0}")]
    Compression(u8),
    #[error("record is truncated")]
    Truncated,
    #[error("cannot decompress record: {0}")]
    Decompress(String),
    #[error("record payload is invalid: {0}")]
    Payload(#[from] serde_json::Error),
}

/// A block as the ingester publishes it (topic `chainwatch.blocks.<network>`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BlockRecord {
    pub network: String,
    pub block: Block,
    /// When the ingester published it (ms since the Unix epoch): latency measurements.
    pub published_at_ms: u64,
    /// Which publication of the block this is (v1.5): `seen` at the head, `final` at the
    /// confirmation depth after `seen`; absent: the only one (already at the confirmation depth).
    #[serde(default, skip_serializing_if = "BlockPhase::is_once")]
    pub phase: BlockPhase,
}

/// A reorg the ingester detected (same topic as the blocks). The filter stage that reads it
/// passes it on to every partition of `chainwatch.matches` (v1.4), where the notify stages retract
/// what they notified for the replaced blocks.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ReorgRecord {
    pub network: String,
    /// Blocks previously published that are no longer on the canonical chain, oldest first.
    pub replaced: Vec<BlockId>,
    /// The canonical blocks at those heights now, oldest first (published again after this record).
    pub replacement: Vec<BlockId>,
    pub detected_at_ms: u64,
}

/// What the block topic carries.
#[derive(Clone, Debug, PartialEq)]
pub enum BlockTopicRecord {
    Block(BlockRecord),
    Reorg(ReorgRecord),
}

/// A match produced by the filter stage (topic `chainwatch.matches`, key `namespace/monitor`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MatchRecord {
    #[serde(rename = "match")]
    pub matched: MonitorMatch,
    /// When the block was published by the ingester (latency measurements).
    pub block_published_at_ms: u64,
    pub produced_at_ms: u64,
}

/// A notification put aside (topic `chainwatch.notify.deferred`, key: the tenant): a delivery to
/// retry later, or a match its tenant's backlog had no room for. Due at `due_at_ms`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DeferredRecord {
    pub record: MatchRecord,
    /// The one trigger to deliver to (a retry); `None`: the whole match, trigger conditions
    /// included (a backlog).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// Delivery attempts already made.
    pub attempts: u32,
    /// Times the match was put aside because its tenant's backlog was full.
    #[serde(default)]
    pub deferrals: u32,
    pub due_at_ms: u64,
    /// `retry`, `backlog` or `redeliver` (a dead letter delivered again: `chainwatch redeliver`).
    pub reason: String,
    /// When the delivery was first attempted (v1.2): a retry gives up `retryFor` after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_attempt_at_ms: Option<u64>,
    /// The newest delivery error (v1.2, secrets scrubbed): what the Trigger's status shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Something that could not be processed, with the reason (topic `chainwatch.deadletter`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DeadLetterRecord {
    /// `block` (the filter stage could not evaluate it) or `notification` (delivery failed after
    /// every retry).
    pub stage: String,
    pub reason: String,
    pub network: String,
    /// Source topic, partition and offset.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub attempts: u32,
    pub at_ms: u64,
    /// The original record (base64 of the encoded bytes is not needed: it is kept as JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// A notification's match as the notify stage read it (v1.2): what `chainwatch redeliver`
    /// delivers again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<MatchRecord>,
    /// The tenant whose notification it was (v1.2): the key of a redelivery, so that it reaches
    /// the worker that owns the tenant's notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

fn encode_json<T: Serialize>(kind: Kind, value: &T) -> Vec<u8> {
    let json = serde_json::to_vec(value).expect("records always serialize");
    let compressed = lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(json.len() / 3));
    let mut enc = compressed;
    std::io::Write::write_all(&mut enc, &json).expect("writing to memory");
    let body = enc.finish().expect("finishing an in-memory frame");
    let mut out = Vec::with_capacity(body.len() + 6);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[MAJOR, MINOR, kind as u8, 1]);
    out.extend_from_slice(&body);
    out
}

/// Header fields of a record.
pub fn peek_kind(bytes: &[u8]) -> Result<Kind, CodecError> {
    if bytes.len() < 6 {
        return Err(CodecError::Truncated);
    }
    if bytes[..2] != MAGIC {
        return Err(CodecError::BadMagic);
    }
    if bytes[2] > MAJOR {
        return Err(CodecError::NewerMajor { found: bytes[2] });
    }
    Kind::from_u8(bytes[4]).ok_or(CodecError::WrongKind { found: None, expected: Kind::Block })
}

fn decode_json<T: DeserializeOwned>(bytes: &[u8], expected: Kind) -> Result<T, CodecError> {
    let kind = peek_kind(bytes)?;
    if kind != expected {
        return Err(CodecError::WrongKind { found: Some(kind), expected });
    }
    let body = &bytes[6..];
    let json = match bytes[5] {
        0 => body.to_vec(),
        1 => {
            let mut dec = lz4_flex::frame::FrameDecoder::new(body);
            let mut out = Vec::new();
            let mut limited = std::io::Read::take(&mut dec, MAX_DECODED as u64 + 1);
            std::io::Read::read_to_end(&mut limited, &mut out)
                .map_err(|e| CodecError::Decompress(e.to_string()))?;
            if out.len() > MAX_DECODED {
                return Err(CodecError::Decompress(format!("record larger than {MAX_DECODED} bytes")));
            }
            out
        }
        other => return Err(CodecError::Compression(other)),
    };
    Ok(serde_json::from_slice(&json)?)
}

impl BlockTopicRecord {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            BlockTopicRecord::Block(b) => encode_json(Kind::Block, b),
            BlockTopicRecord::Reorg(r) => encode_json(Kind::Reorg, r),
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        match peek_kind(bytes)? {
            Kind::Reorg => Ok(BlockTopicRecord::Reorg(decode_json(bytes, Kind::Reorg)?)),
            _ => Ok(BlockTopicRecord::Block(decode_json(bytes, Kind::Block)?)),
        }
    }
}

impl ReorgRecord {
    pub fn encode(&self) -> Vec<u8> {
        encode_json(Kind::Reorg, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        decode_json(bytes, Kind::Reorg)
    }
}

impl MatchRecord {
    pub fn encode(&self) -> Vec<u8> {
        encode_json(Kind::Match, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        decode_json(bytes, Kind::Match)
    }
}

impl DeferredRecord {
    pub fn encode(&self) -> Vec<u8> {
        encode_json(Kind::Deferred, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        decode_json(bytes, Kind::Deferred)
    }
}

impl DeadLetterRecord {
    pub fn encode(&self) -> Vec<u8> {
        encode_json(Kind::DeadLetter, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        decode_json(bytes, Kind::DeadLetter)
    }
}

/// What a part says about the record it is a slice of.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PartHeader {
    /// sha256 (hex) of the whole record: names the set of parts and checks the reassembly.
    pub sha256: String,
    /// This part's place, from 0.
    pub index: u32,
    /// How many parts the record was cut into.
    pub count: u32,
    /// The whole record's length in bytes.
    pub size: u64,
}

/// Encodes one part: `chunk` is the `header.index`-th slice of the whole record.
pub fn encode_part(header: &PartHeader, chunk: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(header).expect("a part header always serializes");
    let mut out = Vec::with_capacity(10 + json.len() + chunk.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[MAJOR, MINOR, Kind::Part as u8, 0]);
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(chunk);
    out
}

/// Reads a part: its header and its slice of the whole record. `Ok(None)`: not a part.
pub fn decode_part(bytes: &[u8]) -> Result<Option<(PartHeader, &[u8])>, CodecError> {
    if peek_kind(bytes).ok() != Some(Kind::Part) {
        return Ok(None);
    }
    let len = bytes.get(6..10).ok_or(CodecError::Truncated)?;
    let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
    let json = bytes.get(10..10 + len).ok_or(CodecError::Truncated)?;
    let header: PartHeader = serde_json::from_slice(json)?;
    Ok(Some((header, &bytes[10 + len..])))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainwatch_core::block::StellarLedger;

    fn ledger() -> BlockTopicRecord {
        BlockTopicRecord::Block(BlockRecord {
            network: "stellar-testnet".into(),
            block: Block::Stellar(StellarLedger {
                sequence: 7,
                hash: "ab".repeat(32),
                previous_hash: "cd".repeat(32),
                close_time: 1,
                transactions: vec![],
                events: vec![],
            }),
            published_at_ms: 42,
            phase: BlockPhase::Once,
        })
    }

    #[test]
    fn round_trips_and_checks_the_header() {
        let rec = ledger();
        let bytes = rec.encode();
        assert_eq!(&bytes[..6], &[b'C', b'W', MAJOR, MINOR, Kind::Block as u8, 1]);
        assert_eq!(BlockTopicRecord::decode(&bytes).unwrap(), rec);

        let mut newer = bytes.clone();
        newer[2] = MAJOR + 1;
        let err = BlockTopicRecord::decode(&newer).unwrap_err();
        assert!(err.to_string().contains("newer than this build"), "{err}");

        assert!(matches!(BlockTopicRecord::decode(b"{\"json\":1}"), Err(CodecError::BadMagic)));
        assert!(matches!(MatchRecord::decode(&bytes), Err(CodecError::WrongKind { .. })));
        assert!(matches!(BlockTopicRecord::decode(&bytes[..4]), Err(CodecError::Truncated)));
        let mut corrupt = bytes.clone();
        let n = corrupt.len();
        corrupt[n - 3] ^= 0xff;
        assert!(BlockTopicRecord::decode(&corrupt).is_err());
    }

    #[test]
    fn a_part_round_trips_and_other_records_are_not_parts() {
        let header = PartHeader { sha256: "ab".repeat(32), index: 2, count: 3, size: 10 };
        let bytes = encode_part(&header, b"xyz");
        assert_eq!(&bytes[..6], &[b'C', b'W', MAJOR, MINOR, Kind::Part as u8, 0]);
        let (h, chunk) = decode_part(&bytes).unwrap().unwrap();
        assert_eq!((h, chunk), (header, &b"xyz"[..]));
        assert!(decode_part(&ledger().encode()).unwrap().is_none());
        assert!(matches!(decode_part(&bytes[..8]), Err(CodecError::Truncated)));
        assert!(matches!(BlockTopicRecord::decode(&bytes), Err(CodecError::WrongKind { .. })));
    }

    #[test]
    fn a_newer_minor_version_is_read() {
        let mut bytes = ledger().encode();
        bytes[3] = MINOR + 5;
        assert!(BlockTopicRecord::decode(&bytes).is_ok());
    }
}

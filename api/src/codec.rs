//! The gRPC codec of every raftconf service: prost, as tonic's default, but
//! with 1 KiB starting buffers instead of 8 KiB.
//!
//! tonic allocates one encode and one decode buffer per stream when the
//! stream opens, at their starting size, and grows them for larger messages.
//! A watch stream is open for the life of a service and carries small
//! messages: at 8 KiB each, the two buffers were 16 of the 21 KiB the server
//! spent per idle subscription (measured with 10,000 subscriptions).

use std::marker::PhantomData;

use prost::bytes::BufMut;
use prost::Message;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Starting size of a stream's encode and decode buffers.
const BUFFER_BYTES: usize = 1024;
/// Encoded bytes after which a busy stream yields (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// A prost codec with small starting buffers (see the module docs).
#[derive(Debug, Clone)]
pub struct SlimCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for SlimCodec<T, U> {
    fn default() -> Self {
        SlimCodec {
            _types: PhantomData,
        }
    }
}

impl<T, U> Codec for SlimCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD))
    }
}

/// A `WatchResponse` as the server sends it: a message built for one
/// subscriber, or the bytes of one encoded once and shared by every
/// subscriber it goes to unchanged (a write's event to 10,000 subscribers is
/// then converted and encoded once, and each subscriber's queue holds a
/// reference, not a copy). On the wire the two are the same.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchReply {
    /// Encoded when it is sent. Boxed: a subscriber's queue allocates room
    /// for 32 replies when it opens (tokio's channel blocks), and a message
    /// in place would make that 6 KiB per idle subscription instead of 2.
    Message(Box<crate::v1::WatchResponse>),
    /// Already encoded: a `WatchResponse`'s bytes.
    Encoded(prost::bytes::Bytes),
}

impl WatchReply {
    /// A reply encoded when it is sent.
    pub fn message(response: crate::v1::WatchResponse) -> WatchReply {
        WatchReply::Message(Box::new(response))
    }

    /// A reply that is encoded once, here, and can be cloned for free.
    pub fn encoded(response: &crate::v1::WatchResponse) -> WatchReply {
        WatchReply::Encoded(response.encode_to_vec().into())
    }

    /// This reply addressed to `watch_ids` on a stream of several watches
    /// (`WatchResponse.watch_ids`). Shared bytes are copied once with the ids
    /// appended: protobuf merges a repeated field written after the rest.
    pub fn for_watches(self, watch_ids: &[u64]) -> WatchReply {
        if watch_ids.is_empty() {
            return self;
        }
        match self {
            WatchReply::Message(mut m) => {
                m.watch_ids.extend_from_slice(watch_ids);
                WatchReply::Message(m)
            }
            WatchReply::Encoded(bytes) => {
                let mut out = Vec::with_capacity(bytes.len() + 4 + 10 * watch_ids.len());
                out.extend_from_slice(&bytes);
                prost::encoding::uint64::encode_packed(WATCH_IDS_FIELD, watch_ids, &mut out);
                WatchReply::Encoded(out.into())
            }
        }
    }

    /// Whether both are the same shared bytes (one event encoded once).
    pub fn same_shared_bytes(&self, other: &WatchReply) -> bool {
        match (self, other) {
            (WatchReply::Encoded(a), WatchReply::Encoded(b)) => {
                a.as_ptr() == b.as_ptr() && a.len() == b.len()
            }
            _ => false,
        }
    }

    /// The message this reply carries (decoding the shared bytes).
    pub fn to_message(&self) -> Result<crate::v1::WatchResponse, prost::DecodeError> {
        match self {
            WatchReply::Message(m) => Ok(m.as_ref().clone()),
            WatchReply::Encoded(bytes) => crate::v1::WatchResponse::decode(bytes.clone()),
        }
    }
}

/// The field number of `WatchResponse.watch_ids` (a test checks it).
const WATCH_IDS_FIELD: u32 = 6;

/// The codec of [`crate::shared_watch`]: encodes [`WatchReply`]s (copying
/// the shared bytes of an encoded one), decodes `WatchRequest`s, with the
/// small starting buffers of [`SlimCodec`].
#[derive(Debug, Clone, Default)]
pub struct WatchCodec;

impl Codec for WatchCodec {
    type Encode = WatchReply;
    type Decode = crate::v1::WatchRequest;
    type Encoder = WatchReplyEncoder;
    type Decoder = ProstDecoder<crate::v1::WatchRequest>;

    fn encoder(&mut self) -> Self::Encoder {
        WatchReplyEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD))
    }
}

/// Writes a [`WatchReply`] into the stream's buffer.
#[derive(Debug, Clone, Default)]
pub struct WatchReplyEncoder;

impl Encoder for WatchReplyEncoder {
    type Item = WatchReply;
    type Error = tonic::Status;

    fn encode(&mut self, item: WatchReply, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        write_reply(item, dst)
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD)
    }
}

/// Writes `reply`'s wire bytes to `dst`, which grows as needed.
fn write_reply(reply: WatchReply, dst: &mut impl BufMut) -> Result<(), tonic::Status> {
    match reply {
        WatchReply::Message(m) => m
            .encode(dst)
            .map_err(|e| tonic::Status::internal(format!("encoding a watch response: {e}"))),
        WatchReply::Encoded(bytes) => {
            dst.put_slice(&bytes);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1 as pb;

    fn response() -> pb::WatchResponse {
        pb::WatchResponse {
            header: Some(pb::ResponseHeader {
                cluster_id: "c".into(),
                revision: 9,
                node_id: 2,
                leader_id: 1,
                term: 3,
                leader_addr: "127.0.0.1:7070".into(),
            }),
            event: Some(pb::watch_response::Event::Change(pb::ChangeEvent {
                revision: 9,
                changes: vec![pb::Change {
                    kind: pb::ChangeKind::Put as i32,
                    path: "t/e/n".into(),
                    version: 4,
                    value: r#"{"a":1}"#.into(),
                }],
                author: "ops".into(),
                time_ms: 1_700_000_000_000,
                message: "why".into(),
            })),
            watch_ids: Vec::new(),
        }
    }

    /// What the codec writes for a reply (tonic adds the 5-byte gRPC prefix).
    fn written(reply: WatchReply) -> Vec<u8> {
        let mut buf = Vec::new();
        write_reply(reply, &mut buf).expect("encodes");
        buf
    }

    #[test]
    fn a_shared_reply_is_the_message_on_the_wire() {
        let message = response();
        let expected = message.encode_to_vec();
        assert_eq!(written(WatchReply::message(message.clone())), expected);
        let shared = WatchReply::encoded(&message);
        assert_eq!(written(shared.clone()), expected);
        assert_eq!(shared.to_message().expect("decodes"), message);
    }

    #[test]
    fn watch_ids_appended_to_shared_bytes_decode_as_the_field() {
        let message = response();
        let shared = WatchReply::encoded(&message);
        let mut expected = message.clone();
        expected.watch_ids = vec![3, 1, 300];
        let addressed = shared.clone().for_watches(&[3, 1, 300]);
        assert_eq!(addressed.to_message().expect("decodes"), expected);
        assert_eq!(
            WatchReply::message(message.clone())
                .for_watches(&[3, 1, 300])
                .to_message()
                .expect("decodes"),
            expected
        );
        assert_eq!(shared.clone().for_watches(&[]), shared);
        assert!(shared.same_shared_bytes(&shared.clone()));
        assert!(!shared.same_shared_bytes(&WatchReply::encoded(&message)));
    }
}

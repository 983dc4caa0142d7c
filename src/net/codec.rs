//! The Chord protocol's CBOR codec, with the bytes of every message counted (for the
//! `chord_protocol_bytes` metric): libp2p counts bytes per transport, not per protocol.

use std::io;

use futures::{AsyncRead, AsyncWrite};
use libp2p::request_response::{self, cbor};
use libp2p::StreamProtocol;

use super::protocol::{WireRequest, WireResponse};
use crate::metrics::{NodeMetrics, Protocol};

#[derive(Clone)]
pub struct CountedCodec {
    inner: cbor::codec::Codec<WireRequest, WireResponse>,
    metrics: NodeMetrics,
}

impl CountedCodec {
    pub fn new(inner: cbor::codec::Codec<WireRequest, WireResponse>, metrics: NodeMetrics) -> Self {
        CountedCodec { inner, metrics }
    }
}

impl request_response::Codec for CountedCodec {
    type Protocol = StreamProtocol;
    type Request = WireRequest;
    type Response = WireResponse;

    async fn read_request<T>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<WireRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut io = self.metrics.count(Protocol::Chord, io);
        self.inner.read_request(protocol, &mut io).await
    }

    async fn read_response<T>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<WireResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut io = self.metrics.count(Protocol::Chord, io);
        self.inner.read_response(protocol, &mut io).await
    }

    async fn write_request<T>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
        request: WireRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let mut io = self.metrics.count(Protocol::Chord, io);
        self.inner.write_request(protocol, &mut io, request).await
    }

    async fn write_response<T>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
        response: WireResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let mut io = self.metrics.count(Protocol::Chord, io);
        self.inner.write_response(protocol, &mut io, response).await
    }
}

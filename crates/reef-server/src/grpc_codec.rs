//! The protobuf codec of the gRPC service: prost's, except that a message
//! that fails to decode is the client's fault and answers INVALID_ARGUMENT
//! (prost's codec reports INTERNAL) with a message saying so.

use prost::Message;
use std::marker::PhantomData;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

/// Prost codec with decode failures mapped to INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct ReefCodec<T, U> {
    inner: ProstCodec<T, U>,
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for ReefCodec<T, U> {
    fn default() -> Self {
        ReefCodec {
            inner: ProstCodec::default(),
            _pd: PhantomData,
        }
    }
}

/// Decoder wrapper that rewrites decode errors.
#[derive(Debug)]
pub struct ReefDecoder<D>(D);

impl<D: Decoder<Error = Status>> Decoder for ReefDecoder<D> {
    type Item = D::Item;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        self.0.decode(src).map_err(|s| {
            if s.code() == Code::Internal {
                Status::invalid_argument(format!("malformed protobuf message: {}", s.message()))
            } else {
                s
            }
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

impl<T, U> Codec for ReefCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = ReefDecoder<<ProstCodec<T, U> as Codec>::Decoder>;

    fn encoder(&mut self) -> Self::Encoder {
        self.inner.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ReefDecoder(self.inner.decoder())
    }
}

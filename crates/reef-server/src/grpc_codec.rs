//! The protobuf codec of the gRPC service: prost's, except that a message
//! that fails to decode is the client's fault and answers INVALID_ARGUMENT
//! (prost's codec reports INTERNAL) with a message saying so. Also the
//! client side of ModelInfer's tensors ([`infer_request`],
//! [`output_tensors`]), shared by `reef infer`-style clients and the benchmark.
//!
//! `raw_input_contents` / `raw_output_contents` are `bytes::Bytes` (see
//! build.rs): decoding slices them out of the received message without a
//! copy, and encoding reads tensors' own buffers
//! ([`crate::tensor_codec::tensor_bytes`]).

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

/// Builds a ModelInfer request carrying `tensors` as `raw_input_contents`
/// (names in the same order), with the priority parameter when given.
pub fn infer_request(
    model: &str,
    names: &[String],
    tensors: &[reef_model::Tensor],
    priority: Option<reef_sched::Priority>,
) -> crate::proto::ModelInferRequest {
    use crate::proto::{infer_parameter::ParameterChoice, model_infer_request::InferInputTensor};
    let inputs = names
        .iter()
        .zip(tensors)
        .map(|(name, t)| InferInputTensor {
            name: name.clone(),
            datatype: t.dtype().kserve_name().to_string(),
            shape: t.shape.iter().map(|&d| d as i64).collect(),
            parameters: Default::default(),
            contents: None,
        })
        .collect();
    let mut parameters = std::collections::HashMap::new();
    if let Some(p) = priority {
        parameters.insert(
            crate::inference::PRIORITY_PARAM.to_string(),
            crate::proto::InferParameter {
                parameter_choice: Some(ParameterChoice::StringParam(p.to_string())),
            },
        );
    }
    crate::proto::ModelInferRequest {
        model_name: model.to_string(),
        model_version: String::new(),
        id: String::new(),
        parameters,
        inputs,
        outputs: vec![],
        raw_input_contents: tensors
            .iter()
            .map(crate::tensor_codec::tensor_bytes)
            .collect(),
    }
}

/// The parameters that put a tensor's data at `offset` in shared memory
/// region `region` (`byte_size` bytes), for an input or a requested output.
pub fn shm_params(
    region: &str,
    byte_size: u64,
    offset: u64,
) -> std::collections::HashMap<String, crate::proto::InferParameter> {
    use crate::proto::{infer_parameter::ParameterChoice, InferParameter};
    let p = |c| InferParameter {
        parameter_choice: Some(c),
    };
    let mut m = std::collections::HashMap::new();
    m.insert(
        crate::shm::REGION_PARAM.to_string(),
        p(ParameterChoice::StringParam(region.to_string())),
    );
    m.insert(
        crate::shm::BYTE_SIZE_PARAM.to_string(),
        p(ParameterChoice::Int64Param(byte_size as i64)),
    );
    if offset != 0 {
        m.insert(
            crate::shm::OFFSET_PARAM.to_string(),
            p(ParameterChoice::Int64Param(offset as i64)),
        );
    }
    m
}

/// Moves a request's `raw_input_contents` into the client's shared memory
/// `region` (registered as `region_name`): one after another from offset 0,
/// each input then naming its place. Returns the bytes used.
pub fn inputs_to_shm(
    msg: &mut crate::proto::ModelInferRequest,
    region: &dyn crate::shm::ClientMemory,
    region_name: &str,
) -> std::io::Result<u64> {
    let raw = std::mem::take(&mut msg.raw_input_contents);
    let mut offset = 0;
    for (input, bytes) in msg.inputs.iter_mut().zip(&raw) {
        region.write_at(offset, bytes)?;
        input.parameters = shm_params(region_name, bytes.len() as u64, offset);
        offset += bytes.len() as u64;
    }
    Ok(offset)
}

/// Requests the outputs `(name, byte size)` in shared memory region
/// `region_name`, one after another from offset 0; returns their offsets.
pub fn outputs_to_shm(
    msg: &mut crate::proto::ModelInferRequest,
    outputs: &[(String, u64)],
    region_name: &str,
) -> Vec<u64> {
    use crate::proto::model_infer_request::InferRequestedOutputTensor;
    let mut offsets = Vec::with_capacity(outputs.len());
    let mut at = 0;
    msg.outputs = outputs
        .iter()
        .map(|(name, size)| {
            offsets.push(at);
            let parameters = shm_params(region_name, *size, at);
            at += size;
            InferRequestedOutputTensor {
                name: name.clone(),
                parameters,
            }
        })
        .collect();
    offsets
}

/// The output tensors of a ModelInfer response whose outputs the server
/// wrote into the client's shared memory `region` at `offsets` (as asked by
/// [`outputs_to_shm`]).
pub fn shm_output_tensors(
    resp: &crate::proto::ModelInferResponse,
    region: &dyn crate::shm::ClientMemory,
    offsets: &[u64],
) -> Result<Vec<reef_model::Tensor>, String> {
    if resp.outputs.len() != offsets.len() {
        return Err(format!(
            "{} outputs in the response, {} requested",
            resp.outputs.len(),
            offsets.len()
        ));
    }
    resp.outputs
        .iter()
        .zip(offsets)
        .map(|(o, &offset)| {
            let dt = reef_model::DType::from_kserve(&o.datatype)
                .ok_or_else(|| format!("output '{}': unknown datatype {}", o.name, o.datatype))?;
            let shape = o.shape.iter().map(|&d| d.max(0) as usize).collect();
            crate::shm::read_client_tensor(region, &o.name, dt, shape, offset)
                .map_err(|e| e.message)
        })
        .collect()
}

/// The output tensors of a ModelInfer response (from `raw_output_contents`).
pub fn output_tensors(
    resp: &crate::proto::ModelInferResponse,
) -> Result<Vec<reef_model::Tensor>, String> {
    resp.outputs
        .iter()
        .zip(&resp.raw_output_contents)
        .map(|(o, b)| {
            let dt = reef_model::DType::from_kserve(&o.datatype)
                .ok_or_else(|| format!("output '{}': unknown datatype {}", o.name, o.datatype))?;
            let shape = o.shape.iter().map(|&d| d.max(0) as usize).collect();
            crate::tensor_codec::tensor_from_raw(&o.name, dt, shape, b).map_err(|e| e.message)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ModelInferRequest, ModelInferResponse};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use reef_model::tensor::rel_l2;
    use reef_model::Tensor;
    use reef_sched::Priority;

    #[test]
    fn infer_request_survives_the_wire() {
        let mut r = ChaCha8Rng::seed_from_u64(11);
        let a: Vec<f32> = (0..2 * 3 * 5).map(|_| r.random_range(-2.0..2.0)).collect();
        let b: Vec<i64> = (0..7).map(|_| r.random::<i64>()).collect();
        let tensors = [
            Tensor::f32(vec![2, 3, 5], a.clone()).unwrap(),
            Tensor::i64(vec![7], b.clone()).unwrap(),
        ];
        let names = ["a".to_string(), "b".to_string()];
        let msg = infer_request("m", &names, &tensors, Some(Priority::Rt));
        let wire = prost::bytes::Bytes::from(msg.encode_to_vec());
        let back = ModelInferRequest::decode(wire).unwrap();
        assert_eq!(back.model_name, "m");
        assert_eq!(back.inputs[0].shape, vec![2, 3, 5]);
        assert_eq!(back.inputs[1].datatype, "INT64");
        assert!(back.parameters.contains_key("priority"));
        let ta = crate::tensor_codec::tensor_from_raw(
            "a",
            reef_model::DType::F32,
            vec![2, 3, 5],
            &back.raw_input_contents[0],
        )
        .unwrap();
        assert_eq!(rel_l2(ta.as_f32().unwrap(), &a), 0.0);
        let as_bytes: Vec<u8> = b.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(back.raw_input_contents[1].as_ref(), as_bytes.as_slice());

        // The same tensors as a response decode back through output_tensors.
        let resp = ModelInferResponse {
            outputs: back
                .inputs
                .iter()
                .map(|i| crate::proto::model_infer_response::InferOutputTensor {
                    name: i.name.clone(),
                    datatype: i.datatype.clone(),
                    shape: i.shape.clone(),
                    ..Default::default()
                })
                .collect(),
            raw_output_contents: back.raw_input_contents.clone(),
            ..Default::default()
        };
        let outs = output_tensors(&resp).unwrap();
        assert_eq!(rel_l2(outs[0].as_f32().unwrap(), &a), 0.0);
        assert_eq!(outs[1].as_i64().unwrap(), b.as_slice());
    }

    #[test]
    fn output_tensors_reject_unknown_types_and_short_data() {
        let mut resp = ModelInferResponse {
            outputs: vec![crate::proto::model_infer_response::InferOutputTensor {
                name: "y".into(),
                datatype: "FP32".into(),
                shape: vec![4],
                ..Default::default()
            }],
            raw_output_contents: vec![prost::bytes::Bytes::from(vec![1u8; 15])],
            ..Default::default()
        };
        assert!(output_tensors(&resp).unwrap_err().contains("'y'"));
        resp.outputs[0].datatype = "NOPE".into();
        assert!(output_tensors(&resp).unwrap_err().contains("NOPE"));
    }
}

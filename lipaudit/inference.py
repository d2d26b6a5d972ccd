"""Running an ONNX model on data with onnxruntime (no torch involved)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from lipaudit.errors import DataError, ModelLoadError, UsageError, first_line


class OnnxRunner:
    """One onnxruntime session for a model file or a serialized ``ModelProto``."""

    def __init__(self, model: str | bytes, output: str, threads: int = 0):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelLoadError(f"onnxruntime cannot run the model ({first_line(exc)})") from None
        inputs = [i for i in self.session.get_inputs()]
        if len(inputs) != 1:
            raise UsageError(f"certify needs a model with one input; this one has {len(inputs)}: "
                             f"{', '.join(i.name for i in inputs)}")
        self.input = inputs[0]
        if self.input.type not in ("tensor(float)", "tensor(double)", "tensor(float16)"):
            raise UsageError(f"input {self.input.name!r} has type {self.input.type}: certify feeds float tensors")
        names = [o.name for o in self.session.get_outputs()]
        if output not in names:
            raise UsageError(f"output {output!r} is not a model output ({', '.join(names)}); onnxruntime can only "
                             "return graph outputs")
        self.output = output
        batch = self.input.shape[0] if self.input.shape else None
        self.fixed_batch = batch if isinstance(batch, int) and batch > 0 else None

    def logits(self, x: np.ndarray, batch_size: int = 256,
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Outputs for every sample of ``x`` (batches of ``batch_size``, or the model's fixed batch)."""
        dtype = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}[self.input.type]
        step = self.fixed_batch or batch_size
        n = x.shape[0]
        out: list[np.ndarray] = []
        for start in range(0, n, step):
            chunk = x[start:start + step].astype(dtype, copy=False)
            real = chunk.shape[0]
            if self.fixed_batch and real < self.fixed_batch:  # fill a fixed batch with copies, drop their outputs
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.fixed_batch - real, axis=0)])
            try:
                (y,) = self.session.run([self.output], {self.input.name: chunk})
            except Exception as exc:
                raise DataError(f"onnxruntime failed on samples {start}..{start + real - 1} ({first_line(exc)})") from None
            y = np.asarray(y)
            if y.ndim < 1 or y.shape[0] != chunk.shape[0]:
                raise DataError(f"output {self.output!r} has shape {tuple(y.shape)} for a batch of {chunk.shape[0]}: "
                                "certify needs logits of shape (batch, classes)")
            out.append(y[:real])
            if progress:
                progress(min(start + step, n), n)
        return np.concatenate(out).astype(np.float64)


def proto_bytes(model: Any) -> bytes:
    try:
        return model.SerializeToString()
    except Exception as exc:
        raise ModelLoadError(f"cannot serialize the model for onnxruntime ({first_line(exc)})") from None

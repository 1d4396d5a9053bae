"""Inference backends for the frozen networks (the encoder, and the head at relocalization time).

``torch`` runs the modules as they are (TorchScript on a CPU, fp16 on CUDA). ``openvino`` converts
the same modules at load time (no files, nothing unpickled) and runs them with OpenVINO's CPU
plugin, which keeps the cores' vector and matrix units busy at the small shapes a single frame
has (benchmarks/backends.py measures both on the same map). ``auto`` picks OpenVINO on a CPU
where it is installed, torch everywhere else. Training always runs in torch: it needs gradients.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # torch is imported where a model is converted: the settings import this module
    import torch

from .errors import SeqaceError

BACKENDS = ("auto", "torch", "openvino")


class BackendError(SeqaceError, ValueError):
    """An inference backend that cannot be used here; the message says why and what to do."""


@lru_cache(maxsize=1)
def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend that will run: ``auto`` becomes ``openvino`` on a CPU that has it, else ``torch``."""
    if backend not in BACKENDS:
        raise BackendError(f"backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "openvino" if device.type == "cpu" and openvino_available() else "torch"
    if backend == "openvino":
        if device.type != "cpu":
            raise BackendError(f"the openvino backend runs on the CPU, not {device}: use backend "
                               "'torch' (or 'auto') on a GPU")
        if not openvino_available():
            raise BackendError("backend 'openvino' needs the openvino package: pip install openvino "
                               "(or use backend 'torch')")
    return backend


@lru_cache(maxsize=1)
def _core():
    import openvino as ov

    return ov.Core()


def convert(module: torch.nn.Module, example: torch.Tensor, dynamic_axes: Sequence[int] = ()):
    """``module`` as an OpenVINO model, traced with ``example``; ``dynamic_axes`` are the input
    dimensions that may change from call to call (the head's cell count, the encoder's image size)."""
    import openvino as ov
    import torch

    shape = [-1 if i in dynamic_axes else n for i, n in enumerate(example.shape)]
    with torch.no_grad():
        return ov.convert_model(module.eval(), example_input=example, input=[ov.PartialShape(shape)])


def compile_model(model, precision: str, threads: int) -> "OpenVinoModel":
    """Compile a converted model for the CPU. ``precision``: ``bf16`` (OpenVINO keeps fp32 where the
    CPU lacks bf16 units) or ``fp32``; ``threads`` > 0 caps its threads."""
    config = {
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        # Unpinned threads move to whichever core is free when another process is busy; pinned
        # ones wait for their own core.
        "ENABLE_CPU_PINNING": False,
    }
    if threads > 0:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return OpenVinoModel(_core().compile_model(model, "CPU", config))


def compile_for_cpu(module: torch.nn.Module, example: torch.Tensor, precision: str, threads: int,
                    dynamic_axes: Sequence[int] = ()) -> "OpenVinoModel":
    """``convert`` then ``compile_model``."""
    return compile_model(convert(module, example, dynamic_axes), precision, threads)


def quantize_int8(model, calibration: np.ndarray, batch_rows: int = 1024):
    """``model`` with int8 weights and activations (NNCF post-training quantization), its ranges
    calibrated on ``calibration`` (rows of the model's input)."""
    batches = [np.ascontiguousarray(calibration[i:i + batch_rows], np.float32)
               for i in range(0, len(calibration), batch_rows)]
    return quantize_model(model, batches)


def quantize_model(model, inputs: list[np.ndarray]):
    """``model`` in int8 (NNCF post-training quantization), calibrated on ``inputs`` (each one
    input of the model)."""
    try:
        import nncf
    except ImportError as exc:
        raise BackendError("int8 needs the nncf package: pip install nncf (or use precision bf16)") from exc
    return nncf.quantize(model, nncf.Dataset([np.ascontiguousarray(x, np.float32) for x in inputs]),
                         subset_size=len(inputs))


class PerShapeModel:
    """A converted one-input model compiled for each input shape it meets, up to ``max_shapes``
    (then one compiled for any shape serves the rest). With the shape fixed the CPU plugin plans
    its kernels and buffers ahead: the encoder runs faster in int8 and fp32, as fast in bf16
    (benchmarks/README.md, "The encoder compiled for its image size"). A camera gives one shape,
    so one compilation of a fraction of a second at its first frame."""

    def __init__(self, model, precision: str, threads: int, max_shapes: int = 4) -> None:
        self.model, self.precision, self.threads, self.max_shapes = model, precision, threads, max_shapes
        self._by_shape: dict[tuple[int, ...], OpenVinoModel] = {}
        self._any: OpenVinoModel | None = None

    def __call__(self, x: np.ndarray) -> Sequence[np.ndarray]:
        key = tuple(int(n) for n in x.shape)
        compiled = self._by_shape.get(key)
        if compiled is None and len(self._by_shape) < self.max_shapes:
            import openvino as ov

            static = self.model.clone()
            static.reshape({static.inputs[0]: ov.PartialShape(list(key))})
            compiled = self._by_shape[key] = compile_model(static, self.precision, self.threads)
        if compiled is None:
            if self._any is None:
                self._any = compile_model(self.model, self.precision, self.threads)
            compiled = self._any
        return compiled(x)


class OpenVinoModel:
    """A compiled model with one infer request; outputs are copied out (the request reuses its buffers)."""

    def __init__(self, compiled) -> None:
        self.compiled = compiled
        self._request = compiled.create_infer_request()

    def __call__(self, *inputs: np.ndarray) -> Sequence[np.ndarray]:
        self._request.infer([np.ascontiguousarray(x, dtype=np.float32) for x in inputs])
        return [np.array(self._request.get_output_tensor(i).data, copy=True)
                for i in range(len(self.compiled.outputs))]

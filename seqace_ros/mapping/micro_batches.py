"""One training step's forward and backward as equal parts taken by single-core worker threads.

OpenMP splits every matrix product of a step evenly over its threads, so when another process
takes part of one core, every product waits for the thread on that core, and a step kept under
60% of its rate beside one busy process (benchmarks/README.md, "Session 11"). Here the batch is
cut into parts that worker threads of one core each take as they come free: a worker on a
shared core takes fewer. Each part's gradient is computed on its own (``torch.autograd.grad``)
and the parts are summed in order, so a step does not depend on which worker took which part.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

# (indices of the part's samples) -> (per-sample loss, per-sample validity)
PartLoss = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class MicroBatchSteps:
    """Gradients of a batch's mean loss from ``parts`` equal parts on ``workers`` threads. Torch's
    own kernels should run on one thread meanwhile (``torch.set_num_threads(1)``): the workers are
    the parallelism."""

    def __init__(self, params: list[torch.nn.Parameter], workers: int, parts: int) -> None:
        if workers < 1 or parts < 1:
            raise ValueError(f"workers ({workers}) and parts ({parts}) must be >= 1")
        self.params = [p for p in params if p.requires_grad]
        self.parts = parts
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="seqace-train")

    def gradients(self, loss_of: PartLoss, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Set each parameter's ``.grad`` to the gradient of the mean of ``loss_of`` over the
        samples ``idx``; return the per-sample losses and validity (detached, in ``idx``'s order)."""
        total = len(idx)

        def part(chunk: torch.Tensor):
            loss, valid = loss_of(chunk)
            grads = torch.autograd.grad(loss.sum() / total, self.params, allow_unused=True)
            return grads, loss.detach(), valid.detach()

        results = list(self._pool.map(part, idx.chunk(self.parts)))  # in submission order
        for i, p in enumerate(self.params):
            grads = [r[0][i] for r in results if r[0][i] is not None]
            p.grad = torch.stack(grads).sum(0) if grads else None
        return torch.cat([r[1] for r in results]), torch.cat([r[2] for r in results])

    def close(self) -> None:
        self._pool.shutdown(wait=True)

"""One training process, or one of several started by ``accelerate launch`` (or ``train --processes``).

The trainer talks to this ``Cluster`` only, so its loop reads the same for one process and for many.
With one process nothing of accelerate is imported and the model is moved to the device as before;
with several (``WORLD_SIZE`` > 1) accelerate's ``Accelerator`` wraps the model (DDP, or FSDP /
DeepSpeed from an accelerate config file), and each process trains its own slice of every batch.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from reasonchat.errors import UserError


def launched_processes() -> int:
    """How many processes this run was started with (``torchrun``/``accelerate launch`` set ``WORLD_SIZE``)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


class Cluster:
    def __init__(self, device: str | None) -> None:
        import torch

        self.accelerator: Any = None
        if launched_processes() > 1:
            if device and device not in ("cpu", "cuda"):
                raise UserError(
                    f"--device {device}: with several processes each one takes its own device; "
                    "pass --device cpu or cuda, or none"
                )
            from accelerate import Accelerator

            cpu = device == "cpu" or not torch.cuda.is_available()
            self.accelerator = Accelerator(cpu=cpu)
            self.device = self.accelerator.device
            self.processes = self.accelerator.num_processes
            self.rank = self.accelerator.process_index
        else:
            if device:
                if device.startswith("cuda") and not torch.cuda.is_available():
                    raise UserError(f"--device {device}: torch sees no CUDA device")
                try:
                    self.device = torch.device(device)
                except RuntimeError:
                    raise UserError(f"--device {device}: not a device torch knows") from None
            else:
                self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            self.processes, self.rank = 1, 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """FSDP or DeepSpeed: the weights are split across processes, so saving them is collective."""
        if self.accelerator is None:
            return False
        return str(self.accelerator.distributed_type).rsplit(".", 1)[-1] in ("FSDP", "DEEPSPEED")

    def prepare(self, model: Any, optimizer: Any) -> tuple[Any, Any]:
        if self.accelerator is None:
            return model, optimizer
        return self.accelerator.prepare(model, optimizer)

    def unwrap(self, model: Any) -> Any:
        return model if self.accelerator is None else self.accelerator.unwrap_model(model)

    def sum(self, *values: float) -> list[float]:
        """``values`` summed over all processes (float64, one collective)."""
        if self.accelerator is None:
            return list(values)
        import torch

        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        return [float(v) for v in self.accelerator.reduce(tensor, reduction="sum")]

    def backward(self, loss: Any) -> None:
        if self.accelerator is None:
            loss.backward()
        else:
            self.accelerator.backward(loss)

    def no_sync(self, model: Any, last: bool) -> Any:
        """Gradients are averaged across processes on the last micro-batch of a step only."""
        if self.accelerator is None or last:
            return contextlib.nullcontext()
        return self.accelerator.no_sync(model)

    def clip(self, model: Any, max_norm: float) -> None:
        import torch

        if self.accelerator is None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        else:
            self.accelerator.clip_grad_norm_(model.parameters(), max_norm)

    def full_state_dict(self, model: Any) -> dict[str, Any] | None:
        """The whole model's weights on the main process when they are sharded (a collective: every
        process must call it); ``None`` when the unwrapped model holds them already."""
        if not self.sharded:
            return None
        return self.accelerator.get_state_dict(model)

    def barrier(self) -> None:
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()

    def close(self) -> None:
        if self.accelerator is not None:
            self.accelerator.end_training()

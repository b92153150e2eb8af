"""The data position every training loader keeps, (epoch, batch): what a checkpoint saves and
a resume restores, for the streaming loaders and the device cache alike."""
from __future__ import annotations


class DataPosition:
    """Mixin: `self.epoch`, `self.batch` and `self.batches_per_epoch` as checkpoint state."""
    epoch: int
    batch: int
    batches_per_epoch: int

    def initial_state(self) -> dict:
        return {"epoch": 0, "batch": 0}

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict) -> None:
        epoch, batch = int(state["epoch"]), int(state["batch"])
        if not 0 <= batch < self.batches_per_epoch or epoch < 0:
            raise ValueError(f"data position (epoch {epoch}, batch {batch}) is outside an epoch "
                             f"of {self.batches_per_epoch} batches: was the run made with "
                             f"another dataset, batch size or worker count?")
        self.epoch, self.batch = epoch, batch

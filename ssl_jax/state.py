"""TrainState: everything a run needs to continue, as one pytree."""

from typing import Any

import flax.struct
import jax


@flax.struct.dataclass
class TrainState:
    """step, trained params, BatchNorm statistics, optimizer state, method extras.

    `extra` holds method state outside the gradient step (EMA targets, queues,
    DirectPred predictors); it is checkpointed with the rest.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    extra: Any

    def variables(self) -> dict:
        return dict(params=self.params, batch_stats=self.batch_stats, extra=self.extra)

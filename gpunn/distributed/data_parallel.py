"""Synchronous data-parallel training: what ``fit`` does differently on N ranks.

- At the start of ``fit`` rank 0's parameters, optimizer state and step count, layer
  state and the model generator's state are broadcast, so every rank starts equal and
  draws the same permutation each epoch. Dropout and noise layers are reseeded once
  per rank (``seed + rank``), so their masks differ between ranks.
- Each global batch of ``batch_size`` rows is cut into ``size`` contiguous shards
  (sizes differ by at most one; a rank may get none in a tiny last batch). Each rank
  computes the mean gradient of its shard, scales it by ``shard / batch`` and one
  all-reduce over the flat gradient arena sums them: the gradient of the global
  batch. The batch loss is all-reduced the same way (a scalar), so the finite check
  and ``TerminateOnNaN`` decide alike on every rank. Optimizer steps then run
  identically everywhere.
- Epoch and validation logs are reduced over the ranks before anyone sees them.
- At each epoch end rank 0's layer state (BatchNorm's running statistics, which each
  rank updates from its own shards) is broadcast, and a checksum of the parameters is
  compared across ranks: :class:`DistributedError` if they ever diverge.
"""

from __future__ import annotations

import numpy as np

from gpunn.distributed import engines
from gpunn.distributed.ranks import DistributedError, World


def shard_bounds(n: int, rank: int, size: int) -> tuple[int, int]:
    """``(lo, hi)``: rank ``rank``'s contiguous part of ``n`` rows; the first
    ``n % size`` ranks get one row more."""
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


class DataParallel:
    """The collectives of one model's data-parallel ``fit`` (see the module)."""

    def __init__(self, model, world: World):
        self.model, self.world = model, world
        self.rank, self.size = world.rank, world.size
        self.engine = engines.engine_for(model.backend, world)

    @property
    def primary(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> tuple[int, int]:
        return shard_bounds(n, self.rank, self.size)

    # ------------------------------------------------------------ per step
    def reduce_gradients_(self, n_local: int, n_global: int) -> None:
        """Turns this rank's mean shard gradient into the global batch's."""
        grads = self.model.arena.grads
        if n_local == 0:
            grads[...] = 0
        elif n_local != n_global:
            grads *= n_local / n_global
        self.engine.allreduce_(grads)

    def reduce_loss(self, loss, n_local: int, n_global: int):
        """The global batch's loss (a 0-d device array) from this rank's shard loss."""
        xp, dtype = self.model.backend.xp, self.model.dtype
        if loss is None or n_local == 0:
            part = xp.zeros(1, dtype)
        else:
            share = xp.asarray(loss, dtype=dtype) * (n_local / n_global)
            part = xp.reshape(share, (1,))
        return self.engine.allreduce_(part)[0]

    def reduce_host_(self, values: np.ndarray) -> np.ndarray:
        """Sums float64 host statistics (epoch totals) over the ranks, in place."""
        return self.world.allreduce_host_(values)

    # ------------------------------------------------------------ start and end
    def start(self) -> None:
        """Makes every rank equal to rank 0 (see the module) and reseeds the noise
        layers per rank once."""
        model = self.model
        self.engine.broadcast_(model.arena.params)
        model.arena.params_changed()  # mixed precision: re-cast the 16-bit copy
        for buffer in model.optimizer.state.values():
            self.engine.broadcast_(buffer)
        host = self.world.broadcast_json(
            {
                "optimizer": model.optimizer.host_state(),
                "rng": model.rng.bit_generator.state,
            }
        )
        model.optimizer.load_host_state(host["optimizer"])
        model.rng.bit_generator.state = host["rng"]
        self.sync_layer_state()
        if getattr(model, "_dp_seeded", None) != (self.rank, self.size):
            for layer in model.layers:
                if getattr(layer, "generator", None) is not None:
                    words = np.random.SeedSequence([layer.seed, self.rank])
                    seed = int(words.generate_state(1, np.uint64)[0]) >> 1
                    layer.generator = layer.new_generator(model.backend, seed)
            model._dp_seeded = (self.rank, self.size)

    def sync_layer_state(self) -> None:
        """Broadcasts rank 0's layer state (BatchNorm running statistics...)."""
        state = self.model.get_state()
        if not state:
            return
        for key in sorted(state):
            state[key] = self.world.broadcast_host_(np.array(state[key], order="C"))
        self.model.set_state(state)

    def end_epoch(self, epoch: int) -> None:
        """Rank 0's layer state everywhere, then the weights checked equal."""
        self.sync_layer_state()
        self.check_weights(f"after epoch {epoch + 1}")

    def check_weights(self, when: str) -> None:
        """Raises :class:`DistributedError` unless every rank holds bitwise the same
        parameters: an order-free integer sum of their bit patterns is compared."""
        params = self.model.arena.params
        xp = self.model.backend.xp
        bits = params.view(np.uint64 if params.dtype.itemsize == 8 else np.uint32)
        mine = int(xp.sum(bits, dtype=np.uint64))
        sums = self.world.allgather_json(mine)
        if any(s != sums[0] for s in sums):
            ranks = [r for r, s in enumerate(sums) if s != sums[0]]
            raise DistributedError(
                f"the weights differ between the ranks {when}: ranks {ranks} do not "
                f"match rank 0 (checksums {[hex(s) for s in sums]}). Every rank must "
                "run the same script on the same data with the same model, dtype and "
                "backend; an MPI or NCCL all-reduce must return the same sum on every "
                "rank"
            )

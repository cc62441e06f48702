"""Batches of uint8 clips: the sampler, the DataLoader settings, and epoch bookkeeping.

- ``ClipSampler`` shuffles by ``(seed, epoch)``, shards across distributed ranks, and yields
  ``(index, epoch)`` so that every item's random draws depend only on the seed, the epoch and the
  item (not on worker count or rank): continuing a run replays the same clips.
- Training pads the order so that every rank gets the same number of batches (DDP needs it);
  evaluation shards without padding, so no clip is counted twice.
- Workers are persistent and hand uint8 tensors to pinned memory; the float conversion and
  normalisation happen on the device (``DeviceTransform``).
"""
from __future__ import annotations

import atexit
import logging
import os
import tempfile
import weakref
from typing import TYPE_CHECKING, Any, Iterator, List, Optional, Set, Tuple

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate, get_worker_info

from resnet3d.data.shared_memory import fit_prefetch
from resnet3d.engine.signals import children_start_deaf_to_stops, leave_stopping_to_the_parent
from resnet3d.errors import UserError
from resnet3d.hardware import usable_cores

if TYPE_CHECKING:
    from resnet3d.data.decode_share import DecodeShare

log = logging.getLogger("resnet3d.data")
_warned_worker_counts: Set[int] = set()


class WorkerLoader(DataLoader):
    """torch's DataLoader, with one line of ours about more workers than cores instead of torch's
    warning, which it repeats for every loader built and every epoch's iterator. With
    ``init_loader_worker`` its workers start deaf to Ctrl-C and SIGTERM until that function takes
    the signals over."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.num_workers:
            check_worker_socket_room()

    def check_worker_number_rationality(self) -> None:
        warn_many_workers(self.num_workers)

    def __iter__(self):
        if self.num_workers and self.persistent_workers:
            _with_persistent_workers.add(self)
        if self.num_workers == 0 or self.worker_init_fn is not init_loader_worker:
            return super().__iter__()  # (a worker that never takes the signals over must not start deaf)
        with children_start_deaf_to_stops():  # the workers start here (persistent ones at the first call)
            return super().__iter__()


# A Unix socket's path holds 107 bytes. torch's workers hand each batch's file descriptors over
# through multiprocessing's socket at TMPDIR/pymp-XXXXXXXX/listener-XXXXXXXX (32 bytes past TMPDIR).
SOCKET_PATH_LIMIT = 107
SOCKET_PATH_BEYOND_TMPDIR = len("/pymp-12345678/listener-12345678")


def check_worker_socket_room() -> None:
    """Refuse a temporary folder too long for the workers' socket. Past the limit the worker's
    hand-over thread fails ("AF_UNIX path too long"), the worker lives on, and the main process
    waits for its batch for ever."""
    if torch.multiprocessing.get_sharing_strategy() != "file_descriptor":
        return  # (other strategies hand over file names, not descriptors)
    folder = tempfile.gettempdir()
    length = len(os.fsencode(folder)) + SOCKET_PATH_BEYOND_TMPDIR
    if length > SOCKET_PATH_LIMIT:
        raise UserError(f"the temporary folder {folder} is too long for the loader workers: they hand batches over "
                        f"through a socket in it, whose path would be {length} bytes of the {SOCKET_PATH_LIMIT} "
                        "a socket path may hold; set TMPDIR to a shorter folder (e.g. TMPDIR=/tmp), or load "
                        "without workers (--n_threads 0, --workers 0)")


def worker_death(error: BaseException) -> Optional[str]:
    """torch's error for a loader worker that died (killed, crashed) as one line with the likely
    cause and the fix; None for any other error."""
    text = str(error)
    if not isinstance(error, RuntimeError) or "DataLoader worker (pid" not in text:
        return None
    first = text.strip().splitlines()[0].rstrip(". ")
    return (f"{first}: most often the system's out-of-memory killer (the kernel log, dmesg, names it); lower "
            "--n_threads (each worker holds the clips it decodes ahead) or give the run more memory")


_with_persistent_workers: "weakref.WeakSet[WorkerLoader]" = weakref.WeakSet()


def release_workers(*loaders: Any) -> None:
    """Stop the loaders' persistent workers now, through their normal exit.

    torch leaves them running until the process ends, when multiprocessing's exit handler kills
    them: a killed worker runs no clean-up, and each left its ``/tmp/pymp-*`` folder (the socket
    it passed batches' file descriptors through) behind, one per worker and run.
    """
    for loader in loaders:
        iterator = getattr(loader, "_iterator", None)
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        if iterator is not None:
            loader._iterator = None


# Registered after multiprocessing's own exit handler (torch imported it), so it runs first: the
# workers still alive at the end of a command exit before that handler would kill them. (Processes
# that multiprocessing started run no atexit handlers: the trainer releases its loaders itself.)
atexit.register(lambda: release_workers(*list(_with_persistent_workers)))


def warn_many_workers(num_workers: int) -> None:
    """At most one line per worker count and process, from the first process of each machine:
    the workers of all the machine's processes (torchrun's and ``--nproc-per-node``'s set
    LOCAL_WORLD_SIZE) share its cores, so they are counted together."""
    cores = usable_cores()
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    # (each process takes its share of the machine's workers rounded up: up to processes - 1 more
    # than asked, which the default count, cores - 1, then exceeds without anyone asking for it)
    if num_workers * processes <= cores + processes - 1 or num_workers in _warned_worker_counts:
        return
    _warned_worker_counts.add(num_workers)
    if int(os.environ.get("LOCAL_RANK", "0")) != 0:  # the machine's other processes would say the same
        return
    if processes > 1:
        log.warning("%d processes with %d loader workers each on %d usable cores (--n_threads / --workers: the "
                    "machine's workers, shared among its processes): more workers than cores queue for the same "
                    "cores and rarely load faster; taken as given", processes, num_workers, cores)
    else:
        log.warning("%d loader worker processes on %d usable cores (--n_threads / --workers): more workers than "
                    "cores queue for the same cores and rarely load faster; taken as given", num_workers, cores)


class ClipSampler(Sampler):
    """Indices of one rank's share of the data set, as ``(index, epoch)`` pairs.

    ``rounds`` > 1 (benchmarks only) gives the orders of that many consecutive epochs, from the
    one set by ``set_epoch`` on, back to back: one iterator of the loader then serves them all.
    Going round a small data set with a fresh iterator per epoch starts the workers' pipeline
    afresh each time (every worker builds its first batch before any arrives), which a
    benchmark over a few hundred clips would measure as data wait every few dozen steps."""

    def __init__(
        self,
        n_items: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = False,
        rounds: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        if rounds < 1:
            raise ValueError(f"rounds must be 1 or more (got {rounds})")
        self.n_items = n_items
        self.rounds = int(rounds)
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.pad = pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _order(self, epoch: int) -> list:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(self.n_items, generator=generator).tolist()
        else:
            order = list(range(self.n_items))
        if self.pad and self.world_size > 1 and order:
            shortfall = -len(order) % self.world_size
            order += order[:shortfall]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        epochs = range(self.epoch, self.epoch + self.rounds)
        return iter([(index, epoch) for epoch in epochs for index in self._order(epoch)])

    def __len__(self) -> int:
        if self.pad and self.world_size > 1:
            return self.rounds * -(-self.n_items // self.world_size)
        return self.rounds * len(range(self.rank, self.n_items, self.world_size))


def new_batch_tensor(shape: Tuple[int, ...], dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    """An uninitialised tensor for a whole batch, in shared memory inside a DataLoader worker (as
    the default collate allocates its output there), so that handing it to the main process
    copies nothing."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    numel = 1
    for n in shape:
        numel *= n
    storage = torch.empty(0, dtype=dtype).untyped_storage()._new_shared(numel * dtype.itemsize)
    return torch.empty(0, dtype=dtype).set_(storage).view(shape)


def _whole(parts: List[torch.Tensor]) -> Optional[torch.Tensor]:
    """The batch tensor that ``parts`` are the consecutive slots of (``new_batch_tensor``), or None."""
    first = parts[0]
    storage = first.untyped_storage()
    step = first.numel()
    if not first.is_contiguous() or storage.nbytes() != len(parts) * step * first.element_size():
        return None
    for k, part in enumerate(parts):
        if (
            part.untyped_storage().data_ptr() != storage.data_ptr()
            or part.storage_offset() != k * step
            or part.shape != first.shape
            or not part.is_contiguous()
        ):
            return None
    return torch.empty(0, dtype=first.dtype).set_(storage, 0, (len(parts),) + tuple(first.shape))


def collate(items: list):
    """``default_collate``, except that clips already written into one batch tensor (the
    dataset's ``__getitems__``) are passed on as that tensor instead of being copied by a stack,
    and items of JPEG bytes (``"jpeg"``, decode_device "cuda") are packed by
    ``gpu_decode.collate_encoded``."""
    if items and isinstance(items[0], dict) and "jpeg" in items[0]:
        from resnet3d.data.gpu_decode import collate_encoded

        batch = default_collate([{key: value for key, value in item.items() if key != "jpeg"} for item in items])
        batch.update(collate_encoded([item["jpeg"] for item in items]))
        return batch
    if not items or not isinstance(items[0], dict) or "clip" not in items[0]:
        return default_collate(items)
    batch = default_collate([{key: value for key, value in item.items() if key != "clip"} for item in items])
    clips = [item["clip"] for item in items]
    whole = _whole(clips)
    batch["clip"] = whole if whole is not None else default_collate(clips)
    return batch


def init_loader_worker(worker_id: int) -> None:
    """``worker_init_fn`` of the training and recognition loaders."""
    # each worker decodes one clip (or chunk) at a time; intra-op threads would only oversubscribe
    # the cores the other workers use
    torch.set_num_threads(1)
    leave_stopping_to_the_parent()  # a Ctrl-C or a pre-emption reaches us too: the trainer saves first


# batches each worker keeps ready (before ``fit_prefetch`` lowers it where /dev/shm is short)
PREFETCH_FACTOR = 4


def build_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    train: bool,
    num_workers: int,
    distributed: bool = False,
    seed: int = 0,
    rank: Optional[int] = None,
    world_size: Optional[int] = None,
    drop_last: bool = False,
    pin_memory: Optional[bool] = None,
    prefetch_factor: int = PREFETCH_FACTOR,
    persistent_workers: bool = True,
    rounds: int = 1,
) -> DataLoader:
    """A DataLoader over ``dataset`` with a ``ClipSampler`` (``loader.sampler``).

    ``batch_size`` is per process. With ``distributed``, rank and world size default to
    ``torch.distributed``'s. Call ``set_epoch(loader, epoch)`` before each epoch. ``rounds``:
    ``ClipSampler``'s (benchmarks; training takes one epoch per iterator).
    """
    if distributed:
        import torch.distributed as dist

        rank = dist.get_rank() if rank is None else rank
        world_size = dist.get_world_size() if world_size is None else world_size
    rank, world_size = rank or 0, world_size or 1
    sampler = ClipSampler(len(dataset), shuffle=train, seed=seed, rank=rank, world_size=world_size, pad=train,
                          rounds=rounds)
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    workers = max(0, int(num_workers))
    extra = {}
    if workers > 0:
        extra = {
            "persistent_workers": persistent_workers,
            "prefetch_factor": fit_prefetch(_batch_bytes(dataset, batch_size), workers, prefetch_factor,
                                            sharers=int(os.environ.get("LOCAL_WORLD_SIZE", "1"))),
            "worker_init_fn": init_loader_worker,
        }
    share = getattr(dataset, "decode_share", None)
    if share is not None:  # a change of share shows after the batches the loader already holds
        share.lag = workers * extra.get("prefetch_factor", 0)
    return WorkerLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        drop_last=drop_last,
        collate_fn=collate,
        **extra,
    )


def _batch_bytes(dataset: Dataset, batch_size: int) -> int:
    """Bytes of one batch of decoded clips in shared memory; 0 when unknown or small (clips of
    varying size, batches of JPEG bytes)."""
    shape_of = getattr(dataset, "clip_shape", None)
    shape = shape_of() if callable(shape_of) else None
    if shape is None or getattr(dataset, "encoded", False):
        return 0
    numel = 1
    for n in shape:
        numel *= n
    return numel * batch_size


def decode_share_of(loader) -> Optional["DecodeShare"]:
    """The ``DecodeShare`` of a loader over a decode_device "mixed" dataset (None otherwise)."""
    return getattr(getattr(loader, "dataset", None), "decode_share", None)


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell the loader's sampler which epoch comes next (shuffle order and random draws)."""
    sampler = loader.sampler
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)

"""Making the next items in a thread of their own while the caller works on the current one.

``classify`` decodes each video in its own process: FFmpeg, swscale and torch's resize all
release the GIL, so a thread that decodes the next batch of clips runs on another core while the
main thread scores the current one. Decoding and scoring one after the other, as before, left
one side idle at every batch (docs/benchmarks.md).
"""
from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")

_DONE = object()


class _Raised:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def made_ahead(items: Iterable[T], depth: int = 2, name: str = "resnet3d-classify-decode",
               stop: Optional[threading.Event] = None) -> Iterator[T]:
    """The items of ``items``, made by a daemon thread up to ``depth`` ahead of the caller.

    An exception raised while making an item is raised here, where that item would have come,
    after the items made before it. When the caller stops early (an error of its own, Ctrl-C,
    ``close()``), ``stop`` is set and the thread stops at its next item and is joined. An item that
    takes long to make (a batch of clips: seconds of decoding) should watch ``stop`` while it is
    made, so that Ctrl-C does not wait for it."""
    slots: "queue.Queue[object]" = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event() if stop is None else stop

    def put(value: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def make() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as error:  # handed to the caller, who raises it
            put(_Raised(error))
            return
        put(_DONE)

    thread = threading.Thread(target=make, name=name, daemon=True)
    thread.start()
    try:
        while True:
            value = slots.get()
            if value is _DONE:
                return
            if isinstance(value, _Raised):
                raise value.error
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
        close = getattr(items, "close", None)
        if close is not None:  # a generator: its finally blocks (closing the video file) run now
            close()

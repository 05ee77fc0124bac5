"""Reading the next case while the networks work on this one."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class ReadAhead:
    """Cases read one ahead in a background thread, so that reading and preprocessing the next
    case overlap the networks' work on this one. The first read starts at once: made before the
    networks load, it overlaps their loading too."""

    def __init__(self, cases: Sequence[Any], read: Callable[[Any], Any]) -> None:
        self.cases = list(cases)
        self._read = read
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="ichseg-read")
        self._pending = [self._reader.submit(read, path) for path in self.cases[:1]]

    def __iter__(self) -> Iterator[tuple[Any, Future[Any]]]:
        """Each case with its reading; the next one's starts when this one is handed out."""
        try:
            for index, path in enumerate(self.cases):
                if index + 1 < len(self.cases):
                    self._pending.append(self._reader.submit(self._read, self.cases[index + 1]))
                yield path, self._pending.pop(0)
        finally:
            self.close()

    def close(self) -> None:
        """Stop reading (cases not started are dropped)."""
        for pending in self._pending:
            pending.cancel()
        self._reader.shutdown(wait=True)

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

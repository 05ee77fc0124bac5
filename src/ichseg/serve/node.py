"""``serve``: the DICOM node's main loop, tying the SCP, the queue, the worker and the sender.

The model folder is loaded once, before the port opens. The SCP receives in its own threads and
the sender sends in its own; the main thread takes the next study whose quiet period is over,
segments the series the series rules choose in it (with the models' training slice thickness
deciding among the eligible), and sleeps briefly when there is nothing to do. SIGTERM and SIGINT
end the loop between two studies; a harder stop (kill -9) loses nothing that the store had
recorded.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ichseg.serve.config import ServeOptions
from ichseg.serve.log import EventLog
from ichseg.serve.store import Store


def serve(options: ServeOptions, stop: threading.Event | None = None) -> None:
    """Run the node until ``stop`` is set or the process receives SIGTERM / SIGINT."""
    # numpy, pynetdicom, highdicom and the models load when a node runs, not with the command line
    from ichseg.io.series_selection import SeriesRules, SeriesSelection
    from ichseg.model.folder import ModelFolder, training_slice_thickness
    from ichseg.segmentation.segmenter import Segmenter
    from ichseg.segmentation.settings import InferenceSettings
    from ichseg.serve.scp import StorageServer
    from ichseg.serve.sender import Sender
    from ichseg.serve.worker import Worker

    folder = ModelFolder.open(options.model)  # a wrong folder is one line on stderr, before anything starts
    rules = SeriesRules.coerce(options.series_rules)
    selection = SeriesSelection(rules, training_slice_thickness(folder.select()))
    stop = stop or threading.Event()
    store = Store(options.state_dir)
    log = EventLog(options.state_dir / "log.jsonl", store.hash_uid, options.keep_identifiers)
    log.event("node_starting", recovered=store.recover(), quiet_s=options.quiet_seconds,
              send_to=str(options.send_to), timeouts_s=dataclasses.asdict(options.timeouts),
              series_rules=rules.source, all_series=options.all_series,
              target_thickness_mm=selection.target_thickness_mm)
    segmenter = Segmenter.load(options.model, InferenceSettings(mirroring=options.mirroring), device=options.device)
    log.event("model_loaded", n_models=len(segmenter.models))
    worker = Worker(segmenter, store, log, selection, options.all_series)
    sender = Sender(options.ae_title, options.send_to, store, log, options.retry, options.timeouts)
    server = StorageServer(options, store, log)
    try:
        server.start()
        sender.start(options.poll_seconds)
        with _stop_on_signals(stop):
            while not stop.is_set():
                if not worker.process_due(options.quiet_seconds):
                    stop.wait(options.poll_seconds)
    finally:
        server.stop()
        sender_stopped = sender.stop()
        log.event("node_stopped", sender_stopped=sender_stopped, **store.counts())
        store.close()


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on SIGTERM and SIGINT (main thread only), restoring the old handlers after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

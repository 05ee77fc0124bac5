"""The node's durable state: received instances on disk, the queue in SQLite.

Everything the node knows survives a crash. An instance is written to the workspace (temporary
name, then renamed) before it is recorded, a series moves ``waiting → processing → done`` (or
``failed``, or ``skipped`` when it is not ours to segment or the series rules chose another) in
single transactions, and a series' results are recorded ``unsent`` in the same transaction that
marks it done. A node killed mid-case finds the case still ``processing`` at restart and puts it
back in the queue; results recorded but not yet sent are sent by the next node.

The queue hands out studies: a study is due once none of its series has received an instance
for the quiet period, and then all its waiting series are claimed together, so that the series
rules choose among everything the study holds. A series is keyed by its SeriesInstanceUID and
belongs to its StudyInstanceUID (a series recorded before studies were, alone in its own).
Re-sending an instance already held changes nothing; a new instance in a series already
processed sends it back to ``waiting`` and its next results get a new generation number.

Files and folders on disk are named by a keyed hash of the UIDs (:mod:`ichseg.serve.identifiers`),
so the workspace's file names carry no identifier. The database records every file by its full
path: a workspace whose files were named by an earlier node's unkeyed hash keeps working, and a
series it held goes on filling its own folder. A result file that cannot be read is given up (it
can never be sent), recorded with its error.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ichseg.serve.identifiers import UidHasher, plain_uid_hash

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    uid TEXT PRIMARY KEY, state TEXT NOT NULL, instances INTEGER NOT NULL DEFAULT 0,
    last_received REAL NOT NULL, claimed_instances INTEGER, generation INTEGER NOT NULL DEFAULT 0,
    reason TEXT, updated REAL NOT NULL, study_uid TEXT);
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY, series_uid TEXT NOT NULL, path TEXT NOT NULL, received REAL NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY, series_uid TEXT NOT NULL, generation INTEGER NOT NULL, kind TEXT NOT NULL,
    path TEXT NOT NULL, sent REAL, attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL,
    last_error TEXT, ready REAL NOT NULL, given_up REAL, sha256 TEXT);
CREATE TABLE IF NOT EXISTS errors (
    id INTEGER PRIMARY KEY, time REAL NOT NULL, series TEXT, message TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS instances_by_series ON instances (series_uid);
"""
#: Columns added since the first release, created in an older workspace's database when opened.
_ADDED_COLUMNS = {"series": ("study_uid TEXT",), "results": ("given_up REAL", "sha256 TEXT")}
#: A series' study in queries: a series recorded before studies were is a study of its own.
_STUDY = "COALESCE(study_uid, uid)"
#: Indexes on added columns, made once they exist: the queue is polled twice a second.
_INDEXES = f"""
CREATE INDEX IF NOT EXISTS series_by_state ON series (state);
CREATE INDEX IF NOT EXISTS series_by_study ON series ({_STUDY});
"""

#: Series states. ``waiting`` series are segmented once their quiet period is over.
WAITING, PROCESSING, DONE, FAILED, SKIPPED = "waiting", "processing", "done", "failed", "skipped"


@dataclass(frozen=True)
class Claim:
    """A series taken from the queue: its instances' files and when its quiet period ended."""

    series_uid: str
    generation: int
    files: tuple[Path, ...]
    quiet_end: float


@dataclass(frozen=True)
class StudyClaim:
    """A quiet study taken from the queue: its waiting series, now ``processing`` (``claims``),
    and the files of every series of it the node holds (``held``, by SeriesInstanceUID), so that
    the series rules see the whole study, series processed before included."""

    study_uid: str
    claims: tuple[Claim, ...]
    held: Mapping[str, tuple[Path, ...]]
    quiet_end: float


@dataclass(frozen=True)
class PendingResult:
    """A result file waiting to be sent, and the SHA-256 of what was written (None: not recorded)."""

    id: int
    series_uid: str
    kind: str
    path: Path
    attempts: int
    ready: float
    sha256: str | None = None


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Store:
    """The queue and the instance store under ``root``; one instance per process, thread-safe.

    ``hash_uid`` is the workspace's keyed UID hash, for file names and the errors' series.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "instances").mkdir(parents=True, exist_ok=True)
        self.hash_uid = UidHasher.open(root)
        self._db = sqlite3.connect(root / "queue.sqlite", isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._add_missing_columns()
        self._db.executescript(_INDEXES)
        if self.hash_uid.created:
            self._rehash_errors()

    def _add_missing_columns(self) -> None:
        with self._transaction() as db:
            for table, columns in _ADDED_COLUMNS.items():
                present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                for column in columns:
                    if column.split()[0] not in present:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")

    def _rehash_errors(self) -> None:
        """Name the errors an earlier node recorded under the unkeyed hash by the keyed one."""
        with self._transaction() as db:
            for (uid,) in db.execute("SELECT uid FROM series").fetchall():
                db.execute("UPDATE errors SET series = ? WHERE series = ?", (self.hash_uid(uid), plain_uid_hash(uid)))

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def series_folder(self, series_uid: str) -> Path:
        """The folder holding the series' instances: where its first one went, or a new one."""
        with self._lock:
            row = self._db.execute("SELECT path FROM instances WHERE series_uid = ? LIMIT 1", (series_uid,)).fetchone()
        return Path(row[0]).parent if row else self.root / "instances" / self.hash_uid(series_uid)

    def results_folder(self, series_uid: str, generation: int) -> Path:
        return self.root / "results" / self.hash_uid(series_uid) / str(generation)

    def recover(self) -> int:
        """Put back in the queue the series a stopped node was processing; return how many."""
        with self._transaction() as db:
            return db.execute("UPDATE series SET state = ?, updated = ? WHERE state = ?",
                              (WAITING, time.time(), PROCESSING)).rowcount

    def add_instance(self, study_uid: str | None, series_uid: str, sop_uid: str, data: bytes) -> bool:
        """Store one instance's file and queue its series (of ``study_uid``; None: a study of its
        own); False when the instance was held already."""
        with self._lock:
            if self._db.execute("SELECT 1 FROM instances WHERE sop_uid = ?", (sop_uid,)).fetchone():
                return False
        path = self.series_folder(series_uid) / f"{self.hash_uid(sop_uid)}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        now = time.time()
        with self._transaction() as db:
            if db.execute("INSERT OR IGNORE INTO instances VALUES (?, ?, ?, ?)",
                          (sop_uid, series_uid, str(path), now)).rowcount == 0:
                return False
            db.execute("INSERT INTO series (uid, study_uid, state, instances, last_received, updated) "
                       "VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT (uid) DO UPDATE SET "
                       "instances = instances + 1, last_received = excluded.last_received, "
                       "updated = excluded.updated, reason = NULL, "
                       "state = CASE WHEN state = ? THEN state ELSE ? END",
                       (series_uid, study_uid, WAITING, now, now, PROCESSING, WAITING))
        return True

    def skip_series(self, study_uid: str | None, series_uid: str, reason: str) -> bool:
        """Record a series of ``study_uid`` the node will not keep; False when it was recorded
        already. Each of its instances still restarts the study's quiet period."""
        now = time.time()
        with self._transaction() as db:
            if db.execute("UPDATE series SET last_received = ?, updated = ? WHERE uid = ? AND state = ?",
                          (now, now, series_uid, SKIPPED)).rowcount:
                return False
            return db.execute("INSERT OR IGNORE INTO series (uid, study_uid, state, last_received, reason, updated) "
                              "VALUES (?, ?, ?, ?, ?, ?)",
                              (series_uid, study_uid, SKIPPED, now, reason, now)).rowcount == 1

    def claim_due(self, quiet_seconds: float) -> StudyClaim | None:
        """The study with waiting series that has been quiet longest (no instance of any of its
        series for ``quiet_seconds``), its waiting series now ``processing``; or None."""
        now = time.time()
        with self._transaction() as db:
            row = db.execute(f"SELECT {_STUDY} AS study, MAX(last_received) AS latest FROM series "
                             f"WHERE {_STUDY} IN (SELECT {_STUDY} FROM series WHERE state = ?) "
                             "GROUP BY study HAVING latest <= ? ORDER BY latest LIMIT 1",
                             (WAITING, now - quiet_seconds)).fetchone()
            if row is None:
                return None
            study, latest = row
            waiting = db.execute(f"SELECT uid, instances, generation FROM series WHERE {_STUDY} = ? AND state = ? "
                                 "ORDER BY uid", (study, WAITING)).fetchall()
            db.execute(f"UPDATE series SET state = ?, claimed_instances = instances, updated = ? "
                       f"WHERE {_STUDY} = ? AND state = ?", (PROCESSING, now, study, WAITING))
            held: dict[str, list[Path]] = {}
            for series_uid, path in db.execute(f"SELECT i.series_uid, i.path FROM instances i JOIN series s "
                                               f"ON s.uid = i.series_uid WHERE {_STUDY} = ? ORDER BY i.path",
                                               (study,)):
                held.setdefault(series_uid, []).append(Path(path))
        quiet_end = latest + quiet_seconds
        claims = tuple(Claim(uid, generation + 1, tuple(held.get(uid, ())), quiet_end)
                       for uid, _, generation in waiting)
        return StudyClaim(study, claims, {uid: tuple(files) for uid, files in held.items()}, quiet_end)

    def finish(self, claim: Claim, results: dict[str, Path]) -> str:
        """Record a claim's results as unsent and the series as done; return its new state.

        A series that received instances while it was processed goes back to ``waiting``: its
        results are still sent, and it is processed again with everything it holds. Each file's
        SHA-256 is recorded, so that the sender can tell a file damaged since from the one written.
        """
        digests = {kind: file_sha256(path) for kind, path in results.items()}
        now = time.time()
        with self._transaction() as db:
            for kind, path in results.items():
                db.execute("INSERT INTO results (series_uid, generation, kind, path, next_try, ready, sha256) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (claim.series_uid, claim.generation, kind, str(path), now, now, digests[kind]))
            return self._close_claim(db, claim, DONE, None, claim.generation)

    def fail(self, claim: Claim, reason: str) -> str:
        """Record that a claim's series could not be processed, and why; return its new state."""
        with self._transaction() as db:
            db.execute("INSERT INTO errors (time, series, message) VALUES (?, ?, ?)",
                       (time.time(), self.hash_uid(claim.series_uid), reason))
            return self._close_claim(db, claim, FAILED, reason, claim.generation)

    def pass_over(self, claim: Claim, reason: str) -> str:
        """Record that the series rules chose another series of the study, and why; return the
        series' new state. Nothing was made from it: its generation stays."""
        with self._transaction() as db:
            return self._close_claim(db, claim, SKIPPED, reason, claim.generation - 1)

    @staticmethod
    def _close_claim(db: sqlite3.Connection, claim: Claim, state: str, reason: str | None, generation: int) -> str:
        db.execute("UPDATE series SET state = CASE WHEN instances > claimed_instances THEN ? ELSE ? END, "
                   "generation = ?, reason = ?, updated = ? WHERE uid = ?",
                   (WAITING, state, generation, reason, time.time(), claim.series_uid))
        (new_state,) = db.execute("SELECT state FROM series WHERE uid = ?", (claim.series_uid,)).fetchone()
        return str(new_state)

    def due_results(self) -> list[PendingResult]:
        """Unsent results whose next attempt is due, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT id, series_uid, kind, path, attempts, ready, sha256 FROM results "
                                    "WHERE sent IS NULL AND given_up IS NULL AND next_try <= ? ORDER BY id",
                                    (time.time(),)).fetchall()
        return [PendingResult(i, s, k, Path(p), a, r, h) for i, s, k, p, a, r, h in rows]

    def mark_sent(self, result: PendingResult) -> None:
        with self._transaction() as db:
            db.execute("UPDATE results SET sent = ?, last_error = NULL WHERE id = ?", (time.time(), result.id))

    def mark_unsent(self, result: PendingResult, error: str, retry_in: float) -> None:
        """Count a failed send and schedule the next attempt ``retry_in`` seconds from now."""
        now = time.time()
        with self._transaction() as db:
            db.execute("UPDATE results SET attempts = attempts + 1, next_try = ?, last_error = ? WHERE id = ?",
                       (now + retry_in, error, result.id))
            self._record_send_error(db, result, error, now)

    def give_up(self, result: PendingResult, error: str) -> None:
        """Record that a result can never be sent (its file is gone or damaged), and why."""
        now = time.time()
        with self._transaction() as db:
            db.execute("UPDATE results SET attempts = attempts + 1, given_up = ?, last_error = ? WHERE id = ?",
                       (now, error, result.id))
            self._record_send_error(db, result, error, now)

    def _record_send_error(self, db: sqlite3.Connection, result: PendingResult, error: str, now: float) -> None:
        db.execute("INSERT INTO errors (time, series, message) VALUES (?, ?, ?)",
                   (now, self.hash_uid(result.series_uid), f"sending {result.kind}: {error}"))

    def counts(self) -> dict[str, int]:
        """Series by state, instances held, results sent, unsent and given up (unsendable)."""
        with self._lock:
            by_state = dict(self._db.execute("SELECT state, COUNT(*) FROM series GROUP BY state").fetchall())
            (instances,) = self._db.execute("SELECT COUNT(*) FROM instances").fetchone()
            sent, unsent, unsendable = self._db.execute(
                "SELECT COUNT(sent), COUNT(*) - COUNT(sent) - COUNT(given_up), COUNT(given_up) FROM results").fetchone()
        counts = {"received": sum(by_state.values()), "instances": instances}
        counts.update({state: by_state.get(state, 0) for state in (WAITING, PROCESSING, DONE, FAILED, SKIPPED)})
        counts.update({"sent": sent or 0, "unsent": unsent or 0, "unsendable": unsendable or 0})
        return counts

    def last_errors(self, n: int = 5) -> list[tuple[float, str, str]]:
        """The ``n`` latest errors: (time, series hash, message), newest first."""
        with self._lock:
            return self._db.execute("SELECT time, series, message FROM errors ORDER BY id DESC LIMIT ?",
                                    (n,)).fetchall()

    def unsent(self) -> list[tuple[str, str, int, str | None, bool]]:
        """Results not sent: (series hash, kind, attempts, last error, given up)."""
        with self._lock:
            rows = self._db.execute("SELECT series_uid, kind, attempts, last_error, given_up IS NOT NULL "
                                    "FROM results WHERE sent IS NULL ORDER BY id").fetchall()
        return [(self.hash_uid(s), k, a, e, bool(g)) for s, k, a, e, g in rows]

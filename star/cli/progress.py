"""A live progress display of a search engine for ``star search run|resume`` (rich).

One bar for the generations told, and one line per step of the generation under way
(candidates exported, proxy-trained, profile jobs measured), read from the database once a second
by a thread of its own, so the engine never waits on the display. The ETA is the mean wall time
of the generations this process completed, times those left (replayed generations are not
timed; before the first one completes there is no estimate).
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn


def eta_text(durations: list[float], remaining: int) -> str:
    """``ETA 3m20s`` from the generations timed so far; ``ETA -`` without one."""
    if remaining <= 0:
        return "done"
    if not durations:
        return "ETA -"
    seconds = int(round(sum(durations) / len(durations) * remaining))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"ETA {hours}h{minutes:02d}m" if hours else f"ETA {minutes}m{secs:02d}s"


class SearchProgress:
    """``with SearchProgress(engine): engine.run()`` - see the module docstring."""

    def __init__(self, engine: Any, *, console: Console | None = None,
                 interval_s: float = 1.0) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"), console=self.console, transient=False,
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._durations: list[float] = []
        self._started: float | None = None
        self._previous_hook = engine.on_phase
        self._tasks: dict[str, TaskID] = {}

    # ---- engine hook --------------------------------------------------------------------------

    def _on_phase(self, index: int, phase: str) -> None:
        now = time.monotonic()
        if phase == "asked":
            self._started = now
        elif phase == "told" and self._started is not None:
            self._durations.append(now - self._started)
            self._started = None
        if self._previous_hook is not None:
            self._previous_hook(index, phase)

    # ---- display ------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the counts and update the bars (also called by the polling thread)."""
        from star.search import store

        engine = self.engine
        total = engine.config.generations
        told = engine.next_index
        index = min(told, total - 1)  # once all are told: the last one
        with engine.db.session_scope(readonly=True) as s:
            counts = store.generation_progress(s, run_id=engine.run_id, index=index)
        p, t = self.progress, self._tasks
        p.update(t["generations"], completed=told, total=total,
                 note=eta_text(self._durations, total - told))
        screened = counts["screened"]
        out = counts["candidates"] - screened
        devices, quality = engine.config.uses_devices(), engine.config.uses_quality()
        p.update(t["exported"], description=f"  gen {index} exported", visible=devices,
                 completed=counts["exported"], total=screened,
                 note=f"{out} pre-screened out" if out else "")
        p.update(t["trained"], description=f"  gen {index} trained", visible=quality,
                 completed=counts["trained"], total=screened, note="")
        p.update(t["measured"], description=f"  gen {index} measured", visible=devices,
                 completed=counts["jobs_done"], total=counts["jobs"], note="profile jobs")

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - a display must never stop the search
                continue

    def __enter__(self) -> SearchProgress:
        p = self.progress
        self._tasks = {
            "generations": p.add_task("generations told", total=self.engine.config.generations,
                                      note=""),
            "exported": p.add_task("  exported", total=0, note=""),
            "trained": p.add_task("  trained", total=0, note=""),
            "measured": p.add_task("  measured", total=0, note=""),
        }
        self.engine.on_phase = self._on_phase
        p.start()
        self._thread = threading.Thread(target=self._poll, daemon=True, name="search-progress")
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.refresh()
        except Exception:  # noqa: BLE001 - the final refresh is cosmetic
            pass
        self.progress.stop()
        self.engine.on_phase = self._previous_hook

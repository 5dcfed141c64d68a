"""What a person watching a training run sees: a live bar per epoch (tqdm) with images/s, the
running loss and accuracy, elapsed time and ETA, the whole run's ETA, and one line kept per epoch.

Three audiences, one interface (the loop calls start, step, epoch_done, note):
  - a terminal or a Jupyter notebook: tqdm redraws its bar in place (in Jupyter as plain stream
    output, no widgets needed); finished epochs stay as lines above it;
  - anything else (a pipe, a file, CI): plain lines only, never a carriage return or an escape
    code: one every PLAIN_EVERY seconds within a long epoch, and the kept line per epoch;
  - --quiet and ranks other than 0: nothing.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

PLAIN_EVERY = 30.0  # seconds between in-epoch lines where nothing can be redrawn


def _in_notebook(stream) -> bool:
    """A Jupyter kernel's output stream: it draws a carriage return as a redraw, like a terminal."""
    return "ipykernel" in sys.modules and type(stream).__module__.startswith("ipykernel")


def clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def epoch_line(entry: dict, epochs: int, run_eta: float | None) -> str:
    """The line kept for a finished epoch."""
    test_loss = f"loss {entry['test_loss']:.4f} " if entry.get("test_loss") is not None else ""
    eta = f", run ETA {clock(run_eta)}" if run_eta and run_eta >= 1 else ""
    return (f"epoch {entry['epoch']}/{epochs}  train loss {entry['loss']:.4f} acc {100 * entry['train_accuracy']:.1f}%  "
            f"test {test_loss}acc {100 * entry['test_accuracy']:.1f}%  {entry['seconds']:.1f} s, "
            f"{entry['images_per_s']:,.0f} img/s, lr {entry['lr']:.4g}{eta}")


class Progress:
    """Live progress on `stream` (default stderr): a tqdm bar where the stream redraws, plain
    lines where it does not. `Progress(io.StringIO())` collects plain lines (tests)."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None):
        self.stream = sys.stderr if stream is None else stream
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.live = (tty or _in_notebook(self.stream)) if live is None else live
        self._bar = None
        self._epochs = 0
        self._last_plain = 0.0

    # the loop's calls --------------------------------------------------------------------------

    def start(self, epoch: int, epochs: int, images: int) -> None:
        """Epoch `epoch` (1-based) of `epochs` begins, over `images` training images."""
        self._epochs = epochs
        self._epoch = epoch
        self._last_plain = time.perf_counter()
        if self.live:
            from tqdm import tqdm
            self._bar = tqdm(total=images, desc=f"epoch {epoch}/{epochs}", unit="img", file=self.stream,
                             leave=False, dynamic_ncols=True, mininterval=0.2,
                             bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                        "[{elapsed}<{remaining}, {rate_fmt}{postfix}]")

    def step(self, images: int, total: int, loss: float, accuracy: float, lr: float, rate: float,
             run_eta: float | None) -> None:
        """After a step: `images` of the epoch's `total` done; the running figures."""
        figures = f"loss {loss:.4f} acc {100 * accuracy:.1f}% lr {lr:.4g}" + \
            (f" run ETA {clock(run_eta)}" if run_eta else "")
        if self._bar is not None:
            self._bar.set_postfix_str(figures, refresh=False)
            self._bar.update(images - self._bar.n)
            return
        now = time.perf_counter()
        if now - self._last_plain >= PLAIN_EVERY and images < total:
            self._last_plain = now
            self._write(f"epoch {self._epoch}/{self._epochs} {images:,}/{total:,} images  {figures}  {rate:,.0f} img/s")

    def epoch_done(self, entry: dict, run_eta: float | None) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._write(epoch_line(entry, self._epochs, run_eta))

    def note(self, text: str) -> None:
        """A line of its own (settings, a resume), kept above any bar."""
        self._write(text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _write(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()


class Silent(Progress):
    """--quiet, and every rank but 0 (rank 0 shows the progress of all)."""

    def __init__(self):
        super().__init__(stream=_Nowhere(), live=False)

    def _write(self, text: str) -> None:
        """Nothing is shown."""


class _Nowhere:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        """Nothing is held."""

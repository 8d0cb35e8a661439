"""Per-epoch progress: a tqdm bar on a terminal, one plain line per epoch otherwise.

Used by `MLP.fit(verbose=True)` / `partial_fit(verbose=True)` and by the
`fastmlp train` command. tqdm is optional: without it the plain lines are used
everywhere. Output goes to stderr (as tqdm's does), leaving stdout for results.

    progress = EpochProgress(total=30, n_samples=len(X))
    for epoch in ...:
        progress.update(epoch, loss, seconds, score=0.97, score_name="val accuracy")
    progress.close()
"""

import sys


def _tqdm():
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


def choose_mode(stream, mode="auto"):
    """'bar' on a terminal when tqdm is installed, else 'lines' ('quiet' passes through)."""
    if mode != "auto":
        return mode
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return "bar" if tty and _tqdm() is not None else "lines"


class EpochProgress:
    """Reports epochs `start+1 .. total`: loss, an optional score, samples/s, ETA.
    total=None: an open-ended count (plain lines, no ETA)."""

    def __init__(self, total, n_samples, *, start=0, stream=None, mode="auto", desc="training"):
        self.total, self.n_samples, self.start = total, n_samples, start
        self.stream = sys.stderr if stream is None else stream
        self.mode = choose_mode(self.stream, mode)
        self.width = len(str(total)) if total else 4
        self.seconds = 0.0
        self.bar = None
        if self.mode == "bar" and total is None:
            self.mode = "lines"
        if self.mode == "bar":
            tqdm = _tqdm()
            if tqdm is None:
                self.mode = "lines"
            else:
                self.bar = tqdm(total=total, initial=start, file=self.stream, desc=desc, unit="epoch",
                                dynamic_ncols=True, leave=True)

    def update(self, epoch, loss, seconds, *, score=None, score_name="val score"):
        """Epoch number `epoch` (1-based, overall) finished with `loss` in `seconds`."""
        rate = self.n_samples / max(seconds, 1e-12)
        self.seconds += seconds
        if self.mode == "quiet":
            return
        if self.bar is not None:
            post = {"loss": f"{loss:.5g}"}
            if score is not None:
                post[score_name] = format_score(score)
            post["samples/s"] = f"{rate:,.0f}"
            self.bar.set_postfix(post, refresh=False)
            self.bar.update(1)
            if epoch >= self.total:
                self.close()
            return
        done = epoch - self.start
        left = 0 if self.total is None else self.total - epoch
        eta = self.seconds / max(done, 1) * left
        of = "" if self.total is None else f"/{self.total}"
        text = f"epoch {epoch:{self.width}d}{of}  loss {loss:.6g}"
        if score is not None:
            text += f"  {score_name} {format_score(score)}"
        text += f"  {rate:,.0f} samples/s  " + (f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s")
        if left > 0:
            text += f"  ETA {_duration(eta)}"
        print(text, file=self.stream, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def format_score(score):
    """0.9731 for scores near [0, 1]; -3.1e+08 for a wild R²."""
    return f"{score:.4f}" if abs(score) < 1e4 else f"{score:.4g}"


def _duration(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def for_fit(verbose, epochs, n_samples, n_done):
    """The reporter `fit`/`partial_fit` use: None unless verbose.

    A single-epoch call (partial_fit) prints a plain line: a bar of one step
    per call would only flicker."""
    if not verbose:
        return None
    if epochs == 1:
        return EpochProgress(None, n_samples, start=n_done, mode="lines")
    return EpochProgress(n_done + epochs, n_samples, start=n_done)

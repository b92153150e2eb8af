"""The console of `python -m ali_dist.train`: our lines on stdout, everything else in a log file.

By default the user sees a start line, progress (a bar with rate and ETA on a terminal, one
plain line per log interval otherwise), evaluation results, the training loop's messages and
the summary. Ray's own output (what every worker and the Train controller print, which Ray
forwards to the driver) and the driver's logging (Ray, MLflow, warnings) go to the log file
named in the start line. With `--verbose`, Ray prints its output as usual.

How worker lines get here: Ray forwards what workers print to the driver, where a dispatcher
hands each batch of lines to its handlers. While a run lasts, `Console.attach_ray` swaps Ray's
printer for ours: rank 0's reports (`[ali_dist:report] {json}`, printed by the worker adapter)
become progress and evaluation lines, the loop's `[ali_dist] ...` lines are shown, and every
line is appended to the log file. The dispatcher is Ray's internal API (2.60); without it the
console stays as Ray makes it.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path

PREFIX = "[ali_dist] "
REPORT = "[ali_dist:report] "
# The loop's own progress line ("step 50/300 | ..."): the console draws progress from the
# reports instead, so this one is only kept in the log file.
LOOP_PROGRESS = re.compile(r"^step \d+/\d+ \|")
# Evaluation results in a report, how to show them, in order.
EVAL_FORMATS = (("modes_paper", "modes {:.0f}/25 (paper)"), ("modes_strict", "{:.0f}/25 (strict)"),
                ("high_quality", lambda v: f"high quality {100 * v:.1f}%"),
                ("reverse_kl", "reverse KL {:.3f}"),
                ("recon_mse_z1", "reconstruction MSE from z1 {:.4f}"),     # HALI's two levels
                ("recon_mse_z2", "from z2 {:.4f}"),
                ("recon_mse", "reconstruction MSE {:.4f}"),
                ("recon_mse_random_pair", "vs random pair {:.4f}"), ("recon_ratio", "ratio {:.2f}"))


def report_line(metrics: dict) -> str:
    """What the worker adapter prints for the console: one report, as JSON numbers."""
    return REPORT + json.dumps({k: v for k, v in metrics.items()
                                if isinstance(v, (int, float)) and math.isfinite(v)})


def duration(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else \
        f"{s // 60}:{s % 60:02d}" if s >= 60 else f"{s}s"


class Console:
    """Our lines on `stream` (stdout): `line` for messages, `report` for rank 0's reports."""

    BAR = 30

    def __init__(self, global_batch: int, steps: int | None, epochs: float | None,
                 verbose: bool = False, stream=None):
        self.out = stream or sys.stdout
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.verbose = verbose
        self.global_batch, self.steps, self.epochs = global_batch, steps, epochs
        self.log_file = None
        self._bar = ""            # the progress bar now on screen (terminal only)
        self._lock = threading.RLock()
        self._saved = None        # what attach_ray replaced
        self._last_output = 0.0   # when Ray last handed over worker output

    # ---- drawing -------------------------------------------------------------------------------
    def line(self, msg: str) -> None:
        with self._lock:
            self._clear_bar()
            print(PREFIX + msg, file=self.out, flush=True)
            self._draw_bar()

    def _clear_bar(self) -> None:
        if self._bar:
            self.out.write("\r\x1b[K")

    def _draw_bar(self) -> None:
        if self._bar:
            self.out.write(self._bar)
            self.out.flush()

    def end(self) -> None:
        """Leave the bar's last state on screen and move below it."""
        with self._lock:
            if self._bar:
                self.out.write("\n")
                self.out.flush()
                self._bar = ""

    def _total(self, m: dict) -> int | None:
        if m.get("steps_total"):            # the loop's count, a method's every stage included
            return int(m["steps_total"])
        if self.steps:
            return int(self.steps)
        if self.epochs and m.get("epoch"):
            return max(1, math.ceil(self.epochs * round(m["step"] / m["epoch"])))
        return None

    def report(self, m: dict) -> None:
        """One report of rank 0: progress when it has the interval's losses, evaluation
        results when it has them."""
        if "loss_d" in m and "step" in m and not self.verbose:
            self._progress(m)
        shown = []
        for key, fmt in EVAL_FORMATS:
            if key == "recon_mse" and "recon_mse_z2" in m:    # HALI's: shown as z2's
                continue
            if key in m:
                shown.append(fmt(m[key]) if callable(fmt) else fmt.format(m[key]))
        total = self._total(m) if "step" in m else None
        if shown and not (total and m["step"] >= total):   # the last: in the summary
            self.line(f"eval at step {int(m['step'])}: " + ", ".join(shown))

    def _progress(self, m: dict) -> None:
        step, total = int(m["step"]), self._total(m)
        rate = m.get("samples_per_s", 0.0) / max(1, self.global_batch)   # steps/s
        eta = (total - step) / rate if total and rate > 0 else None
        losses = (f"loss_d {m['loss_d']:.3f} loss_g {m.get('loss_g', float('nan')):.3f} | "
                  f"D acc {m.get('d_acc', float('nan')):.2f}")
        speed = f"{m.get('samples_per_s', 0):.0f} samples/s"
        left = f"eta {duration(eta)}" if eta is not None else ""
        if not self.tty:
            frac = f"/{total} ({100 * step / total:.0f}%)" if total else ""
            self.line(f"step {step}{frac} | {losses} | {speed} | {left}".rstrip(" |"))
            return
        done = min(1.0, step / total) if total else 0.0
        fill = int(round(done * self.BAR))
        bar = "#" * fill + "-" * (self.BAR - fill)
        text = (f"{PREFIX}[{bar}] {step}/{total or '?'} {100 * done:3.0f}% | {left} | "
                f"{rate:.1f} steps/s, {speed} | {losses}")
        with self._lock:
            self._clear_bar()
            # one screen row, or "\r" would not get back to its start
            self._bar = text[:shutil.get_terminal_size((120, 24)).columns - 1]
            self._draw_bar()

    # ---- Ray's output --------------------------------------------------------------------------
    def _on_ray_output(self, data: dict) -> None:
        """Ray's dispatcher hands over one batch of lines of one worker process."""
        self._last_output = time.monotonic()
        lines = data.get("lines") or []
        if data.get("pid") == "autoscaler":   # as Ray prints it: its events, not its status
            try:
                from ray._private.worker import filter_autoscaler_events
                lines = list(filter_autoscaler_events(lines))
            except ImportError:
                lines = []
        who = " ".join(str(x) for x in (data.get("actor_name") or data.get("task_name"),
                                        f"pid={data.get('pid')}") if x)
        prefix = f"({who}) "
        rest = []
        for line in lines:
            if line.startswith(REPORT):
                try:
                    self.report(json.loads(line[len(REPORT):]))
                except ValueError:
                    pass
                continue
            if line.startswith(PREFIX) and not self.verbose:
                msg = line[len(PREFIX):]
                if not LOOP_PROGRESS.match(msg):
                    self.line(msg)
            rest.append(line)
        if self.log_file is not None:
            for line in rest:
                self.log_file.write(prefix + line + "\n")
            self.log_file.flush()
        if self.verbose and self._saved and rest:
            for _, handler in self._saved:
                handler({**data, "lines": rest})

    def attach_ray(self) -> None:
        """Take over the printing of worker output (after `ray.init`, which installs Ray's)."""
        try:
            from ray._private.ray_logging import global_worker_stdstream_dispatcher as d
        except ImportError:   # another Ray: its printer stays
            return
        with d._lock:
            self._saved = [h for h in d.handlers if h[0] == "ray_print_logs"]
            d.handlers = [h for h in d.handlers if h[0] != "ray_print_logs"] + \
                [("ali_dist_console", self._on_ray_output)]

    def detach_ray(self, settle_s: float = 1.0, max_wait_s: float = 4.0) -> None:
        """Give Ray's printer back, once the output of the run's last moments (a failing
        worker's traceback, say) has arrived: Ray forwards lines with a delay."""
        try:
            from ray._private.ray_logging import global_worker_stdstream_dispatcher as d
        except ImportError:
            return
        if self._saved is None:
            return
        start = time.monotonic()
        while time.monotonic() - start < max_wait_s and \
                time.monotonic() - max(start, self._last_output) < settle_s:
            time.sleep(0.1)
        with d._lock:
            d.handlers = [h for h in d.handlers if h[0] != "ali_dist_console"] + \
                (self._saved or [])
        self._saved = None

    @contextlib.contextmanager
    def quiet(self, log_path: Path):
        """While it lasts, the process's stderr (the driver's logging and warnings: Ray, MLflow,
        Python) goes to `log_path`, and so does Ray's output once `attach_ray` is called."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_file = open(log_path, "a", buffering=1)
        if self.verbose:
            try:
                yield
            finally:
                self.detach_ray()
                self.log_file.close()
                self.log_file = None
            return
        # Three routes to stderr: file descriptor 2 (C code, subprocesses), sys.stderr (warnings,
        # tracebacks printed by libraries), and logging handlers holding an older stderr object
        # (Ray's and MLflow's, made at import).
        streams = [h for name in ("", "ray", "mlflow", "alembic", "py.warnings")
                   for h in logging.getLogger(name).handlers
                   if type(h) is logging.StreamHandler]
        old_streams = [h.setStream(self.log_file) for h in streams]
        sys.stderr.flush()
        saved_fd, saved_stderr = os.dup(2), sys.stderr
        os.dup2(self.log_file.fileno(), 2)
        sys.stderr = self.log_file
        self.log_file.write(f"---- {time.strftime('%Y-%m-%d %H:%M:%S')} ali_dist run ----\n")
        try:
            yield
        finally:
            self.detach_ray()
            self.end()
            sys.stderr = saved_stderr
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            for h, s in zip(streams, old_streams):
                h.setStream(s)
            self.log_file.close()
            self.log_file = None

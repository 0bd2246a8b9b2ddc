"""Append-only results store: one JSON object per line, one line per run.

Each run is appended with a single write followed by fsync, by one process
(the sweep's parent), so a crash can at worst leave one partial last line.
Opening the store repairs that (the partial line is cut off) and reading
ignores it, so a killed sweep never leaves a file that cannot be read, and a
re-run finds every finished run and skips it.
"""
import json
import os

FORMAT_VERSION = 1


def run_key(record):
    """What identifies a run: re-running the same key is skipped."""
    return (record["problem"], record["method"], record["seed"], record["budget"],
            record.get("device", "cpu"))


class ResultsStore:
    def __init__(self, path):
        self.path = os.fspath(path)

    def _repair(self):
        """Cut a partial last line left by a crash mid-write."""
        if not os.path.exists(self.path):
            return
        with open(self.path, "rb+") as file:
            data = file.read()
            if data and not data.endswith(b"\n"):
                file.truncate(data.rfind(b"\n") + 1)

    def append(self, record):
        line = (json.dumps({**record, "format_version": FORMAT_VERSION},
                           separators=(",", ":"), allow_nan=True) + "\n").encode()
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        self._repair()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def records(self):
        """Every complete record, in the order written."""
        if not os.path.exists(self.path):
            return []
        records = []
        with open(self.path, "rb") as file:
            for line in file:
                if not line.endswith(b"\n"):
                    break
                try:
                    records.append(json.loads(line))
                except (json.JSONDecodeError, UnicodeDecodeError):   # damaged by hand
                    continue
        return records

    def done_keys(self):
        return {run_key(record) for record in self.records()}

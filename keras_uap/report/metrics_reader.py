"""`MetricsReader`: reads a run's `metrics.json` by key path and records
every path it read, so that a page made through it can write a snapshot of
exactly the numbers it shows and be made again from that snapshot alone
(the results pages; the sweep's reading, shared with them)."""

__all__ = ["MetricsReader"]


class MetricsReader:
    """Reads `metrics` by key path and records every path it read.

    Args:
        metrics: a run's `metrics.json`, loaded (or a snapshot of one).

    Example:
        >>> r = MetricsReader({"models": {"gcnn": {"test_accuracy": 0.9, "epochs": 3}}})
        >>> r.get("models", "gcnn", "test_accuracy"), r.get("models", "roteqnet", "epochs")
        (0.9, None)
        >>> r.snapshot()
        {'models': {'gcnn': {'test_accuracy': 0.9}}}
    """

    def __init__(self, metrics):
        self.metrics, self.read, self.fields = metrics, set(), {}

    def get(self, *path, default=None):
        """The value at `path`, or `default` where the path is absent (then nothing is recorded)."""
        node = self.metrics
        for part in path:
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        self.read.add(path)
        return node

    def rows(self, *path, fields):
        """The list at `path`, each row (a dict) kept to `fields`; [] when absent."""
        rows = self.get(*path, default=[])
        self.fields[path] = fields
        return [{f: row[f] for f in fields if f in row} for row in rows if isinstance(row, dict)]

    def keys(self, *path, order=()):
        """The keys of the dict at `path`, those in `order` first (not recorded: a key shown is read)."""
        node = self.metrics
        for part in path:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        keys = list(node) if isinstance(node, dict) else []
        return [k for k in order if k in keys] + [k for k in keys if k not in order]

    def snapshot(self):
        """A nested dict of exactly the paths read."""
        out = {}
        for path in sorted(self.read, key=len):
            node = out
            for part in path[:-1]:
                node = node.setdefault(part, {})
            if isinstance(node, dict) and path[-1] not in node:
                node[path[-1]] = self.rows(*path, fields=self.fields[path]) if path in self.fields else self.get(*path)
        return out

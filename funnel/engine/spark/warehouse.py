"""An environment's folder in the Spark warehouse: its builds and the CURRENT pointer.

    <warehouse>/<env>/builds/<id>/   one folder per build (Parquet)
    <warehouse>/<env>/CURRENT        the published build's id; PREVIOUS: the one before

On a local disk (or a mounted one) CURRENT is replaced by renaming a temporary file over
it, atomically. On an object store or HDFS (a URI) the Hadoop file system Spark uses does
the work: HDFS renames atomically; object stores have no atomic rename, so there CURRENT is
deleted, then renamed into place. funnel's readers do not depend on it: they switch with
the env's DuckDB file, which is always local and replaced by rename.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from funnel import atomic
from funnel.errors import ConfigError, FunnelError
from funnel.project.config import URI, Environment

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class Warehouse:
    """An env's folder in the warehouse: its builds and the CURRENT pointer."""

    def __init__(self, spark: SparkSession, env: Environment) -> None:
        if env.warehouse is None:
            raise ConfigError(f'{env.config_path}: [{env.name}] engine "spark" needs warehouse = "folder or URI".')
        self.root = f"{env.warehouse.rstrip('/')}/{env.name}"
        self.remote = bool(URI.fullmatch(self.root)) and not self.root.startswith("file://")
        self._spark = spark

    def build_folder(self, build_id: str) -> str:
        return f"{self.root}/builds/{build_id}"

    def current(self) -> str | None:
        return self._read("CURRENT")

    def publish(self, build_id: str) -> None:
        """Point CURRENT at `build_id` (a temporary file renamed over it); keep the last one as PREVIOUS."""
        previous = self.current()
        if previous and previous != build_id:
            self._write("PREVIOUS", previous)
        self._write("CURRENT", build_id)

    def remove_unpublished(self) -> None:
        """Remove every build but the published one and the one before it (a killed build's too)."""
        keep = {self.current(), self._read("PREVIOUS")}
        for build_id in self._list("builds"):
            if build_id not in keep:
                self.remove(build_id)

    def remove(self, build_id: str) -> None:
        path = self.build_folder(build_id)
        if self.remote:
            fs, hpath = self._hadoop(path)
            fs.delete(hpath, True)
        else:
            shutil.rmtree(local_path(path), ignore_errors=True)

    def _read(self, name: str) -> str | None:
        path = f"{self.root}/{name}"
        if not self.remote:
            try:
                return Path(local_path(path)).read_text(encoding="utf-8").strip() or None
            except FileNotFoundError:
                return None
        fs, hpath = self._hadoop(path)
        if not fs.exists(hpath):
            return None
        stream = fs.open(hpath)
        try:
            reader = self._spark._jvm.java.io.BufferedReader(self._spark._jvm.java.io.InputStreamReader(stream))  # type: ignore[union-attr]
            return str(reader.readLine() or "").strip() or None
        finally:
            stream.close()

    def _write(self, name: str, text: str) -> None:
        path = f"{self.root}/{name}"
        temp = f"{self.root}/.{name}.{os.getpid()}.tmp"
        if not self.remote:
            local = Path(local_path(path))
            local.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_text(local, text + "\n")
            return
        # Object stores have no atomic rename over a file: delete, then rename. Readers of the
        # env's DuckDB file are not affected; they switch with its rename.
        fs, hpath = self._hadoop(path)
        _, htemp = self._hadoop(temp)
        out = fs.create(htemp, True)
        out.write(bytearray((text + "\n").encode()))
        out.close()
        fs.delete(hpath, False)
        if not fs.rename(htemp, hpath):
            raise FunnelError(f"{path}: cannot be written; check the warehouse's permissions.")

    def _list(self, name: str) -> list[str]:
        path = f"{self.root}/{name}"
        if not self.remote:
            folder = Path(local_path(path))
            return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        fs, hpath = self._hadoop(path)
        if not fs.exists(hpath):
            return []
        return sorted(str(s.getPath().getName()) for s in fs.listStatus(hpath) if s.isDirectory())

    def _hadoop(self, path: str) -> tuple[Any, Any]:
        jvm: Any = self._spark._jvm
        hpath = jvm.org.apache.hadoop.fs.Path(path)
        return hpath.getFileSystem(self._spark._jsc.hadoopConfiguration()), hpath


def local_path(path: str) -> str:
    """A warehouse path as a local file name (`file://` dropped)."""
    return path.removeprefix("file://")

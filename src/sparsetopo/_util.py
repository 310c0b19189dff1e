"""Compatibility re-exports, to be deleted: ``_util``'s helpers now live where they belong.

``sparsetopo.fileio`` (atomic writes, stale temp files, CSV), ``sparsetopo.seeding``
(``SeedLike``, ``as_generator``) and ``sparsetopo.tables`` (``markdown_table``).
Nothing in the package imports this module (tests/test_structure.py checks);
it only keeps branches written against the old names importable until merged.
"""

from .fileio import _alive, _disk_full, _temp_name, atomic_write, clean_stale_temp_files, write_csv, write_text_atomic
from .seeding import SeedLike, as_generator
from .tables import markdown_table

__all__ = ["SeedLike", "as_generator", "atomic_write", "clean_stale_temp_files", "markdown_table", "write_csv",
           "write_text_atomic", "_alive", "_disk_full", "_temp_name"]

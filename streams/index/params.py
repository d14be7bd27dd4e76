"""How the vector field of an index is built and searched: algorithm and HNSW knobs.

These are settings (`LOOKOUT_INDEX_*`), not schema: the layout (fields, key prefix, dtype)
is `schema.yaml`'s and versioned in the index name; the algorithm and its parameters only
change how Redis finds neighbours of the same vectors. `lookout bench index` measured them
(docs/deploy.md, "Index throughput"): insertion rate, recall@10 against exact search and
query latency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.core.errors import IndexStoreError

#: Algorithms the bundled RediSearch (2.10) builds. SVS-VAMANA needs Redis 8.2's own Query
#: Engine; 2.10 refuses it ("Bad arguments for vector similarity algorithm").
ALGORITHMS = ("hnsw", "flat")


@dataclass(frozen=True)
class VectorIndexParams:
    """The vector field's algorithm; `m`, `ef_construction` and `ef_runtime` are HNSW's
    (ignored by FLAT, which compares the query with every vector: exact, O(items))."""

    algorithm: str = "hnsw"
    m: int = 16
    ef_construction: int = 200
    #: Candidates kept while searching; sent with every KNN query, so changing it needs no
    #: rebuild (higher: better recall, slower queries). Redis's default, 10, missed the
    #: recall@10 >= 0.95 target at 200k items (0.90); 50 reached 0.999 for +0.4 ms p50.
    ef_runtime: int = 50

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise IndexStoreError(f"vector index algorithm must be one of "
                                  f"{', '.join(ALGORITHMS)}, not {self.algorithm!r}")
        for name in ("m", "ef_construction", "ef_runtime"):
            if int(getattr(self, name)) < 1:
                raise IndexStoreError(f"HNSW {name} must be positive, not "
                                      f"{getattr(self, name)}")

    @property
    def hnsw(self) -> bool:
        return self.algorithm == "hnsw"

    def field_attrs(self) -> dict[str, Any]:
        """redisvl vector-field attributes this adds to the schema's (dims, dtype aside)."""
        if not self.hnsw:
            return {"algorithm": self.algorithm}
        return {"algorithm": "hnsw", "m": int(self.m),
                "ef_construction": int(self.ef_construction), "ef_runtime": int(self.ef_runtime)}

    def describe(self) -> str:
        if not self.hnsw:
            return self.algorithm
        return f"hnsw (M={self.m}, EF_CONSTRUCTION={self.ef_construction})"

    @classmethod
    def from_settings(cls, settings: Any) -> VectorIndexParams:
        """From `LOOKOUT_INDEX_ALGORITHM`, `..._HNSW_M`, `..._EF_CONSTRUCTION`, `..._EF_RUNTIME`."""
        return cls(settings.index_algorithm, settings.index_hnsw_m,
                   settings.index_hnsw_ef_construction, settings.index_hnsw_ef_runtime)

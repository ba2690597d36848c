"""The memory store: the only code in memcli that speaks SQL.

- ``catalog`` (+ ``schema``, ``keyword``): the SQLite catalog, the source of truth: rows, keyword
  index, audit log, links, quarantine; reads in domain words.
- ``core``: ``MemoryStore``, the write protocol (pending -> vector index -> confirmed), locks, recovery.
- ``review``: facts chat learned that wait for the user's review, and fingerprints of rejected ones.
- ``recording``: the listener interface a catalog tells its transactions to; ``replica`` implements it
  for server mode (the Chroma server's change log) without the catalog knowing it.
"""

from memcli.store.catalog import Catalog
from memcli.store.core import MemoryStore
from memcli.store.keyword import STOPWORDS, KeywordHit, fts_query, query_words
from memcli.store.review import PendingRow, ReviewQueue, fingerprint
from memcli.store.schema import COLUMNS, REINDEXING, Filter, row_to_memory
from memcli.store.values import (
    NewMemory,
    Succession,
    blob_to_vec,
    check_space,
    content_hash,
    embed_input,
    new_id,
    vec_to_blob,
)

__all__ = [
    "COLUMNS",
    "REINDEXING",
    "STOPWORDS",
    "Catalog",
    "Filter",
    "KeywordHit",
    "MemoryStore",
    "NewMemory",
    "PendingRow",
    "ReviewQueue",
    "Succession",
    "blob_to_vec",
    "check_space",
    "content_hash",
    "embed_input",
    "fingerprint",
    "fts_query",
    "new_id",
    "query_words",
    "row_to_memory",
    "vec_to_blob",
]

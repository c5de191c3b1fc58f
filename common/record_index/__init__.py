"""The semantic index of records (docs/api.md §15): chunking, the index's data access and the
per-owner vector search, shared by mobile_service (search, related records, marking writes) and
llm_service (the indexer, ``/ask``, chat with ``use_records``)."""

"""Development tools that ship with the project (not imported by the services).

``devtools.fake_llm``: a small OpenAI-protocol upstream with canned, deterministic answers and
error injection, used by the tests and by the launcher when no LLM provider key is configured.
"""

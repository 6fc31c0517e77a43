"""``reasonchat bench``: what a turn costs, measured.

``local`` compares the engine with the model card's loop in one process (torch); ``served`` measures a
model behind an OpenAI-compatible server over HTTP. Both build their conversations with ``history`` and
time stages with ``timing``. Importing this package imports neither torch nor a backend.
"""

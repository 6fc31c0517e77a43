"""The Textual chat app: the transcript, the current turn split into Reasoning and Answer panes, the
composer and the token meter.

Nothing in this package imports torch: the model is loaded by the loader the CLI hands to the app
(``AppOptions.load_backend``), in a thread, after the first frame.
"""

"""reasonchat: a terminal chat app for models that reason before they answer."""

__version__ = "0.1.0"

"""Generation engine: backends behind one protocol, and the two-stage turn runner.

Importing this package does not import torch; ``reasonchat.engine.transformers_backend`` does.
"""

from reasonchat.engine.protocol import (
    Backend,
    ContextOverflow,
    GenerationError,
    StageRequest,
    StageStream,
)
from reasonchat.engine.turn import StageFinished, StageStarted, TextChunk, TurnEvent, TurnRunner
from reasonchat.settings import GenerationSettings

__all__ = [
    "Backend",
    "ContextOverflow",
    "GenerationError",
    "GenerationSettings",
    "StageFinished",
    "StageRequest",
    "StageStarted",
    "StageStream",
    "TextChunk",
    "TurnEvent",
    "TurnRunner",
]

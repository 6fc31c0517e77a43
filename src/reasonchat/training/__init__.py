"""The card's training side: ``prepare-model``, answer-masked fine-tuning, and the demo model.

Importing this package does not import torch; the functions that need it import it when called.
"""

from reasonchat.training.masks import create_answer_mask, prepare_conversation_template

__all__ = ["create_answer_mask", "prepare_conversation_template"]

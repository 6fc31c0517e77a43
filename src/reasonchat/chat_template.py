"""The card's template as a Jinja ``chat_template``, for every checkpoint prepare-model and train write.

``tokenizer.apply_chat_template`` and servers that use it (vLLM's and ``transformers serve``'s chat
endpoints) then produce the same bytes as ``reasonchat.template.apply_chat_template``:

* ``add_generation_prompt=True`` ends with the **reasoning** prompt ``<|im_start|><|reasoning|>\\n``
  (stage 1), as the card's function does by default;
* ``add_generation_prompt=True, answer_prompt=True`` ends with ``<|im_start|>assistant\\n`` (stage 2,
  after the reasoning turn is in the messages); on vLLM pass it as
  ``"chat_template_kwargs": {"answer_prompt": true}``;
* ``add_generation_prompt=False``: the history alone (what training renders).

Roles are ``system``, ``user``, ``<|reasoning|>`` (or ``reasoning``) and ``assistant``. An assistant
message may also carry its reasoning the way other tools write it, in a ``reasoning_content`` or
``reasoning`` field: it is rendered as the reasoning turn before the answer, which is exactly the
history with that reasoning turn written out. Anything else raises, naming the message.

Pure: built from ``reasonchat.template``'s constants (one definition of the protocol), imports nothing
heavy.
"""

from __future__ import annotations

from typing import Final

from reasonchat.template import (
    ASSISTANT_ROLE,
    IM_END,
    IM_START,
    REASONING_ROLE,
    ROLE_ALIASES,
    ROLES,
)

ANSWER_PROMPT_KWARG: Final = "answer_prompt"
# Fields in which other tools (vLLM, DeepSeek, TRL, OpenAI-style APIs) put an assistant's reasoning.
REASONING_FIELDS: Final = ("reasoning_content", "reasoning")


def _literal(text: str) -> str:
    """``text`` as a single-quoted Jinja string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def _build() -> str:
    roles = "[" + ", ".join(_literal(r) for r in ROLES) + "]"
    aliases = "".join(
        f"{{%- if role == {_literal(alias)} -%}}{{%- set role = {_literal(canonical)} -%}}{{%- endif -%}}"
        for alias, canonical in ROLE_ALIASES.items()
    )
    start, end, nl = _literal(IM_START), _literal(IM_END), _literal("\n")
    reasoning_fields = "".join(
        f"{{%- if message[{_literal(name)}] is defined and message[{_literal(name)}] is string "
        f"and reasoning is none -%}}{{%- set reasoning = message[{_literal(name)}] -%}}{{%- endif -%}}"
        for name in REASONING_FIELDS
    )
    return (
        "{%- for message in messages -%}"
        "{%- if message is not mapping or message['role'] is not defined "
        "or message['content'] is not defined -%}"
        "{{- raise_exception('message ' ~ loop.index0 ~ \": needs both 'role' and 'content'\") -}}"
        "{%- endif -%}"
        "{%- set role = message['role'] -%}"
        f"{aliases}"
        f"{{%- if role not in {roles} -%}}"
        "{{- raise_exception('message ' ~ loop.index0 ~ ': unknown role ' ~ role) -}}"
        "{%- endif -%}"
        "{%- if message['content'] is not string -%}"
        "{{- raise_exception('message ' ~ loop.index0 ~ ': content must be a string') -}}"
        "{%- endif -%}"
        "{%- set reasoning = none -%}"
        f"{{%- if role == {_literal(ASSISTANT_ROLE)} -%}}{reasoning_fields}{{%- endif -%}}"
        "{%- if reasoning is not none -%}"
        f"{{{{- {start} + {_literal(REASONING_ROLE)} + {nl} + reasoning + {end} + {nl} -}}}}"
        "{%- endif -%}"
        f"{{{{- {start} + role + {nl} + message['content'] + {end} + {nl} -}}}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}"
        f"{{%- if {ANSWER_PROMPT_KWARG} is defined and {ANSWER_PROMPT_KWARG} -%}}"
        f"{{{{- {start} + {_literal(ASSISTANT_ROLE)} + {nl} -}}}}"
        "{%- else -%}"
        f"{{{{- {start} + {_literal(REASONING_ROLE)} + {nl} -}}}}"
        "{%- endif -%}"
        "{%- endif -%}"
    )


CHAT_TEMPLATE: Final = _build()

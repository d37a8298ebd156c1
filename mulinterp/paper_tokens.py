"""The paper's own vocabulary: GPT-2 token ids and the prompt layout of its released models.

The authors' three checkpoints (github ajyl/icot, ``ckpts/``) read GPT-2 tokens, not our
18-token vocabulary. Their prompts (``src/data_utils.py``: ``prompt_ci_operands``,
``format_operands``) are the Deng text with a space in front and behind, two end-of-text
tokens and ``" ####"``::

    " 9 1 7 3 * 9 4 3 3 " + "<|endoftext|><|endoftext|>" + " ####" + " 1 3 9 4 5 4 2 1"

which GPT-2's byte-pair encoder cuts into one token per symbol::

    position  0    1    2    3    4     5    6    7    8    9    10     11     12    13     14 …
    text      ␣9   ␣1   ␣7   ␣3   ␣*    ␣9   ␣4   ␣3   ␣3   ␣    <eot>  <eot>  ␣#    ###    ␣1 …
    role      a0   a1   a2   a3   *     b0   b1   b2   b3   ␣    EOT    EOT    #     ANS    c0 …

The token at ``###`` predicts ``c_0`` (it plays the part of our ``ANS``), and the operand
digits sit where ours do (``a_i`` at ``i``, ``b_j`` at ``n_a + 1 + j``).

**Why a permuted vocabulary.** An imported model keeps all 50 257 GPT-2 tokens (greedy
decoding chooses among all of them, as the paper's did), but its rows are *reordered* so that
the layout's tokens come first, digits at ids 0–9 like ours::

    mulinterp id   0 … 9        10    11   12      13    14     15 …
    GPT-2 id       657 … 860    1635  220  50256   1303  21017  every other id, ascending

Reordering embedding rows and unembedding columns changes no number the model computes —
only the names of the tokens — and it lets every analysis (which reads digit ``d`` at id
``d``) and the evaluation run unchanged. :func:`to_gpt2` / :func:`from_gpt2` translate.

**The id table, with sources.** The GPT-2 tokenizer files cannot be downloaded here, so the
ids are carried as data. Each row names where it was read:

* ``<|endoftext|>`` = 50256, ``" #"`` = 1303, ``"###"`` = 21017: hard-coded by the authors
  (``src/data_utils.py``: ``values_to_add = torch.tensor([50256, 1303, 21017])``, appended to
  every prompt in place of ``"<eot> ####"`` after the padding ``<eot>``).
* ``" 0"`` … ``" 9"`` = 657, 352, 362, 513, 604, 642, 718, 767, 807, 860 and ``" "`` = 220:
  the GPT-2 tokenizer's reference outputs in CodeWithKyrian/tokenizers-php,
  ``tests/Datasets/Models/GptDataset.php`` (``Xenova/gpt2``, cases "Numbers" and "Trailing
  space"; the same file gives ``" #"`` = 1303, agreeing with the row above).
* ``" *"`` = 1635: the GPT-2 BPE ranks shipped in PyPI's ``openai-whisper`` 20231117 sdist
  (``whisper/assets/gpt2.tiktoken``, base64 token → rank; tiktoken's GPT-2 ids are these
  ranks). Every other id of the table was checked against the same file too: the digits,
  ``" "``, ``" #"`` and ``"###"`` agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

GPT2_VOCAB_SIZE = 50257


@dataclass(frozen=True)
class TokenRow:
    """One token of the paper's layout: our name, its text, its GPT-2 id and where that id is from."""

    name: str
    text: str
    gpt2_id: int
    source: str


_DATA_UTILS = "ajyl/icot src/data_utils.py (values_to_add = [50256, 1303, 21017])"
_PHP_TESTS = "CodeWithKyrian/tokenizers-php tests/Datasets/Models/GptDataset.php (Xenova/gpt2)"

#: mulinterp id = index in this table (digits first, so digit d is id d).
TABLE: tuple[TokenRow, ...] = (
    *(
        TokenRow(str(d), f" {d}", gid, _PHP_TESTS + ', case "Numbers"')
        for d, gid in enumerate((657, 352, 362, 513, 604, 642, 718, 767, 807, 860))
    ),
    TokenRow("*", " *", 1635, "openai-whisper 20231117 (PyPI sdist) whisper/assets/gpt2.tiktoken, GPT-2 BPE ranks"),
    TokenRow("␣", " ", 220, _PHP_TESTS + ', case "Trailing space"'),
    TokenRow("<eot>", "<|endoftext|>", 50256, _DATA_UTILS),
    TokenRow("#", " #", 1303, _DATA_UTILS),
    TokenRow("###", "###", 21017, _DATA_UTILS),
)
NAMES: list[str] = [row.name for row in TABLE]
MUL, SPACE, EOT, HASH, ANS = range(10, 15)


def gpt2_order() -> Int[Tensor, " vocab"]:
    """``order[i]`` = the GPT-2 id of mulinterp id ``i`` (the table, then every other id ascending)."""
    head = torch.tensor([row.gpt2_id for row in TABLE])
    rest = torch.ones(GPT2_VOCAB_SIZE, dtype=torch.bool)
    rest[head] = False
    return torch.cat([head, torch.arange(GPT2_VOCAB_SIZE)[rest]])


def to_gpt2(tokens: Int[Tensor, "..."]) -> Int[Tensor, "..."]:
    """mulinterp ids of an imported model → the GPT-2 ids the paper's code would feed."""
    return gpt2_order().to(tokens.device)[tokens]


def from_gpt2(ids: Int[Tensor, "..."]) -> Int[Tensor, "..."]:
    """GPT-2 ids → the mulinterp ids of an imported model (inverse of :func:`to_gpt2`)."""
    inverse = torch.empty(GPT2_VOCAB_SIZE, dtype=torch.int64)
    inverse[gpt2_order()] = torch.arange(GPT2_VOCAB_SIZE)
    return inverse.to(ids.device)[ids]


def table_metadata() -> list[dict]:
    """The id table as JSON-able rows (written into an imported checkpoint's metadata)."""
    return [
        {"id": i, "name": r.name, "text": r.text, "gpt2_id": r.gpt2_id, "source": r.source} for i, r in enumerate(TABLE)
    ]

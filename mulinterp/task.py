"""The multiplication task: vocabulary, sequence layouts, seeded data, Deng-format files.

Every number is written **least-significant digit first**, one token per digit. For
``a = 3719, b = 3349`` (4×4) the plain layout is::

    9 1 7 3 * 9 4 3 3 SEP ANS 1 3 9 4 5 4 2 1 EOS

and the implicit-CoT layout of Deng et al. inserts the chain of thought between ``SEP`` and
``ANS``::

    9 1 7 3 * 9 4 3 3 SEP 1 7 4 3 3 + 0 6 7 8 4 1 ( 1 3 2 2 8 1 ) + ... ANS 1 3 9 4 5 4 2 1 EOS

The CoT lists ``a·b_0``, then for each later ``j`` a ``+``, ``a·b_j·10^j`` and (except after
the last) the running sum in brackets. ``a·b_j·10^j`` and the running sum through ``j`` are
zero-padded to ``n_a + 1 + j`` digits, which reproduces the public 4×4 file byte for byte.

Answer positions are named by the digit they *predict*: the token at ``answer_start + k``
(``answer_start`` is the index of ``ANS``) predicts ``c_k``.

Splits are disjoint by construction: every ``(a, b)`` pair hashes to one of 1000 buckets;
buckets 0–19 are ``test``, 20–39 ``val`` and the rest ``train``.

A task has one of two vocabularies. ``vocab="mulinterp"`` (the default) is the 18-token
vocabulary above, used by every model trained here. ``vocab="gpt2"`` is the paper's own: the
GPT-2 tokens and prompt layout of the authors' released checkpoints (see
:mod:`mulinterp.paper_tokens`)::

    a_0 .. a_{n-1} * b_0 .. b_{m-1} ␣ <eot> <eot> # ### c_0 .. c_{n+m-1} <eot>

Digits are ids 0–9 in both, operands sit at the same positions, and ``###`` plays the part of
``ANS``; code that asks the task for positions (:meth:`MulTask.answer_start`,
:meth:`MulTask.b_position`, :meth:`MulTask.token_labels`) works on either.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Int
from torch import Tensor

from mulinterp import paper_tokens
from mulinterp.arithmetic import GroundTruth, from_digits, ground_truth, to_digits

# ---------------------------------------------------------------------------------------
# vocabulary
DIGITS = [str(d) for d in range(10)]
MUL, PLUS, LPAREN, RPAREN, SEP, ANS, EOS, PAD = range(10, 18)
VOCAB: list[str] = DIGITS + ["*", "+", "(", ")", "||", "####", "<eos>", "<pad>"]
D_VOCAB = len(VOCAB)
TOKEN_ID = {tok: i for i, tok in enumerate(VOCAB)}

VOCABS: tuple[str, ...] = ("mulinterp", "gpt2")
# A format or split is checked by the function that takes it, with one ValueError naming the
# choices (what a CLI user sees). So the annotations say ``str``: a ``Literal`` would be refused
# first by the test suite's run-time type checker, with a TypeCheckError instead of that message.
Format = str  # one of FORMATS
Split = str  # one of SPLITS
FORMATS: tuple[str, ...] = ("plain", "cot")
SPLITS: tuple[str, ...] = ("train", "val", "test", "any")
MAX_DIGITS = 8
_N_BUCKETS, _TEST_BUCKETS, _VAL_BUCKETS = 1000, 20, 20


def _check_n(name: str, n: int) -> None:
    if not isinstance(n, int) or not 1 <= n <= MAX_DIGITS:
        raise ValueError(f"{name} must be an integer from 1 to {MAX_DIGITS}, got {n!r}")


@dataclass(frozen=True)
class MulTask:
    """``n_a``-digit × ``n_b``-digit multiplication (1 ≤ n ≤ 8).

    >>> task = MulTask(4, 4)
    >>> task.decode(task.encode_ints([3719], [3349])[0])
    '9 1 7 3 * 9 4 3 3 || #### 1 3 9 4 5 4 2 1 <eos>'
    >>> paper = MulTask(4, 4, vocab="gpt2")       # the authors' released models
    >>> paper.decode_tokens(paper.encode_ints([3719], [3349])[0])
    '9 1 7 3 * 9 4 3 3 ␣ <eot> <eot> # ### 1 3 9 4 5 4 2 1 <eot>'
    """

    n_a: int = 4
    n_b: int = 4
    # Not compared: two tasks are equal when they pose the same problems (digits, splits),
    # however the tokens are written — so a Deng file's 4×4 problems match an imported model.
    vocab: str = field(default="mulinterp", compare=False)

    def __post_init__(self) -> None:
        _check_n("n_a", self.n_a)
        _check_n("n_b", self.n_b)
        if self.vocab not in VOCABS:
            raise ValueError(f"unknown vocabulary {self.vocab!r}; choose one of {', '.join(VOCABS)}")

    @property
    def d_vocab(self) -> int:
        """Size of the vocabulary (the GPT-2 one keeps all 50 257 tokens, reordered)."""
        return D_VOCAB if self.vocab == "mulinterp" else paper_tokens.GPT2_VOCAB_SIZE

    @property
    def vocab_names(self) -> list[str]:
        """Names of the layout's tokens by id (the GPT-2 vocabulary: only the 15 it uses)."""
        return VOCAB if self.vocab == "mulinterp" else paper_tokens.NAMES

    def _check_format(self, fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        if fmt == "cot" and self.vocab == "gpt2":
            raise ValueError("the paper's GPT-2 layout has no chain-of-thought tokens here; use the plain format")

    # ----- shapes of the layout ---------------------------------------------------------
    @property
    def name(self) -> str:
        return f"{self.n_a}x{self.n_b}"

    @property
    def n_c(self) -> int:
        """Number of answer digits."""
        return self.n_a + self.n_b

    @property
    def input_len(self) -> int:
        """``a_0..a_{n-1} * b_0..b_{m-1} SEP`` (GPT-2 layout: ``… b_{m-1} ␣ <eot> <eot> #``)."""
        return self.n_a + self.n_b + (2 if self.vocab == "mulinterp" else 5)

    def a_position(self, i: int) -> int:
        """Position of operand digit ``a_i`` (the same in both layouts)."""
        return i

    def b_position(self, j: int) -> int:
        """Position of operand digit ``b_j`` (after ``a`` and ``*``, in both layouts)."""
        return self.n_a + 1 + j

    def answer_position(self, k: int, fmt: Format = "plain") -> int:
        """Position whose next-token prediction is ``c_k`` (the timestep "c_k")."""
        return self.answer_start(fmt) + k

    @property
    def operand_positions(self) -> list[int]:
        """Positions of ``a_0..a_{n-1}, b_0..b_{m-1}``, in that order."""
        return [self.a_position(i) for i in range(self.n_a)] + [self.b_position(j) for j in range(self.n_b)]

    @property
    def cot_len(self) -> int:
        """Number of CoT tokens in the Deng format."""
        widths = [self.n_a + 1 + j for j in range(self.n_b)]
        n_sums = max(self.n_b - 2, 0)
        return sum(widths) + (self.n_b - 1) + sum(widths[1 : 1 + n_sums]) + 2 * n_sums

    def seq_len(self, fmt: Format = "plain") -> int:
        self._check_format(fmt)
        cot = self.cot_len if fmt == "cot" else 0
        return self.input_len + cot + 1 + self.n_c + 1

    def answer_start(self, fmt: Format = "plain") -> int:
        """Index of the ``ANS`` token (GPT-2 layout: ``###``), which predicts ``c_0``."""
        self._check_format(fmt)
        return self.input_len + (self.cot_len if fmt == "cot" else 0)

    def answer_positions(self, fmt: Format = "plain") -> Tensor:
        """Positions whose next-token prediction is ``c_0 .. c_{n_c-1}``."""
        return self.answer_start(fmt) + torch.arange(self.n_c)

    def token_labels(self, fmt: Format = "plain") -> list[str]:
        """Human labels per position (``a0``, ``*``, ``b1``, ``SEP``, ``ANS``, ``c3`` …).

        The GPT-2 layout's separator tokens are labelled ``␣``, ``EOT``, ``EOT``, ``#`` (its
        ``###`` is ``ANS``, the position that predicts ``c_0``).
        """
        self._check_format(fmt)
        labels = [f"a{i}" for i in range(self.n_a)] + ["*"] + [f"b{j}" for j in range(self.n_b)]
        labels += ["SEP"] if self.vocab == "mulinterp" else ["␣", "EOT", "EOT", "#"]
        labels += [f"cot{t}" for t in range(self.cot_len if fmt == "cot" else 0)]
        return labels + ["ANS"] + [f"c{k}" for k in range(self.n_c)] + ["EOS"]

    def to_dict(self) -> dict[str, int | str]:
        """JSON form for checkpoint metadata (``vocab`` only when it is not the default, so
        the metadata of models trained here is unchanged)."""
        d: dict[str, int | str] = {"n_a": self.n_a, "n_b": self.n_b}
        if self.vocab != "mulinterp":
            d["vocab"] = self.vocab
        return d

    @classmethod
    def parse(cls, spec: str) -> MulTask:
        """``"4x4"`` → ``MulTask(4, 4)``."""
        m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(spec))
        if not m:
            raise ValueError(f"digit spec must look like '4x4', got {spec!r}")
        return cls(int(m.group(1)), int(m.group(2)))

    # ----- operands ---------------------------------------------------------------------
    def check_operands(self, a: int | Int[Tensor, "..."], b: int | Int[Tensor, "..."]) -> None:
        """Raise ``ValueError`` unless ``a`` has ``n_a`` digits and ``b`` has ``n_b``.

        ``a`` and ``b`` are two ints, or two 1-D tensors of the same length (every element checked).
        """
        # (any shape in the annotation: this function reports wrong shapes itself, in one line)
        if isinstance(a, Tensor) or isinstance(b, Tensor):
            a, b = torch.as_tensor(a), torch.as_tensor(b)
            if a.shape != b.shape or a.ndim != 1:
                raise ValueError(
                    f"a and b must be 1-D tensors of the same length, got {tuple(a.shape)} and {tuple(b.shape)}"
                )
            for name, x, n in (("a", a, self.n_a), ("b", b, self.n_b)):
                if len(x) and (int(x.min()) < 10 ** (n - 1) or int(x.max()) >= 10**n):
                    raise ValueError(
                        f"digit-count mismatch: every {name} must have exactly {n} digits for the {self.name} task"
                    )
            return
        for name, x, n in (("a", a, self.n_a), ("b", b, self.n_b)):
            if not 10 ** (n - 1) <= x < 10**n:
                raise ValueError(f"operand {name}={x} must have exactly {n} digits for the {self.name} task")

    def bucket(self, a: Int[Tensor, " batch"], b: Int[Tensor, " batch"]) -> Int[Tensor, " batch"]:
        """Deterministic hash bucket in [0, 1000) of each pair (device independent)."""
        p, g = 2147483647, 48271  # Lehmer generator: products stay well inside int64
        key = a.to(torch.int64) * 10**self.n_b + b.to(torch.int64)
        x = (key % p + 1) % p
        hi = key // p
        for _ in range(3):
            x = (x * g + hi) % p
        return x % _N_BUCKETS

    def in_split(self, a: Tensor, b: Tensor, split: Split) -> Tensor:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        h = self.bucket(a, b)
        if split == "test":
            return h < _TEST_BUCKETS
        if split == "val":
            return (h >= _TEST_BUCKETS) & (h < _TEST_BUCKETS + _VAL_BUCKETS)
        if split == "train":
            return h >= _TEST_BUCKETS + _VAL_BUCKETS
        return torch.ones_like(h, dtype=torch.bool)

    @property
    def operand_bounds(self) -> tuple[int, int, int, int]:
        """``lo_a, hi_a, lo_b, hi_b``: operands range over ``[lo, hi)`` (leading digit non-zero)."""
        return 10 ** (self.n_a - 1), 10**self.n_a, 10 ** (self.n_b - 1), 10**self.n_b

    @property
    def n_problems(self) -> int:
        """Operand pairs in the task, all splits together."""
        lo_a, hi_a, lo_b, hi_b = self.operand_bounds
        return (hi_a - lo_a) * (hi_b - lo_b)

    def enumerate_split(
        self, split: Split, device: str | torch.device = "cpu", limit: int = 2_000_000
    ) -> tuple[Int[Tensor, " n"], Int[Tensor, " n"]]:
        """Every operand pair of ``split``, ``a``-major; refused for tasks above ``limit`` pairs."""
        if self.n_problems > limit:
            raise ValueError(
                f"the {self.name} task has {self.n_problems:,} problems, too many to enumerate "
                f"(limit {limit:,}); sample instead"
            )
        lo_a, hi_a, lo_b, hi_b = self.operand_bounds
        a = torch.arange(lo_a, hi_a, device=device).repeat_interleave(hi_b - lo_b)
        b = torch.arange(lo_b, hi_b, device=device).repeat(hi_a - lo_a)
        keep = self.in_split(a, b, split)
        return a[keep], b[keep]

    def sample(
        self,
        n: int,
        split: Split = "train",
        seed: int | None = None,
        generator: torch.Generator | None = None,
        device: str | torch.device = "cpu",
    ) -> tuple[Int[Tensor, " n"], Int[Tensor, " n"]]:
        """``n`` operand pairs, uniform over the split's n-digit pairs (leading digit non-zero).

        Vectorised rejection sampling: draw a surplus, keep the pairs in the split.
        """
        if generator is None:
            generator = torch.Generator(device=device)
            generator.manual_seed(0 if seed is None else seed)
        device = generator.device
        lo_a, hi_a, lo_b, hi_b = self.operand_bounds
        if self.n_problems < 20_000:  # tiny spaces: draw from the enumerated split
            a_all, b_all = self.enumerate_split(split, device=device)
            if not len(a_all):
                raise ValueError(f"the {split} split of the {self.name} task is empty")
            idx = torch.randint(len(a_all), (n,), generator=generator, device=device)
            return a_all[idx], b_all[idx]
        frac = {"test": 0.02, "val": 0.02, "train": 0.96, "any": 1.0}[split]
        out_a, out_b, have = [], [], 0
        while have < n:
            m = int((n - have) / frac * 1.2) + 64
            a = torch.randint(lo_a, hi_a, (m,), generator=generator, device=device)
            b = torch.randint(lo_b, hi_b, (m,), generator=generator, device=device)
            keep = self.in_split(a, b, split)
            out_a.append(a[keep])
            out_b.append(b[keep])
            have += int(keep.sum())
        return torch.cat(out_a)[:n], torch.cat(out_b)[:n]

    # ----- encoding ---------------------------------------------------------------------
    def cot_tokens(self, a: Int[Tensor, " batch"], b: Int[Tensor, " batch"]) -> Int[Tensor, "batch cot"]:
        """The Deng CoT tokens (between SEP and ANS) for each problem."""
        b_d = to_digits(b, self.n_b)
        a = a.to(torch.int64)
        batch = a.shape[0]
        pieces: list[Tensor] = []
        running = torch.zeros_like(a)

        def const(tok: int) -> Tensor:
            return torch.full((batch, 1), tok, dtype=torch.int64, device=a.device)

        for j in range(self.n_b):
            width = self.n_a + 1 + j
            term = a * b_d[:, j] * 10**j
            running = running + term
            if j > 0:
                pieces.append(const(PLUS))
            pieces.append(to_digits(term, width))
            if 0 < j < self.n_b - 1:
                pieces += [const(LPAREN), to_digits(running, width), const(RPAREN)]
        return torch.cat(pieces, dim=1)

    def encode(
        self, a: Int[Tensor, " batch"], b: Int[Tensor, " batch"], fmt: Format = "plain"
    ) -> Int[Tensor, "batch seq"]:
        """Token ids of whole problems (input, optional CoT, answer, EOS)."""
        self._check_format(fmt)
        a, b = a.to(torch.int64), b.to(torch.int64)
        batch = a.shape[0]

        def const(*toks: int) -> Tensor:
            return torch.tensor(toks, dtype=torch.int64, device=a.device).expand(batch, len(toks))

        if self.vocab == "gpt2":
            pt = paper_tokens
            parts = [
                to_digits(a, self.n_a),
                const(pt.MUL),
                to_digits(b, self.n_b),
                const(pt.SPACE, pt.EOT, pt.EOT, pt.HASH, pt.ANS),
                to_digits(a * b, self.n_c),
                const(pt.EOT),
            ]
            return torch.cat(parts, dim=1)
        parts = [to_digits(a, self.n_a), const(MUL), to_digits(b, self.n_b), const(SEP)]
        if fmt == "cot":
            parts.append(self.cot_tokens(a, b))
        parts += [const(ANS), to_digits(a * b, self.n_c), const(EOS)]
        return torch.cat(parts, dim=1)

    def encode_ints(self, a: Sequence[int], b: Sequence[int], fmt: Format = "plain") -> Tensor:
        """:meth:`encode` for Python ints, validated."""
        for x, y in zip(a, b):
            self.check_operands(int(x), int(y))
        return self.encode(torch.tensor(list(a)), torch.tensor(list(b)), fmt)

    def true_answer(self, a: Int[Tensor, " batch"], b: Int[Tensor, " batch"]) -> Int[Tensor, "batch n_c"]:
        """The answer digits ``c_0 … c_{n_c-1}`` of each problem (digits are their own token ids)."""
        return to_digits(a.to(torch.int64) * b.to(torch.int64), self.n_c)

    def ground_truth(self, a: Int[Tensor, " batch"], b: Int[Tensor, " batch"]) -> GroundTruth:
        """Every intermediate quantity of the paper for these problems (see :mod:`mulinterp.arithmetic`)."""
        return ground_truth(a, b, self.n_a, self.n_b)

    def teacher_forced(
        self,
        a: Int[Tensor, " batch"],
        b: Int[Tensor, " batch"],
        answer_of: tuple[Int[Tensor, " batch"], Int[Tensor, " batch"]] | None = None,
    ) -> Int[Tensor, "batch seq"]:
        """``a * b SEP ANS c_0 … c_{n_c-2}`` (plain layout): every token some answer prediction reads.

        (``c_{n_c-1}`` and ``EOS`` are dropped: no prediction of an answer digit reads them.)
        The answer prefix is that of the problems ``answer_of`` if given — e.g. a corrupted
        problem read with the clean problem's answer, so the two differ in one operand token.
        """
        start = self.answer_start("plain")
        end = start + self.n_c
        tokens = self.encode(a, b)[:, :end]
        if answer_of is not None:
            tokens[:, start + 1 :] = self.encode(*answer_of)[:, start + 1 : end]
        return tokens

    def prompt(self, a: Tensor, b: Tensor) -> Int[Tensor, "batch prompt"]:
        """Plain-layout prompt up to and including ``ANS`` (what a model sees at test time)."""
        return self.encode(a, b, "plain")[:, : self.answer_start("plain") + 1]

    def operands(self, tokens: Int[Tensor, "batch seq"]) -> tuple[Tensor, Tensor]:
        """Recover ``(a, b)`` from encoded sequences."""
        a = from_digits(tokens[:, : self.n_a])
        lo = self.b_position(0)
        b = from_digits(tokens[:, lo : lo + self.n_b])
        return a, b

    @staticmethod
    def decode(tokens: Tensor | Sequence[int]) -> str:
        """Space-separated token strings (pad tokens dropped), in the 18-token vocabulary."""
        ids = tokens.tolist() if isinstance(tokens, Tensor) else list(tokens)
        return " ".join(VOCAB[i] for i in ids if i != PAD)

    def decode_tokens(self, tokens: Tensor | Sequence[int]) -> str:
        """:meth:`decode` in this task's vocabulary (GPT-2 ids outside the layout as ``gpt2:ID``)."""
        if self.vocab == "mulinterp":
            return self.decode(tokens)
        ids = tokens.tolist() if isinstance(tokens, Tensor) else list(tokens)
        names = self.vocab_names
        order = paper_tokens.gpt2_order()
        return " ".join(names[i] if i < len(names) else f"gpt2:{int(order[i])}" for i in ids)

    # ----- Deng-format text -------------------------------------------------------------
    def deng_line(self, a: int, b: int) -> str:
        """``INPUT||COT #### ANSWER`` exactly as in Deng et al.'s files."""
        self.check_operands(a, b)
        at, bt = torch.tensor([a]), torch.tensor([b])
        inp = " ".join(map(str, to_digits(at, self.n_a)[0].tolist())) + " * "
        inp += " ".join(map(str, to_digits(bt, self.n_b)[0].tolist()))
        cot = " ".join(VOCAB[t] for t in self.cot_tokens(at, bt)[0].tolist())
        ans = " ".join(map(str, to_digits(at * bt, self.n_c)[0].tolist()))
        return f"{inp}||{cot} #### {ans}"


@dataclass(frozen=True)
class DengProblem:
    a: int
    b: int
    cot: str
    answer: str
    line: str


def infer_task_from_deng_line(line: str) -> MulTask:
    head = line.split("||", 1)[0]
    if "*" not in head:
        raise ValueError("no '*' in the input part")
    left, right = head.split("*", 1)
    return MulTask(len(left.split()), len(right.split()))


def parse_deng_line(line: str, lineno: int = 1, task: MulTask | None = None) -> DengProblem:
    """Parse one ``INPUT||COT #### ANSWER`` line; ``ValueError`` names the line on failure."""
    text = line.rstrip("\n")
    try:
        if "||" not in text or " #### " not in text:
            raise ValueError("expected 'INPUT||COT #### ANSWER'")
        head, rest = text.split("||", 1)
        cot, answer = rest.split(" #### ", 1)
        t = task or infer_task_from_deng_line(text)
        left, right = head.split("*", 1)
        da, db = left.split(), right.split()
        if len(da) != t.n_a or len(db) != t.n_b:
            raise ValueError(f"expected {t.n_a}×{t.n_b} digits, got {len(da)}×{len(db)}")
        if not all(d in DIGITS for d in da + db + answer.split()):
            raise ValueError("operands and answer must be single digits separated by spaces")
        a, b = int("".join(reversed(da))), int("".join(reversed(db)))
        t.check_operands(a, b)
    except ValueError as e:
        raise ValueError(f"line {lineno}: malformed Deng line: {e}") from None
    return DengProblem(a=a, b=b, cot=cot, answer=answer, line=text)


def read_deng_file(path: str | Path, task: MulTask | None = None) -> tuple[MulTask, list[DengProblem]]:
    """Read a Deng-format file; the task is inferred from the first line unless given."""
    p = Path(path)
    try:
        lines = p.read_text().splitlines()
    except OSError as e:
        raise ValueError(f"cannot read Deng file {p}: {e.strerror or e}") from None
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        raise ValueError(f"Deng file {p} has no problems")
    try:
        task = task or infer_task_from_deng_line(lines[0])
    except ValueError as e:
        raise ValueError(f"line 1: malformed Deng line: {e}") from None
    return task, [parse_deng_line(ln, i + 1, task) for i, ln in enumerate(lines)]


def write_deng_file(path: str | Path, task: MulTask, a: Sequence[int], b: Sequence[int]) -> None:
    """Write problems in Deng's format, one per line (atomically)."""
    from mulinterp.io import atomic_write_bytes

    text = "".join(task.deng_line(int(x), int(y)) + "\n" for x, y in zip(a, b))
    atomic_write_bytes(Path(path), text.encode())

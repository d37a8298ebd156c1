"""Whether CPU training may run under bf16 autocast.

``cpu_bf16`` in a recipe asks for bf16 autocast on the CPU. That is 1.8–1.9× faster where
the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16) and about 10× *slower* where it
emulates it (measured on an AVX2-only AMD EPYC, 2026-12-07: `benchmarks/bench_train.py
--preset cpu --batch 256`, sft 942 → 90 examples/s, icot 288 → 30). Campaign recipes are
committed once and resumed on whatever machine a session gets, so the request is honoured only
where the CPU has the instructions; elsewhere the run trains in fp32 and says so. Master weights
are fp32 either way, so a run can change precision at a resume without any conversion.
"""

from __future__ import annotations

from pathlib import Path

NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str] | None:
    """The first CPU's feature flags from ``/proc/cpuinfo`` (x86 ``flags`` or ARM
    ``Features``), or None where the file cannot be read (not Linux)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def resolve_cpu_bf16(requested: bool, flags: frozenset[str] | None) -> tuple[bool, str | None]:
    """(use bf16 autocast on the CPU, a one-line note when the request is not honoured).

    ``flags`` None (flags unreadable) honours the request: the user asked for it on a machine
    we cannot inspect. ARM's ``bf16`` feature counts as native.
    """
    if not requested or flags is None:
        return requested, None
    if flags & (NATIVE_BF16_FLAGS | {"bf16"}):
        return True, None
    return False, (
        "cpu_bf16 asked for, but this CPU has no native bf16 (no avx512_bf16/amx_bf16 flag), "
        "where bf16 autocast is ~10x slower: computing in fp32"
    )


def cpu_has_native_bf16() -> bool:
    """Whether this machine would honour a ``cpu_bf16`` request (True where flags are unreadable,
    as :func:`resolve_cpu_bf16` does)."""
    return resolve_cpu_bf16(True, cpu_flags())[0]

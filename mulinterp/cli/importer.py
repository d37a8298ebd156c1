"""``mulinterp import``: convert one of the paper's released checkpoints (github ajyl/icot)."""

from __future__ import annotations

from pathlib import Path

from mulinterp.cli.common import CLIError, emit_json


def cmd_import(args) -> int:
    from dataclasses import asdict

    from mulinterp.importers import import_checkpoint
    from mulinterp.io import check_writable
    from mulinterp.models import save

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise CLIError(f"--out must be a .safetensors file, got {out}")
    if out.is_dir():
        raise CLIError(f"--out {out} is a folder")
    if args.n_heads is not None and args.n_heads <= 0:
        raise CLIError(f"--n-heads must be positive, got {args.n_heads}")
    check_writable(out)
    m, report = import_checkpoint(args.path, name=args.name or out.stem, n_heads=args.n_heads)
    save(m, out)
    if args.json:
        emit_json(
            {
                "out": str(out),
                "name": m.name,
                "format": report.format,
                "regime": report.regime,
                "model": asdict(report.spec),
                "probe_heads": report.probe_heads,
                "files": report.files,
            }
        )
        return 0
    for line in report.lines():
        print(line)
    print(f"wrote {out} (name {m.name!r}); use it as --model {out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "import",
        help="convert the paper's released ICoT / aux / SFT checkpoint into a mulinterp checkpoint",
        description="Convert one of the models the authors released in github ajyl/icot (ckpts/, Git "
        "LFS) into a mulinterp checkpoint that every command, figure and notebook accepts. PATH is "
        "ckpts/2L4H (config.json + state_dict.bin: the ICoT GPT-2) or a ckpt.pt of the authors' "
        "transformer.py model (ckpts/aux_head, ckpts/vanilla_ft) or its folder. Files are read "
        "with torch.load(weights_only=True) only. The model keeps GPT-2's vocabulary (reordered, "
        "digits first) and the paper's prompt layout.",
    )
    p.add_argument("path", metavar="PATH", help="ckpts/2L4H folder, or a ckpt.pt (or its folder)")
    p.add_argument("--out", required=True, metavar="FILE.safetensors", help="checkpoint to write")
    p.add_argument("--name", help="model name stored in the checkpoint (default: the output file's stem)")
    p.add_argument(
        "--n-heads",
        type=int,
        metavar="H",
        help="heads per layer of a transformer.py model when it has no probe to read it from (default 4)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_import)

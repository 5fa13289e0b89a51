"""One command-line style for every entry point: a config dataclass parsed by HfArgumentParser.

    (cfg,) = parse_config(BenchConfig, argv)
    cfg, args = parse_config(GradeConfig, argv, positional={"submissions": "folder of submissions"})

Every output folder is `--out_dir`. The spellings it replaced (`--out`, `--output-dir`,
`--output_dir`) still work for now: each prints one deprecation line on stderr and is read as
`--out_dir`. A wrong or unknown option ends as argparse ends: usage, one line, exit status 2.
"""
from __future__ import annotations

import dataclasses
import sys

# old spelling -> the one every entry point uses now
DEPRECATED_FLAGS = {"--out": "--out_dir", "--output-dir": "--out_dir", "--output_dir": "--out_dir"}


def modernize(argv: list[str], prog: str) -> list[str]:
    """`argv` with each deprecated flag (DEPRECATED_FLAGS) renamed, saying so on stderr once per flag."""
    out, warned = [], set()
    for token in argv:
        flag, eq, value = token.partition("=")
        if flag in DEPRECATED_FLAGS:
            if flag not in warned:
                print(f"{prog}: warning: {flag} is deprecated, use {DEPRECATED_FLAGS[flag]}", file=sys.stderr)
                warned.add(flag)
            token = DEPRECATED_FLAGS[flag] + eq + value
        out.append(token)
    return out


def parse_config(types, argv=None, *, positional: dict[str, str] | None = None, description=None,
                 prog=None):
    """Parse `argv` (default sys.argv[1:]) into one instance of each dataclass in `types`.

    `positional` adds plain positional arguments ({name: help}); they come back as one extra
    argparse.Namespace after the dataclasses.
    """
    from transformers import HfArgumentParser     # lazy: transformers is slow to import

    types = tuple(types) if isinstance(types, (list, tuple)) else (types,)
    for t in types:
        if not dataclasses.is_dataclass(t):
            raise TypeError(f"{t!r} is not a dataclass")
    parser = HfArgumentParser(types, description=description, prog=prog)
    for name, help_text in (positional or {}).items():
        parser.add_argument(name, help=help_text)
    argv = sys.argv[1:] if argv is None else list(argv)
    # look_for_args_file=False: a stray <script>.args file must not add options unseen
    parsed = parser.parse_args_into_dataclasses(args=modernize(argv, parser.prog), look_for_args_file=False,
                                                return_remaining_strings=True)
    *outputs, remaining = parsed
    if remaining:
        parser.error(f"unrecognized arguments: {' '.join(remaining)}")
    return tuple(outputs)
